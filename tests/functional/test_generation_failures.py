"""Generation that can never work: refused at submission where the catalog and the file headers can tell,
otherwise failed at once on the GPU worker with a one-line reason, and counted as a failed job everywhere
operators look (Prometheus, `atelier jobs failed`, the Operations page)."""
import io
import re
import time

import pytest
import torch

from jobs import generation as jobs
from models_db import generation as gen
from models_db.redis_store import client as redis
from tests.conftest import make_user, run_jobs
from tests.factories import picture
from tests.functional.test_generation import b64_png
from tests.functional.test_web_pages import log_in
from tests.helpers import auth, cli, import_model

SMALL = {"width": 64, "height": 64, "steps": 2, "sampler": "Euler"}


def wide_lora(folder, suffix: str):
    """An SD 1.5 LoRA for a model twice as wide as the tiny checkpoint (as a real SD 1.5 LoRA is for it)."""
    from safetensors.torch import load_file, save_file

    from gpu.demo import write_lora
    state = load_file(str(write_lora(folder / "narrow.safetensors", "SD1")))
    g = torch.Generator().manual_seed(5)
    for key, value in state.items():
        if key.endswith(".lora_down.weight"):
            state[key] = torch.randn(value.shape[0], value.shape[1] * 2, generator=g)
        elif key.endswith(".lora_up.weight"):
            state[key] = torch.randn(value.shape[0] * 2, value.shape[1], generator=g)
    path = folder / f"wide{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def submit(client, key, **body):
    return client.post("/api/v1/generation", json=body, headers=auth(key))


def test_loras_whose_tensors_do_not_fit_the_checkpoint_are_refused_at_submission(client, alice, sd1, tmp_path):
    from gpu.demo import write_controlnet, write_lora
    _, key = alice
    wide = import_model(wide_lora(tmp_path, ".safetensors"), "--publish", "--type", "LORA", "--base-model", "SD 1.5")
    xl = import_model(write_lora(tmp_path / "xl.safetensors", "SDXL"), "--publish", "--type", "LORA",
                      "--base-model", "SD 1.5")  # mislabelled: an SDXL LoRA
    for lora, name in ((wide, "wide"), (xl, "xl")):
        response = submit(client, key, model=sd1["versionId"], prompt="a cat", **SMALL,
                          resources=[{"id": lora["versionId"], "weight": 1}])
        answer = response.get_json()
        assert response.status_code == 400 and answer["field"] == "resources", answer
        assert name in answer["error"] and "does not fit" in answer["error"], answer
    control = import_model(write_controlnet(tmp_path / "edges-xl.safetensors", "SDXL"), "--publish", "--type",
                           "Controlnet", "--base-model", "SD 1.5")  # mislabelled: an SDXL ControlNet
    response = submit(client, key, model=sd1["versionId"], prompt="a cat", **SMALL,
                      controlnet={"model": control["versionId"], "image": b64_png(picture(64, 64, seed=1))})
    answer = response.get_json()
    assert response.status_code == 400 and answer["field"] == "controlnet", answer
    assert "edges-xl does not fit" in answer["error"], answer
    assert gen.GenerationRun.select().count() == 0
    narrow = import_model(write_lora(tmp_path / "narrow.safetensors", "SD1"), "--publish", "--type", "LORA",
                          "--base-model", "SD 1.5")
    assert submit(client, key, model=sd1["versionId"], prompt="a cat", **SMALL,
                  resources=[{"id": narrow["versionId"], "weight": 1}]).status_code == 202


