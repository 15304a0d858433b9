"""Rows of several tables written in one statement, so in one round trip to the database.

A submit writes four tables (the request, its link to a job, its idempotency answer, its audit
events); the ORM's flush sends one INSERT per table and waits for each. On Postgres every INSERT but
the last becomes a data-modifying CTE of the last (``WITH a AS (INSERT ...), b AS (INSERT ...)
INSERT ...``): Postgres runs each of them exactly once, referenced or not, and checks foreign keys
at the end of the statement, so the rows may reference each other in any order. A unique violation
raises IntegrityError from the one statement, as a flush would. SQLite has no data-modifying CTEs:
there the INSERTs go one by one.

The objects are written as they are: they are not added to the session (they stay transient, so
read their attributes, never lazy relationships) and defaults the ORM would fill in are not.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import BindParameter, Insert, Table, TextClause, bindparam, insert, inspect, text
from sqlalchemy.engine.default import StrCompileDialect
from sqlalchemy.orm import Session

Rows = tuple[Table, list[dict[str, Any]]]


def row_of(obj: Any) -> Rows:
    """``obj``'s table and its column values, by column name (only the attributes that were set)."""
    mapper = inspect(obj).mapper
    values = {
        column.name: obj.__dict__[prop.key]
        for prop in mapper.column_attrs
        for column in prop.columns
        if prop.key in obj.__dict__
    }
    return mapper.local_table, [values]


def insert_together(db: Session, rows: list[Rows]) -> None:
    """INSERT every (table, rows) pair, in one statement on Postgres."""
    rows = [(table, values) for table, values in rows if values]
    if not rows:
        return
    shape = tuple((table, tuple(values[0]), len(values)) for table, values in rows)
    params = {
        _param(i, r, column): value
        for i, (_, values) in enumerate(rows)
        for r, row in enumerate(values)
        for column, value in row.items()
    }
    if db.get_bind().dialect.name != "postgresql":
        for statement in _inserts(shape):
            db.execute(statement, params)
        return
    db.execute(_together(shape), params)


# Each shape (tables, columns, row counts) is compiled once, to SQL text with named parameters:
# SQLAlchemy does not cache the compiled form of a multi-row INSERT, and compiling this statement
# for every submit cost more CPU than the round trips it saves (py-spy of the API).
Shape = tuple[tuple[Table, tuple[str, ...], int], ...]


@lru_cache(maxsize=64)
def _inserts(shape: Shape) -> list[Insert]:
    return [
        insert(table).values(
            [{c: bindparam(_param(i, r, c), type_=table.c[c].type) for c in columns} for r in range(n)]
        )
        for i, (table, columns, n) in enumerate(shape)
    ]


@lru_cache(maxsize=64)
def _together(shape: Shape) -> TextClause:
    *first, last = _inserts(shape)
    statement = last.add_cte(*(insert_.cte(f"insert_{i}") for i, insert_ in enumerate(first)))
    types = [_typed(table, i, r, c) for i, (table, columns, n) in enumerate(shape) for r in range(n) for c in columns]
    return text(str(statement.compile(dialect=StrCompileDialect()))).bindparams(*types)


def _typed(table: Table, i: int, r: int, column: str) -> BindParameter:
    """The parameter for row ``r`` of the ``i``-th table, typed as its column (JSON, UUID, time zones)."""
    return bindparam(_param(i, r, column), type_=table.c[column].type)


def _param(i: int, r: int, column: str) -> str:
    return f"t{i}_{r}_{column}"
