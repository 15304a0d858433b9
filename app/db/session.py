"""Engine and session handling.

Services never commit: the request handler or the task calls :func:`commit`, which also runs the
callbacks registered with :func:`on_commit` (publishing Celery messages happens there, so a worker
never sees a job before its row is committed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.settings import get_settings

log = logging.getLogger(__name__)
_AFTER_COMMIT = "after_commit_callbacks"


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN; we take the write lock at BEGIN
    # (IMMEDIATE) so two writers never fail with a stale snapshot, and turn on WAL so readers
    # are not blocked by the worker's writes.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        # WAL is a property of the file: switch once (switching needs the file to itself).
        if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(url: str | None = None) -> Engine:
    """The process's engine (and connection pool) for ``url``, the configured database by default:
    one per URL, however it is named (``get_engine()``, ``get_engine(None)`` or the URL itself)."""
    return _engine_for(url or get_settings().database_url)


@lru_cache
def _engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    # No pool_pre_ping: it costs a round trip on every checkout (~0.5 ms of API CPU per request,
    # measured). After a Postgres restart the first statement on a stale connection fails instead;
    # SQLAlchemy then drops every pooled connection, that request answers 503 (a retry with its
    # Idempotency-Key is safe) and the next ones reconnect.
    return create_engine(url, pool_size=20, max_overflow=20, pool_timeout=10, pool_recycle=1800)


@lru_cache
def _session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False, autoflush=False)


def new_session() -> Session:
    return _session_factory()()


@lru_cache
def _read_session_factory(url: str | None = None) -> sessionmaker[Session]:
    engine = get_engine(url)
    if engine.dialect.name == "postgresql":
        # Each statement in its own implicit transaction: saves the BEGIN and ROLLBACK round trips
        # of a read. SQLite keeps the normal engine (its BEGIN IMMEDIATE hook assumes transactions).
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    factory = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)
    event.listen(factory, "before_flush", _refuse_writes)
    return factory


def _refuse_writes(session: Session, _flush_context, _instances) -> None:
    raise RuntimeError("a read-only session tried to write; use new_session() for work that writes")


def new_read_session() -> Session:
    """A session for work that only reads (polling endpoints): no transaction is opened on Postgres,
    so the rows may come from different instants (a job can be one state ahead of its request)."""
    return _read_session_factory()()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for task code; the caller commits with :func:`commit`."""
    session = new_session()
    try:
        yield session
    finally:
        session.close()


def on_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction has committed (and never if it rolls back)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def commit(session: Session) -> None:
    session.commit()
    callbacks = session.info.pop(_AFTER_COMMIT, [])
    for callback in callbacks:
        try:
            callback()
        except Exception:  # the reconciler retries what could not be published
            log.exception("after-commit callback failed")


def rollback(session: Session) -> None:
    session.rollback()
    session.info.pop(_AFTER_COMMIT, None)
