"""Running SD1 / SDXL pipelines (tiny random-weight models of the real architectures), samplers and the torch
backend. 64x64 images, 2-4 steps."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from gpu import demo
from gpu.pipelines import Cancelled, Item, ModelRef, Params, Resource, sd, sdxl
from gpu.samplers import SAMPLER_NAMES, SAMPLERS, canonical_name, scheduler_for

BASE = Params(width=64, height=64, steps=3, sampler="Euler a", cfg_scale=7.0)


def px(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


def diff(a, b) -> float:
    return float(np.abs(px(a) - px(b)).mean())


def run(module, pipe, items, on_step=None, **params):
    return module.run(pipe, dataclasses.replace(BASE, **params), items, on_step or (lambda done, total: None))


@pytest.fixture(scope="module")
def sd1():
    return demo.build_pipeline("SD1", "tiny")


@pytest.fixture(scope="module")
def xl():
    return demo.build_pipeline("SDXL", "tiny")


@pytest.fixture(scope="module")
def init_image():
    image = Image.new("RGB", (64, 64), (230, 30, 30))
    image.paste((20, 20, 220), (0, 0, 32, 64))
    return image


# --- samplers ------------------------------------------------------------------------------------------------

def test_sampler_table_answers_like_a1111():
    names = [s["name"] for s in SAMPLERS]
    for name in ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE", "DPM++ SDE Karras",
                 "DPM++ 2M SDE", "DDIM", "UniPC", "LMS", "Heun", "DPM2", "DPM2 a", "LCM"):
        assert name in names and name in SAMPLER_NAMES
    euler_a = next(s for s in SAMPLERS if s["name"] == "Euler a")
    assert euler_a["aliases"] == ["k_euler_a", "k_euler_ancestral"] and isinstance(euler_a["options"], dict)
    assert canonical_name("k_dpmpp_2m_ka") == "DPM++ 2M Karras" and canonical_name("euler A") == "Euler a"


def test_sampler_names_map_to_schedulers(sd1):
    config = sd1.scheduler.config
    assert type(scheduler_for(config, "Euler a")).__name__ == "EulerAncestralDiscreteScheduler"
    karras = scheduler_for(config, "DPM++ 2M Karras")
    assert type(karras).__name__ == "DPMSolverMultistepScheduler" and karras.config.use_karras_sigmas
    # a Karras config handed back in does not leak into the plain sampler
    assert not scheduler_for(karras.config, "DPM++ 2M").config.use_karras_sigmas
    assert scheduler_for(config, "DPM++ 2M SDE").config.algorithm_type == "sde-dpmsolver++"
    assert scheduler_for(config, "DDIM").config.prediction_type == config.prediction_type


def test_unknown_sampler_lists_the_valid_names(sd1):
    with pytest.raises(ValueError, match="unknown sampler 'Euler b'.*DPM\\+\\+ 2M Karras"):
        scheduler_for(sd1.scheduler.config, "Euler b")


def test_flow_matching_models_sample_with_flow_match_euler():
    from diffusers import FlowMatchEulerDiscreteScheduler
    config = FlowMatchEulerDiscreteScheduler(shift=3.0).config
    made = scheduler_for(config, "Euler")
    assert isinstance(made, FlowMatchEulerDiscreteScheduler) and made.config.shift == 3.0


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_every_sampler_runs_two_steps(sd1, name):
    calls = []
    image, = run(sd, sd1, [Item("a lighthouse", seed=5)], lambda d, t: calls.append(d), steps=2, sampler=name)
    assert image.size == (64, 64) and calls == [1, 2]


# --- seeds, batching, prompts --------------------------------------------------------------------------------

@pytest.mark.parametrize("module,pipe", [(sd, "sd1"), (sdxl, "xl")])
def test_seed_decides_the_image(request, module, pipe):
    pipe = request.getfixturevalue(pipe)
    a, b, c = run(module, pipe, [Item("a cat", seed=1), Item("a cat", seed=1), Item("a cat", seed=2)])
    assert np.abs(px(a) - px(b)).max() <= 2  # rows of one CPU batch may round differently
    assert diff(a, c) > 5
    again, = run(module, pipe, [Item("a cat", seed=1)])
    assert np.abs(px(again) - px(a)).max() <= 2


@pytest.mark.parametrize("module,pipe", [(sd, "sd1"), (sdxl, "xl")])
def test_batching_does_not_change_results(request, module, pipe):
    pipe = request.getfixturevalue(pipe)
    items = [Item("a cat", seed=11), Item("a dog", "blurry", seed=12), Item("a cat", seed=13)]
    batched = run(module, pipe, items)
    alone = [run(module, pipe, [item])[0] for item in items]
    for one, other in zip(batched, alone):
        assert np.abs(px(one) - px(other)).max() <= 3
    assert diff(batched[0], batched[2]) > 5


def test_text_encoder_sees_each_distinct_prompt_once(sd1):
    calls = []
    hook = sd1.text_encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        run(sd, sd1, [Item("same prompt", seed=s) for s in range(4)], steps=2)
        assert calls == [2]  # one pass: the prompt and the negative, for four items
        calls.clear()
        run(sd, sd1, [Item("one", seed=1), Item("two", seed=2), Item("one", seed=3), Item("two", seed=4)], steps=2)
        assert calls == [4]  # two distinct (prompt, negative) pairs, still one pass
    finally:
        hook.remove()


def test_clip_skip_changes_the_image(sd1):
    items = [Item("a cat", seed=3)]
    assert diff(run(sd, sd1, items, clip_skip=1)[0], run(sd, sd1, items, clip_skip=2)[0]) > 1


def test_sdxl_ignores_clip_skip_like_a1111(xl):
    items = [Item("a cat", seed=3)]
    assert diff(run(sdxl, xl, items, clip_skip=1)[0], run(sdxl, xl, items, clip_skip=2)[0]) == 0


# --- progress and cancelling ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["Euler a", "Heun"])  # Heun runs two model calls per step
def test_on_step_reports_every_step(sd1, sampler):
    calls = []
    run(sd, sd1, [Item("x", seed=1), Item("y", seed=2)], lambda d, t: calls.append((d, t)), steps=4, sampler=sampler)
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancel_stops_the_batch(sd1):
    calls = []

    def on_step(done, total):
        calls.append(done)
        if done == 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        run(sd, sd1, [Item("x", seed=1)], on_step, steps=4)
    assert calls == [1, 2]


# --- modes ---------------------------------------------------------------------------------------------------

def _reconstruction(pipe, image):
    """The init image as the (random) VAE sees it: decode(encode(image))."""
    with torch.no_grad():
        latents = pipe.vae.encode(pipe.image_processor.preprocess(image)).latent_dist.mode()
        return pipe.image_processor.postprocess(pipe.vae.decode(latents).sample)[0]


@pytest.mark.parametrize("module,pipe", [(sd, "sd1"), (sdxl, "xl")])
def test_img2img_follows_the_init_image(request, module, pipe, init_image):
    pipe = request.getfixturevalue(pipe)
    target = _reconstruction(pipe, init_image)
    txt, = run(module, pipe, [Item("a", seed=4)], steps=10, sampler="Euler")
    calls = []
    low = [run(module, pipe, [Item("a", seed=s, init_image=init_image)], lambda d, t: calls.append((d, t)),
               mode="img2img", steps=10, denoising_strength=0.1, sampler="Euler")[0] for s in range(3)]
    high = [run(module, pipe, [Item("a", seed=s, init_image=init_image)], mode="img2img", steps=10,
                denoising_strength=1.0, sampler="Euler")[0] for s in range(3)]
    assert diff(low[0], txt) > 5
    assert np.mean([diff(i, target) for i in low]) < np.mean([diff(i, target) for i in high]) - 2
    assert calls[-1] == (1, 1)  # 10 steps at strength 0.1 run one step


@pytest.mark.parametrize("module,pipe", [(sd, "sd1"), (sdxl, "xl")])
def test_inpaint_keeps_unmasked_pixels(request, module, pipe, init_image):
    pipe = request.getfixturevalue(pipe)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))  # repaint the right half
    out, = run(module, pipe, [Item("a", seed=1, init_image=init_image, mask=mask)], mode="inpaint",
               denoising_strength=0.9)
    assert np.abs(px(out)[:, :32] - px(init_image)[:, :32]).max() <= 1
    assert np.abs(px(out)[:, 32:] - px(init_image)[:, 32:]).mean() > 10


def test_inpainting_unet_serves_every_mode(sd1, init_image):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config({**sd1.unet.config, "in_channels": 9})
    pipe = StableDiffusionPipeline(**{**sd1.components, "unet": unet})
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    item = Item("a", seed=1, init_image=init_image, mask=mask)
    txt, = run(sd, pipe, [item])
    img, = run(sd, pipe, [item], mode="img2img", denoising_strength=0.5)
    inp, = run(sd, pipe, [item], mode="inpaint")
    assert txt.size == img.size == inp.size == (64, 64)
    assert np.abs(px(inp)[:, :32] - px(init_image)[:, :32]).max() <= 1
    assert diff(txt, img) > 1


@pytest.mark.parametrize("module,pipe", [(sd, "sd1"), (sdxl, "xl")])
def test_hires_fix_makes_the_scaled_size(request, module, pipe):
    pipe = request.getfixturevalue(pipe)
    calls = []
    out, = run(module, pipe, [Item("a", seed=1)], lambda d, t: calls.append((d, t)), steps=2, hires_scale=1.5,
               hires_steps=4, denoising_strength=0.5)
    assert out.size == (96, 96)
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]  # 2 first-pass steps + 4 x 0.5 second-pass steps


def test_hires_fix_is_txt2img_only(sd1, init_image):
    with pytest.raises(ValueError, match="txt2img"):
        run(sd, sd1, [Item("a", init_image=init_image)], mode="img2img", hires_scale=2)


# --- ControlNet ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def controlnet(sd1):
    from diffusers import ControlNetModel
    torch.manual_seed(1)
    downsamples = len(sd1.vae.config.block_out_channels) - 1  # the conditioning image is brought to latent size
    model = ControlNetModel.from_unet(sd1.unet, conditioning_embedding_out_channels=(16,) * (downsamples + 1))
    with torch.no_grad():  # real ControlNets are trained away from their zero convolutions; make this one act
        for module in [*model.controlnet_down_blocks, model.controlnet_mid_block]:
            module.weight.normal_(0, 0.3)
        for weight in model.controlnet_cond_embedding.parameters():
            weight.normal_(0, 0.5)
    return model


def test_controlnet_guides_every_mode(sd1, controlnet, init_image):
    control = Resource("controlnet", "unused", "cn-sha", "canny")
    edges = Image.new("RGB", (64, 64))
    edges.paste((255, 255, 255), (20, 0, 24, 64))
    item = Item("a", seed=1, init_image=init_image, mask=Image.new("L", (64, 64), 255), control_image=edges)
    plain, = run(sd, sd1, [item])
    guided, = sd.run(sd1, dataclasses.replace(BASE, controlnet=control), [item], lambda d, t: None, controlnet)
    other, = sd.run(sd1, dataclasses.replace(BASE, controlnet=control),
                    [dataclasses.replace(item, control_image=init_image)], lambda d, t: None, controlnet)
    assert diff(plain, guided) > 1 and diff(guided, other) > 1
    for mode in ("img2img", "inpaint"):
        out, = sd.run(sd1, dataclasses.replace(BASE, mode=mode, controlnet=control), [item], lambda d, t: None,
                      controlnet)
        assert out.size == (64, 64)
    # the derived pipelines share the base weights
    from gpu.pipelines.common import mode_pipeline
    assert mode_pipeline(sd1, "StableDiffusionControlNetPipeline", controlnet).unet is sd1.unet


# --- torch backend -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    return {name: ModelRef("SD1", str(demo.write_checkpoint("SD1", folder / f"{name}.safetensors", seed=seed)),
                           sha256=name * 8, name=name) for name, seed in (("a", 0), ("b", 1))}


def test_backend_generates_and_keeps_pipelines_warm(checkpoints):
    from gpu.backends.torch_backend import TorchBackend
    backend = TorchBackend(device="cpu", dtype="auto", optimizations=("channels_last",))
    assert backend.dtype == torch.float32
    first = backend.load(checkpoints["a"])
    assert backend.load(checkpoints["a"]) is first and first.bytes > 0
    images = backend.generate(checkpoints["a"], dataclasses.replace(BASE, steps=2),
                              [Item("a", seed=1), Item("b", seed=2)], lambda d, t: None)
    assert [i.size for i in images] == [(64, 64)] * 2
    assert backend.max_batch(checkpoints["a"], BASE) == backend.batch_cap


def test_backend_lru_evicts_by_bytes(checkpoints):
    from gpu.backends.torch_backend import TorchBackend
    backend = TorchBackend(device="cpu", optimizations=())
    backend.cache_bytes = backend.load(checkpoints["a"]).bytes + 1  # room for one pipeline
    backend.load(checkpoints["b"])
    assert [loaded.model.name for loaded in backend.cached()] == ["b"]
    backend.release()
    assert backend.cached() == []


def test_backend_turns_cuda_oom_into_out_of_memory(checkpoints):
    from gpu.backends import OutOfMemory
    from gpu.backends.torch_backend import TorchBackend

    def on_step(done, total):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(OutOfMemory, match="2 images of 64x64"):
        TorchBackend(device="cpu", optimizations=()).generate(
            checkpoints["a"], BASE, [Item("a"), Item("b")], on_step)


def test_backend_settings_are_checked():
    from gpu.backends import get_backend
    from gpu.backends.torch_backend import TorchBackend, per_image_bytes
    with pytest.raises(ValueError, match="unknown GPU_OPTIMIZATIONS warp"):
        TorchBackend(device="cpu", optimizations=("warp",))
    with pytest.raises(ValueError, match="GPU_DTYPE"):
        TorchBackend(device="cpu", dtype="fp8")
    with pytest.raises(RuntimeError, match="tensorrt extra"):
        get_backend("tensorrt")
    big = dataclasses.replace(BASE, width=1024, height=1024)
    assert per_image_bytes("SDXL", big, torch.float32) == pytest.approx(
        2 * per_image_bytes("SDXL", big, torch.float16), abs=2)
    assert per_image_bytes("SD1", dataclasses.replace(BASE, hires_scale=2.0), torch.float16) == pytest.approx(
        4 * per_image_bytes("SD1", BASE, torch.float16), abs=4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_backend_on_cuda_matches_batches_and_plans_batches(checkpoints):
    from gpu.backends.torch_backend import TorchBackend
    backend = TorchBackend(device="auto", dtype="auto", optimizations=("channels_last", "vae_tiling"))
    assert backend.device.type == "cuda" and backend.dtype == torch.float16
    items = [Item("a", seed=1), Item("b", seed=2), Item("a", seed=3)]
    batched = backend.generate(checkpoints["a"], BASE, items, lambda d, t: None)
    alone = backend.generate(checkpoints["a"], BASE, items[1:2], lambda d, t: None)[0]
    assert np.abs(px(batched[1]) - px(alone)).max() <= 3
    big = dataclasses.replace(BASE, width=1024, height=1024)
    assert 1 <= backend.max_batch(checkpoints["a"], big) <= backend.batch_cap
