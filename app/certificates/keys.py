"""The service's Ed25519 signing key: loaded from ``UNLEARND_SIGNING_KEY_FILE`` (PKCS8 PEM), generated
there on first use when the file does not exist. The private key is never logged or served."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from app.certificates.offline import ALG, b64url_encode, key_id, raw_public_bytes
from app.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    kid: str

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def public_description(self) -> dict[str, str]:
        public = self.private.public_key()
        return {
            "kid": self.kid,
            "alg": ALG,
            "public_key": b64url_encode(raw_public_bytes(public)),
            "public_key_pem": public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii"),
        }


@lru_cache
def signing_key() -> SigningKey:
    """Read once per process: signing is on the request path, the file does not change under it."""
    path = get_settings().signing_key_file
    if not path.exists():
        _generate(path)
    private = _load(path)
    return SigningKey(private=private, kid=key_id(raw_public_bytes(private.public_key())))


def _load(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise RuntimeError(f"{path}: not an unencrypted PKCS8 PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise RuntimeError(f"{path} holds a {type(key).__name__}; certificates are signed with Ed25519")
    if path.stat().st_mode & 0o077:
        log.warning("signing key file %s is readable by group or others; chmod 600 it", path)
    return key


def _generate(path: Path) -> None:
    """Write a fresh key to a private temporary file and link it into place: the link fails if another
    process (API and worker start together) got there first, and then both use that one key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".signing-key-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
    finally:
        os.unlink(tmp)
    kid = key_id(raw_public_bytes(key.public_key()))
    log.warning("no signing key at %s: generated a new Ed25519 key (kid %s); back it up", path, kid)
