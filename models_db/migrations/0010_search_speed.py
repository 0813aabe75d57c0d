"""Faster keyword search: facet values read from a covering index (doc_id, field, value), and on SQLite
an FTS5 index of names, tags and creators alone beside the one of every field."""
from peewee import SqliteDatabase


def up(db):
    db.execute_sql("CREATE INDEX IF NOT EXISTS search_facet_doc_id_field_value ON search_facet (doc_id, field, value)")
    db.execute_sql("DROP INDEX IF EXISTS search_facet_doc_id")
    if isinstance(db.obj, SqliteDatabase):
        from models_db.search.sqlite_fts import SearchFtsPrimary
        db.create_tables([SearchFtsPrimary])
        if not SearchFtsPrimary.select().limit(1).exists():
            db.execute_sql("INSERT INTO search_fts_primary (rowid, name, tags, creator) "
                           "SELECT id, name, tags_text, creator FROM search_doc")