@pytest.fixture
def doomed_run(client, alice, sd1, tmp_path):
    """A run of two images with a LoRA whose shapes cannot be read before the GPU worker loads it (a
    pickled .pt file has no header to look at)."""
    _, key = alice
    lora = import_model(wide_lora(tmp_path, ".pt"), "--publish", "--type", "LORA", "--base-model", "SD 1.5")
    response = submit(client, key, model=sd1["versionId"], prompt="a cat", quantity=2, seed=1, **SMALL,
                      resources=[{"id": lora["versionId"], "weight": 1}])
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def test_a_generation_that_can_never_work_fails_at_once_with_a_one_line_reason(client, alice, doomed_run, worker):
    _, key = alice
    run_jobs(worker)
    run = client.get(f"/api/v1/generation/runs/{doomed_run['id']}", headers=auth(key)).get_json()
    assert (run["status"], run["done"], run["failed"]) == ("Failed", 0, 2)
    for job in run["jobs"]:
        assert job["state"] == "failed"
        assert "\n" not in job["error"] and len(job["error"]) <= 300, job["error"]
        assert "LoRA wide does not fit the checkpoint" in job["error"] and "size mismatch" in job["error"], job
    assert [j.attempts for j in gen.GenerationJob.select()] == [1, 1]  # never retried
    events = [e["event"] for e in jobs_events(doomed_run["id"])]
    assert events[-1] == "failed" and "image" not in events


def jobs_events(run_id):
    import json
    return [json.loads(e) for e in redis().lrange(jobs.channel(run_id) + ":log", 0, -1)]


def job_counter(client, outcome: str) -> float:
    pattern = re.compile(r'^atelier_job_messages_total\{(?=[^}]*actor="generate")(?=[^}]*outcome="%s")[^}]*\} (\S+)$'
                         % outcome, re.M)
    return sum(float(v) for v in pattern.findall(client.get("/metrics").get_data(as_text=True)))


def test_a_failed_image_is_a_failed_job_for_operators(client, doomed_run, worker):
    before = {outcome: job_counter(client, outcome) for outcome in ("failed", "retried", "dead")}
    run_jobs(worker)
    deadline = time.monotonic() + 5  # the worker's metrics buffer writes a few times a second
    while job_counter(client, "dead") < before["dead"] + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job_counter(client, "failed") == before["failed"] + 2  # one per image, as the failure-ratio alert reads
    assert job_counter(client, "dead") == before["dead"] + 2
    assert job_counter(client, "retried") == before["retried"]
    listing = [line for line in cli("jobs", "failed").stdout.splitlines() if " generate " in line]
    assert len(listing) == 1 and "LoRA wide does not fit the checkpoint" in listing[0], listing  # one per run
    assert f"2 images of run {doomed_run['id']}" in listing[0], listing
    admin, _ = make_user("olga", role="admin")
    log_in(client, admin)
    html = client.get("/operations").get_data(as_text=True)
    assert html.count("LoRA wide does not fit the checkpoint") == 1
    assert gen.GenerationRun.get_by_id(doomed_run["id"]).status == "Failed"


def lose_blob(blob: str) -> bytes:
    """Deletes a stored blob (as a lost disk or a hand clean-up would); returns its bytes to restore."""
    from models_db.storage import get_store
    with get_store().open(blob) as f:
        data = f.read()
    get_store().delete(blob)
    return data


def lora_of(run_id: int) -> str:
    job = gen.GenerationJob.get(gen.GenerationJob.run == run_id)
    return job.params["loras"][0]["blob"]


def img2img_run(client, key, sd1, tmp_path, **body):
    response = submit(client, key, model=sd1["versionId"], prompt="x", seed=1, denoising_strength=0.5,
                      init_image=b64_png(picture(64, 64, seed=5)), **SMALL, **body)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def lora_run(client, key, sd1, tmp_path, **body):
    from gpu.demo import write_lora
    lora = import_model(write_lora(tmp_path / "narrow.safetensors", "SD1"), "--publish", "--type", "LORA",
                        "--base-model", "SD 1.5")
    return img2img_run(client, key, sd1, tmp_path, resources=[{"id": lora["versionId"], "weight": 1}], **body)


def init_image_of(run_id: int) -> str:
    return gen.GenerationJob.get(gen.GenerationJob.run == run_id).inputs["init_image"]


@pytest.mark.parametrize("make_run, blob_of, named", [(img2img_run, init_image_of, "init image"),
                                                      (lora_run, lora_of, "narrow")])
