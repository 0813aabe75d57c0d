"""Search backend on PostgreSQL: a weighted tsvector (name A, tags B, creator C, description D) with a
GIN index, an unaccent text-search configuration, ts_rank_cd and ts_headline, over the shared engine."""
from __future__ import annotations

from peewee import SQL, Expression, fn

from models_db.db import compiled_tuples, db
from models_db.search.engine import DatabaseBackend, conditions_key
from models_db.search.tables import SearchDoc

CONFIG = "atelier_search"
RANK_WEIGHTS = "{0.1, 0.3, 0.5, 1.0}"  # D, C, B, A

SETUP = [
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = '{CONFIG}') THEN
            CREATE TEXT SEARCH CONFIGURATION {CONFIG} (COPY = simple);
            ALTER TEXT SEARCH CONFIGURATION {CONFIG} ALTER MAPPING FOR hword, hword_part, word WITH unaccent, simple;
        END IF;
    END $$""",
    "ALTER TABLE search_doc ADD COLUMN IF NOT EXISTS tsv tsvector",
    "CREATE INDEX IF NOT EXISTS search_doc_tsv ON search_doc USING GIN (tsv)",
]


WEIGHTS = {"name": "A", "primary": "ABC", "all": ""}


def tsquery(words: list[str], fields: str, prefix: bool = True) -> str:
    weight = WEIGHTS[fields]
    return " & ".join(f"{w}:*{weight}" if prefix and i == len(words) - 1 else (f"{w}:{weight}" if weight else w)
                      for i, w in enumerate(words))


class PostgresBackend(DatabaseBackend):
    name = "postgres"

    def _index_text(self, docs):
        db.execute_sql(f"""
            UPDATE search_doc SET tsv =
                setweight(to_tsvector('{CONFIG}', name), 'A') ||
                setweight(to_tsvector('{CONFIG}', tags_text), 'B') ||
                setweight(to_tsvector('{CONFIG}', creator), 'C') ||
                setweight(to_tsvector('{CONFIG}', description), 'D')
            WHERE id = ANY(%s)""", ([d["id"] for d in docs],))

    def _remove_text(self, ids):
        pass  # the tsvector lives in search_doc's row

    def _clear_text(self):
        pass

    def _match_text(self, words, fields, prefix):
        return tsquery(words, fields, prefix)

    def _match_ids(self, text, fields):
        return SearchDoc.select(SearchDoc.id).where(Expression(SQL("tsv"), "@@", fn.to_tsquery(CONFIG, text)))

    def _keyword(self, text, conds, limit, fields="all", floor=None):
        def build(query_text, most, lowest):
            match = fn.to_tsquery(CONFIG, query_text)
            rank = fn.ts_rank_cd(RANK_WEIGHTS, SQL("tsv"), match)
            query = (SearchDoc.select(SearchDoc.id, rank.alias("rank"))
                     .where(Expression(SQL("tsv"), "@@", match), *conds)
                     .order_by(rank.desc(), SearchDoc.id.desc()).limit(most))
            return query if floor is None else query.where(SearchDoc.id >= lowest)

        rows = compiled_tuples(("keyword", floor is None, conditions_key(conds)), build, text, limit, floor or 0)
        return [(i, float(score)) for i, score in rows]
