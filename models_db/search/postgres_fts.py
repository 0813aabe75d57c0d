"""Search backend on PostgreSQL over the shared engine: two weighted tsvectors (name A; tags and trigger
words B; creator, file and version names C; description D) with GIN indexes, one of the words as written
(`tsv`, unaccent) and one through the English Snowball stemmer (`tsv_stem`), ranked by ts_rank_cd. The
engine asks the exact one first, so exact matches rank above stemmed ones."""
from __future__ import annotations

from peewee import SQL, Expression, fn

from models_db.db import compiled_tuples, db
from models_db.search.engine import DatabaseBackend, conditions_key
from models_db.search.tables import SearchDoc

CONFIG = "atelier_search"
STEM_CONFIG = "atelier_search_stem"
RANK_WEIGHTS = "{0.1, 0.3, 0.5, 1.0}"  # D, C, B, A


def config_sql(name: str, copy: str, dictionaries: str) -> str:
    return f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = '{name}') THEN
            CREATE TEXT SEARCH CONFIGURATION {name} (COPY = {copy});
            ALTER TEXT SEARCH CONFIGURATION {name} ALTER MAPPING FOR hword, hword_part, word WITH {dictionaries};
        END IF;
    END $$"""


SETUP = [
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    config_sql(CONFIG, "simple", "unaccent, simple"),
    "ALTER TABLE search_doc ADD COLUMN IF NOT EXISTS tsv tsvector",
    "CREATE INDEX IF NOT EXISTS search_doc_tsv ON search_doc USING GIN (tsv)",
]
STEM_SETUP = [
    config_sql(STEM_CONFIG, "english", "unaccent, english_stem"),
    "ALTER TABLE search_doc ADD COLUMN IF NOT EXISTS tsv_stem tsvector",
    "CREATE INDEX IF NOT EXISTS search_doc_tsv_stem ON search_doc USING GIN (tsv_stem)",
]


def vector_sql(config: str) -> str:
    return (f"setweight(to_tsvector('{config}', name), 'A') || "
            f"setweight(to_tsvector('{config}', tags_text || ' ' || triggers_text), 'B') || "
            f"setweight(to_tsvector('{config}', creator || ' ' || files_text || ' ' || versions_text), 'C') || "
            f"setweight(to_tsvector('{config}', description), 'D')")


REFILL = f"UPDATE search_doc SET tsv = {vector_sql(CONFIG)}, tsv_stem = {vector_sql(STEM_CONFIG)}"
WEIGHTS = {"name": "A", "primary": "ABC", "all": "", "stem": ""}


def lexeme(term: str, weight: str, prefix: bool) -> str:
    words = term.split()
    suffix = ":*" + weight if prefix else (":" + weight if weight else "")
    return " <-> ".join(words[:-1] + [words[-1] + suffix]) if len(words) > 1 else words[0] + suffix


def tsquery(groups: list[tuple[str, ...]], fields: str, prefix: bool = True, any_word: bool = False) -> str:
    weight = WEIGHTS[fields]
    parts = []
    for n, alternatives in enumerate(groups):
        terms = [lexeme(t, weight, prefix and n == len(groups) - 1 and i == 0) for i, t in enumerate(alternatives)]
        parts.append(terms[0] if len(terms) == 1 else "(" + " | ".join(f"({t})" for t in terms) + ")")
    return (" | " if any_word else " & ").join(parts)


def column_and_config(fields: str) -> tuple[SQL, str]:
    return (SQL("tsv_stem"), STEM_CONFIG) if fields == "stem" else (SQL("tsv"), CONFIG)


class PostgresBackend(DatabaseBackend):
    name = "postgres"

    def _index_text(self, docs):
        db.execute_sql(f"{REFILL} WHERE id = ANY(%s)", ([d["id"] for d in docs],))

    def _remove_text(self, ids):
        pass  # the tsvectors live in search_doc's row

    def _clear_text(self):
        pass

    def _match_text(self, groups, fields, prefix, any_word=False):
        return tsquery(groups, fields, prefix, any_word)

    def _match_ids(self, text, fields):
        column, config = column_and_config(fields)
        return SearchDoc.select(SearchDoc.id).where(Expression(column, "@@", fn.to_tsquery(config, text)))

    def _keyword(self, text, conds, limit, fields="all", floor=None):
        column, config = column_and_config(fields)

        def build(query_text, most, lowest):
            match = fn.to_tsquery(config, query_text)
            rank = fn.ts_rank_cd(RANK_WEIGHTS, column, match)
            query = (SearchDoc.select(SearchDoc.id, rank.alias("rank"))
                     .where(Expression(column, "@@", match), *conds)
                     .order_by(rank.desc(), SearchDoc.id.desc()).limit(most))
            return query if floor is None else query.where(SearchDoc.id >= lowest)

        key = ("keyword", config, floor is None, conditions_key(conds))
        rows = compiled_tuples(key, build, text, limit, floor or 0)
        return [(i, float(score)) for i, score in rows]
