"""Atelier-side actors for bench/queue.py and bench/soak.py, declared on Atelier's broker (jobs is
imported first, so broker.py's middleware is in place). Loaded by the worker subprocesses that those
scripts start with `dramatiq jobs bench._queue_actors --queues bench|soak ...`, on the scripts'
temporary ATELIER_HOME, database and QUEUE_NAMESPACE.

queue.py: noop / db_row do exactly what bench/_bare_actors.py's twins do: INCR a counter with a plain
redis-py client made once per process (the same counting on both sides), and insert one bench_row row
(here through Atelier's database handle, i.e. the connection the DbConnection middleware opened).

soak.py: soak_write marks its start, waits to be released, writes one row idempotently (INSERT ... ON
CONFLICT DO NOTHING keyed by the round) in a transaction() that also records the message as processed
(done_on_commit, as an Atelier job whose effect is one transaction), counts its finish and pushes a
notification.
"""
from __future__ import annotations

import time

import jobs  # noqa: F401  (Atelier's broker and middleware first)

import dramatiq  # noqa: E402
import redis  # noqa: E402
from peewee import CharField, IntegerField  # noqa: E402

import settings  # noqa: E402
from models_db.redis_store import client, redis_url  # noqa: E402
from models_db.db import BaseModel, transaction  # noqa: E402

QUEUE = "bench"
SOAK_QUEUE = "soak"


class BenchRow(BaseModel):
    kind = CharField(max_length=64)
    n = IntegerField()

    class Meta:
        table_name = "bench_row"


class SoakRow(BaseModel):
    round = CharField(max_length=64, unique=True)

    class Meta:
        table_name = "bench_soak_row"


_counter: redis.Redis | None = None


def counter() -> redis.Redis:
    """One plain redis-py client per process, as in bench/_bare_actors.py."""
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(redis_url())
    return _counter


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(key: str) -> None:
    counter().incr(key)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def db_row(key: str, kind: str, n: int) -> None:
    BenchRow.insert(kind=kind, n=n).execute()
    counter().incr(key)


def soak_key(kind: str, tag: str) -> str:
    return f"{settings.get().queue_namespace}:soak:{kind}:{tag}"


@dramatiq.actor(queue_name=SOAK_QUEUE, max_retries=5, min_backoff=100, max_backoff=500, time_limit=120_000,
                done_on_commit=True)
def soak_write(tag: str) -> None:
    r = client()
    r.incr(soak_key("started", tag))
    deadline = time.time() + 60
    while not r.exists(soak_key("release", tag)) and time.time() < deadline:
        time.sleep(0.02)
    with transaction():  # the row, and "this message is done" (done_on_commit)
        SoakRow.insert(round=tag).on_conflict_ignore().execute()
    pipe = r.pipeline(transaction=True)
    pipe.incr(soak_key("finished", tag))
    pipe.rpush(soak_key("notify", tag), 1)
    pipe.execute()
