"""Keeping the index in sync through the queue: writes mark model ids in a Redis sorted set (score =
time of the change); a flush takes a batch, indexes it, and removes an id only if it was not marked
again meanwhile. A crash mid-flush leaves the ids marked, so nothing is lost."""
from __future__ import annotations

import time

from models_db.db import on_commit
from models_db.redis_store import client, redis_key

# Called with the marked ids after each mark (jobs/search.py registers the flush trigger here).
listeners: list = []

_REMOVE_IF_UNCHANGED = """
local removed = 0
for i = 1, #ARGV, 2 do
    local score = redis.call('zscore', KEYS[1], ARGV[i])
    if score and tonumber(score) <= tonumber(ARGV[i + 1]) then
        redis.call('zrem', KEYS[1], ARGV[i])
        removed = removed + 1
    end
end
return removed
"""


def pending_key() -> str:
    return redis_key("search:pending")


def mark(model_ids) -> None:
    ids = {int(i) for i in model_ids if i}
    if not ids:
        return
    now = time.time()
    client().zadd(pending_key(), {str(i): now for i in ids})
    for listener in listeners:
        listener(ids)


def mark_after_commit(model_ids) -> None:
    ids = list(model_ids)
    on_commit(lambda: mark(ids))


def take(batch: int) -> list[tuple[int, float]]:
    """The oldest marked ids with their marks (they stay marked until done())."""
    return [(int(member), score) for member, score in
            client().zrange(pending_key(), 0, batch - 1, withscores=True)]


def done(batch: list[tuple[int, float]]) -> int:
    if not batch:
        return 0
    args = [v for member, score in batch for v in (str(member), repr(score))]
    return client().eval(_REMOVE_IF_UNCHANGED, 1, pending_key(), *args)


def pending_count() -> int:
    return client().zcard(pending_key())
