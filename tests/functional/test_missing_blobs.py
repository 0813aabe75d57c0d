"""A stored file gone from the blob store (a lost disk, a hand clean-up) answers 404 and is logged as a
warning: JSON for the API, the error page for browsers; never a 500."""
import io
import json
import logging

from models_db import generation as gen
from models_db.catalog import ModelFile
from models_db.storage import get_store
from tests import factories
from tests.conftest import run_jobs
from tests.helpers import auth, catalog_model

JSON = {"Accept": "application/json"}


def lose_every_blob():
    store = get_store()
    for blob, _ in list(store.iter_blobs()):
        store.delete(blob)


def assert_missing(response, caplog, page=False):
    assert response.status_code == 404, (response.status_code, response.data[:300])
    if page:
        assert response.mimetype == "text/html"
    else:
        assert "missing" in response.get_json()["error"]
    assert any(r.levelno == logging.WARNING and "missing" in r.getMessage() for r in caplog.records)
    caplog.clear()


def test_missing_image_blob(client, worker, alice, caplog):
    sent = client.post("/api/v1/images", headers=auth(alice[1]), content_type="multipart/form-data",
                       data={"file": (io.BytesIO(factories.png_bytes(seed=5)), "mine.png")})
    run_jobs(worker)
    url = f"/images/{sent.get_json()['id']}/width=4096/mine.png"
    assert client.get(url).status_code == 200
    lose_every_blob()
    assert_missing(client.get(url, headers=JSON), caplog)
    assert_missing(client.get(url), caplog, page=True)


def test_missing_model_file_blob(client, alice, caplog):
    model = catalog_model(alice[0], "Lost")
    version_id = model.versions[0].id
    first = client.get(f"/api/download/models/{version_id}")
    assert first.status_code == 307
    lose_every_blob()
    assert_missing(client.get(first.headers["Location"].replace("http://localhost", "")), caplog)
    assert ModelFile.select().count() == 1


def test_missing_generation_images(client, alice, caplog):
    sha, _ = get_store().put_stream(io.BytesIO(factories.png_bytes(seed=6)))
    run = gen.GenerationRun.create(user=alice[0], request_json="{}", status="Done", total=1, done=1,
                                   grid_blobs=json.dumps([sha]))
    job = gen.GenerationJob.create(run=run, index=0, signature="s", prompt="p", seed=1, state="done",
                                   output_blob=sha)
    urls = (f"/api/v1/generation/jobs/{job.id}/image.png", f"/api/v1/generation/runs/{run.id}/grid/0.png")
    assert all(client.get(u, headers=auth(alice[1])).status_code == 200 for u in urls)
    lose_every_blob()
    for url in urls:
        assert_missing(client.get(url, headers=auth(alice[1])), caplog)


def test_missing_sdapi_output_image(live_server, alice, sd1, caplog):
    """An /sdapi/v1/txt2img call whose run ends with an image gone from the store answers 404 JSON. The run's
    end is what the GPU worker writes and publishes (jobs done with their output blobs, the run Done, its
    `done` event); the blob is then lost before the waiting call reads it."""
    import threading
    import time

    import requests

    from jobs.generation import publish
    answers = []
    call = threading.Thread(target=lambda: answers.append(requests.post(
        f"{live_server}/sdapi/v1/txt2img", auth=(alice[0].username, alice[1]), timeout=60,
        json={"prompt": "a lighthouse", "steps": 2, "width": 64, "height": 64})))
    call.start()
    for _ in range(200):
        run = gen.GenerationRun.get_or_none()
        if run is not None and run.jobs.count():
            break
        time.sleep(0.05)
    sha, _ = get_store().put_stream(io.BytesIO(factories.png_bytes(seed=7)))
    gen.GenerationJob.update(state="done", output_blob=sha).where(gen.GenerationJob.run == run).execute()
    gen.GenerationRun.update(status="Done", done=run.total).where(gen.GenerationRun.id == run.id).execute()
    lose_every_blob()
    publish(run, "done", {"done": run.total, "failed": 0})
    call.join(60)
    assert answers and answers[0].status_code == 404, answers and (answers[0].status_code, answers[0].text[:300])
    assert "missing" in answers[0].json()["error"] and answers[0].json()["detail"] == answers[0].json()["error"]
    assert any(r.levelno == logging.WARNING and "missing" in r.getMessage() for r in caplog.records)
