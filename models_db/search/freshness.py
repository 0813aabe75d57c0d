"""Per-process caches of the index (typo vocabulary, synonyms) kept fresh across processes: an index
flush that adds terms to the vocabulary, and every synonym edit, increments one counter in Redis, and a
cache reloads when the counter it was loaded at is no longer the current one (read at query time, one
GET). Flushes that only change counts or sorts (downloads, ratings) leave the caches alone."""
from __future__ import annotations

import threading

from models_db.redis_store import client, redis_key


def version_key() -> str:
    return redis_key("search:index-version")


def bump() -> None:
    client().incr(version_key())


def current() -> int:
    return int(client().get(version_key()) or 0)


class FreshCache:
    """A value computed by `load()`, recomputed once the index version moved on."""

    def __init__(self, load):
        self.load = load
        self.version: int | None = None
        self.value = None
        self.lock = threading.Lock()

    def get(self):
        now = current()
        with self.lock:
            if self.version != now:
                self.value, self.version = self.load(), now
            return self.value

    def reset(self) -> None:
        with self.lock:
            self.version = None
