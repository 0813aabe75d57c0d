"""Generation through the whole platform: the REST API validates and queues, a real Dramatiq worker runs
tiny random-weight models of the real architectures on the CPU, PNGs land in the blob store."""
import base64
import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from gpu.png_meta import parse_a1111
from jobs import generation as jobs
from models_db import generation as gen
from models_db import images as im
from models_db.redis_store import client as redis
from tests.conftest import run_jobs
from tests.factories import picture
from tests.helpers import auth, cli, import_model

SMALL = {"width": 64, "height": 64, "steps": 2, "sampler": "Euler"}


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    from gpu.demo import write_lora
    return write_lora(tmp_path_factory.mktemp("loras") / "ink.safetensors", "SD1")


def submit(client, key, status=202, **body):
    response = client.post("/api/v1/generation", json=body, headers=auth(key))
    assert response.status_code == status, response.get_json()
    return response.get_json()


def run_of(client, key, run_id):
    response = client.get(f"/api/v1/generation/runs/{run_id}", headers=auth(key))
    assert response.status_code == 200
    return response.get_json()


def png(client, key, url) -> Image.Image:
    response = client.get(url.split("localhost", 1)[-1], headers=auth(key))
    assert response.status_code == 200 and response.mimetype == "image/png"
    return Image.open(io.BytesIO(response.data))


