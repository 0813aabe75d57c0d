"""Semantic vectors of the search documents: stored in the database (one row per model, float16),
held in memory per process as one normalised matrix, refreshed incrementally by sequence number."""
from __future__ import annotations

import hashlib
import threading

import numpy as np
from peewee import BigIntegerField, BlobField, CharField, IntegerField, fn

from models_db.db import BaseModel, db

DIM = 384


class SearchVector(BaseModel):
    model_id = IntegerField(primary_key=True)
    text_hash = CharField(max_length=16)
    seq = BigIntegerField(index=True)
    vector = BlobField(null=True)  # null: removed from the index


TABLES = [SearchVector]


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def stale(texts: dict[int, str]) -> dict[int, str]:
    """The subset of {model_id: text} whose stored vector was made from another text."""
    known = dict(SearchVector.select(SearchVector.model_id, SearchVector.text_hash)
                 .where(SearchVector.model_id.in_(list(texts)), SearchVector.vector.is_null(False)).tuples())
    return {i: t for i, t in texts.items() if known.get(i) != text_hash(t)}


def store(texts: dict[int, str], vectors: np.ndarray) -> None:
    seq = (SearchVector.select(fn.MAX(SearchVector.seq)).scalar() or 0) + 1
    rows = [{"model_id": i, "text_hash": text_hash(t), "seq": seq, "vector": v.astype(np.float16).tobytes()}
            for (i, t), v in zip(texts.items(), vectors)]
    with db.atomic():
        for i in range(0, len(rows), 500):
            (SearchVector.insert_many(rows[i:i + 500])
             .on_conflict(conflict_target=[SearchVector.model_id],
                          preserve=[SearchVector.text_hash, SearchVector.seq, SearchVector.vector]).execute())


def remove(model_ids: list[int]) -> None:
    if model_ids:
        seq = (SearchVector.select(fn.MAX(SearchVector.seq)).scalar() or 0) + 1
        SearchVector.update(vector=None, seq=seq).where(SearchVector.model_id.in_(model_ids)).execute()


def clear() -> None:
    SearchVector.delete().execute()


class VectorIndex:
    """This process's copy of every vector; `refresh()` pulls only rows changed since the last one."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seq = 0
        self.ids = np.zeros(0, np.int64)
        self.matrix = np.zeros((0, DIM), np.float32)
        self.position: dict[int, int] = {}

    def refresh(self) -> None:
        latest = SearchVector.select(fn.MAX(SearchVector.seq)).scalar() or 0
        if latest < self.seq:  # the table was cleared
            self.__init__()
        if latest == self.seq:
            return
        with self.lock:
            rows = list(SearchVector.select(SearchVector.model_id, SearchVector.vector)
                        .where(SearchVector.seq > self.seq).tuples())
            ids, matrix = list(self.ids), [self.matrix]
            alive = np.ones(len(ids), bool)
            fresh_ids, fresh = [], []
            for model_id, blob in rows:
                if model_id in self.position:
                    alive[self.position[model_id]] = False
                if blob is not None:
                    fresh_ids.append(model_id)
                    fresh.append(np.frombuffer(bytes(blob), np.float16).astype(np.float32))
            keep_ids = np.asarray(ids, np.int64)[alive]
            self.matrix = np.vstack([matrix[0][alive], *([np.stack(fresh)] if fresh else [])]).astype(np.float32)
            self.ids = np.concatenate([keep_ids, np.asarray(fresh_ids, np.int64)])
            self.position = {int(i): n for n, i in enumerate(self.ids)}
            self.seq = latest

    def nearest(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        self.refresh()
        if not len(self.ids):
            return []
        scores = self.matrix @ query.astype(np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(int(self.ids[i]), float(scores[i])) for i in top]


vector_index = VectorIndex()
