"""Scheduler, rollups, housekeeping actors, dead letters, idempotency and the jobs CLI."""
import io
import json
import time
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from jobs.broker import broker
from models_db.catalog import Model, ModelVersion
from models_db.db import utcnow
from models_db.downloads import Download, record
from models_db.redis_store import client, redis_key
from models_db.storage import get_store
from scheduler import Entry, build, fire
from tests.conftest import run_jobs
from tests.functional import ops_actors
from tests.functional.ops_actors import tk
from tests.helpers import catalog_model, cli


def queued(actor) -> int:
    return sum(1 for raw in client().hvals(f"{broker.namespace}:{actor.queue_name}.msgs")
               if json.loads(raw)["actor_name"] == actor.actor_name)


def test_two_schedulers_send_each_tick_once():
    entry = Entry(ops_actors.count_me, 1)
    assert fire(entry, now=1000.2) is True and fire(entry, now=1000.7) is False  # same tick
    assert fire(entry, now=1001.1) is True
    broker.flush_all()
    for key in client().scan_iter(match=redis_key("scheduler:*")):
        client().delete(key)
    schedulers = [build(BackgroundScheduler(timezone="UTC"), [entry]) for _ in range(2)]
    for s in schedulers:
        s.start()
    time.sleep(3.6)
    for s in schedulers:
        s.shutdown(wait=True)
    ticks = list(client().scan_iter(match=redis_key("scheduler:count_me:*")))
    assert len(ticks) >= 3
    assert queued(ops_actors.count_me) == len(ticks)


def test_schedule_table_only_names_actors():
    from scheduler import schedule_table
    for entry in schedule_table():
        assert hasattr(entry.actor, "send") and entry.seconds >= 5


def test_rollups_feed_the_period_sort(client, alice):
    client_ = client
    hot_week = catalog_model(alice[0], "Hot this week", downloads=0)
    hot_year = catalog_model(alice[0], "Hot last year", downloads=0)

    def add(model, n, days_ago):
        file_id = ModelVersion.get(ModelVersion.model == model).files.get().id
        for i in range(n):
            record(f"{model.id}-{days_ago}-{i}", file_id, None)
        Download.update(created_at=utcnow() - timedelta(days=days_ago)).where(
            Download.id.startswith(f"{model.id}-{days_ago}-")).execute()
    add(hot_week, 3, 2)
    add(hot_year, 10, 200)
    from jobs.stats import rollup_stats
    rollup_stats.fn()
    order = lambda period: [m["name"] for m in client_.get(  # noqa: E731
        f"/api/v1/models?sort=Most Downloaded&period={period}").get_json()["items"]]
    assert order("Week") == ["Hot this week", "Hot last year"]
    assert order("Year") == ["Hot last year", "Hot this week"]
    assert order("AllTime") == ["Hot last year", "Hot this week"]
    from jobs.leaderboards import refresh_leaderboards
    refresh_leaderboards.fn()
    board = client_.get("/api/v1/leaderboards/creators-week").get_json()
    assert [(e["position"], e["username"], e["score"]) for e in board["items"]] == [(1, "alice", 3.0)]
    assert client_.get("/api/v1/leaderboards/creators-alltime").get_json()["items"][0]["score"] == 13.0
    assert client_.get("/api/v1/leaderboards/nope").status_code == 404
    page = client_.get("/api/v1/models?sort=Most Downloaded&period=Week&limit=1").get_json()
    rest = client_.get(page["metadata"]["nextPage"].replace("http://localhost", "")).get_json()
    assert [m["name"] for m in page["items"] + rest["items"]] == ["Hot this week", "Hot last year"]


def test_rollup_repairs_counters(alice):
    model = catalog_model(alice[0], "Counted")
    file_id = ModelVersion.get(ModelVersion.model == model).files.get().id
    for i in range(4):
        record(f"r{i}", file_id, None)
    Model.update(download_count=99).execute()
    from jobs.stats import rollup_stats
    assert rollup_stats.fn.__wrapped__()["repaired"] == 1
    assert Model.get_by_id(model.id).download_count == 4


def test_orphan_blobs_are_removed_but_referenced_ones_kept(alice):
    kept = catalog_model(alice[0], "Kept")
    from models_db.storage import holding
    with holding():  # a writer that stored the bytes, then failed to record them
        orphan, _ = get_store().put_stream(io.BytesIO(b"nobody points at me"))
    from jobs.storage import remove_orphan_blobs
    assert remove_orphan_blobs.fn.__wrapped__() == 0  # both are younger than the grace period
    assert remove_orphan_blobs.fn.__wrapped__(grace_s=-1) == 1
    assert not get_store().exists(orphan)
    blob = ModelVersion.get(ModelVersion.model == kept).files.get().blob
    assert get_store().exists(blob)


def test_every_column_naming_blobs_is_in_the_one_registry():
    from peewee import BlobField

    from models_db.blob_references import COLUMNS, JSON_COLUMNS
    from tests.conftest import all_tables
    named = {(f.model.__name__, f.name) for table in all_tables() for f in table._meta.sorted_fields
             if "blob" in f.name and not isinstance(f, BlobField)} | {("GenerationJob", "inputs_json")}
    assert named == {(f.model.__name__, f.name) for f in (*COLUMNS, *JSON_COLUMNS)}


