"""The generation form in a real browser, against the real app and worker with a tiny SD 1.5 model on the
CPU: img2img with a mask painted by mouse, a hires-fix run, an X/Y grid run, "Remix" from an image page and
"Generate with this model" from a LoRA's page."""
from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import requests
from PIL import Image as PILImage
from playwright.sync_api import expect

from models_db import generation as gen
from models_db import images as im
from models_db.accounts import User
from models_db.catalog import ModelVersion
from tests.browser.conftest import shot, showcase, sign_up
from tests.browser.test_generate_page import finished_run
from tests.conftest import run_jobs
from tests.factories import picture
from tests.helpers import auth, catalog_model, tiny_safetensors

DONE = "#runs article[data-status=Done]"


def small_form(page, prompt: str, steps: int = 2) -> None:
    page.goto("/generate")
    page.fill("#g-prompt", prompt)
    page.fill("#g-width", "64")  # a tiny random-weight model on the CPU: keep it small
    page.fill("#g-height", "64")
    page.fill("#g-steps", str(steps))
    page.fill("#g-quantity", "1")


def latest_run() -> gen.GenerationRun:
    return gen.GenerationRun.select().order_by(gen.GenerationRun.id.desc()).get()


def decoded(blob: str) -> PILImage.Image:
    from models_db.storage import get_store
    with get_store().open(blob) as f:
        return PILImage.open(io.BytesIO(f.read()))


def test_img2img_with_a_mask_painted_by_mouse(page, worker, sd1, tmp_path):
    sign_up(page, "ivy")
    small_form(page, "a red door")
    picture(64, 64, seed=3).save(tmp_path / "start.png")
    page.click("#g-img2img-box summary")
    page.set_input_files("#g-init-file", str(tmp_path / "start.png"))
    canvas = page.locator("#g-mask-canvas")
    canvas.wait_for()
    assert page.input_value("#g-width") == "64" and page.input_value("#g-height") == "64"
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 4, box["y"] + 4)  # a stroke across the top left quarter
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4, steps=8)
    page.mouse.up()
    page.fill("#g-denoise", "0.6")
    page.evaluate("""() => { window.stepLines = [];
      new MutationObserver((changes) => { for (const c of changes)
        if (c.target.matches?.("[data-role=step]")) window.stepLines.push(c.target.textContent); })
        .observe(document.querySelector("#runs"), {childList: true, subtree: true, characterData: true}); }""")
    from jobs.generation import backend
    backend().release()  # cold: the page says the model is loading before the first step
    page.click("#g-submit")
    page.wait_for_selector(DONE, timeout=180_000)
    assert page.locator(f"{DONE} .slot img").count() == 1
    shot(page, "generation-inpaint")
    run = latest_run()
    job = run.jobs.get()
    assert run.status == "Done" and job.state == "done"
    assert json.loads(run.request_json)["denoising_strength"] == 0.6
    mask = decoded(job.inputs["mask"]).convert("L")
    assert mask.size == (64, 64)
    assert mask.getpixel((10, 10)) > 200 and mask.getpixel((60, 60)) < 50  # painted, and not
    assert decoded(job.inputs["init_image"]).size == (64, 64)
    assert "Denoising strength: 0.6" in decoded(job.output_blob).info["parameters"]
    assert "loading model…" in page.evaluate("window.stepLines")


def test_hires_and_xy_grid_runs_from_the_form(page, worker, sd1):
    sign_up(page, "jack")
    small_form(page, "a kite")
    page.click("#g-hires-box summary")
    page.check("#g-hires")
    page.fill("#g-hires-scale", "1.5")
    page.fill("#g-hires-steps", "1")
    page.click("#g-submit")
    page.wait_for_selector(DONE, timeout=180_000)
    hires = latest_run()
    assert hires.status == "Done"
    assert decoded(hires.jobs.get().output_blob).size == (96, 96)  # 64 × 1.5

    page.uncheck("#g-hires")
    page.click("#g-grid-box summary")
    page.select_option("#g-grid-x-field", "steps")
    page.fill("#g-grid-x-values", "1, 2")
    page.select_option("#g-grid-y-field", "cfg_scale")
    page.fill("#g-grid-y-values", "5-7 (+2)")
    page.click("#g-submit")
    expect(page.locator(DONE)).to_have_count(2, timeout=180_000)
    grid = latest_run()
    assert grid.id != hires.id and grid.total == 4 and grid.done == 4
    assert sorted(json.loads(j.cell_json)[:2] for j in grid.jobs) == [[0, 0], [0, 1], [1, 0], [1, 1]]
    page.wait_for_selector(f"#run-{grid.id} .grids img", timeout=60_000)  # the assembled grid, shown
    assert json.loads(gen.GenerationRun.get_by_id(grid.id).grid_blobs)
    shot(page, "generation-grid")


