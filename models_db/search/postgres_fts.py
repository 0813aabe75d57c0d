"""Search backend on PostgreSQL over the shared engine: weighted tsvectors (name A; tags and trigger words
B; creator, file and version names C; description D) with GIN indexes, ranked by ts_rank_cd: the primary
fields as written (`tsv_primary`: small, so matching and ranking never read the long descriptions),
every field as written (`tsv`, unaccent) and every field through the English Snowball stemmer
(`tsv_stem`). The engine asks them in that order, so exact matches rank above stemmed ones. No query
restricts weights except name-only suggestions: a weight restriction makes PostgreSQL re-read every
matching row's tsvector."""
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
    "ALTER TABLE search_doc ADD COLUMN IF NOT EXISTS tsv_primary tsvector",
    "CREATE INDEX IF NOT EXISTS search_doc_tsv_primary ON search_doc USING GIN (tsv_primary)",
]


def vector_sql(config: str, description: bool = True) -> str:
    return (f"setweight(to_tsvector('{config}', name), 'A') || "
            f"setweight(to_tsvector('{config}', tags_text || ' ' || triggers_text), 'B') || "
            f"setweight(to_tsvector('{config}', creator || ' ' || files_text || ' ' || versions_text), 'C')"
            + (f" || setweight(to_tsvector('{config}', description), 'D')" if description else ""))


TSVECTORS = ("tsv_primary", "tsv", "tsv_stem")
# Where the rum extension is installed (Debian: postgresql-15-rum), RUM indexes replace the GIN ones: they
# also hold each row's id, so "the newest matches" (the engine's tier) is read from the index in id order
# and stops after the first 501, where GIN reads every match's row and sorts them.
RUM_SETUP = ["CREATE EXTENSION IF NOT EXISTS rum"] + [statement for column in TSVECTORS for statement in (
    f"CREATE INDEX IF NOT EXISTS search_doc_{column}_rum ON search_doc "
    f"USING rum ({column} rum_tsvector_addon_ops, id) WITH (attach = 'id', to = '{column}')",
    f"DROP INDEX IF EXISTS search_doc_{column}")]
NEWEST_FIRST = "id <=| 2147483647"  # RUM: distance from the largest id, only for ids at or below it

REFILL = (f"UPDATE search_doc SET tsv = {vector_sql(CONFIG)}, tsv_stem = {vector_sql(STEM_CONFIG)}, "
          f"tsv_primary = {vector_sql(CONFIG, description=False)}")
WEIGHTS = {"name": "A", "primary": "", "all": "", "stem": ""}
COLUMNS = {"name": "tsv_primary", "primary": "tsv_primary", "all": "tsv", "stem": "tsv_stem"}


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
    return SQL(COLUMNS[fields]), STEM_CONFIG if fields == "stem" else CONFIG


def install_rum(db) -> bool:
    """RUM indexes in place of the GIN ones, if the extension can be created (a savepoint: a server
    without it, or a role that may not create it, keeps GIN)."""
    from peewee import DatabaseError
    try:
        with db.atomic():
            for statement in RUM_SETUP:
                db.execute_sql(statement)
        return True
    except DatabaseError as exc:
        print(f"search: keeping GIN indexes, the rum extension is not available ({str(exc).strip()[:200]})")
        return False


class PostgresBackend(DatabaseBackend):
    name = "postgres"
    _rum: dict = {}  # per database: are the full-text indexes RUM ones?

    def uses_rum(self) -> bool:
        key = id(db.obj)
        if key not in self._rum:
            self._rum[key] = db.execute_sql(
                "SELECT 1 FROM pg_indexes WHERE tablename = 'search_doc' AND indexname = 'search_doc_tsv_rum'"
            ).fetchone() is not None
        return self._rum[key]

    def _newest(self, text, fields):
        if not self.uses_rum():
            return super()._newest(text, fields)
        return self._match_ids(text, fields).order_by(SQL(NEWEST_FIRST))

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

        key = ("keyword", COLUMNS[fields], floor is None, conditions_key(conds))
        rows = compiled_tuples(key, build, text, limit, floor or 0)
        return [(i, float(score)) for i, score in rows]
