"""The site as people use it, in a real browser: register, browse, filter, search, open a model, download,
publish a model, API keys, generate and cancel."""
import hashlib
import json
import re
from pathlib import Path

import pytest
import requests

from models_db import catalog as c
from models_db import generation as gen
from tests.browser.conftest import shot, showcase, sign_up
from tests.conftest import run_jobs
from tests.factories import A1111_TEXT, picture, safetensors_file
from tests.helpers import catalog_model, import_model, tiny_safetensors


@pytest.fixture
def catalog(bob, worker, live_server):
    user, key = bob
    models = {
        "lighthouse": catalog_model(user, "Lighthouse Dreams", tags=("landscape", "sea"), downloads=420,
                                    description="<p>Moody <b>coastal</b> scenes.</p>",
                                    file_bytes=tiny_safetensors("lighthouse")),
        "neon": catalog_model(user, "Neon Portrait", model_type="LORA", base_model="SDXL 1.0", tags=("portrait",),
                              downloads=90),
        "forest": catalog_model(user, "Forest Spirits", tags=("landscape", "fantasy"), downloads=12),
    }
    autov2 = hashlib.sha256(tiny_safetensors("lighthouse")).hexdigest()[:10]  # the image names its checkpoint
    for n, model in enumerate(models.values()):
        version = model.versions.get()
        showcase(live_server, key, version.id, seed=n, parameters=A1111_TEXT.format(model_hash=autov2))
    c.ModelVersion.update(trained_words_json=json.dumps(["lgthse style"])).where(
        c.ModelVersion.model == models["lighthouse"].id).execute()
    run_jobs(worker)
    return models


def cards(page) -> list[str]:
    return page.locator("#models .card .name").all_inner_texts()


def test_visitor_registers_browses_filters_searches_and_downloads(page, catalog):
    sign_up(page, "carol")
    assert page.locator(".flash.success").inner_text().startswith("Welcome")
    assert sorted(cards(page)) == ["Forest Spirits", "Lighthouse Dreams", "Neon Portrait"]
    page.locator("#models img").first.wait_for()
    shot(page, "catalog-grid")

    page.select_option("#f-type", "LORA")  # filters submit themselves
    page.wait_for_url(re.compile(r"types=LORA"))
    assert cards(page) == ["Neon Portrait"]
    page.goto("/?sort=Most+Downloaded")
    assert cards(page) == ["Lighthouse Dreams", "Neon Portrait", "Forest Spirits"]
    page.click("a.chip:text-is('fantasy')")
    assert cards(page) == ["Forest Spirits"]

    page.fill("#search", "lighth")  # autocomplete from the search engine
    page.locator("#suggestions a", has_text="Lighthouse Dreams").click()  # a suggestion opens its model
    page.wait_for_url(re.compile(r"/models/\d+"))
    assert page.locator("#model-name").inner_text() == "Lighthouse Dreams"
    page.goto("/?query=lighthouse")
    assert cards(page)[0] == "Lighthouse Dreams"

    page.locator("#models .card", has_text="Lighthouse Dreams").click()
    assert page.locator("#model-name").inner_text() == "Lighthouse Dreams"
    assert "coastal" in page.locator("#description").inner_text()
    assert "lgthse style" in page.locator("#trained-words").inner_text()
    version_id = catalog["lighthouse"].versions.get().id
    assert page.locator("#air").inner_text().endswith(f"{catalog['lighthouse'].id}@{version_id}")
    assert "SHA256" in page.locator("#files").inner_text()
    shot(page, "model-page")
    with page.expect_download() as download:
        page.click("#download")
    assert Path(download.value.path()).read_bytes() == tiny_safetensors("lighthouse")

    page.locator("#showcase a").first.click()
    page.wait_for_url(re.compile(r"/images/\d+$"))
    assert page.locator("#prompt").inner_text() == "a lighthouse at dusk, dramatic sky"
    assert page.locator("a", has_text="Lighthouse Dreams").count() == 1  # the checkpoint, found by its hash
    page.click("#copy-generation-data")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("a lighthouse at dusk, dramatic sky\nNegative prompt: blurry, lowres\nSteps: 30")
    shot(page, "image-page")


def test_creator_uploads_publishes_and_drafts_stay_private(page, worker, live_server, tmp_path):
    sign_up(page, "dana")
    page.click("text=Upload")
    page.fill("#name", "Harbor Lights")
    page.select_option("#type", "Checkpoint")
    page.fill("#description", '<p>Safe text</p><script>window.pwned = 1</script>'
                              '<img src="x" onerror="window.pwned = 2">')
    page.fill("#tags", "harbor, night")
    page.fill("#trainedWords", "hrbr")
    page.click("button:text('Create draft')")
    page.wait_for_url(re.compile(r"/models/\d+/manage$"))
    model_id = int(page.url.split("/")[-2])
    assert requests.get(f"{live_server}/models/{model_id}").status_code == 404  # a draft, to anyone else

    upload = safetensors_file(tmp_path / "harbor.safetensors", "SD1", min_bytes=9 << 20)  # two 8 MiB chunks
    page.set_input_files(".file-input", str(upload))
    page.wait_for_selector("tr.file .status.Ready", timeout=60_000)  # uploaded in chunks, hashed, scanned
    picture(320, 400, seed=7).save(tmp_path / "preview.png")
    page.set_input_files(".image-input", str(tmp_path / "preview.png"))
    page.wait_for_selector(".showcase-uploader a")  # the page reloads once the image is posted
    for _ in range(60):  # the worker scans and resizes it
        if page.locator(".showcase-uploader img").count():
            break
        page.wait_for_timeout(500)
        page.reload()
    assert page.locator(".showcase-uploader img").count() == 1
    shot(page, "creator-manage")
    page.click("button.publish")
    page.wait_for_selector("#model-status.Published")
    assert requests.get(f"{live_server}/models/{model_id}").status_code == 200

    page.goto(f"/models/{model_id}")
    assert page.locator("#showcase img").count() == 1
    assert page.locator("#description").inner_text().strip().startswith("Safe text")
    assert page.locator("#description script").count() == 0
    assert page.evaluate("window.pwned") is None
    stored = c.ModelFile.get(c.ModelFile.name == "harbor.safetensors")
    assert stored.size_bytes == upload.stat().st_size and stored.status == "Ready"


