"""Run management over the REST API: cursor paging of runs and of a run's jobs, deleting runs (and the
blobs only they used), the zip download, retrying failed jobs; one user never reaches another's runs."""
import base64
import io
import json
import zipfile

from PIL import Image

from gpu.png_meta import parse_a1111
from models_db import generation as gen
from models_db import images as im
from models_db.storage import get_store
from tests.conftest import run_jobs
from tests.factories import picture
from tests.helpers import auth

SMALL = {"width": 64, "height": 64, "steps": 2, "sampler": "Euler"}


def submit(client, key, **body):
    response = client.post("/api/v1/generation", json=body, headers=auth(key))
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def pages(client, key, url, field="items"):
    """Every page of a cursor-paged listing: (list of pages, each a list of items)."""
    out, seen = [], set()
    while url:
        response = client.get(url, headers=auth(key))
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        out.append(body[field])
        cursor = body["metadata"].get("nextCursor")
        assert cursor not in seen
        seen.add(cursor)
        url = body["metadata"]["nextPage"].split("localhost", 1)[-1] if cursor else None
    return out


def test_runs_list_pages_by_cursor_newest_first_and_only_yours(client, alice, bob, sd1):
    made = [submit(client, alice[1], model=sd1["versionId"], prompt=f"p{n}", **SMALL)["id"] for n in range(5)]
    bobs = submit(client, bob[1], model=sd1["versionId"], prompt="bob's", **SMALL)["id"]
    got = pages(client, alice[1], "/api/v1/generation/runs?limit=2")
    assert [len(p) for p in got] == [2, 2, 1]
    assert [r["id"] for p in got for r in p] == made[::-1]  # no duplicates, no gaps
    assert all("jobs" not in r for p in got for r in p)
    first = client.get("/api/v1/generation/runs?limit=5", headers=auth(alice[1])).get_json()
    assert "nextCursor" not in first["metadata"] and first["metadata"]["pageSize"] == 5
    assert [r["id"] for p in pages(client, bob[1], "/api/v1/generation/runs") for r in p] == [bobs]
    bad = client.get("/api/v1/generation/runs?cursor=garbage", headers=auth(alice[1]))
    assert bad.status_code == 400 and bad.get_json()["error"]


def test_a_runs_jobs_page_by_cursor_in_order_with_the_runs_summary(client, alice, bob, sd1):
    run = submit(client, alice[1], model=sd1["versionId"], prompt="many", quantity=7, seed=10, **SMALL)
    assert len(run["jobs"]) == 7  # a small run's first page holds all its jobs
    url = f"/api/v1/generation/runs/{run['id']}?limit=3"
    got = pages(client, alice[1], url, field="jobs")
    assert [len(p) for p in got] == [3, 3, 1]
    assert [j["index"] for p in got for j in p] == list(range(7))
    assert [j["seed"] for p in got for j in p] == list(range(10, 17))
    body = client.get(url, headers=auth(alice[1])).get_json()
    assert (body["id"], body["total"], body["status"]) == (run["id"], 7, "Queued")
    # only the failed ones, still paged
    gen.GenerationJob.update(state="failed", error="boom").where(
        gen.GenerationJob.run == run["id"], gen.GenerationJob.index.in_([1, 4, 5])).execute()
    failed = pages(client, alice[1], f"/api/v1/generation/runs/{run['id']}?limit=2&state=failed", field="jobs")
    assert [[j["index"] for j in p] for p in failed] == [[1, 4], [5]]
    assert {j["error"] for p in failed for j in p} == {"boom"}
    assert client.get(f"/api/v1/generation/runs/{run['id']}?state=odd", headers=auth(alice[1])).status_code == 400
    other = client.get(f"/api/v1/generation/runs/{run['id']}", headers=auth(bob[1]))
    assert other.status_code == 404 and other.get_json()["error"]


def b64_png(image) -> str:
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def blobs_of_run(run_id: int) -> set[str]:
    """Every blob a run's rows name: outputs (job and image rows, variants) and inputs."""
    out = set()
    for job in gen.GenerationJob.select().where(gen.GenerationJob.run == run_id):
        out.update([job.output_blob, *job.inputs.values()])
        if job.image_id:
            image = im.Image.get_by_id(job.image_id)
            out.update([image.blob, *(v.blob for v in image.variants)])
    out.discard(None)
    return out


