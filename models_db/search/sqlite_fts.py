"""Embedded search backend: SQLite FTS5 (bm25 with field weights, prefix indexes, diacritics folded by
the unicode61 tokenizer) over the shared engine. Names, tags and creators have an index of their own
besides the one of every field: descriptions are ten times longer, and reading their positions to tell
the fields apart is most of what a query on the primary fields would cost in one index."""
from __future__ import annotations

from peewee import chunked
from playhouse.sqlite_ext import FTS5Model, RowIDField, SearchField

from models_db.db import compiled_tuples, db
from models_db.search.base import FIELD_WEIGHTS
from models_db.search.engine import DatabaseBackend, conditions_key
from models_db.search.tables import SearchDoc


class SearchFts(FTS5Model):
    rowid = RowIDField()
    name = SearchField()
    tags = SearchField()
    creator = SearchField()
    description = SearchField()

    class Meta:
        database = db
        table_name = "search_fts"
        options = {"tokenize": "unicode61 remove_diacritics 2", "prefix": "2 3"}


class SearchFtsPrimary(FTS5Model):
    rowid = RowIDField()
    name = SearchField()
    tags = SearchField()
    creator = SearchField()

    class Meta:
        database = db
        table_name = "search_fts_primary"
        options = SearchFts._meta.options


TABLES = [SearchFts, SearchFtsPrimary]
WEIGHTS = {table: [FIELD_WEIGHTS[f] for f in ("name", "tags", "creator", "description") if f in table._meta.fields]
           for table in TABLES}
COLUMNS = {"name": "{name}", "primary": "", "all": ""}


def index_for(fields: str):
    return SearchFts if fields == "all" else SearchFtsPrimary


def match_expression(words: list[str], fields: str, prefix: bool = True) -> str:
    terms = " AND ".join(f'"{w}"' + ("*" if prefix and i == len(words) - 1 else "") for i, w in enumerate(words))
    return f"{COLUMNS[fields]} : ({terms})" if COLUMNS[fields] else terms


class SqliteBackend(DatabaseBackend):
    name = "sqlite"

    def _index_text(self, docs):
        rows = [{"rowid": d["id"], "name": d["name"], "tags": " ".join(d["tags"]), "creator": d["creator"],
                 "description": d["description"]} for d in docs]
        for table in TABLES:
            columns = ["rowid", *(f for f in table._meta.fields if f != "rowid")]
            for batch in chunked(rows, 500):
                table.insert_many([{c: r[c] for c in columns} for r in batch]).execute()

    def _remove_text(self, ids):
        for table in TABLES:
            table.delete().where(table.rowid.in_(ids)).execute()

    def _clear_text(self):
        for table in TABLES:
            table.delete().execute()

    def _match_text(self, words, fields, prefix):
        return match_expression(words, fields, prefix)

    def _match_ids(self, text, fields):
        fts = index_for(fields)
        return fts.select(fts.rowid).where(fts.match(text))

    def _keyword(self, text, conds, limit, fields="all", floor=None):
        fts = index_for(fields)
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
