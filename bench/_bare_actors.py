"""The reference side of bench/queue.py: the same two jobs as bench/_queue_actors.py without Atelier.

  * bare Dramatiq: a plain RedisBroker with Dramatiq's default middleware, in its own namespace on the
    same Redis; run by `dramatiq bench._bare_actors:broker --queues bench ...`;
  * Celery (when installed): `celery -A bench._bare_actors:celery_app worker ...` (built on first use);
  * RQ (when installed): the functions rq_noop / rq_db_row, enqueued by import path.

Nothing here imports Atelier. Configured by the environment bench/queue.py sets for its workers:
BENCH_REDIS_URL, BENCH_DB_URL (sqlite:///... or postgresql://...), BENCH_NAMESPACE (of the bare
Dramatiq broker), BENCH_CELERY_PREFIX and BENCH_CELERY_QUEUE.

Every job does exactly what its Atelier twin does: the no-op job INCRs a Redis counter (a plain
redis-py client made once per process, like the Atelier side's); the DB-row job inserts one row into
bench_row through peewee, with a pooled connection held for the job only (connection_context), the
same pool class and SQLite pragmas as Atelier's models_db.db, then INCRs the counter.
"""
from __future__ import annotations

import os
from urllib.parse import urlparse

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from peewee import CharField, DatabaseProxy, IntegerField, Model
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

QUEUE = "bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
DB_URL = os.environ.get("BENCH_DB_URL", "")

# --- shared by every reference system --------------------------------------------------------------

_counter: redis.Redis | None = None


def counter() -> redis.Redis:
    """One plain redis-py client per process (the pool is fork-aware), as on the Atelier side."""
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(REDIS_URL)
    return _counter


bare_db = DatabaseProxy()
_db_url: list[str] = []


def _open_db():
    """peewee's own pooled database on BENCH_DB_URL, with the parameters Atelier uses (not its code)."""
    if _db_url != [DB_URL]:
        parsed = urlparse(DB_URL)
        if parsed.scheme == "sqlite":
            db = PooledSqliteDatabase(DB_URL[len("sqlite:///"):], max_connections=32, stale_timeout=600,
                                      timeout=30, check_same_thread=False, pragmas={
                                          "journal_mode": "wal", "foreign_keys": 1, "synchronous": "normal",
                                          "busy_timeout": 30000, "cache_size": -65536})
        elif parsed.scheme in ("postgres", "postgresql"):
            db = PooledPostgresqlDatabase((parsed.path or "/").lstrip("/"), max_connections=32,
                                          stale_timeout=600, host=parsed.hostname, port=parsed.port or 5432,
                                          user=parsed.username, password=parsed.password)
        else:
            raise SystemExit(f"BENCH_DB_URL: unsupported {DB_URL!r}")
        bare_db.initialize(db)
        _db_url[:] = [DB_URL]
    return bare_db


class BareRow(Model):
    kind = CharField(max_length=64)
    n = IntegerField()

    class Meta:
        database = bare_db
        table_name = "bench_row"


def noop_job(key: str) -> None:
    counter().incr(key)


def db_row_job(key: str, kind: str, n: int) -> None:
    with _open_db().connection_context():
        BareRow.insert(kind=kind, n=n).execute()
    counter().incr(key)


# --- bare Dramatiq ---------------------------------------------------------------------------------

broker = RedisBroker(url=REDIS_URL, namespace=os.environ.get("BENCH_NAMESPACE", "bench-bare"))
# Dramatiq's default middleware (AgeLimit, TimeLimit, ShutdownNotifications, Callbacks, Pipelines,
# Retries), heartbeat and maintenance chance: nothing configured.


@dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=0, actor_name="bare_noop")
def noop(key: str) -> None:
    noop_job(key)


@dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=0, actor_name="bare_db_row")
def db_row(key: str, kind: str, n: int) -> None:
    db_row_job(key, kind, n)


# --- RQ (functions by import path) ------------------------------------------------------------------

def rq_noop(key: str) -> None:
    noop_job(key)


def rq_db_row(key: str, kind: str, n: int) -> None:
    db_row_job(key, kind, n)


# --- Celery (built on first use, so the Dramatiq and RQ workers never import it) --------------------

_celery = []


def _celery_url() -> str:
    if REDIS_URL.startswith("unix://"):  # kombu's spelling of a unix socket
        return "redis+socket://" + REDIS_URL[len("unix://"):]
    return REDIS_URL


def _build_celery():
    from celery import Celery
    app = Celery("atelier_bench", broker=_celery_url(), set_as_current=False)
    app.conf.update(
        task_ignore_result=True, result_backend=None,
        task_default_queue=os.environ.get("BENCH_CELERY_QUEUE", "bench-celery"),
        broker_transport_options={"global_keyprefix": os.environ.get("BENCH_CELERY_PREFIX", "bench-celery:")},
        broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
        worker_send_task_events=False, task_send_sent_event=False, enable_utc=True)
    app.task(name="bench.noop")(noop_job)
    app.task(name="bench.db_row")(db_row_job)
    return app


def __getattr__(name: str):
    if name == "celery_app":
        if not _celery:
            _celery.append(_build_celery())
        return _celery[0]
    raise AttributeError(name)