def test_api_keys_are_shown_once_work_and_can_be_revoked(page, live_server):
    sign_up(page, "frank")
    page.goto("/account")
    page.fill("#name", "laptop")
    page.select_option("#scope", "write")
    page.click("button:text('Create key')")
    key = page.locator("#new-key-value").inner_text()
    me = requests.get(f"{live_server}/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200 and me.json()["username"] == "frank"
    page.goto("/account")
    assert key not in page.content() and "laptop" in page.locator("#api-keys").inner_text()
    page.click("#api-keys button:text('Revoke')")
    assert "No keys yet" in page.locator("#api-keys").inner_text()
    assert requests.get(f"{live_server}/api/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401


@pytest.fixture(scope="module")
def tiny_sd15(tmp_path_factory):
    from gpu.demo import write_checkpoint
    return write_checkpoint("SD1", tmp_path_factory.mktemp("models") / "tiny-sd15.safetensors", size="tiny")


def test_generation_page_watches_a_run_finish_and_cancels_another(page, worker, tiny_sd15):
    import_model(tiny_sd15, "--publish")
    sign_up(page, "erin")
    page.goto("/generate")
    page.fill("#g-prompt", "a lighthouse at dusk")
    page.select_option("#g-size", "512x512")
    assert page.input_value("#g-width") == "512"
    page.fill("#g-width", "64")  # tiny random-weight model on the CPU: keep it small
    page.fill("#g-height", "64")
    page.fill("#g-steps", "12")
    page.fill("#g-quantity", "3")
    # A tiny model can finish within one poll of the page, and "done" clears the step line, so record
    # every step line the page shows rather than waiting for one to be on screen.
    page.evaluate("""() => { window.stepLines = [];
      new MutationObserver((changes) => { for (const c of changes)
        if (c.target.matches?.("[data-role=step]")) window.stepLines.push(c.target.textContent); })
        .observe(document.querySelector("#runs"), {childList: true, subtree: true}); }""")
    page.click("#g-submit")
    run = page.locator("#runs article").first
    page.wait_for_selector("#runs article[data-status=Done]", timeout=180_000)
    steps = page.evaluate("window.stepLines")
    assert any(line.startswith("step ") and "/12 · batch of" in line for line in steps), steps
    assert run.locator(".slot img").count() == 3
    shot(page, "generation-done")
    first = gen.GenerationRun.select().order_by(gen.GenerationRun.id).first()
    assert first.status == "Done" and first.done == 3

    page.fill("#g-quantity", "30")
    page.fill("#g-steps", "40")  # long enough that the cancel lands while it runs
    page.click("#g-submit")
    page.locator("#runs article[data-status=Running]").wait_for(timeout=120_000)
    shot(page, "generation-mid-run")
    page.locator("#runs article").first.locator("[data-role=cancel]").click()
    page.locator("#runs article[data-status=Cancelled]").wait_for(timeout=60_000)
    second = gen.GenerationRun.select().order_by(gen.GenerationRun.id.desc()).first()
    assert second.status == "Cancelled" and second.done < 30
    page.reload()  # the queue is rendered again from the server
    assert page.locator(f"#run-{second.id}").get_attribute("data-status") == "Cancelled"


def test_generation_page_follows_more_runs_than_one_may_hold_streams(page, configure, tiny_sd15):
    """A tab follows every run of its queue, however many there are, within the user's stream cap."""
    from dramatiq import Worker
    from playwright.sync_api import expect

    from jobs.broker import broker
    configure(STREAM_MAX_PER_USER="2")
    import_model(tiny_sd15, "--publish")
    sign_up(page, "gwen")
    page.goto("/generate")
    page.fill("#g-prompt", "a kite over the dunes")
    page.fill("#g-width", "64")
    page.fill("#g-height", "64")
    page.fill("#g-steps", "2")
    page.fill("#g-quantity", "1")
    runs = 5
    for n in range(1, runs + 1):  # queued, and watched by the page, before any worker runs them
        page.click("#g-submit")
        expect(page.locator("#runs article")).to_have_count(n)
    page.wait_for_timeout(500)
    worker = Worker(broker, worker_threads=1)
    worker.start()
    try:
        expect(page.locator("#runs article[data-status=Done]")).to_have_count(runs, timeout=120_000)
        assert page.locator("#runs article .slot img").count() == runs
    finally:
        worker.stop()
    assert gen.GenerationRun.select().where(gen.GenerationRun.status == "Done").count() == runs
