"""The Operations page in a real browser, in a 1280 px window, while a real worker runs a batch: GPU workers,
the queue per user, queues, failed jobs and actors all fit without a horizontal scroll bar."""
import time

import requests

from jobs import gpu_workers
from models_db import generation as gen
from models_db.accounts import User
from scheduler import schedule_table
from tests.browser.conftest import shot, sign_up
from tests.conftest import make_user, run_jobs
from tests.helpers import auth

USERS = ["ana", "ben", "maximilian_the_great_painter", "cleo", "dmitri.k", "eve", "farah", "gustavo-renders"]
ADMIN = "night-shift-operator-" + "x" * 43  # the longest name there may be: the top bar fits it too
OTHER_HOSTS = ("gpu-07.render-farm.example.net", "gpu-08.render-farm.example.net", "a100-spot-3f9c2e")


def test_operations_page_fits_a_1280_px_window_with_workers_and_queues(page, worker, gpu_worker, live_server, sd1):
    for entry in schedule_table():  # every housekeeping actor has run once: the actors table is full
        entry.actor.send()
    run_jobs(worker)
    runs = []
    for n, name in enumerate(USERS):
        _, key = make_user(name)
        body = {"model": sd1["versionId"], "prompt": f"a lighthouse, study {n}", "width": 64, "height": 64,
                "steps": 150 if n == 0 else 2, "quantity": 12 if n == 0 else n + 1, "sampler": "Euler"}
        answer = requests.post(f"{live_server}/api/v1/generation", json=body, headers=auth(key))
        assert answer.status_code == 202, answer.text
        runs.append((answer.json()["id"], key))
    try:
        deadline = time.monotonic() + 120
        while not any((w["batch"] or {}).get("step") for w in gpu_workers.workers()):
            assert time.monotonic() < deadline, "no batch started"
            time.sleep(0.2)
        sign_up(page, ADMIN)
        User.update(role="admin").where(User.username == ADMIN).execute()
        for host in OTHER_HOSTS:  # more GPU workers, beating from other hosts
            other = gpu_workers.Heartbeat()
            other.worker_id = f"{host}:48213"
            other.write()
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto("/operations")
        shot(page, "operations")
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        for part in ("header.topbar", "#gpu-workers", "#queue-by-user", "#queues", "#failed-jobs", "#actors"):
            box = page.locator(part).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 1280, (part, box)
        assert page.locator("#actors tr").count() > len(schedule_table())
        assert page.locator("#gpu-workers tr.worker").count() == 1 + len(OTHER_HOSTS)
        busy = page.locator("#gpu-workers tr.worker", has_text="step").first
        assert busy.is_visible() and "images" in busy.inner_text()
        assert page.locator("#queue-by-user tr[data-user]").count() == len(USERS)
    finally:
        for run_id, key in runs:
            requests.post(f"{live_server}/api/v1/generation/runs/{run_id}/cancel", headers=auth(key))
    assert gen.GenerationRun.select().where(gen.GenerationRun.status.in_(("Queued", "Running"))).count() == 0
