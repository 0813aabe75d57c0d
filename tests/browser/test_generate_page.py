"""The /generate page in a real browser: a big finished run loads in a few requests (paged runs and images,
small image variants), and what the page shows survives a reload."""
from __future__ import annotations

import io
import json

from playwright.sync_api import expect

from models_db import generation as gen
from models_db import images as im
from models_db.accounts import User
from models_db.db import transaction, utcnow
from models_db.storage import get_store
from tests.browser.conftest import sign_up
from tests.factories import png_bytes
from tests.helpers import catalog_model


def blob_of(data: bytes) -> str:
    return get_store().put_stream(io.BytesIO(data))[0]


def finished_run(user, version, total: int, failed: set[int] = frozenset(), prompt="a lighthouse at dusk #{n}"):
    """A run of `total` finished jobs as the GPU worker leaves them: a Ready, private (unposted) catalog image
    per done job (its PNG and its 96 and 450 px variants, as jobs/images.py stores them), a reason per failed
    job."""
    full, small, medium = blob_of(png_bytes(width=512, height=512)), blob_of(png_bytes(width=96, height=96)), \
        blob_of(png_bytes(width=450, height=450))
    with transaction():
        run = gen.GenerationRun.create(user=user, source="web", request_json=json.dumps({"model": version.id,
                                       "prompts": ["a lighthouse"]}), status="Failed" if failed else "Done",
                                       total=total, done=total - len(failed), failed=len(failed), finished_at=utcnow())
        for n in range(total):
            image = None
            if n not in failed:
                image = im.Image.create(user=user, model_version=version, status="Ready", private=True, blob=full,
                                        mime="image/png", width=512, height=512, filename=f"{run.id}-{n}.png",
                                        size_bytes=100)
                im.ImageVariant.insert_many([{"image": image, "width": 96, "blob": small, "mime": "image/png"},
                                             {"image": image, "width": 450, "blob": medium,
                                              "mime": "image/png"}]).execute()
            gen.GenerationJob.create(run=run, index=n, model_version=version, signature="s" * 64,
                                     prompt=prompt.format(n=n), seed=1000 + n, state="failed" if image is None else
                                     "done", image=image, output_blob=full if image else None,
                                     error="out of GPU memory at 4096x4096" if image is None else None,
                                     finished_at=utcnow())
    return run


def test_a_300_image_run_loads_in_few_requests_with_small_variants(page, live_server):
    """The queue with a 300-image run (and 10 older runs): a page of runs, a page of each run's images."""
    sign_up(page, "hana")
    user = User.get(User.username == "hana")
    version = catalog_model(user, "Harbor XL").versions.get()
    older = [finished_run(user, version, 1, prompt=f"an older run {n}") for n in range(10)]
    run = finished_run(user, version, 300, failed={5})
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("/generate", wait_until="load")
    page.wait_for_timeout(1500)  # anything the page asks for after its load event counts too
    elapsed = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    print(f"/generate with a 300-image run: {len(requests)} requests, load event after {elapsed:.0f} ms")
    assert len(requests) <= 60, requests
    assert not [u for u in requests if u.endswith("/image.png")], "full-size PNGs for thumbnails"
    box = page.locator(f"#run-{run.id}")
    thumbs = box.locator(".slot img")
    assert 0 < thumbs.count() < 300
    assert "/width=96/" in thumbs.first.get_attribute("src")
    first = box.locator(".slot").first
    first_image = run.jobs.order_by(gen.GenerationJob.index).first().image_id
    assert first.locator("a").get_attribute("href") == f"/images/{first_image}"
    assert first.locator("figcaption").inner_text() == "a lighthouse at dusk #0"  # bulk runs show each prompt
    assert "out of GPU memory" in box.locator(".slot").nth(5).inner_text()  # the failure's reason, after a load
    with page.expect_response(f"**/api/v1/generation/runs/{run.id}/retry") as retried:
        box.locator("[data-role=retry]").click()
    assert retried.value.status == 202 and retried.value.json()["failed"] == 1
    shown = thumbs.count()
    box.locator("[data-role=more]").click()  # the run's next page of images
    expect(thumbs).to_have_count(shown + 40)  # the next 40, all finished
    assert page.locator("#runs article").count() == 10  # a page of runs: the big one and 9 older ones
    assert page.locator(f"#run-{older[0].id}").count() == 0
    page.click("#older-runs")
    page.locator(f"#run-{older[0].id} .slot img").wait_for()
    assert "/width=450/" in page.locator(f"#run-{older[0].id} .slot img").get_attribute("src")  # a small run
    assert page.locator("#older-runs").is_hidden()


def test_runs_are_deleted_and_finished_ones_cleared_from_the_page(page, live_server):
    sign_up(page, "ines")
    user = User.get(User.username == "ines")
    version = catalog_model(user, "Harbor XL").versions.get()
    first, second, third = (finished_run(user, version, 2, prompt=f"run {n}") for n in range(3))
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto("/generate")
    assert page.locator(f"#run-{third.id} [data-role=zip]").get_attribute("href").endswith(f"/runs/{third.id}/zip")
    page.locator(f"#run-{second.id} [data-role=delete]").click()
    expect(page.locator(f"#run-{second.id}")).to_have_count(0)
    page.reload()
    expect(page.locator("#runs article")).to_have_count(2)
    assert page.locator(f"#run-{second.id}").count() == 0
    page.click("#clear-finished")
    expect(page.locator("#runs article")).to_have_count(0)
    assert page.locator("#no-runs").is_visible()
    page.reload()
    assert page.locator("#runs article").count() == 0
    assert gen.GenerationRun.select().where(gen.GenerationRun.deleted_at.is_null()).count() == 0