def test_a_queued_run_is_in_view_without_scrolling(page, sd1):
    sign_up(page, "otto")
    user = User.get(User.username == "otto")
    version = ModelVersion.get_by_id(sd1["versionId"])
    for n in range(8):  # a long queue, read down to its older runs
        finished_run(user, version, 4, prompt=f"older {n}")
    small_form(page, "a new one")
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    page.click("#g-submit")
    new = page.locator("#runs article").first
    expect(new).to_contain_text("a new one")
    expect(new.locator("header")).to_be_in_viewport(ratio=1)


def test_an_empty_prompt_is_refused_and_the_form_is_remembered(page, sd1, live_server, alice, configure):
    configure(GENERATION_DAILY_IMAGES="3")
    sign_up(page, "kim")
    small_form(page, "   ")
    page.fill("#g-negative", "fog")
    page.click("#g-submit")
    assert "Write a prompt" in page.locator("#g-error").inner_text()
    assert gen.GenerationRun.select().count() == 0
    answer = requests.post(f"{live_server}/api/v1/generation", headers=auth(alice[1]),
                           json={"model": sd1["versionId"], "prompt": " "})
    assert answer.status_code == 400 and answer.json()["field"] == "prompt"
    page.fill("#g-prompt", "a harbor")
    page.fill("#g-quantity", "5")  # over the day's 3 images: the answer says when to try again
    page.click("#g-submit")
    expect(page.locator("#g-error")).to_contain_text("try again in")
    assert gen.GenerationRun.select().count() == 0
    page.reload()
    assert page.input_value("#g-negative") == "fog" and page.input_value("#g-steps") == "2"
    assert page.input_value("#g-width") == "64"


def test_remix_fills_the_form_and_a_lora_page_opens_it_with_a_checkpoint(
        page, worker, sd1, sd1_file, bob, live_server):
    user, key = bob
    lora = catalog_model(user, "Ink Lines", model_type="LORA", file_bytes=tiny_safetensors("ink"))
    lora_hash = hashlib.sha256(tiny_safetensors("ink")).hexdigest()[:10]
    model_hash = hashlib.sha256(Path(sd1_file).read_bytes()).hexdigest()[:10]
    text = ("a lighthouse at dusk <lora:ink:0.6>\nNegative prompt: blurry\nSteps: 17, Sampler: DPM++ 2M, "
            "Schedule type: Karras, CFG scale: 6.5, Seed: 4242, Size: 64x48, "
            f'Model hash: {model_hash}, Model: tiny, Lora hashes: "ink: {lora_hash}", Version: v1.10.1')
    showcase(live_server, key, lora.versions.get().id, seed=1, parameters=text)
    run_jobs(worker)
    image = im.Image.select().order_by(im.Image.id.desc()).get()
    assert image.status == "Ready"

    sign_up(page, "lena")
    page.goto(f"/images/{image.id}")
    page.click("#remix")
    page.wait_for_url("**/generate")
    assert page.input_value("#g-prompt") == "a lighthouse at dusk"
    assert page.input_value("#g-negative") == "blurry"
    assert page.input_value("#g-seed") == "4242"
    assert page.input_value("#g-steps") == "17"
    assert page.input_value("#g-cfg") == "6.5"
    assert page.input_value("#g-sampler") == "DPM++ 2M Karras"
    assert page.input_value("#g-model") == str(sd1["versionId"])
    assert (page.input_value("#g-width"), page.input_value("#g-height")) == ("64", "48")
    chip = page.locator("#g-loras .chip")
    assert chip.count() == 1 and "Ink Lines" in chip.inner_text() and "0.6" in chip.inner_text()
    shot(page, "generation-remix")

    page.goto(f"/models/{lora.id}")
    page.click("#generate-with")
    page.wait_for_url("**/generate")
    assert page.input_value("#g-model") == str(sd1["versionId"])  # a checkpoint the LoRA fits
    assert "Ink Lines" in page.locator("#g-loras").inner_text()
    assert page.locator("#g-lora option", has_text="Ink Lines").count() == 1  # offered: it fits SD 1.5


