"""Files the API reads from its own disk (a dataset registered by ``server_path``, BPE tokenizer
files): only under ``<root>/<tenant id>/`` for a root ``UNLEARND_DATASET_ROOTS`` lists, after
symlinks and ``..`` are resolved, so a path can never reach outside them or into another tenant's."""

from __future__ import annotations

from pathlib import Path

from app.core.errors import Invalid, ProblemError
from app.settings import get_settings


def _refused(title: str, detail: str) -> ProblemError:
    return ProblemError(403, "server-path-refused", title, detail)


def _unreadable(field: str, exc: OSError | RuntimeError) -> Invalid:
    # strerror only ("File name too long", "Too many levels of symbolic links"): never the path itself
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "a symbolic link loop"
    return Invalid(f"`{field}` cannot be read on the server: {why}", title="Unreadable server path")


def tenant_dirs(tenant_id: str) -> list[Path]:
    """The directories a tenant may read: ``<root>/<tenant id>`` for each configured root.
    Tenant ids are one safe path component (app.auth.schemas.TenantId)."""
    return [root / tenant_id for root in get_settings().dataset_root_paths]


def allowed_file(path: str, *, field: str, tenant_id: str) -> Path:
    """The resolved path of an existing regular file under one of the tenant's directories; 403
    outside them (or when no roots are configured), 422 when it is not a readable file."""
    dirs = tenant_dirs(tenant_id)
    if not dirs:
        raise _refused(
            "Server paths disabled",
            f"`{field}` names a file on the server, and this deployment allows none "
            "(UNLEARND_DATASET_ROOTS is empty): upload the file instead",
        )
    if "\x00" in path:
        raise Invalid(f"`{field}` must not contain a NUL character")
    raw = Path(path)
    if not raw.is_absolute():
        raise Invalid(f"`{field}` must be an absolute path on the server")
    try:
        resolved = raw.resolve()  # follows symlinks and ``..``: the check is on where it really points
        allowed = [d.resolve() for d in dirs]
        inside = any(resolved.is_relative_to(d) and resolved != d for d in allowed)
        if inside and not resolved.is_file():
            raise Invalid(f"`{field}` is not a file on the server: {path}", title="No such file")
    except (OSError, RuntimeError) as exc:  # a name over 255 bytes, a symlink loop, no permission
        raise _unreadable(field, exc) from None
    if not inside:
        raise _refused(
            "Server path not allowed",
            f"`{field}` is outside the directories this deployment allows your tenant: "
            f"`<root>/{tenant_id}/` for each root in UNLEARND_DATASET_ROOTS",
        )
    return resolved


def read_allowed(resolved: Path, *, field: str, max_bytes: int) -> bytes:
    """The file's bytes, at most ``max_bytes`` (422 beyond, or when it cannot be read)."""
    try:
        with resolved.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise _unreadable(field, exc) from None
    if len(data) > max_bytes:
        raise Invalid(
            f"the file is larger than {max_bytes} bytes", slug="invalid-dataset", title="Invalid dataset file"
        )
    return data
