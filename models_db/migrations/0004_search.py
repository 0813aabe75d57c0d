"""Search index tables (full text, facets, vocabulary, vectors) for the database's own backend."""
from peewee import SqliteDatabase

from models_db.search import tables, vectors


def up(db):
    db.create_tables([*tables.TABLES, *vectors.TABLES])
    if isinstance(db.obj, SqliteDatabase):
        from models_db.search import sqlite_fts
        db.create_tables(sqlite_fts.TABLES)
    else:
        from models_db.search import postgres_fts
        for statement in postgres_fts.SETUP:
            db.execute_sql(statement)
