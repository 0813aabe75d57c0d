"""Search that finds what people mean: trigger words, file and version names as fields of their own,
a stemmed index beside the exact ones (SQLite: an FTS5 porter table; PostgreSQL: an English tsvector, and
a tsvector of the primary fields alone; RUM indexes instead of GIN where the rum extension is installed),
and the synonym list with the shipped groups. The indexes are rebuilt from search_doc at once; every
model is then marked for the index queue, which fills the new fields."""
from peewee import SqliteDatabase

from models_db.migrations import add_column


def up(db):
    from models_db.search import synonyms, tables
    for column in ("triggers_text", "files_text", "versions_text"):
        add_column(db, "search_doc", column, tables.SearchDoc._meta.fields[column])
    db.create_tables([tables.SearchSynonym], safe=True)
    if isinstance(db.obj, SqliteDatabase):
        from models_db.search import sqlite_fts
        for table in sqlite_fts.TABLES:
            columns = {c.name for c in db.get_columns(table._meta.table_name)} if db.table_exists(
                table._meta.table_name) else set()
            if columns != set(table._meta.sorted_field_names) - {"rowid"}:
                db.execute_sql(f"DROP TABLE IF EXISTS {table._meta.table_name}")
                db.create_tables([table])
                db.execute_sql(sqlite_fts.refill_sql(table))
    else:
        from models_db.search import postgres_fts
        for statement in postgres_fts.STEM_SETUP:
            db.execute_sql(statement)
        db.execute_sql(postgres_fts.REFILL)
        postgres_fts.install_rum(db)
    synonyms.install_defaults()
    mark_every_model(db)


def mark_every_model(db):
    """Queues every indexed model for the next flush (which reads its versions and files)."""
    import redis

    from models_db.search import sync
    ids = [i for (i,) in db.execute_sql("SELECT id FROM search_doc").fetchall()]
    if not ids:
        return
    try:
        for start in range(0, len(ids), 5000):
            sync.client().zadd(sync.pending_key(), {str(i): 0 for i in ids[start:start + 5000]})
    except (redis.RedisError, OSError) as exc:
        print(f"search: could not queue the reindex ({exc}); run `atelier search reindex`")
