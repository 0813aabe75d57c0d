"""Faults that must lose nothing and duplicate nothing: a worker killed with SIGKILL mid-job, a Redis
restart during a run, a database connection dropped under a running actor. Workers are real
`dramatiq` processes on the suite's own database and Redis."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import settings
from models_db import db as database
from models_db.accounts import User
from models_db.redis_store import client, start_embedded
from tests.conftest import PG_BASE, PG_DB
from tests.functional import ops_actors
from tests.functional.ops_actors import tk

ROOT = Path(__file__).parents[2]
FAST_RECOVERY = {"JOB_HEARTBEAT_TIMEOUT_S": "3", "JOB_MAINTENANCE_CHANCE": "1000000"}


def start_worker(tmp_path, name="worker"):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **FAST_RECOVERY)
    log = open(tmp_path / f"{name}.log", "ab")
    return subprocess.Popen([str(Path(sys.executable).parent / "dramatiq"), "jobs", "tests.functional.ops_actors",
                             "--processes", "1", "--threads", "2", "--queues", "default"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc, sig=signal.SIGTERM):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def counter(key: str) -> int:
    for _ in range(50):  # tolerate a Redis that is restarting
        try:
            return int(client().get(key) or 0)
        except Exception:
            time.sleep(0.1)
    raise AssertionError("redis did not come back")


def wait_until(check, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def workers(tmp_path):
    started = []
    yield lambda name="worker": started.append(start_worker(tmp_path, name)) or started[-1]
    for proc in started:
        stop(proc, signal.SIGKILL)


def test_killed_worker_job_is_redelivered_and_done_once(workers):
    ops_actors.slow_write.send("kill")
    first = workers("first")
    wait_until(lambda: counter(tk("started:kill")) == 1, what="the job to start")
    stop(first, signal.SIGKILL)
    workers("second")
    client().set(tk("release:kill"), 1)
    wait_until(lambda: counter(tk("finished:kill")) >= 1, timeout=90, what="the redelivered job")
    time.sleep(1)
    assert counter(tk("started:kill")) == 2  # delivered again after the crash
    assert counter(tk("finished:kill")) == 1
    assert User.select().where(User.username == "row-kill").count() == 1


def test_sigterm_lets_the_running_job_finish(workers):
    ops_actors.slow_write.send("term")
    worker = workers()
    wait_until(lambda: counter(tk("started:term")) == 1, what="the job to start")
    os.kill(worker.pid, signal.SIGTERM)  # to the main process, which forwards it once to its workers
    time.sleep(0.5)
    client().set(tk("release:term"), 1)
    worker.wait(timeout=60)
    assert counter(tk("finished:term")) == 1 and counter(tk("started:term")) == 1
    assert User.select().where(User.username == "row-term").count() == 1


@pytest.mark.skipif(bool(settings.get().redis_url), reason="needs the suite's own (embedded) Redis to restart")
def test_redis_restart_during_a_run_loses_no_message(workers):
    tags = [f"r{i}" for i in range(30)]
    for tag in tags:
        ops_actors.count_slowly.send(tag)
    workers()
    wait_until(lambda: sum(counter(tk(f"count:{t}")) > 0 for t in tags) >= 5, what="some jobs to run")
    try:
        client().shutdown(save=True)
    except Exception:
        pass  # the server closes the connection as it stops
    time.sleep(0.5)
    start_embedded(settings.get())
    wait_until(lambda: all(counter(tk(f"count:{t}")) > 0 for t in tags), timeout=90, what="every job")
    assert all(counter(tk(f"count:{t}")) >= 1 for t in tags)


@pytest.mark.skipif(not PG_BASE, reason="drops PostgreSQL backends")
def test_dropped_database_connection_is_retried(workers):
    import psycopg2
    ops_actors.slow_write.send("db")
    workers()
    wait_until(lambda: counter(tk("started:db")) == 1, what="the job to start")
    database.db.close_all()
    admin = psycopg2.connect(PG_BASE)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (PG_DB,))
        assert cur.rowcount >= 1
    admin.close()
    client().set(tk("release:db"), 1)
    wait_until(lambda: counter(tk("finished:db")) == 1, timeout=60, what="the retried job")
    assert counter(tk("started:db")) == 2  # the first attempt failed on the dropped connection
    database.db.close_all()
    assert User.select().where(User.username == "row-db").count() == 1
