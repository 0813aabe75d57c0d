"""Generation seeds up to 2**32 - 1 (A1111's range) overflowed PostgreSQL's integer column."""
from peewee import SqliteDatabase

from models_db import generation


def up(db):
    if not isinstance(db.obj, SqliteDatabase):  # SQLite integers are 64-bit already
        db.execute_sql(f'ALTER TABLE "{generation.GenerationJob._meta.table_name}" ALTER COLUMN seed TYPE BIGINT')
