"""The broker as configured from settings: real Redis, retries with backoff, DB connections in actors."""
import dramatiq
import pytest

import settings
from jobs.broker import broker
from models_db.redis_store import client as redis_client
from models_db.redis_store import redis_key
from tests.conftest import run_jobs


@dramatiq.actor(queue_name="default", min_backoff=10, max_backoff=20)
def flaky(key: str) -> None:
    from models_db.accounts import User
    attempts = redis_client().incr(key)
    if attempts == 1:
        raise RuntimeError("first attempt fails")
    User.create(username=f"made-by-{key}")  # the DbConnection middleware gave this thread a connection


def test_a_failed_job_is_retried_and_then_succeeds(worker):
    from models_db.accounts import User
    key = redis_key("test:flaky")
    redis_client().delete(key)
    flaky.send(key)
    run_jobs(worker)
    assert int(redis_client().get(key)) == 2
    assert User.select().where(User.username == f"made-by-{key}").exists()


def test_broker_has_the_queues_and_middleware():
    assert {"default", "index", "gpu"} <= broker.get_declared_queues()
    names = {type(m).__name__ for m in broker.middleware}
    assert {"AtelierRetries", "TimeLimit", "AgeLimit", "Callbacks", "DbConnection", "Metrics",
            "JobRegistry"} <= names
    assert type(broker.middleware[-1]).__name__ in ("JobRegistry", "_WorkerMiddleware")


@pytest.mark.skipif(bool(settings.get().redis_url), reason="only with the embedded redis")
def test_embedded_redis_is_shared(tmp_path):
    import subprocess
    import sys

    from models_db.redis_store import redis_url
    code = "import settings; from models_db.redis_store import redis_url; print(redis_url())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == redis_url()
    pid = (settings.get().redis_socket.parent / "redis.pid").read_text().strip()
    assert str(redis_client().info("server")["process_id"]) == pid
