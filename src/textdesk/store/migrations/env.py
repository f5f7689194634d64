"""Alembic environment: the engine comes from ``textdesk.store.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Engine

from textdesk.store.tables import include_object, metadata

config = context.config
engine = config.attributes.get("engine")
if not isinstance(engine, Engine):
    raise RuntimeError("run migrations through `textdesk migrate`, which supplies the engine")

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    # SQLite's batch mode rebuilds a table: copy it, DROP the old one, rename. With foreign keys
    # on, that DROP deletes (or nulls) every row elsewhere that points at the table, e.g. all
    # sessions of a rebuilt `users`. SQLite's own recipe for schema changes: foreign keys off,
    # outside any transaction (so on the driver's connection, before SQLAlchemy begins one),
    # then `PRAGMA foreign_key_check` before committing.
    raw = connection.connection.driver_connection if sqlite else None
    if raw is not None:
        raw.execute("PRAGMA foreign_keys=OFF")
    try:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
            render_as_batch=sqlite,
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"migration left rows with dangling references: {broken}")
        connection.commit()
    finally:
        if raw is not None:
            # The connection goes back to the pool: the app relies on foreign keys being on.
            raw.execute("PRAGMA foreign_keys=ON")
