"""Signed deletion certificates: what was erased, from which checkpoint, verified how, anchored in the
audit chain; Ed25519 over canonical JSON, checkable offline with ``offline.py`` alone."""
