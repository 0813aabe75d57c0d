"""Embedded search backend: SQLite FTS5 (bm25 with field weights, prefix indexes, diacritics folded by
the unicode61 tokenizer) over the shared engine."""
from __future__ import annotations

from playhouse.sqlite_ext import FTS5Model, RowIDField, SearchField

from models_db.db import db
from models_db.search.base import FIELD_WEIGHTS
from models_db.search.engine import DatabaseBackend
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


TABLES = [SearchFts]
WEIGHTS = [FIELD_WEIGHTS[f] for f in ("name", "tags", "creator", "description")]


COLUMNS = {"name": "{name}", "primary": "{name tags creator}", "all": ""}


def match_expression(words: list[str], fields: str) -> str:
    terms = " AND ".join(f'"{w}"' + ("*" if i == len(words) - 1 else "") for i, w in enumerate(words))
    return f"{COLUMNS[fields]} : ({terms})" if COLUMNS[fields] else terms


class SqliteBackend(DatabaseBackend):
    name = "sqlite"

    def _index_text(self, docs):
        rows = [{"rowid": d["id"], "name": d["name"], "tags": " ".join(d["tags"]), "creator": d["creator"],
                 "description": d["description"]} for d in docs]
        for i in range(0, len(rows), 500):
            SearchFts.insert_many(rows[i:i + 500]).execute()

    def _remove_text(self, ids):
        SearchFts.delete().where(SearchFts.rowid.in_(ids)).execute()

    def _clear_text(self):
        SearchFts.delete().execute()

    def _match_ids(self, words, fields):
        return SearchFts.select(SearchFts.rowid).where(SearchFts.match(match_expression(words, fields)))

    def _keyword(self, words, conds, limit, fields="all", floor=None):
        rank = SearchFts.bm25(*WEIGHTS)
        match = SearchFts.match(match_expression(words, fields))
        if floor is None:
            query = (SearchFts.select(SearchFts.rowid, rank.alias("rank"))
                     .join(SearchDoc, on=(SearchDoc.id == SearchFts.rowid))
                     .where(match, *conds).order_by(rank).limit(limit))
        else:  # rank the tier alone, then filter its best: joining every ranked row costs as much again
            best = (SearchFts.select(SearchFts.rowid.alias("doc"), rank.alias("rank"))
                    .where(match, SearchFts.rowid >= floor).order_by(rank).limit(2 * limit))
            query = (SearchDoc.select(SearchDoc.id, best.c.rank).join(best, on=(SearchDoc.id == best.c.doc))
                     .where(*conds).order_by(best.c.rank).limit(limit))
        return [(i, -score) for i, score in db.execute(query).fetchall()]

