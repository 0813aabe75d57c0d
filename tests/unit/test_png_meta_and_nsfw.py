import json

import pytest

from gpu import nsfw
from gpu.png_meta import format_a1111, parse_a1111, parse_comfyui


def test_a1111_round_trip():
    params = {"Steps": 30, "Sampler": "DPM++ 2M", "CFG scale": 7.5, "Seed": 42, "Size": "512x768",
              "Model hash": "6ce0161689", "Model": "dreamshaper_8",
              "Lora hashes": "detail: 62bb1a2d5a, ink: 0a2b3c4d5e"}
    text = format_a1111("a cat, (masterpiece:1.2)\nsecond line", "blurry, lowres", params)
    assert 'Lora hashes: "detail: 62bb1a2d5a, ink: 0a2b3c4d5e"' in text
    meta = parse_a1111(text)
    assert meta["prompt"] == "a cat, (masterpiece:1.2)\nsecond line"
    assert meta["negativePrompt"] == "blurry, lowres"
    assert (meta["steps"], meta["sampler"], meta["cfgScale"], meta["seed"]) == (30, "DPM++ 2M", 7.5, 42)
    assert meta["Model hash"] == "6ce0161689" and meta["Size"] == "512x768"
    assert meta["loraHashes"] == {"detail": "62bb1a2d5a", "ink": "0a2b3c4d5e"}


def test_prompt_only_text():
    assert parse_a1111("just a prompt") == {"prompt": "just a prompt"}


def test_comfyui_graph():
    graph = {"3": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 20, "cfg": 6.5, "sampler_name": "euler",
                                                        "scheduler": "normal", "positive": ["6", 0],
                                                        "negative": ["7", 0]}},
             "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
             "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 768}},
             "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox"}},
             "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark"}}}
    meta = parse_comfyui(json.dumps(graph), json.dumps({"nodes": []}))
    assert (meta["prompt"], meta["negativePrompt"], meta["seed"], meta["steps"], meta["cfgScale"]) == (
        "a red fox", "watermark", 7, 20, 6.5)
    assert meta["Model"] == "sdxl.safetensors" and meta["Size"] == "1024x768" and meta["workflow"] == {"nodes": []}


@pytest.mark.parametrize("detections,expected", [
    ([], (nsfw.PG, False)),
    ([{"class": "FACE_FEMALE", "score": 0.9}], (nsfw.PG, False)),
    ([{"class": "BELLY_EXPOSED", "score": 0.7}], (nsfw.PG13, False)),
    ([{"class": "FEMALE_BREAST_COVERED", "score": 0.8}], (nsfw.R, False)),
    ([{"class": "FEMALE_BREAST_EXPOSED", "score": 0.8}, {"class": "BELLY_EXPOSED", "score": 0.9}], (nsfw.X, False)),
    ([{"class": "MALE_GENITALIA_EXPOSED", "score": 0.55}], (nsfw.XXX, False)),
    ([{"class": "BUTTOCKS_EXPOSED", "score": 0.4}], (nsfw.PG, True)),  # unsure: goes to review
    ([{"class": "BELLY_EXPOSED", "score": 0.4}], (nsfw.PG, False)),
])
def test_label_to_level_mapping(detections, expected):
    assert nsfw.level_for(detections) == expected


def test_real_detector_runs_offline_on_a_generated_image():
    import io

    from tests.factories import picture
    out = io.BytesIO()
    picture(320, 320).save(out, "PNG")
    found = nsfw.detect([out.getvalue()])
    assert isinstance(found, list) and len(found) == 1
    assert nsfw.level_for(found[0])[0] == nsfw.PG
