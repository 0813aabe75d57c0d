"""Numbered schema migrations: NNNN_name.py modules, each with up(db); applied in order, once."""
from __future__ import annotations

import importlib
import pkgutil

from peewee import CharField, DateTimeField, SqliteDatabase

from models_db.db import BaseModel, db, init, utcnow


class SchemaMigration(BaseModel):
    version = CharField(primary_key=True, max_length=64)
    applied_at = DateTimeField(default=utcnow)


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name[:4].isdigit())


def applied() -> set[str]:
    init()
    if not db.table_exists(SchemaMigration._meta.table_name):
        return set()
    return {m.version for m in SchemaMigration.select()}


def pending() -> list[str]:
    done = applied()
    return [name for name in available() if name not in done]


def upgrade(echo=lambda msg: None) -> list[str]:
    """Apply every pending migration, each in its own transaction. Safe to run concurrently."""
    init()
    db.create_tables([SchemaMigration], safe=True)
    ran = []
    for name in pending():
        module = importlib.import_module(f"{__name__}.{name}")
        sqlite = isinstance(db.obj, SqliteDatabase)
        with (db.atomic("IMMEDIATE") if sqlite else db.atomic()):
            if not sqlite:
                db.execute_sql("LOCK TABLE schema_migration IN EXCLUSIVE MODE")
            if SchemaMigration.select().where(SchemaMigration.version == name).exists():
                continue
            module.up(db)
            SchemaMigration.create(version=name)
        echo(f"applied {name}")
        ran.append(name)
    return ran


def add_column(db, table: str, name: str, field) -> None:
    """Adds a column unless the table has it already (0001 creates tables from today's models)."""
    from playhouse.migrate import SchemaMigrator, migrate
    if name not in {c.name for c in db.get_columns(table)}:
        migrate(SchemaMigrator.from_database(db.obj).add_column(table, name, field))