def test_deleting_a_run_frees_the_blobs_only_it_used(client, alice, bob, sd1, worker):
    _, key = alice
    source = b64_png(picture(64, 64, seed=5))
    kept = submit(client, key, model=sd1["versionId"], prompt="kept", seed=1, init_image=source, **SMALL)
    doomed = submit(client, key, model=sd1["versionId"], prompt="doomed", quantity=2, seed=2, init_image=source,
                    **SMALL)
    run_jobs(worker)
    jobs_ = client.get(f"/api/v1/generation/runs/{doomed['id']}", headers=auth(key)).get_json()["jobs"]
    # alice also uploads one of the outputs as an ordinary image: those bytes are used elsewhere now
    data = client.get(jobs_[0]["imageUrl"].split("localhost", 1)[-1], headers=auth(key)).data
    upload = client.post("/api/v1/images", data={"file": (io.BytesIO(data), "mine.png")}, headers=auth(key))
    assert upload.status_code == 202
    run_jobs(worker)
    copy = im.Image.get_by_id(upload.get_json()["id"])
    elsewhere = {copy.blob, *(v.blob for v in copy.variants)} | blobs_of_run(kept["id"])
    doomed_blobs = blobs_of_run(doomed["id"])
    only_doomed = doomed_blobs - elsewhere
    outputs = [j["imageId"] for j in jobs_]
    first, second = (im.Image.get_by_id(i).blob for i in outputs)
    assert first in elsewhere and second in only_doomed and len(only_doomed) >= 2  # the second's variants too
    assert gen.GenerationJob.get(gen.GenerationJob.run == kept["id"]).inputs["init_image"] in doomed_blobs

    answer = client.delete(f"/api/v1/generation/runs/{doomed['id']}", headers=auth(bob[1]))
    assert answer.status_code == 404 and answer.get_json()["error"]
    answer = client.delete(f"/api/v1/generation/runs/{doomed['id']}", headers=auth(key))
    assert answer.status_code == 202, answer.get_json()
    assert client.get(f"/api/v1/generation/runs/{doomed['id']}", headers=auth(key)).status_code == 404
    assert doomed["id"] not in [r["id"] for r in client.get("/api/v1/generation/runs",
                                                            headers=auth(key)).get_json()["items"]]
    run_jobs(worker)
    assert not gen.GenerationRun.select().where(gen.GenerationRun.id == doomed["id"]).exists()
    assert not gen.GenerationJob.select().where(gen.GenerationJob.run == doomed["id"]).exists()
    assert not im.Image.select().where(im.Image.id.in_(outputs)).exists()
    assert not [b for b in only_doomed if get_store().exists(b)]
    assert all(get_store().exists(b) for b in elsewhere)
    assert client.get(f"/api/v1/generation/runs/{kept['id']}", headers=auth(key)).get_json()["done"] == 1
    assert client.delete(f"/api/v1/generation/runs/{doomed['id']}", headers=auth(key)).status_code == 404


def test_deleting_an_unfinished_run_cancels_it_first(client, alice, sd1, worker):
    _, key = alice
    run = submit(client, key, model=sd1["versionId"], prompt="never", quantity=3, **SMALL)
    assert client.delete(f"/api/v1/generation/runs/{run['id']}", headers=auth(key)).status_code == 202
    run_jobs(worker)  # its queued messages find nothing to do
    assert gen.GenerationRun.select().count() == 0 and im.Image.select().count() == 0


def test_clear_finished_deletes_only_your_finished_runs(client, alice, bob, sd1, worker):
    _, key = alice
    finished = [submit(client, key, model=sd1["versionId"], prompt=f"f{n}", **SMALL)["id"] for n in range(2)]
    bobs = submit(client, bob[1], model=sd1["versionId"], prompt="bob", **SMALL)["id"]
    run_jobs(worker)
    posted = gen.GenerationJob.get(gen.GenerationJob.run == finished[0]).image_id  # posted: it stays
    assert client.post("/api/v1/posts", headers=auth(key), json={"imageIds": [posted]}).status_code < 300
    waiting = submit(client, key, model=sd1["versionId"], prompt="later", **SMALL)["id"]
    answer = client.post("/api/v1/generation/runs/clear", headers=auth(key))
    assert answer.status_code == 202 and answer.get_json()["deleted"] == 2
    listed = [r["id"] for r in client.get("/api/v1/generation/runs", headers=auth(key)).get_json()["items"]]
    assert listed == [waiting]
    run_jobs(worker)
    assert sorted(r.id for r in gen.GenerationRun.select()) == sorted([bobs, waiting])
    left = im.Image.select().where(im.Image.user == alice[0].id)
    later = gen.GenerationJob.get(gen.GenerationJob.run == waiting).image_id
    assert sorted(i.id for i in left) == sorted([posted, later])
    assert get_store().exists(im.Image.get_by_id(posted).blob)
    assert not gen.GenerationRun.select().where(gen.GenerationRun.id.in_(finished)).exists()


