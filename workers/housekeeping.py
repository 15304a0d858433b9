"""Housekeeping at the task boundary (no torch here: the reconciler and the CLI import it)."""

from __future__ import annotations

import logging

from app.db import commit, session_scope
from app.models import retention
from app.storage import get_artifact_store

log = logging.getLogger(__name__)


def purge_retired_versions(actor: str) -> int:
    """Delete the files of versions retired long enough (at once by default): an erasure is only
    complete when no earlier copy of the model is left. Run by the worker right after an erasure
    commits, in a transaction of its own (a failure here must not undo the erasure), and by every
    periodic reconcile pass, which retries what failed and honours a grace period."""
    try:
        with session_scope() as db:
            purged = retention.purge_due(db, get_artifact_store(), actor=actor)
            commit(db)
    except Exception:
        log.exception("purging retired versions failed; the periodic pass will retry")
        return 0
    if purged:
        log.info("purged the files of %d retired version(s)", len(purged))
    return len(purged)
