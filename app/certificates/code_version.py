"""Which code issued a certificate: the installed package version and, where the deployment is a git
checkout, its commit. Read once per process, so every certificate a deployment issues says the same."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]


@lru_cache
def code_version() -> dict[str, str | None]:
    try:
        version = metadata.version("unlearnd")
    except metadata.PackageNotFoundError:
        version = None
    return {"package": "unlearnd", "version": version, "git_commit": _git_commit()}


def _git_commit() -> str | None:
    """None in an image built without .git (the Dockerfile's): the package version then stands alone."""
    if not (_ROOT / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if len(commit) == 40 else None