def test_a_run_downloads_as_a_zip_of_its_pngs_with_their_parameters_and_run_json(client, alice, bob, sd1, worker):
    _, key = alice
    run = submit(client, key, model=sd1["versionId"], prompts=["a red kite", "a blue kite"], seed=20,
                 negative_prompt="blurry", **SMALL)
    run_jobs(worker)
    answer = client.get(f"/api/v1/generation/runs/{run['id']}/zip", headers=auth(key))
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    assert f"run-{run['id']}.zip" in answer.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(answer.data))
    assert archive.testzip() is None
    assert archive.namelist() == ["run.json", "00000-20.png", "00001-21.png"]
    for name, prompt, seed in (("00000-20.png", "a red kite", 20), ("00001-21.png", "a blue kite", 21)):
        meta = parse_a1111(Image.open(io.BytesIO(archive.read(name))).info["parameters"])
        assert (meta["prompt"], meta["negativePrompt"], meta["seed"]) == (prompt, "blurry", seed)
    described = json.loads(archive.read("run.json"))
    assert described["id"] == run["id"] and described["status"] == "Done"
    assert described["request"]["prompts"] == ["a red kite", "a blue kite"] and described["request"]["seed"] == 20
    assert [(i["file"], i["prompt"], i["seed"]) for i in described["images"]] == [
        ("00000-20.png", "a red kite", 20), ("00001-21.png", "a blue kite", 21)]
    other = client.get(f"/api/v1/generation/runs/{run['id']}/zip", headers=auth(bob[1]))
    assert other.status_code == 404 and other.get_json()["error"]


def test_retrying_a_runs_failed_jobs_makes_their_images(client, alice, bob, sd1, request):
    _, key = alice
    run = submit(client, key, model=sd1["versionId"], prompt="again", quantity=2, seed=4, denoising_strength=0.5,
                 init_image=b64_png(picture(64, 64, seed=5)), **SMALL)
    blob = gen.GenerationJob.get(gen.GenerationJob.run == run["id"], gen.GenerationJob.index == 0).inputs["init_image"]
    with get_store().open(blob) as f:
        data = f.read()
    get_store().delete(blob)  # lost: both jobs fail at once, for good
    worker = request.getfixturevalue("worker")  # started only now, after the loss
    run_jobs(worker)
    body = client.get(f"/api/v1/generation/runs/{run['id']}", headers=auth(key)).get_json()
    assert (body["status"], body["failed"]) == ("Failed", 2)
    get_store().put_stream(io.BytesIO(data))  # the file is back
    other = client.post(f"/api/v1/generation/runs/{run['id']}/retry", headers=auth(bob[1]))
    assert other.status_code == 404 and other.get_json()["error"]
    answer = client.post(f"/api/v1/generation/runs/{run['id']}/retry", headers=auth(key))
    assert answer.status_code == 202 and answer.get_json()["failed"] == 2
    run_jobs(worker)
    body = client.get(f"/api/v1/generation/runs/{run['id']}", headers=auth(key)).get_json()
    assert (body["status"], body["done"], body["failed"]) == ("Done", 2, 0), body
    assert all(j["error"] is None and j["imageUrl"] for j in body["jobs"])
    assert im.Image.select().count() == 2
    cancelled = submit(client, key, model=sd1["versionId"], prompt="stop", **SMALL)
    assert client.post(f"/api/v1/generation/runs/{cancelled['id']}/cancel", headers=auth(key)).status_code == 200
    refused = client.post(f"/api/v1/generation/runs/{cancelled['id']}/retry", headers=auth(key))
    assert refused.status_code == 409 and "cancelled" in refused.get_json()["error"]


def test_a_large_runs_zip_streams_in_bounded_memory(client, alice, sd1):
    import os
    import tracemalloc
    _, key = alice
    run = submit(client, key, model=sd1["versionId"], prompt="big", quantity=12, seed=1, **SMALL)
    for job in gen.GenerationJob.select().where(gen.GenerationJob.run == run["id"]):  # 4 MiB outputs
        blob, _ = get_store().put_stream(io.BytesIO(os.urandom(4 << 20)))
        gen.GenerationJob.update(state="done", output_blob=blob).where(gen.GenerationJob.id == job.id).execute()
    response = client.get(f"/api/v1/generation/runs/{run['id']}/zip", headers=auth(key), buffered=False)
    assert response.status_code == 200
    tracemalloc.start()
    size = 0
    try:
        for piece in response.response:
            size += len(piece)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        response.close()
    assert size > 48 << 20  # every output went out
    assert peak < 8 << 20, f"{peak >> 20} MiB held while streaming {size >> 20} MiB"
