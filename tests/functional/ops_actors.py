"""Actors used by the operations and fault tests (also loaded by worker subprocesses)."""
import time

import dramatiq

from models_db.redis_store import client, redis_key


def tk(name: str) -> str:
    """A Redis key of the tests, under the run's namespace."""
    return redis_key(f"test:{name}")


@dramatiq.actor(queue_name="default", max_retries=0)
def always_fails(tag: str) -> None:
    if not client().exists(tk(f"heal:{tag}")):
        raise ValueError(f"broken on purpose ({tag})")
    client().incr(tk(f"healed:{tag}"))


@dramatiq.actor(queue_name="default")
def count_me(tag: str) -> None:
    client().incr(tk(f"count:{tag}"))


@dramatiq.actor(queue_name="default", max_retries=5, min_backoff=100, max_backoff=500, time_limit=120_000)
def slow_write(tag: str) -> None:
    """Marks its start, waits to be released, then writes one row (idempotently) and counts the finish."""
    from models_db.accounts import User
    User.select().exists()  # its database connection is in use from here on (connections open on first use)
    client().incr(tk(f"started:{tag}"))
    deadline = time.time() + 60
    while not client().exists(tk(f"release:{tag}")) and time.time() < deadline:
        time.sleep(0.05)
    User.insert(username=f"row-{tag}").on_conflict_ignore().execute()
    client().incr(tk(f"finished:{tag}"))


@dramatiq.actor(queue_name="default", max_retries=20, min_backoff=100, max_backoff=1000)
def count_slowly(tag: str) -> None:
    time.sleep(0.05)
    client().incr(tk(f"count:{tag}"))


@dramatiq.actor(queue_name="default")
def note_exhausted(message: dict, _retries: dict) -> None:
    client().set(tk(f"exhausted:{message['args'][0]}"), message["options"]["last_error"])


@dramatiq.actor(queue_name="default", max_retries=5, min_backoff=10, max_backoff=20,
                on_retry_exhausted="note_exhausted")
def refuses(tag: str) -> None:
    from jobs.broker import PermanentError
    client().incr(tk(f"attempts:{tag}"))
    raise PermanentError("this input can never work")


@dramatiq.actor(queue_name="default", done_on_commit=True)
def write_once(tag: str) -> None:
    """Its effect is one transaction(), which also records the message as processed."""
    from models_db.accounts import User
    from models_db.db import transaction
    with transaction():
        User.insert(username=f"once-{tag}").on_conflict_ignore().execute()
    client().incr(tk(f"count:{tag}"))
