"""Test set-up. The suite runs twice from `make test`: on the embedded defaults (SQLite file, embedded
redis-server) and, when ATELIER_TEST_DATABASE_URL / ATELIER_TEST_REDIS_URL are set, on PostgreSQL and
Redis. Each session gets its own data directory, database and queue namespace."""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

PG_BASE = os.environ.get("ATELIER_TEST_DATABASE_URL", "")
REDIS = os.environ.get("ATELIER_TEST_REDIS_URL", "")
RUN_ID = uuid.uuid4().hex[:10]
HOME = Path(tempfile.mkdtemp(prefix="atelier-test-"))
PG_DB = f"atelier_test_{RUN_ID}"


def _pg_admin(sql: str) -> None:
    import psycopg2
    conn = psycopg2.connect(PG_BASE)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def _configure_env() -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "STORAGE_URL", "PUBLIC_URL", "SECRET_KEY", "PORT"):
        os.environ.pop(name, None)
    os.environ.setdefault("MODEL_CACHE_DIR", str(Path(__file__).resolve().parent.parent / "var" / "cache"))
    os.environ.update(ATELIER_HOME=str(HOME), SECRET_KEY="test-secret", LOG_LEVEL="WARNING",
                      QUEUE_NAMESPACE=f"atelier-test-{RUN_ID}", JOB_MAX_RETRIES="1")
    if PG_BASE:
        _pg_admin(f"CREATE DATABASE {PG_DB}")
        os.environ["DATABASE_URL"] = PG_BASE.rsplit("/", 1)[0] + "/" + PG_DB
    if REDIS:
        os.environ["REDIS_URL"] = REDIS


_configure_env()

import settings  # noqa: E402

settings.reload()
from models_db import db as database  # noqa: E402
from models_db.migrations import upgrade  # noqa: E402

upgrade()
import jobs  # noqa: E402,F401
from jobs.broker import broker  # noqa: E402


def pytest_report_header(config):
    s = settings.get()
    return [f"atelier backends: database={s.database_url.split('@')[-1]} "
            f"redis={s.redis_url or 'embedded'} home={s.home}"]


def pytest_sessionfinish(session, exitstatus):
    from models_db.redis_store import client, redis_key
    for key in client().scan_iter(match=redis_key("*"), count=1000):
        client().delete(key)
    database.db.close()
    if PG_BASE:
        _pg_admin(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
    else:
        from models_db.redis_store import stop_embedded
        stop_embedded()
    shutil.rmtree(HOME, ignore_errors=True)


def all_tables():
    """Every table, children before parents."""
    from models_db import (
        accounts,
        catalog,
        downloads,
        generation,
        images,
        leaderboards,
        messages,
        notifications,
        reviews,
        stats,
        uploads,
    )
    from models_db.search import tables, vectors
    modules = (tables, vectors, generation, images, leaderboards, stats, reviews, notifications, downloads, uploads,
               catalog, accounts, messages)
    if not PG_BASE:
        from models_db.search import sqlite_fts
        modules = (sqlite_fts, *modules)
    return [table for module in modules for table in reversed(module.TABLES)]


@pytest.fixture(autouse=True)
def clean_state():
    """Every test starts with empty tables, queues and storage."""
    database.db.connect(reuse_if_open=True)
    names = ", ".join(f'"{t._meta.table_name}"' for t in all_tables())
    if PG_BASE:
        database.db.execute_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    else:
        with database.db.atomic():
            database.db.execute_sql("PRAGMA defer_foreign_keys = ON")
            for table in all_tables():
                database.db.execute_sql(f'DELETE FROM "{table._meta.table_name}"')
    from models_db.redis_store import client, redis_key
    for key in client().scan_iter(match=redis_key("*"), count=1000):
        client().delete(key)
    from models_db.search.engine import DatabaseBackend
    from models_db.search.vectors import vector_index
    vector_index.reset()
    DatabaseBackend.vocabulary.reset()
    from models_db.search import synonyms
    synonyms.cache.reset()
    for folder in ("blobs", "uploads", "tmp"):
        shutil.rmtree(HOME / folder, ignore_errors=True)
    yield
    if not database.db.is_closed():
        database.db.close()


@pytest.fixture
def app():
    from web import create_app
    app = create_app()
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def worker():
    """A real Dramatiq worker on the real broker, in this process. Use run_jobs() to drain the queues."""
    from dramatiq import Worker
    w = Worker(broker, worker_threads=2, worker_timeout=100)
    w.start()
    yield w
    w.stop()


@pytest.fixture
def gpu_worker(configure):
    """A real Dramatiq worker on the gpu queue alone, in this process, as `atelier worker --gpu` runs: it
    publishes its heartbeat (jobs.gpu_workers), here every second."""
    from dramatiq import Worker
    configure(GPU_HEARTBEAT_S="1")
    w = Worker(broker, queues={"gpu"}, worker_threads=1, worker_timeout=100)
    w.start()
    yield w
    w.stop()


def run_jobs(worker_, rounds: int = 3) -> None:
    """Waits until every queue is empty and the worker idle (jobs may enqueue more jobs)."""
    for _ in range(rounds):
        for queue in list(broker.get_declared_queues()):
            broker.join(queue, timeout=60_000)
        worker_.join()


@pytest.fixture(scope="session")
def sd1_file(tmp_path_factory):
    """A tiny random-weight SD 1.5 checkpoint file (the original single-file layout), written once."""
    from gpu.demo import write_checkpoint
    return write_checkpoint("SD1", tmp_path_factory.mktemp("models") / "tiny-sd15.safetensors", size="tiny")


@pytest.fixture
def sd1(sd1_file):
    """sd1_file imported into the catalog and published (the version as the import command prints it)."""
    from tests.helpers import import_model
    return import_model(sd1_file, "--publish")


@pytest.fixture
def live_server(app):
    """The app on a real HTTP port, served as `atelier web` serves it (web.asgi.App under uvicorn: the Flask
    app on WEB_THREADS request threads, event streams and /sdapi waits on the event loop), from a thread of
    this process so that settings changed by a test reach it."""
    import socket
    import time

    import uvicorn

    from web.asgi import App
    served = App(app, settings.get().web_threads)
    server = uvicorn.Server(uvicorn.Config(served, log_level="warning", lifespan="off", timeout_graceful_shutdown=1))
    sock = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the live server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()
    served.wsgi.executor.shutdown(wait=False)


def make_user(name: str = "alice", role: str = "user", scope: str = "write"):
    from models_db.accounts import create_api_key, create_user
    user = create_user(name, role=role)
    _, key = create_api_key(user, "test", scope)
    return user, key


@pytest.fixture
def configure(monkeypatch):
    """configure(NAME="value", ...): these settings for this test only (read again from the environment)."""
    def apply(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        settings.reload()
    yield apply
    monkeypatch.undo()
    settings.reload()


@pytest.fixture
def alice():
    return make_user("alice")


@pytest.fixture
def bob():
    return make_user("bob")