def test_the_lora_picker_offers_only_loras_that_fit_and_search_finds_any_checkpoint(page, worker, sd1, bob):
    user, _ = bob
    catalog_model(user, "Ink Lines", model_type="LORA", file_bytes=tiny_safetensors("ink"))
    catalog_model(user, "Neon XL", model_type="LORA", base_model="SDXL 1.0", file_bytes=tiny_safetensors("neon"))
    harbor = catalog_model(user, "Harbor XL", base_model="SDXL 1.0", file_bytes=tiny_safetensors("harbor"))
    run_jobs(worker)  # the search index
    sign_up(page, "mona")
    page.goto(f"/models/{sd1['modelId']}")
    page.click("#generate-with")  # a checkpoint's page opens the form with it chosen
    page.wait_for_url("**/generate")  # loaded: the page's script has filled the form
    assert page.input_value("#g-model") == str(sd1["versionId"])
    options = page.locator("#g-lora option").all_inner_texts()
    assert any("Ink Lines" in o for o in options) and not any("Neon XL" in o for o in options)
    page.fill("#g-lora-search", "neon")  # found by the search, and still not offered for an SD 1.5 checkpoint
    page.wait_for_timeout(800)
    assert not any("Neon XL" in o for o in page.locator("#g-lora option").all_inner_texts())
    assert "512" in page.locator("#g-family").inner_text()
    assert page.input_value("#g-steps") == "25"  # SD 1.5's real defaults, not placeholders
    assert page.input_value("#g-sampler") == "DPM++ 2M Karras"

    page.fill("#g-model-search", "harbor")  # search as one types: the checkpoint found is chosen
    expect(page.locator("#g-model")).to_have_value(str(harbor.versions.get().id))
    assert page.input_value("#g-width") == "1024" and page.input_value("#g-steps") == "30"  # SDXL's defaults
    assert any("Neon XL" in o for o in page.locator("#g-lora option").all_inner_texts())  # now it fits
    assert not any("Ink Lines" in o for o in page.locator("#g-lora option").all_inner_texts())


def test_the_form_sends_style_vae_controlnet_wildcards_and_combinations(page, sd1, bob, tmp_path):
    user, _ = bob
    vae = catalog_model(user, "Clear VAE", model_type="VAE", file_bytes=tiny_safetensors("vae")).versions.get()
    control = catalog_model(user, "Edges", model_type="Controlnet", file_bytes=tiny_safetensors("cn")).versions.get()
    cards = catalog_model(user, "Colors", model_type="Wildcards", file_bytes=tiny_safetensors("wc")).versions.get()
    sign_up(page, "nora")
    small_form(page, "a __color__ {kite|boat}")
    page.select_option("#g-style", "Watercolor")
    page.select_option("#g-vae", str(vae.id))
    page.fill("#g-clip", "2")
    page.click("#g-controlnet-box summary")
    page.select_option("#g-controlnet", str(control.id))
    page.click("#g-submit")  # no control image yet: refused in the page
    assert "control image" in page.locator("#g-error").inner_text()
    picture(64, 64, seed=5).save(tmp_path / "edges.png")
    page.set_input_files("#g-control-file", str(tmp_path / "edges.png"))
    page.fill("#g-control-scale", "0.7")
    page.click("#g-prompts-box summary")
    page.select_option("#g-wildcards", [str(cards.id)])
    page.check("#g-combinatorial")
    with page.expect_request(lambda r: r.url.endswith("/api/v1/generation") and r.method == "POST") as sent:
        page.click("#g-submit")
    body = sent.value.post_data_json
    assert body["prompt"] == "a __color__ {kite|boat}" and body["style"] == "Watercolor"
    assert body["vae"] == vae.id and body["clip_skip"] == 2 and body["combinatorial"] is True
    assert body["wildcards"] == [cards.id]
    assert body["controlnet"]["model"] == control.id and body["controlnet"]["scale"] == 0.7
    assert base64.b64decode(body["controlnet"]["image"].split(",", 1)[1]) == (tmp_path / "edges.png").read_bytes()
    assert "init_image" not in body and "hires" not in body and "grid" not in body
