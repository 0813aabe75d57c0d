"""Embedded search backend: SQLite FTS5 (bm25 with field weights, prefix indexes, diacritics folded by
the unicode61 tokenizer) over the shared engine. Three indexes: names, tags, trigger words, file names,
version names and creators as written ("primary": few words, what people look for, and cheap to rank);
every field as written ("all"); every field through the porter stemmer ("stem": "fireplace" finds
"fireplaces"). The engine asks them in that order, so exact matches rank above stemmed ones."""
from __future__ import annotations

from peewee import chunked
from playhouse.sqlite_ext import FTS5Model, RowIDField, SearchField

from models_db.db import compiled_tuples, db
from models_db.search.base import FIELD_WEIGHTS, TEXT_FIELDS
from models_db.search.engine import DatabaseBackend, conditions_key
from models_db.search.tables import SearchDoc

EXACT = {"tokenize": "unicode61 remove_diacritics 2", "prefix": "2 3"}


class SearchFtsPrimary(FTS5Model):
    rowid = RowIDField()
    name = SearchField()
    tags = SearchField()
    triggers = SearchField()
    files = SearchField()
    creator = SearchField()
    versions = SearchField()

    class Meta:
        database = db
        table_name = "search_fts_primary"
        options = EXACT


class SearchFts(SearchFtsPrimary):
    description = SearchField()  # after the primary fields, as the table's columns are

    class Meta:
        table_name = "search_fts"
        options = EXACT


class SearchFtsStem(SearchFts):
    class Meta:
        table_name = "search_fts_stem"
        options = {"tokenize": "porter unicode61 remove_diacritics 2"}


TABLES = [SearchFts, SearchFtsPrimary, SearchFtsStem]
INDEXES = {"name": SearchFtsPrimary, "primary": SearchFtsPrimary, "all": SearchFts, "stem": SearchFtsStem}
WEIGHTS = {table: [FIELD_WEIGHTS[f] for f in table._meta.sorted_field_names if f != "rowid"] for table in TABLES}


def quoted(term: str, prefix: bool) -> str:
    return '"' + term.replace('"', "") + '"' + ("*" if prefix else "")


def match_expression(groups: list[tuple[str, ...]], fields: str, prefix: bool = True, any_word: bool = False) -> str:
    """Each group (a word and its synonyms) must match (any_word: one group is enough); the last word is
    read as a prefix when `prefix`."""
    parts = []
    for n, alternatives in enumerate(groups):
        terms = [quoted(t, prefix and n == len(groups) - 1 and i == 0) for i, t in enumerate(alternatives)]
        parts.append(terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")")
    text = (" OR " if any_word else " AND ").join(parts)
    return "{name} : (" + text + ")" if fields == "name" else text


def fts_row(doc: dict) -> dict:
    return {"rowid": doc["id"], "name": doc["name"], "creator": doc["creator"], "description": doc["description"],
            **{f: " ".join(doc[f]) for f in TEXT_FIELDS}}


def refill_sql(table) -> str:
    """Rebuilds an index from search_doc (migrations)."""
    columns = [f for f in table._meta.sorted_field_names if f != "rowid"]
    source = [TEXT_FIELDS.get(c, c) for c in columns]
    return (f"INSERT INTO {table._meta.table_name} (rowid, {', '.join(columns)}) "
            f"SELECT id, {', '.join(source)} FROM search_doc")


class SqliteBackend(DatabaseBackend):
    name = "sqlite"

    def _index_text(self, docs):
        rows = [fts_row(d) for d in docs]
        for table in TABLES:
            columns = table._meta.sorted_field_names
            for batch in chunked(rows, 500):
                table.insert_many([{c: r[c] for c in columns} for r in batch]).execute()

    def _remove_text(self, ids):
        for table in TABLES:
            table.delete().where(table.rowid.in_(ids)).execute()

    def _clear_text(self):
        for table in TABLES:
            table.delete().execute()

    def _match_text(self, groups, fields, prefix, any_word=False):
        return match_expression(groups, fields, prefix, any_word)

    def _match_ids(self, text, fields):
        fts = INDEXES[fields]
        return fts.select(fts.rowid).where(fts.match(text))

    def _keyword(self, text, conds, limit, fields="all", floor=None):
        fts = INDEXES[fields]
        rank = fts.bm25(*WEIGHTS[fts])

        def build(match, most, lowest, ranked):
            if floor is None:
                return (fts.select(fts.rowid, rank.alias("rank")).join(SearchDoc, on=(SearchDoc.id == fts.rowid))
                        .where(fts.match(match), *conds).order_by(rank).limit(most))
            # rank the tier alone, then filter its best: joining every ranked row costs as much again
            best = (fts.select(fts.rowid.alias("doc"), rank.alias("rank"))
                    .where(fts.match(match), fts.rowid >= lowest).order_by(rank).limit(ranked))
            return (SearchDoc.select(SearchDoc.id, best.c.rank).join(best, on=(SearchDoc.id == best.c.doc))
                    .where(*conds).order_by(best.c.rank).limit(most))

        # values, not expressions of them: compiled_tuples swaps each value's parameter (2 * limit inside
        # build would be computed once, from the placeholder)
        key = ("keyword", fts.__name__, floor is None, conditions_key(conds))
        rows = compiled_tuples(key, build, text, limit, floor or 0, 2 * limit)
        return [(i, -score) for i, score in rows]