def test_a_job_whose_input_file_is_gone_from_the_store_fails_at_once(client, alice, sd1, worker, tmp_path,
                                                                     make_run, blob_of, named):
    _, key = alice
    run_id = make_run(client, key, sd1, tmp_path)
    lose_blob(blob_of(run_id))
    run_jobs(worker)
    run = client.get(f"/api/v1/generation/runs/{run_id}", headers=auth(key)).get_json()
    assert (run["status"], run["done"], run["failed"]) == ("Failed", 0, 1), run
    error = run["jobs"][0]["error"]
    assert "\n" not in error and named in error and "missing from the store" in error, error
    assert [j.attempts for j in gen.GenerationJob.select()] == [1]  # never retried
    assert jobs_events(run_id)[-1]["event"] == "failed"


def test_retrying_a_failed_generation_from_operations_makes_the_image_once_its_file_is_back(
        client, alice, sd1, worker, tmp_path):
    from models_db.images import Image
    from models_db.storage import get_store
    _, key = alice
    run_id = lora_run(client, key, sd1, tmp_path)
    lora = lose_blob(lora_of(run_id))
    run_jobs(worker)
    job = gen.GenerationJob.get(gen.GenerationJob.run == run_id)
    assert job.state == "failed"
    jobs.generate.send(job.id)  # a second delivery of the failed job's message: dead as well
    run_jobs(worker)
    get_store().put_stream(io.BytesIO(lora))  # an operator restores the file
    from jobs.queues import failed
    dead = [item["id"] for item in failed()]
    assert len(dead) == 2
    assert "requeued 1 job(s)" in cli("jobs", "failed", "retry", dead[0]).stdout
    run_jobs(worker)
    run = client.get(f"/api/v1/generation/runs/{run_id}", headers=auth(key)).get_json()
    assert (run["status"], run["done"], run["failed"]) == ("Done", 1, 0), run
    assert run["jobs"][0]["state"] == "done" and run["jobs"][0]["error"] is None, run
    assert client.get(run["jobs"][0]["imageUrl"], headers=auth(key)).status_code == 200
    assert jobs_events(run_id)[-1]["event"] == "done"
    # the other dead message is for a job that is no longer failed: retrying it from the page changes nothing
    admin, _ = make_user("olga", role="admin")
    log_in(client, admin)
    page = client.get("/operations").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    retry = re.search(r'action="(/operations/failed/[^"]+/retry)"', page).group(1)
    assert client.post(retry, data={"csrf_token": csrf}, follow_redirects=True).status_code == 200
    run_jobs(worker)
    assert failed() == []
    assert gen.GenerationJob.get_by_id(job.id).state == "done" and Image.select().count() == 1
    assert gen.GenerationRun.get_by_id(run_id).status == "Done"


def test_a_failed_run_is_one_entry_of_the_failed_list_and_retried_as_one(client, alice, sd1, worker, tmp_path):
    from models_db.storage import get_store
    from tests.functional import ops_actors
    _, key = alice
    run_id = lora_run(client, key, sd1, tmp_path, quantity=3)
    lora = lose_blob(lora_of(run_id))
    run_jobs(worker)
    ops_actors.always_fails.send("beside")  # another actor's failure stays in sight
    run_jobs(worker)
    listing = [line for line in cli("jobs", "failed").stdout.splitlines()]
    assert len(listing) == 2, listing
    assert f"3 images of run {run_id}" in listing[1] and "narrow's file missing" in listing[1], listing
    admin, _ = make_user("olga", role="admin")
    log_in(client, admin)
    page = client.get("/operations").get_data(as_text=True)
    assert page.count("narrow&#39;s file missing") == 1 and "broken on purpose (beside)" in page
    assert f"3 images of run {run_id}" in page
    get_store().put_stream(io.BytesIO(lora))
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    retry = re.search(r'action="(/operations/failed/runs/%d/retry)"' % run_id, page).group(1)
    assert client.post(retry, data={"csrf_token": csrf}).status_code == 302
    run_jobs(worker)
    run = client.get(f"/api/v1/generation/runs/{run_id}", headers=auth(key)).get_json()
    assert (run["status"], run["done"], run["failed"]) == ("Done", 3, 0), run
    assert [line.split()[2] for line in cli("jobs", "failed").stdout.splitlines()] == ["always_fails"]