def b64_png(image) -> str:
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def first_step(pubsub, timeout: float) -> bool:
    """Waits for a run's first per-step event (a batch is running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)
        if message and json.loads(message["data"])["event"] == "step":
            return True
    return False


def kept_events(run_id):
    return [json.loads(e) for e in redis().lrange(jobs.channel(run_id) + ":log", 0, -1)]


def test_bad_requests_get_a_field_error_and_store_nothing(client, alice, sd1):
    _, key = alice
    version = sd1["versionId"]
    cases = [({"model": version, "prompt": "x", "sampler": "Eulerish"}, "sampler"),
             ({"model": version, "prompt": "x", "width": 100}, "width"),
             ({"model": 987654, "prompt": "x"}, "model"),
             ({"model": version, "prompt": "x", "prompts": ["y"]}, "body"),
             ({"model": version, "prompt": "x", "steps": 0}, "steps"),
             ({"model": version, "prompt": "x", "init_image": "not base64!"}, "init_image"),
             ({"model": version, "prompt": "x", "resources": [{"id": version}]}, "resources"),
             ({"model": version, "prompt": "x", "colour": "red"}, "colour")]
    for body, field in cases:
        answer = submit(client, key, status=400, **body)
        assert answer["error"] and (answer.get("field") or "body") == field, (body, answer)
    assert gen.GenerationRun.select().count() == 0 and gen.GenerationJob.select().count() == 0
    assert client.post("/api/v1/generation", json={"model": version, "prompt": "x"}).status_code == 401


def test_txt2img_run_stores_one_png_per_image_with_its_recipe(client, alice, sd1, worker):
    _, key = alice
    run = submit(client, key, model=sd1["versionId"], prompt="a lighthouse at dusk", negative_prompt="blurry",
                 quantity=3, seed=42, **SMALL)
    assert run["status"] == "Queued" and run["total"] == 3
    run_jobs(worker)
    run = run_of(client, key, run["id"])
    assert run["status"] == "Done" and run["done"] == 3 and run["progress"] == 1.0
    assert [j["seed"] for j in run["jobs"]] == [42, 43, 44]
    pictures = [png(client, key, j["imageUrl"]) for j in run["jobs"]]
    assert all(p.size == (64, 64) for p in pictures)
    assert len({p.tobytes() for p in pictures}) == 3  # a different seed, a different image
    meta = parse_a1111(pictures[1].info["parameters"])
    assert meta["prompt"] == "a lighthouse at dusk" and meta["negativePrompt"] == "blurry"
    assert (meta["seed"], meta["steps"], meta["sampler"], meta["Size"]) == (43, 2, "Euler", "64x64")
    assert meta["Model hash"] == sd1["hashes"]["AutoV2"].lower()
    # each output went through image processing: variants, metadata, resource link, NSFW score
    image = im.Image.get_by_id(run["jobs"][0]["imageId"])
    assert image.status == "Ready" and image.meta["seed"] == 42 and image.nsfw_level > 0
    assert [r.version_id for r in image.resources] == [sd1["versionId"]]
    # alice does not own the checkpoint, and has not posted them: her outputs are hers alone (listed for her)
    version = client.get(f"/api/v1/model-versions/{sd1['versionId']}?nsfw=X").get_json()
    assert version["images"] == [] and version["nsfwLevel"] == 0
    query = f"/api/v1/images?nsfw=X&modelVersionId={sd1['versionId']}"
    listed = client.get(query, headers=auth(key)).get_json()["items"]
    assert sorted(i["id"] for i in listed) == sorted(j["imageId"] for j in run["jobs"])
    assert client.get(query).get_json()["items"] == []
    events = [e["event"] for e in kept_events(run["id"])]
    assert events[0] == "queued" and events[-1] == "done" and events.count("image") == 3


def test_same_request_same_seed_gives_the_same_image(client, alice, sd1, worker):
    _, key = alice
    first = submit(client, key, model=sd1["versionId"], prompt="a red fox", seed=7, **SMALL)
    second = submit(client, key, model=sd1["versionId"], prompt="a red fox", seed=7, **SMALL)
    run_jobs(worker)
    a, b = (png(client, key, run_of(client, key, r["id"])["jobs"][0]["imageUrl"]) for r in (first, second))
    other = submit(client, key, model=sd1["versionId"], prompt="a red fox", seed=8, **SMALL)
    run_jobs(worker)
    c = png(client, key, run_of(client, key, other["id"])["jobs"][0]["imageUrl"])
    pixels = [np.asarray(i, dtype=float) for i in (a, b, c)]
    assert np.abs(pixels[0] - pixels[1]).max() <= 2  # CPU batches may round a row differently
    assert np.abs(pixels[0] - pixels[2]).mean() > 5


def test_redelivered_or_stale_jobs_never_make_a_second_image(client, alice, sd1):
    _, key = alice
    run = submit(client, key, model=sd1["versionId"], prompt="a boat", quantity=2, seed=1, **SMALL)
    job_ids = [j["id"] for j in run["jobs"]]
    # a worker claimed the first job and died: its heartbeat is old
    gen.GenerationJob.update(state="running", claimed_by="dead-worker", heartbeat_at=gen.utcnow().replace(year=2000)
                             ).where(gen.GenerationJob.id == job_ids[0]).execute()
    assert "2 images" in jobs.run_job(job_ids[0])  # reclaimed, and the queued twin joined its batch
    assert jobs.run_job(job_ids[0]) == "already finished"
    assert jobs.run_job(job_ids[1]) == "already finished"
    assert im.Image.select().count() == 2
    assert gen.GenerationRun.get_by_id(run["id"]).status == "Done"


def test_bulk_run_of_twenty_prompts_is_batched_with_distinct_seeds(client, alice, sd1, worker):
    _, key = alice
    prompts = [f"a painting of a {thing}" for thing in ("cat", "dog", "owl", "fox", "elk")] * 4
    run = submit(client, key, model=sd1["versionId"], prompts=prompts, seed=100, **SMALL)
    assert run["total"] == 20
    run_jobs(worker)
    run = run_of(client, key, run["id"])
    assert run["status"] == "Done" and run["done"] == 20
    assert len({j["seed"] for j in run["jobs"]}) == 20
    assert [j["prompt"] for j in run["jobs"]] == prompts
    batches = [e["batch"] for e in kept_events(run["id"]) if e["event"] == "started"]
    assert sum(batches) == 20 and max(batches) > 1  # queued compatible jobs were coalesced


def test_cancel_stops_a_running_batch_and_drops_queued_jobs(client, alice, sd1, worker):
    _, key = alice
    pubsub = redis().pubsub(ignore_subscribe_messages=True)
    run = submit(client, key, model=sd1["versionId"], prompt="a slow one", quantity=12, seed=3,
                 **dict(SMALL, steps=150, width=128, height=128))
    pubsub.subscribe(jobs.channel(run["id"]))
    assert first_step(pubsub, 60), "no step event"
    answer = client.post(f"/api/v1/generation/runs/{run['id']}/cancel", headers=auth(key)).get_json()
    assert answer["status"] == "Cancelled"
    run_jobs(worker)
    run = run_of(client, key, run["id"])
    states = [j["state"] for j in run["jobs"]]
    assert run["status"] == "Cancelled" and "queued" not in states and "running" not in states
    assert states.count("cancelled") >= 1 and run["done"] < 12
    assert "cancelled" in [e["event"] for e in kept_events(run["id"])]


def test_events_stream_replays_then_resumes_after_last_event_id(client, alice, sd1, worker):
    _, key = alice
    run = submit(client, key, model=sd1["versionId"], prompt="a tree", quantity=2, seed=9, **SMALL)
    run_jobs(worker)
    url = f"/api/v1/generation/runs/{run['id']}/events"
    body = client.get(url, headers=auth(key)).get_data(as_text=True)
    blocks = [b for b in body.strip().split("\n\n") if b.startswith("id:")]
    names = [b.split("\n")[1].removeprefix("event: ") for b in blocks]
    assert names[0] == "queued" and names[-1] == "done" and names.count("image") == 2
    second_id = blocks[1].split("\n")[0].removeprefix("id: ")
    rest = client.get(url, headers={**auth(key), "Last-Event-ID": second_id}).get_data(as_text=True)
    assert [b.split("\n")[1] for b in rest.strip().split("\n\n")] == [b.split("\n")[1] for b in blocks[2:]]


def test_img2img_and_inpaint_follow_their_inputs(client, alice, sd1, worker):
    _, key = alice
    source = picture(64, 64, seed=5)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    img2img = submit(client, key, model=sd1["versionId"], prompt="x", seed=1, init_image=b64_png(source),
                     denoising_strength=0.5, **SMALL)
    inpaint = submit(client, key, model=sd1["versionId"], prompt="x", seed=1, init_image=b64_png(source),
                     mask=b64_png(mask), denoising_strength=1.0, **SMALL)
    run_jobs(worker)
    out = png(client, key, run_of(client, key, img2img["id"])["jobs"][0]["imageUrl"])
    assert parse_a1111(out.info["parameters"])["Denoising strength"] == 0.5
    painted = png(client, key, run_of(client, key, inpaint["id"])["jobs"][0]["imageUrl"]).convert("RGB")
    kept = np.abs(np.asarray(painted, float)[:, 40:] - np.asarray(source, float)[:, 40:]).mean()
    changed = np.abs(np.asarray(painted, float)[:, :24] - np.asarray(source, float)[:, :24]).mean()
    assert kept < changed  # the unmasked half stays close to the source


def test_lora_changes_the_output_and_is_recorded(client, alice, sd1, lora_file, worker):
    _, key = alice
    lora = import_model(lora_file, "--publish", "--type", "LORA", "--base-model", "SD 1.5")
    plain = submit(client, key, model=sd1["versionId"], prompt="a cat", seed=11, **SMALL)
    styled = submit(client, key, model=sd1["versionId"], prompt="a cat", seed=11,
                    resources=[{"id": lora["versionId"], "weight": 1.0}], **SMALL)
    run_jobs(worker)
    a, b = (png(client, key, run_of(client, key, r["id"])["jobs"][0]["imageUrl"]) for r in (plain, styled))
    assert a.tobytes() != b.tobytes()
    meta = parse_a1111(b.info["parameters"])
    assert meta["loraHashes"] == {"ink": lora["hashes"]["AutoV2"].lower()}
    assert "<lora:ink:1>" in meta["prompt"]


def test_xyz_grid_makes_every_cell_and_the_labelled_grid(client, alice, sd1, worker):
    _, key = alice
    run = submit(client, key, model=sd1["versionId"], prompt="a house", seed=5, **SMALL,
                 grid={"x": {"field": "steps", "values": [1, 2]},
                       "y": {"field": "sampler", "values": ["Euler", "DDIM"]}})
    assert run["total"] == 4
    run_jobs(worker)
    run = run_of(client, key, run["id"])
    cells = {tuple(j["cell"][:2]): j for j in run["jobs"]}
    assert set(cells) == {(0, 0), (1, 0), (0, 1), (1, 1)}
    assert parse_a1111(png(client, key, cells[(1, 1)]["imageUrl"]).info["parameters"])["sampler"] == "DDIM"
    assert len(run["grids"]) == 1
    grid = png(client, key, run["grids"][0])
    assert grid.width > 2 * 64 and grid.height > 2 * 64  # two columns, two rows, and the labels


def test_cli_generate_queues_follows_and_writes_pngs(alice, sd1_file, worker, tmp_path):
    result = cli("generate", "--model", sd1_file, "--prompt", "a {red|blue} kite", "--count", 3, "--steps", 2,
                 "--width", 64, "--height", 64, "--seed", 5, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "out" / str(gen.GenerationRun.get().id)).glob("*.png"))  # a folder per run
    assert [p.name for p in written] == ["00000-5.png", "00001-6.png", "00002-7.png"]
    prompts = {parse_a1111(Image.open(p).info["parameters"])["prompt"] for p in written}
    assert prompts <= {"a red kite", "a blue kite"}


def test_controlnet_guides_the_output(client, alice, sd1, worker, tmp_path):
    from gpu.demo import write_controlnet
    _, key = alice
    control = import_model(write_controlnet(tmp_path / "edges.safetensors", "SD1"), "--publish",
                           "--type", "Controlnet", "--base-model", "SD 1.5")
    hint = b64_png(picture(64, 64, seed=8))
    plain = submit(client, key, model=sd1["versionId"], prompt="a vase", seed=4, **SMALL)
    guided = submit(client, key, model=sd1["versionId"], prompt="a vase", seed=4, **SMALL,
                    controlnet={"model": control["versionId"], "image": hint, "scale": 1.0})
    run_jobs(worker)
    a, b = (png(client, key, run_of(client, key, r["id"])["jobs"][0]["imageUrl"]) for r in (plain, guided))
    assert a.tobytes() != b.tobytes()
    assert parse_a1111(b.info["parameters"])["ControlNet 0"].startswith("Model: edges")


def test_gpu_worker_killed_mid_batch_the_jobs_are_redelivered_and_each_image_made_once(client, alice, sd1, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path
    _, key = alice
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), JOB_HEARTBEAT_TIMEOUT_S="3",
               JOB_MAINTENANCE_CHANCE="1000000", GPU_MAX_BATCH="4", HF_HUB_OFFLINE="1")

    def gpu_worker(name):
        with open(tmp_path / f"{name}.log", "ab") as log:
            return subprocess.Popen([str(Path(sys.executable).parent / "dramatiq"), "jobs", "--processes", "1",
                                     "--threads", "1", "--queues", "gpu"], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    pubsub = redis().pubsub(ignore_subscribe_messages=True)
    run = submit(client, key, model=sd1["versionId"], prompt="a ship", quantity=4, seed=20, **dict(SMALL, steps=40))
    pubsub.subscribe(jobs.channel(run["id"]))
    first = gpu_worker("first")
    second = None
    try:
        assert first_step(pubsub, 120), (tmp_path / "first.log").read_text()[-2000:]
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        assert gen.GenerationJob.select().where(gen.GenerationJob.state == "running").count() == 4
        second = gpu_worker("second")
        deadline = time.monotonic() + 180
        while gen.GenerationRun.get_by_id(run["id"]).status != "Done" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert gen.GenerationRun.get_by_id(run["id"]).status == "Done", (tmp_path / "second.log").read_text()[-2000:]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    finished = list(gen.GenerationJob.select().where(gen.GenerationJob.run == run["id"]))
    assert [j.state for j in finished] == ["done"] * 4 and all(j.attempts >= 2 for j in finished)
    assert im.Image.select().count() == 4 and len({j.image_id for j in finished}) == 4


def test_flux_demo_checkpoint_from_the_cli_generates_through_the_platform(client, alice, worker, tmp_path):
    _, key = alice
    path = tmp_path / "flux-tiny.safetensors"
    result = cli("demo-checkpoint", "--family", "flux", "--import", path)
    assert result.exit_code == 0, result.output
    version = json.loads(result.stdout)
    assert version["architecture"] == "FLUX1" and version["baseModel"] == "Flux.1 S"
    run = submit(client, key, model=version["versionId"], prompt="a lantern", seed=3, width=64, height=64, steps=2)
    assert run["request"]["model"] == version["versionId"]
    run_jobs(worker)
    run = run_of(client, key, run["id"])
    assert run["status"] == "Done", run["jobs"][0]["error"]
    meta = parse_a1111(png(client, key, run["jobs"][0]["imageUrl"]).info["parameters"])
    assert meta["steps"] == 2 and meta["sampler"] == "Euler" and meta["Size"] == "64x64"


def test_seeds_use_a1111s_whole_range(client, alice, sd1):
    from gpu.request import MAX_SEED
    _, key = alice
    run = submit(client, key, model=sd1["versionId"], prompt="x", seed=MAX_SEED, quantity=2, **SMALL)
    assert run["jobs"][0]["seed"] == MAX_SEED  # beyond a 32-bit signed column
    assert gen.GenerationJob.get_by_id(run["jobs"][0]["id"]).seed == MAX_SEED


def test_orphan_sweep_keeps_queued_inputs_and_grids(client, alice, sd1, worker):
    from jobs.storage import remove_orphan_blobs
    _, key = alice
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    queued = submit(client, key, model=sd1["versionId"], prompt="x", seed=1, init_image=b64_png(picture(64, 64, 5)),
                    mask=b64_png(mask), denoising_strength=1.0, **SMALL)
    inputs = gen.GenerationJob.get(gen.GenerationJob.run == queued["id"]).inputs
    grid = submit(client, key, model=sd1["versionId"], prompt="a house", seed=5, **SMALL,
                  grid={"x": {"field": "steps", "values": [1, 2]}})
    sweep = remove_orphan_blobs.fn.__wrapped__
    assert sweep(grace_s=-1) == 0  # while the jobs wait, with every blob old enough to go
    run_jobs(worker)
    from models_db.storage import get_store
    assert set(inputs) == {"init_image", "mask"} and all(get_store().exists(b) for b in inputs.values())
    assert run_of(client, key, queued["id"])["status"] == "Done"
    grids = run_of(client, key, grid["id"])["grids"]
    assert sweep(grace_s=-1) == 0
    assert png(client, key, grids[0]).width >= 2 * 64


def test_a_hash_names_the_published_copy_even_when_a_draft_copy_is_older(client, alice, bob, sd1_file):
    draft = import_model(sd1_file, "--owner", "bob")  # bob's unpublished copy of the same bytes comes first
    public = import_model(sd1_file, "--publish", "--allow-duplicate")
    assert draft["versionStatus"] == "Draft" and draft["hashes"] == public["hashes"]
    run = submit(client, alice[1], model=public["hashes"]["SHA256"], prompt="x", **SMALL)
    assert {j.model_version_id for j in gen.GenerationJob.select().where(gen.GenerationJob.run == run["id"])} == \
        {public["versionId"]}
