"""Rows of mapped tables read with Core statements, as plain read-only objects (snapshots, never
written back): the poll path's reads, where ORM loading cost more CPU than the round trip
(docs/decisions/post-path.md)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import Row, Table

Snapshot = SimpleNamespace  # a row as a read-only object with the mapped class's attribute names


def split(row: Row[Any], *tables: Table) -> list[Snapshot | None]:
    """``row`` of ``select(*tables, ...)``: one object per table, in order, from the row's leading
    columns (what follows the tables' columns is the caller's); None for a table an outer join found
    no row in (its primary key is NULL)."""
    out: list[Snapshot | None] = []
    at = 0
    for table in tables:
        names = table.c.keys()
        values = dict(zip(names, row[at : at + len(names)], strict=True))
        at += len(names)
        missing = all(values[c.key] is None for c in table.primary_key)
        out.append(None if missing else SimpleNamespace(**values))
    return out
