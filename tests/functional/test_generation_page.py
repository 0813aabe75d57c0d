"""The /generate page's ways in over the real app: links with junk still open the form, and "Remix" never
reads the generation data of an image the viewer may not see."""
import json
import re

from models_db import images as im
from tests.conftest import make_user
from tests.factories import A1111_TEXT
from tests.functional.test_web_pages import log_in


def form_config(client, query: str) -> dict:
    page = client.get(f"/generate?{query}")
    assert page.status_code == 200, (query, page.status_code)
    found = re.search(r'<script type="application/json" id="gen-config">(.*?)</script>', page.get_data(as_text=True),
                      re.S)
    return json.loads(found[1])


def test_links_with_junk_open_an_empty_form(client):
    user, _ = make_user("pia")
    log_in(client, user)
    for query in ("remix=abc", "remix=0", "remix=99999999999999999999999", "model=-1", "lora=1", "model=1&lora=x",
                  "remix=1e5", "lora=%F0%9F%92%A9"):
        assert form_config(client, query)["prefill"] is None


def test_remix_reads_only_images_the_viewer_may_see(client):
    owner, _ = make_user("pia")
    other, _ = make_user("quin")
    meta = json.dumps({"prompt": "a secret garden", "seed": 7, "steps": 20})
    pending = im.Image.create(user=owner, status="Pending", meta_json=meta)
    private = im.Image.create(user=owner, status="Ready", private=True, meta_json=meta, mime="image/png")
    ready = im.Image.create(user=owner, status="Ready", meta_json=meta, width=64, height=48, mime="image/png")
    log_in(client, other)
    assert form_config(client, f"remix={pending.id}")["prefill"] is None
    assert form_config(client, f"remix={private.id}")["prefill"] is None  # an unposted output
    assert "secret garden" not in client.get(f"/generate?remix={pending.id}").get_data(as_text=True)
    assert form_config(client, f"remix={ready.id}")["prefill"]["prompt"] == "a secret garden"
    log_in(client, owner)
    assert form_config(client, f"remix={pending.id}")["prefill"]["seed"] == 7
    assert form_config(client, f"remix={private.id}")["prefill"]["seed"] == 7


def test_remix_splits_a1111_lora_tags_and_schedule_types(client):
    from gpu.png_meta import parse_a1111
    user, _ = make_user("pia")
    text = A1111_TEXT.format(model_hash="0123456789").replace("dramatic sky", "dramatic sky <lora:ink:0.6>")
    image = im.Image.create(user=user, status="Ready", meta_json=json.dumps(parse_a1111(text)), mime="image/png")
    log_in(client, user)
    prefill = form_config(client, f"remix={image.id}")["prefill"]
    assert prefill["prompt"] == "a lighthouse at dusk, dramatic sky"
    assert (prefill["sampler"], prefill["steps"], prefill["seed"]) == ("DPM++ 2M Karras", 30, 1234)
    assert (prefill["width"], prefill["height"]) == (64, 48)
    assert prefill["model"] is None  # no catalog version has that hash
