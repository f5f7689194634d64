"""Multi-row writes on PostgreSQL with ONE parameter: ``jsonb_to_recordset(:rows) AS r(col
type, ...)`` in place of a multi-row ``VALUES`` list or an ``executemany``.

Why: a multi-row ``VALUES`` list is a new statement text for every batch size, so the driver
parses it in Python and the server plans it every time (psycopg caches and prepares only
statements it has seen before), and an ``executemany`` makes the server parse, plan and run one
statement per row. A recordset statement's text never changes, whatever the number of rows:
it is parsed once, prepared after a few uses, and runs as one statement. On the send screen the
multi-row texts alone cost a fifth of the process's CPU.

SQLite keeps plain ``executemany`` (its driver has no such cost): build both, and pass
:func:`rows_param` as the parameters.

The delivery paths (``outbox._mark_sent``, ``messaging._update_statuses`` and the report look-ups)
do the same with one array per column, ``unnest(CAST(:a AS bigint[]), ...)``: cheaper to encode
for a few scalar columns, where a recordset pays for JSON; a recordset takes any number of
columns of any type (the send path's 20-column message rows, with a JSON column) in one
parameter."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Connection


def recordset(table: sa.Table, names: Sequence[str], *, name: str = "r") -> Any:
    """The rows parameter as a derived table with ``table``'s column types for ``names``."""
    rows = sa.cast(sa.bindparam("rows", type_=sa.Text()), JSONB())
    return (
        sa.func.jsonb_to_recordset(rows)
        .table_valued(*[sa.column(n, table.c[n].type) for n in names])
        .render_derived(name=name, with_types=True)
    )


def any_of(dialect: str, column: Any, name: str) -> Any:
    """``column = ANY(:name)`` on PostgreSQL (one array parameter: the same statement text for
    any number of values), ``column IN (:name...)`` on SQLite; pass a list as ``name``."""
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=ARRAY(column.type)))
    return column.in_(sa.bindparam(name, expanding=True))


def rows_param(conn: Connection, rows: list[dict[str, Any]]) -> Any:
    """The parameters for a recordset statement (PostgreSQL) or an executemany (SQLite)."""
    if conn.dialect.name == "postgresql":
        return {"rows": json.dumps(rows, default=_json_default, separators=(",", ":"))}
    return rows


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("naive datetime in a recordset row: store aware UTC times")
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