def test_stale_in_flight_job_is_requeued_and_then_processed():
    from dramatiq import Worker

    from jobs.middleware import JobRegistry, inflight_key
    from jobs.queues import reap_stale_jobs
    message = ops_actors.count_me.send("stale")
    consumer = broker.consume("default", prefetch=1, timeout=1000)
    taken = next(consumer)  # now in this broker's in-flight set, as if a worker hung on it
    assert taken.message_id == message.message_id
    client().hset(inflight_key(), JobRegistry.redis_id(taken), json.dumps({
        "queue": "default", "actor": "count_me", "started": time.time() - 10 * 3600, "worker": broker.broker_id,
        "pid": 0}))
    assert reap_stale_jobs.fn.__wrapped__() == 1
    consumer.close()
    worker = Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        run_jobs(worker)
    finally:
        worker.stop()
    assert int(client().get(tk("count:stale"))) == 1


def test_message_finished_but_not_acked_is_skipped_when_redelivered(worker):
    from jobs.middleware import JobRegistry
    message = ops_actors.count_me.message("twice")
    JobRegistry().after_process_message(broker, message)  # its work done, then the worker died unacked
    broker.enqueue(message)  # ... so the broker delivers it again
    run_jobs(worker)
    assert client().get(tk("count:twice")) is None  # not run a second time


def test_message_whose_transaction_committed_is_skipped_when_redelivered(worker):
    from models_db import messages
    message = ops_actors.write_once.send("inbox")
    run_jobs(worker)
    broker.enqueue(message)  # delivered again, as after a worker killed between its commit and its ack
    run_jobs(worker)
    assert int(client().get(tk("count:inbox"))) == 1  # the body did not run again
    assert messages.is_processed(message.message_id)
    assert messages.prune(3600) == 0 and messages.prune(-1) == 1  # old ids are forgotten


def test_long_running_job_is_listed_in_flight_until_it_ends(worker):
    from jobs.middleware import inflight_key

    def listed_within(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not client().hexists(inflight_key(), redis_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        return client().hexists(inflight_key(), redis_id)

    redis_id = ops_actors.slow_write.send("listed").options["redis_message_id"]
    assert listed_within(5)  # written once it has run a second
    client().set(tk("release:listed"), 1)
    run_jobs(worker)
    deadline = time.monotonic() + 5
    while listed_within(0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not listed_within(0)


def test_registry_entries_do_not_pile_up(worker):
    from jobs.middleware import errors_key, inflight_key
    for i in range(5):
        ops_actors.count_me.send(f"pile{i}")
    run_jobs(worker)
    assert not client().hlen(f"{broker.namespace}:default.msgs")  # all acked
    assert not client().hlen(inflight_key()) and not client().hlen(errors_key())


def test_failed_jobs_cli(worker):
    ops_actors.always_fails.send("cli")
    run_jobs(worker)
    listing = cli("jobs", "failed")
    assert "ValueError: broken on purpose (cli)" in listing.stdout
    failed_id = listing.stdout.split()[0]
    shown = json.loads(cli("jobs", "failed", "show", failed_id).stdout)
    assert shown["actor"] == "always_fails" and shown["args"] == ["cli"]
    stats = cli("jobs", "stats", "--json", "--interval", "0.1")
    assert json.loads(stats.stdout)["queues"]["default"]["dead"] == 1
    client().set(tk("heal:cli"), 1)
    assert "requeued 1 job(s)" in cli("jobs", "failed", "retry", failed_id).stdout
    run_jobs(worker)
    assert int(client().get(tk("healed:cli"))) == 1
    assert cli("jobs", "failed").stdout == ""
    ops_actors.always_fails.send("purge")
    run_jobs(worker)
    assert "purged 1 job(s)" in cli("jobs", "failed", "purge", "--yes").stdout
    table = cli("jobs", "stats", "--interval", "0.1").stdout
    assert "queue" in table and "always_fails" in table


def test_gpu_worker_gauge_follows_gpu_workers(client):
    from dramatiq import Worker

    def gauge() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        return float(next((line.split()[-1] for line in text.splitlines()
                           if line.startswith("atelier_gpu_workers ")), 0))
    before = gauge()
    gpu_worker = Worker(broker, queues={"gpu"}, worker_threads=1, worker_timeout=100)
    gpu_worker.start()
    try:
        assert gauge() == before + 1
    finally:
        gpu_worker.stop()
    assert gauge() == 0


def test_permanent_errors_are_not_retried(worker):
    ops_actors.refuses.send("perm")
    run_jobs(worker)
    assert int(client().get(tk("attempts:perm"))) == 1
    from jobs.queues import failed
    assert [f["error"] for f in failed()] == ["PermanentError: this input can never work"]
    assert client().get(tk("exhausted:perm")) == b"PermanentError: this input can never work"  # its callback
