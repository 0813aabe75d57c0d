"""Operators' view of generation: each GPU worker's heartbeat (a real Dramatiq worker on the gpu queue publishes
it) and the queue per user (counted in the database), on the Operations page and from the operations API."""
import html
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobs import generation as jobs
from models_db import generation as gen
from models_db.redis_store import client as redis
from tests.conftest import make_user
from tests.functional.test_generation import SMALL, first_step, submit
from tests.functional.test_web_pages import log_in
from tests.helpers import auth


STEPS = 150  # a batch long enough to be seen running


@pytest.fixture
def admin(client):
    user, key = make_user("olga", role="admin")
    log_in(client, user)
    return key


def api_workers(client, key) -> list[dict]:
    answer = client.get("/api/v1/operations/workers", headers=auth(key))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["items"]


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def row(html: str, worker_id: str) -> str:
    found = re.search(r'<tr class="worker[^"]*" data-worker="%s">(.*?)</tr>' % re.escape(worker_id), html, re.S)
    assert found, html
    return found.group(0)


def test_a_gpu_worker_shows_its_device_batch_and_speed_and_goes_when_it_stops(client, admin, alice, sd1,
                                                                              gpu_worker):
    _, key = alice
    me = f"{os.uname().nodename}:{os.getpid()}"
    booted = wait_for(lambda: api_workers(client, admin), 60, "the worker's first heartbeat")
    assert [w["id"] for w in booted] == [me]
    assert booted[0]["backend"] == "torch" and booted[0]["device"] == "cpu" and booted[0]["batch"] is None
    assert booted[0]["images"] == 0 and booted[0]["stale"] is False and booted[0]["ram"]["rss"] > 0

    pubsub = redis().pubsub(ignore_subscribe_messages=True)
    run = submit(client, key, model=sd1["versionId"], prompt="a lighthouse", quantity=4, seed=5,
                 **dict(SMALL, steps=STEPS))
    pubsub.subscribe(jobs.channel(run["id"]))
    assert first_step(pubsub, 120), "no step event"
    busy = api_workers(client, admin)[0]  # written at the batch's first step, before its event
    model = gen.GenerationJob.get_by_id(run["jobs"][0]["id"]).params["model"]["name"]
    assert {k: busy["batch"][k] for k in ("jobs", "runs", "model", "width", "height", "steps", "sampler")} == {
        "jobs": 4, "runs": [run["id"]], "model": model, "width": 64, "height": 64, "steps": STEPS, "sampler": "Euler"}
    assert 1 <= busy["batch"]["step"] <= STEPS
    page = row(client.get("/operations").get_data(as_text=True), me)
    assert "4 images" in page and re.search(r"step \d+/%d" % STEPS, page) and f"run {run['id']}" in page
    assert client.post(f"/api/v1/generation/runs/{run['id']}/cancel", headers=auth(key)).status_code == 200
    wait_for(lambda: api_workers(client, admin)[0]["batch"] is None, 60, "the cancelled batch's end")

    short = submit(client, key, model=sd1["versionId"], prompt="a kite", quantity=2, seed=9, **SMALL)
    wait_for(lambda: gen.GenerationRun.get_by_id(short["id"]).status == "Done", 300, "the run")
    done = api_workers(client, admin)[0]
    made = gen.GenerationJob.select().where(gen.GenerationJob.state == "done").count()  # 2, and any the cancel missed
    assert done["batch"] is None and done["images"] == made >= 2 and done["batches"] == 2
    assert done["imagesPerSecond"] > 0 and done["busySeconds"] > 0
    assert "SD1" in [p["family"] for p in done["warm"]]  # pipelines warmed by earlier tests may be there too
    page = row(client.get("/operations").get_data(as_text=True), me)
    assert "idle" in page and f"{made} in 2 batches" in page and "stale" not in page

    gpu_worker.stop()
    assert api_workers(client, admin) == []
    assert "No GPU worker is running." in client.get("/operations").get_data(as_text=True)


def test_a_gpu_worker_says_why_its_backend_failed_and_once_killed_goes_stale_then_away(client, admin, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), GPU_HEARTBEAT_S="1", GPU_BACKEND="tensorrt")
    with open(tmp_path / "gpu.log", "wb") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "dramatiq"), "jobs", "--processes", "1",
                                 "--threads", "1", "--queues", "gpu"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        seen = wait_for(lambda: api_workers(client, admin), 120, "the worker process's heartbeat")
        assert len(seen) == 1 and seen[0]["host"] == os.uname().nodename and seen[0]["pid"] != os.getpid()
        assert seen[0]["backend"] == "tensorrt" and "TensorRT" in seen[0]["error"]  # not installed, or not written
        assert seen[0]["error"] in html.unescape(row(client.get("/operations").get_data(as_text=True), seen[0]["id"]))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        stale = wait_for(lambda: [w for w in api_workers(client, admin) if w["stale"]], 10, "stale")[0]
        assert stale["id"] == seen[0]["id"] and stale["ageSeconds"] >= 3
        assert "stale" in row(client.get("/operations").get_data(as_text=True), stale["id"])
        wait_for(lambda: api_workers(client, admin) == [], 20, "the record to expire")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_queue_by_user_counts_queued_and_running_images_most_first(client, admin, alice, bob, sd1):
    for (_, key), quantity in ((alice, 2), (bob, 5)):
        submit(client, key, model=sd1["versionId"], prompt="a kite", quantity=quantity, **SMALL)
    second = submit(client, alice[1], model=sd1["versionId"], prompt="a boat", quantity=1, **SMALL)
    gen.claim([second["jobs"][0]["id"]], "a-worker", 60)  # a worker took one of alice's
    expected = [{"userId": bob[0].id, "username": "bob", "queued": 5, "running": 0, "runs": 1},
                {"userId": alice[0].id, "username": "alice", "queued": 2, "running": 1, "runs": 2}]
    assert client.get("/api/v1/operations/queue", headers=auth(admin)).get_json()["items"] == expected
    assert client.get("/api/v1/operations/queue?limit=1", headers=auth(admin)).get_json()["items"] == expected[:1]
    html = client.get("/operations").get_data(as_text=True)
    table = re.search(r'<table id="queue-by-user".*?</table>', html, re.S).group(0)
    cells = re.findall(r'data-user="(\w+)">.*?data-role="queued">(\d+)<.*?data-role="running">(\d+)<', table, re.S)
    assert cells == [("bob", "5", "0"), ("alice", "2", "1")]
    assert client.post(f"/api/v1/generation/runs/{second['id']}/cancel", headers=auth(alice[1])).status_code == 200
    assert client.get("/api/v1/operations/queue", headers=auth(admin)).get_json()["items"] == [
        expected[0], dict(expected[1], running=0, runs=1)]  # a cancelled run's last step is not its user's queue


def test_operations_data_is_for_admins_only(client, alice):
    _, key = alice
    for path in ("/api/v1/operations/workers", "/api/v1/operations/queue"):
        answer = client.get(path, headers=auth(key))
        assert answer.status_code == 403 and "error" in answer.get_json()
        assert client.get(path).status_code == 401
    moderator, mod_key = make_user("mo", role="moderator")
    assert client.get("/api/v1/operations/workers", headers=auth(mod_key)).status_code == 403
    log_in(client, moderator)
    assert client.get("/operations").status_code == 403
