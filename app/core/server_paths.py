"""Files the API reads from its own disk (a dataset registered by ``server_path``, BPE tokenizer
files): only under the directories ``UNLEARND_DATASET_ROOTS`` lists, after symlinks and ``..`` are
resolved, so a path can never reach outside them."""

from __future__ import annotations

from pathlib import Path

from app.core.errors import Invalid, ProblemError
from app.settings import get_settings


def allowed_file(path: str, *, field: str) -> Path:
    """The resolved path of an existing regular file under an allowed root; 403 outside the roots
    (or when none are configured), 422 when it is not a readable file."""
    roots = get_settings().dataset_root_paths
    if not roots:
        raise ProblemError(
            403,
            "server-path-refused",
            "Server paths disabled",
            f"`{field}` names a file on the server, and this deployment allows none "
            "(UNLEARND_DATASET_ROOTS is empty): upload the file instead",
        )
    if "\x00" in path:
        raise Invalid(f"`{field}` must not contain a NUL character")
    raw = Path(path)
    if not raw.is_absolute():
        raise Invalid(f"`{field}` must be an absolute path on the server")
    resolved = raw.resolve()  # follows symlinks and ``..``: the check is on where it really points
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ProblemError(
            403,
            "server-path-refused",
            "Server path not allowed",
            f"`{field}` is outside the directories this deployment allows (UNLEARND_DATASET_ROOTS)",
        )
    if not resolved.is_file():
        raise Invalid(f"`{field}` is not a file on the server: {path}", title="No such file")
    return resolved
