from __future__ import annotations

from typing import Any

from unlearnd_client.offline import VerificationResult, verify_certificate
from unlearnd_client.transport import Transport


class Certificates:
    def __init__(self, transport: Transport):
        self._t = transport

    def get(self, forget_request_id: str) -> dict[str, Any]:
        """The signed deletion certificate of a SUCCEEDED request: ``{"certificate": ..., "signature": ...}``."""
        return self._t.json("GET", f"/v1/forget-requests/{forget_request_id}/certificate")

    def public_keys(self) -> list[dict[str, Any]]:
        """The service's signing keys (``kid``, ``public_key`` as base64url, ``public_key_pem``); needs no API key."""
        return self._t.json("GET", "/v1/keys")["keys"]

    def public_key(self, kid: str) -> str | None:
        return next((k["public_key"] for k in self.public_keys() if k.get("kid") == kid), None)

    def verify(self, document: dict[str, Any], public_key: str | bytes | None = None) -> VerificationResult:
        """Check the signature here. Without ``public_key``, the key the API publishes under the
        certificate's kid is used: that proves the document is unaltered since the service signed it;
        pass a key you obtained and trust independently to also prove who signed it."""
        if public_key is None:
            kid = (document.get("signature") or {}).get("kid") if isinstance(document, dict) else None
            public_key = self.public_key(kid) if isinstance(kid, str) else None
            if public_key is None:
                return VerificationResult(False, f"GET /v1/keys lists no key with the certificate's kid {kid!r}")
        return verify_certificate(document, public_key)
