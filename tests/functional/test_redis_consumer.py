"""The broker's batching consumer, against the real Redis: it refills and acks in batches (fewer Redis
scripts run than messages processed), sends the acks it noted before its next fetch or when it closes, and
leaves nothing leased or stored once the work is done."""
from dramatiq import Worker

from jobs.broker import broker
from models_db.redis_store import client
from tests.conftest import run_jobs
from tests.functional.ops_actors import count_me, count_slowly, tk

N = 400


def scripts_run() -> int:
    stats = client().info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def leftovers(queue: str) -> tuple[int, int]:
    leased = client().scard(f"{broker.namespace}:__acks__.{broker.broker_id}.{queue}")
    return leased, client().hlen(f"{broker.namespace}:{queue}.msgs")


def test_a_burst_is_fetched_and_acked_in_batches():
    for i in range(N):
        count_me.send("burst")
    worker = Worker(broker, worker_threads=8, worker_timeout=100)
    before = scripts_run()
    worker.start()
    try:
        run_jobs(worker)
        assert int(client().get(tk("count:burst"))) == N
        # one script per message would be Dramatiq's ack alone; here a refill acks and fetches about
        # half the prefetch (8 of 16) in two calls, plus the broker's own queue-size polls from join()
        assert scripts_run() - before < N / 2
        assert leftovers("default") == (0, 0)
    finally:
        worker.stop()


def test_noted_acks_are_sent_before_the_next_fetch_or_at_close():
    for i in range(3):
        count_me.send(f"c{i}")
    consumer = broker.consume("default", prefetch=4, timeout=100)
    messages = [next(consumer) for _ in range(3)]
    assert all(m is not None for m in messages) and leftovers("default") == (3, 3)
    for m in messages[:2]:
        consumer.ack(m)
    assert leftovers("default") == (3, 3)  # noted, not sent yet
    assert next(consumer) is None  # the queue is empty: the poll sends the noted acks
    assert leftovers("default") == (1, 1)
    consumer.ack(messages[2])
    consumer.close()
    assert leftovers("default") == (0, 0)


def test_a_stopped_worker_leaves_nothing_leased():
    for i in range(20):
        count_slowly.send("stop")
    worker = Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    worker.join()
    worker.stop()
    assert int(client().get(tk("count:stop"))) == 20
    assert leftovers("default") == (0, 0)
