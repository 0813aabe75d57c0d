"""FLUX.1 end to end on tiny random-weight models of the real architecture: file -> pipeline -> images."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import settings
from gpu import flux_demo
from gpu.checkpoints import inspect_safetensors
from gpu.pipelines import Cancelled, Item, ModelRef, Params, Resource
from gpu.pipelines import flux

FAST = dict(width=64, height=64, steps=2)


def model_ref(path) -> ModelRef:
    return ModelRef(family="FLUX1", path=str(path), sha256="0" * 64, name=path.name)


def run(pipe, items, on_step=lambda done, total: None, **params):
    return flux.run(pipe, Params(**{**FAST, **params}), items, on_step)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux")
    return {"schnell": flux_demo.write_checkpoint(root / "flux-tiny-schnell.safetensors"),
            "dev": flux_demo.write_checkpoint(root / "flux-tiny-dev.safetensors", variant="dev", seed=3)}


@pytest.fixture(scope="module")
def pipe(files):
    return flux.load(model_ref(files["schnell"]), "cpu", torch.float32)


@pytest.fixture
def env(monkeypatch):
    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        settings.reload()
    yield set_env
    monkeypatch.undo()
    settings.reload()


def test_checkpoint_is_flux_and_loads_back_the_same_weights(files, pipe):
    info = inspect_safetensors(files["schnell"])
    assert info.architecture == "FLUX1"
    assert info.details["metadata"]["modelspec.architecture"] == "flux-1-schnell"
    fresh = flux_demo.build_pipeline(size="tiny", variant="schnell", seed=0)
    for part in flux_demo.COMPONENTS:
        loaded, built = getattr(pipe, part).state_dict(), getattr(fresh, part).state_dict()
        assert loaded.keys() == built.keys()
        assert all(torch.equal(loaded[k], built[k]) for k in built), part
    assert pipe.text_encoder_2.encoder.embed_tokens.weight is pipe.text_encoder_2.shared.weight
    assert not pipe.transformer.config.guidance_embeds
    assert pipe.scheduler.config.shift == 1.0 and not pipe.scheduler.config.use_dynamic_shifting


def test_txt2img_is_deterministic_per_seed(pipe):
    images = run(pipe, [Item("a red fox", seed=1), Item("a red fox", seed=2), Item("a red fox", seed=1)])
    assert [im.size for im in images] == [(64, 64)] * 3
    assert np.array_equal(pixels(images[0]), pixels(images[2]))
    assert not np.array_equal(pixels(images[0]), pixels(images[1]))
    alone = run(pipe, [Item("a red fox", seed=2)])[0]  # a seed gives the same image in any batch
    assert np.abs(pixels(alone) - pixels(images[1])).max() <= 1


def test_text_encoders_run_once_for_items_sharing_a_prompt(pipe):
    calls = {"text_encoder": 0, "text_encoder_2": 0}
    hooks = [getattr(pipe, name).register_forward_hook(lambda *a, name=name: calls.__setitem__(name, calls[name] + 1))
             for name in calls]
    try:
        run(pipe, [Item("same prompt", seed=s) for s in range(3)])
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"text_encoder": 1, "text_encoder_2": 1}


def test_progress_per_step_and_cancel(pipe):
    seen = []
    run(pipe, [Item("steps")], on_step=lambda done, total: seen.append((done, total)), steps=3)
    assert seen == [(1, 3), (2, 3), (3, 3)]

    def cancel_after_first(done, total):
        seen.append(done)
        if done == 1:
            raise Cancelled()
    seen.clear()
    with pytest.raises(Cancelled):
        run(pipe, [Item("steps")], on_step=cancel_after_first, steps=3)
    assert seen == [1]


def test_img2img_and_inpaint(pipe):
    init = Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))).convert("RGB")
    seen = []
    out = run(pipe, [Item("a fox", seed=5, init_image=init)], mode="img2img", steps=4, denoising_strength=0.5,
              on_step=lambda done, total: seen.append((done, total)))[0]
    assert out.size == (64, 64) and seen == [(1, 2), (2, 2)]
    assert not np.array_equal(pixels(out), pixels(init))
    stronger = run(pipe, [Item("a fox", seed=5, init_image=init)], mode="img2img", steps=4,
                   denoising_strength=1.0)[0]
    assert not np.array_equal(pixels(out), pixels(stronger))

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    painted = run(pipe, [Item("a fox", seed=5, init_image=init, mask=mask)], mode="inpaint", steps=4,
                  denoising_strength=0.9)[0]
    assert painted.size == (64, 64)
    with pytest.raises(ValueError, match="mask"):
        run(pipe, [Item("a fox", init_image=init)], mode="inpaint")


def test_hires_second_pass(pipe):
    seen = []
    out = run(pipe, [Item("wide", seed=1)], steps=2, hires_scale=2.0, denoising_strength=0.5,
              on_step=lambda done, total: seen.append((done, total)))[0]
    assert out.size == (128, 128)
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_dev_uses_guidance_and_schnell_ignores_it(files, pipe):
    dev = flux.load(model_ref(files["dev"]), "cpu", torch.float32)
    assert dev.transformer.config.guidance_embeds and dev.scheduler.config.use_dynamic_shifting
    low, high = (run(dev, [Item("a fox", seed=1)], cfg_scale=c)[0] for c in (1.0, 9.0))
    assert not np.array_equal(pixels(low), pixels(high))
    low, high = (run(pipe, [Item("a fox", seed=1)], cfg_scale=c)[0] for c in (1.0, 9.0))
    assert np.array_equal(pixels(low), pixels(high))


def test_diffusers_folder_and_t5_tokenizer_setting(tmp_path, pipe, env):
    folder = tmp_path / "flux-folder"
    pipe.save_pretrained(folder)
    expected = run(pipe, [Item("a fox", seed=4)])[0]
    from_folder = flux.load(model_ref(folder), "cpu", torch.float32)
    assert np.array_equal(pixels(run(from_folder, [Item("a fox", seed=4)])[0]), pixels(expected))

    shutil.rmtree(folder / "tokenizer_2")
    with pytest.raises(ValueError, match="T5_TOKENIZER_DIR"):
        flux.load(model_ref(folder), "cpu", torch.float32)
    env(T5_TOKENIZER_DIR=str(flux_demo.demo_t5_tokenizer_dir()))
    from_setting = flux.load(model_ref(folder), "cpu", torch.float32)
    assert np.array_equal(pixels(run(from_setting, [Item("a fox", seed=4)])[0]), pixels(expected))


def bfl_transformer_file(path):
    """Tensor names of the original BFL layout (values are irrelevant: loading must stop before reading them)."""
    names = ["img_in.weight", "txt_in.weight", "time_in.in_layer.weight", "vector_in.in_layer.weight",
             "double_blocks.0.img_attn.qkv.weight", "double_blocks.0.txt_attn.qkv.weight",
             "single_blocks.0.linear1.weight", "single_blocks.0.linear2.weight", "final_layer.linear.weight"]
    save_file({name: torch.zeros(2, 2) for name in names}, str(path))
    return path


def test_bfl_transformer_file_needs_components_and_t5_tokenizer(tmp_path, pipe, env):
    path = bfl_transformer_file(tmp_path / "flux1-schnell.safetensors")
    assert inspect_safetensors(path).architecture == "FLUX1"
    env(FLUX_COMPONENTS_DIR="", T5_TOKENIZER_DIR="")
    with pytest.raises(ValueError, match="FLUX_COMPONENTS_DIR"):
        flux.load(model_ref(path), "cpu", torch.float32)

    components = tmp_path / "components"
    pipe.save_pretrained(components)
    shutil.rmtree(components / "tokenizer_2")
    env(FLUX_COMPONENTS_DIR=str(components))
    with pytest.raises(ValueError, match="T5_TOKENIZER_DIR"):
        flux.load(model_ref(path), "cpu", torch.float32)


def test_lora_changes_the_image_and_switches_off(tmp_path, files):
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(7)
    transformer = FluxTransformer2DModel.from_config(flux_demo.read_config("flux1-tiny", "transformer"))
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                       init_lora_weights=False))
    FluxPipeline.save_lora_weights(tmp_path, transformer_lora_layers=get_peft_model_state_dict(transformer),
                                   weight_name="style.safetensors")
    assert inspect_safetensors(tmp_path / "style.safetensors").architecture == "LoRA"
    lora = Resource(kind="lora", path=str(tmp_path / "style.safetensors"), sha256="ab" * 32, name="style")

    pipe = flux.load(model_ref(files["schnell"]), "cpu", torch.float32)
    base = pixels(run(pipe, [Item("a fox", seed=1)])[0])
    with_lora = pixels(run(pipe, [Item("a fox", seed=1)], loras=(lora,))[0])
    assert not np.array_equal(base, with_lora)
    half = pixels(run(pipe, [Item("a fox", seed=1)], loras=(Resource(**{**lora.__dict__, "weight": 0.5}),))[0])
    assert not np.array_equal(half, with_lora) and not np.array_equal(half, base)
    assert np.array_equal(pixels(run(pipe, [Item("a fox", seed=1)])[0]), base)


def test_vae_override_from_a_diffusers_folder(tmp_path, files, pipe):
    dev = flux.load(model_ref(files["dev"]), "cpu", torch.float32)
    dev.vae.save_pretrained(tmp_path / "vae")
    ref = ModelRef(family="FLUX1", path=str(files["schnell"]), sha256="0" * 64,
                   vae=Resource(kind="vae", path=str(tmp_path / "vae"), sha256="1" * 64, name="dev-vae"))
    swapped = flux.load(ref, "cpu", torch.float32)
    expected = dev.vae.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in swapped.vae.state_dict().items())
    assert not torch.equal(swapped.vae.decoder.conv_out.weight, pipe.vae.decoder.conv_out.weight)


def test_half_precision_pipeline_stays_half_in_img2img(files):
    pipe = flux.load(model_ref(files["schnell"]), "cpu", torch.bfloat16)
    init = Image.new("RGB", (64, 64), (120, 30, 200))
    out = run(pipe, [Item("a fox", init_image=init)], mode="img2img", steps=2, denoising_strength=0.5)[0]
    assert out.size == (64, 64)
    assert {getattr(pipe, part).dtype for part in flux_demo.COMPONENTS} == {torch.bfloat16}
