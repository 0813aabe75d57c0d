"""The A1111-compatible /sdapi/v1 subset, driven by the unmodified `webuiapi` client over real HTTP, with
a real Dramatiq worker generating with a tiny random-weight SD1 checkpoint."""

import pytest
import requests
import webuiapi

from gpu.png_meta import parse_a1111
from models_db import generation as gen
from tests.factories import picture
from tests.helpers import import_model


@pytest.fixture
def api(live_server, alice, sd1_file, worker):
    user, key = alice
    import_model(sd1_file, "--publish", "--owner", user.username)
    return webuiapi.WebUIApi(baseurl=f"{live_server}/sdapi/v1", username=user.username, password=key,
                             sampler="Euler a", steps=2)


def test_txt2img_answers_like_a1111(api, sd1_file):
    result = api.txt2img(prompt="a lighthouse at dusk", negative_prompt="blurry", seed=1234, width=64, height=64,
                         steps=2, batch_size=2, cfg_scale=6)
    assert len(result.images) == 2 and all(i.size == (64, 64) for i in result.images)
    info = result.info
    assert info["all_seeds"] == [1234, 1235] and info["seed"] == 1234
    assert info["sampler_name"] == "Euler a" and info["steps"] == 2 and info["cfg_scale"] == 6
    meta = parse_a1111(info["infotexts"][0])
    assert meta["prompt"] == "a lighthouse at dusk" and meta["negativePrompt"] == "blurry" and meta["seed"] == 1234
    assert result.images[0].info["parameters"] == info["infotexts"][0]
    assert gen.GenerationRun.get().source == "sdapi"


def test_models_options_samplers_and_progress(api, sd1_file):
    models = api.get_sd_models()
    assert len(models) == 1 and models[0]["title"] == f"tiny-sd15.safetensors [{models[0]['sha256'][:10]}]"
    api.util_set_model("tiny-sd15")
    assert api.util_get_current_model() == models[0]["title"]
    names = [s["name"] for s in api.get_samplers()]
    assert {"Euler a", "DPM++ 2M Karras", "DDIM", "UniPC"} <= set(names)
    progress = api.get_progress()
    assert progress["progress"] == 0 and progress["state"]["job_count"] == 0
    assert api.interrupt() == {}


def test_img2img_and_errors(api, live_server, alice):
    result = api.img2img(images=[picture(64, 64, seed=2)], prompt="a tree", seed=5, width=64, height=64,
                         steps=2, denoising_strength=0.5)
    assert len(result.images) == 1
    assert parse_a1111(result.info["infotexts"][0])["Denoising strength"] == 0.5
    _, key = alice
    bad = requests.post(f"{live_server}/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": "Nope", "steps": 2},
                        auth=(alice[0].username, key))
    assert bad.status_code == 422 and "sampler" in bad.json()["detail"]
    anonymous = requests.post(f"{live_server}/sdapi/v1/txt2img", json={"prompt": "x"})
    assert anonymous.status_code == 401
