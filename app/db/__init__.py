"""Database layer: declarative base, column types, engine and sessions."""

from app.db.base import Base
from app.db.session import commit, get_engine, new_session, on_commit, rollback, session_scope

__all__ = ["Base", "commit", "get_engine", "new_session", "on_commit", "rollback", "session_scope"]
