"""Semantic vectors of the search documents: stored in the database (one row per model, float16),
held in memory per process as one normalised matrix, refreshed incrementally by sequence number."""
from __future__ import annotations

import hashlib
import threading

import numpy as np
from peewee import BigIntegerField, BlobField, CharField, IntegerField, chunked, fn

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
        for batch in chunked(rows, 500):
            (SearchVector.insert_many(batch)
             .on_conflict(conflict_target=[SearchVector.model_id],
                          preserve=[SearchVector.text_hash, SearchVector.seq, SearchVector.vector]).execute())


def remove(model_ids: list[int]) -> None:
    if model_ids:
        seq = (SearchVector.select(fn.MAX(SearchVector.seq)).scalar() or 0) + 1
        SearchVector.update(vector=None, seq=seq).where(SearchVector.model_id.in_(model_ids)).execute()


def clear() -> None:
    SearchVector.delete().execute()


class VectorIndex:
    """This process's copy of every vector; `refresh()` pulls only rows changed since the last one, and
    `nearest()` reads one consistent snapshot without touching the database (it may run in another thread)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.seq = 0
        self.snapshot = (np.zeros(0, np.int64), np.zeros((0, DIM), np.float32), {})  # ids, matrix, position

    def refresh(self) -> None:
        latest = SearchVector.select(fn.MAX(SearchVector.seq)).scalar() or 0
        if latest == self.seq:
            return
        with self.lock:
            if latest < self.seq:  # the table was cleared
                self.reset()
            rows = list(SearchVector.select(SearchVector.model_id, SearchVector.vector)
                        .where(SearchVector.seq > self.seq).tuples())
            ids, matrix, position = self.snapshot
            alive = np.ones(len(ids), bool)
            fresh_ids, fresh = [], []
            for model_id, blob in rows:
                if model_id in position:
                    alive[position[model_id]] = False
                if blob is not None:
                    fresh_ids.append(model_id)
                    fresh.append(np.frombuffer(bytes(blob), np.float16).astype(np.float32))
            matrix = np.vstack([matrix[alive], *([np.stack(fresh)] if fresh else [])]).astype(np.float32)
            ids = np.concatenate([ids[alive], np.asarray(fresh_ids, np.int64)])
            self.snapshot = (ids, matrix, {int(i): n for n, i in enumerate(ids)})
            self.seq = latest

    def nearest(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        ids, matrix, _ = self.snapshot
        if not len(ids):
            return []
        # one thread, no BLAS: BLAS threads spin after a product, taking the core the query's other half runs on
        scores = np.einsum("ij,j->i", matrix, query.astype(np.float32))
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(int(ids[i]), float(scores[i])) for i in top]


vector_index = VectorIndex()
