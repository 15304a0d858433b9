"""app.db.batch: rows of several tables in one statement (a submit's writes), on the real Postgres,
with scratch temporary tables that the test's rollback drops."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, create_engine, event, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.batch import insert_together

scratch = MetaData()
parents = Table("batch_parents", scratch, Column("id", Integer, primary_key=True), Column("name", String, unique=True))
children = Table(
    "batch_children",
    scratch,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("parent_id", Integer, ForeignKey("batch_parents.id")),
    Column("label", String),
)


def _create_scratch(db: Session) -> None:
    db.execute(text("CREATE TEMP TABLE batch_parents (id int PRIMARY KEY, name text UNIQUE) ON COMMIT DROP"))
    db.execute(
        text(
            "CREATE TEMP TABLE batch_children (seq serial PRIMARY KEY, "
            "parent_id int REFERENCES batch_parents (id), label text) ON COMMIT DROP"
        )
    )


def _count_statements(db: Session) -> list[str]:
    seen: list[str] = []
    event.listen(db.connection(), "before_cursor_execute", lambda conn, cur, sql, *a: seen.append(sql))
    return seen


def test_rows_of_several_tables_go_in_one_statement_that_references_may_precede(db):
    _create_scratch(db)
    statements = _count_statements(db)
    rows = [{"parent_id": 7, "label": f"child-{i}"} for i in range(3)]
    # the children come first: foreign keys are checked at the end of the one statement
    insert_together(db, [(children, rows), (parents, [{"id": 7, "name": "seven"}])])

    assert len(statements) == 1
    labels = db.execute(select(children.c.label).order_by(children.c.seq)).scalars().all()
    assert labels == ["child-0", "child-1", "child-2"]  # serials in the order the rows were given
    assert db.execute(select(parents.c.name)).scalars().all() == ["seven"]


def test_a_unique_violation_raises_integrity_error_and_writes_none_of_the_rows(db):
    _create_scratch(db)
    insert_together(db, [(parents, [{"id": 1, "name": "taken"}])])
    db.execute(text("SAVEPOINT before_retry"))
    with pytest.raises(IntegrityError):
        insert_together(
            db, [(parents, [{"id": 2, "name": "taken"}]), (children, [{"parent_id": 1, "label": "orphaned"}])]
        )
    db.execute(text("ROLLBACK TO SAVEPOINT before_retry"))
    assert db.execute(select(parents.c.id)).scalars().all() == [1]
    assert db.execute(select(children.c.label)).scalars().all() == []


def test_the_same_shape_reuses_its_statement_with_new_values(db):
    _create_scratch(db)
    for i in range(3):
        insert_together(db, [(parents, [{"id": i, "name": f"p{i}"}]), (children, [{"parent_id": i, "label": f"c{i}"}])])
    got = db.execute(select(children.c.parent_id, children.c.label).order_by(children.c.seq)).all()
    assert [tuple(r) for r in got] == [(0, "c0"), (1, "c1"), (2, "c2")]


def test_sqlite_writes_the_same_rows_one_statement_at_a_time(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'batch.db'}")
    scratch.create_all(engine)
    with Session(engine) as db:
        insert_together(db, [(parents, [{"id": 3, "name": "three"}]), (children, [{"parent_id": 3, "label": "a"}])])
        db.commit()
        assert db.execute(select(children.c.parent_id, children.c.label)).all() == [(3, "a")]
