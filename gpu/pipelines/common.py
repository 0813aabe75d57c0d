"""Generation code shared by the UNet families (SD1, SD2, SDXL): modes, hires fix, ControlNet, seeds, prompt
encoding once per distinct prompt, sampler choice and step progress.

A family module gives a `Family`: its diffusers pipeline class per mode and its prompt encoder. Mode pipelines
are derived from the loaded txt2img pipeline with `from_pipe`, so they share its weights, and are cached.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from PIL import Image

from gpu.pipelines import Item, OnStep, Params
from gpu.samplers import scheduler_for

MODES = ("txt2img", "img2img", "inpaint")


@dataclass(frozen=True)
class Family:
    pipelines: dict  # mode -> diffusers class name
    controlnet_pipelines: dict  # mode -> diffusers class name
    # (pipe, prompts, negatives, params, do_cfg) -> dict of tensors with one row per prompt
    encode: Callable[..., dict]


# --- derived pipelines -------------------------------------------------------------------------------------

class _PipeState:
    def __init__(self, pipe):
        self.scheduler_config = dict(pipe.scheduler.config)  # the model's own, before any sampler change
        self.derived: dict = {}


_states: weakref.WeakKeyDictionary[object, _PipeState] = weakref.WeakKeyDictionary()


def _state(pipe) -> _PipeState:
    state = _states.get(pipe)
    if state is None:
        state = _states[pipe] = _PipeState(pipe)
    return state


def denoiser(pipe):
    """The UNet, or the transformer of FLUX-like pipelines."""
    return pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer


def mode_pipeline(pipe, class_name: str, controlnet=None):
    """`pipe` as a `class_name` pipeline sharing its weights (cached per base pipeline and ControlNet)."""
    import diffusers

    if type(pipe).__name__ == class_name and controlnet is None:
        return pipe
    derived = _state(pipe).derived
    key = (class_name, id(controlnet) if controlnet is not None else None)
    if key not in derived:
        if controlnet is not None:  # keep one ControlNet's pipelines at a time: each holds its weights
            for other in [k for k in derived if k[1] not in (None, key[1])]:
                del derived[other]
        extra = {"controlnet": controlnet} if controlnet is not None else {}
        # from_pipe casts the shared modules to fp32 unless told the dtype: the warm base pipe would change too
        new = getattr(diffusers, class_name).from_pipe(pipe, dtype=denoiser(pipe).dtype, **extra)
        if getattr(pipe, "_offload_device", None) is not None:  # model CPU offload: hook the new pipeline too
            new.enable_model_cpu_offload(device=pipe._offload_device)
        derived[key] = new
    return derived[key]


# --- inputs --------------------------------------------------------------------------------------------------

def _fit(image, width: int, height: int, kind: str = "RGB") -> Image.Image:
    if image is None:
        raise ValueError("this mode needs an image for every item")
    image = image.convert(kind)
    return image if image.size == (width, height) else image.resize((width, height), Image.LANCZOS)


def generators(items: list[Item]) -> list[torch.Generator]:
    """One CPU generator per item: the same seed gives the same image on any device and in any batch."""
    return [torch.Generator("cpu").manual_seed(int(item.seed)) for item in items]


def diffusers_clip_skip(params: Params) -> int | None:
    """A1111 clip skip (1 = last layer) -> diffusers clip_skip (layers skipped; None = last layer)."""
    return params.clip_skip - 1 if params.clip_skip and params.clip_skip > 1 else None


def encode_items(family: Family, pipe, params: Params, items: list[Item], do_cfg: bool) -> dict:
    """Prompt embeddings for every item; the text encoders see each distinct (prompt, negative) pair once."""
    pairs: dict[tuple[str, str], int] = {}
    index = [pairs.setdefault((item.prompt, item.negative_prompt or ""), len(pairs)) for item in items]
    prompts, negatives = [p for p, _ in pairs], [n for _, n in pairs]
    with torch.no_grad():
        encoded = family.encode(pipe, prompts, negatives, params, do_cfg)
    rows = torch.tensor(index)
    return {name: tensor[rows.to(tensor.device)] for name, tensor in encoded.items()}


# --- progress ------------------------------------------------------------------------------------------------

class Progress:
    """Turns diffusers' per-timestep callbacks into on_step(done, total) in sampling steps, over all passes."""

    def __init__(self, on_step: OnStep, total: int):
        self.on_step, self.total, self.done = on_step, total, 0

    def callback(self, pass_steps: int):
        start = self.done

        def on_step_end(pipe, i, t, kwargs):
            # second-order samplers run ~2 timesteps per step: report in steps, each step once
            reached = start + min(pass_steps, (i + 1) * pass_steps // max(1, pipe.num_timesteps))
            while self.done < reached:
                self.done += 1
                self.on_step(self.done, self.total)  # may raise Cancelled: it ends the pipeline call
            return {}

        return on_step_end


def img2img_steps(steps: int, strength: float) -> tuple[int, float, int]:
    """(num_inference_steps, strength, steps actually run); at least one step is always run."""
    strength = min(max(strength, 0.0), 1.0)
    if int(steps * strength) < 1:
        strength = 1.0 / steps
    return steps, strength, min(int(steps * strength), steps)


# --- passes --------------------------------------------------------------------------------------------------

def _is_inpaint_unet(pipe) -> bool:
    return pipe.unet.config.in_channels == 9


def _sampling_pipe(family: Family, pipe, mode: str, controlnet, params: Params, seeds: list[int]):
    table = family.controlnet_pipelines if controlnet is not None else family.pipelines
    target = mode_pipeline(pipe, table[mode], controlnet)
    target.scheduler = scheduler_for(_state(pipe).scheduler_config, params.sampler)
    if hasattr(target.scheduler, "noise_sampler_seed"):  # DPM++ SDE: one Brownian tree per item seed
        target.scheduler.noise_sampler_seed = list(seeds)
    target.set_progress_bar_config(disable=True)
    return target


def _run_pass(family, pipe, params: Params, mode: str, *, embeds: dict, gens, items: list[Item], width: int,
              height: int, steps: int, strength: float, images=None, masks=None, controls=None, controlnet=None,
              progress: Progress) -> list[Image.Image]:
    """One sampling pass over the whole batch; `mode` is what the user asked, routed to a pipeline."""
    inpaint_unet = _is_inpaint_unet(pipe)
    call = dict(embeds, guidance_scale=params.cfg_scale, generator=gens, output_type="pil")
    if mode == "txt2img" and inpaint_unet:
        # A1111's way of txt2img on an inpainting model: everything masked, nothing to keep
        images = [Image.new("RGB", (width, height), (127, 127, 127))] * len(items)
        masks = [Image.new("L", (width, height), 255)] * len(items)
        mode, strength = "inpaint", 1.0
    elif mode == "img2img" and inpaint_unet:
        masks = [Image.new("L", (width, height), 255)] * len(items)
        mode = "inpaint"
    if mode == "txt2img":
        call.update(height=height, width=width, num_inference_steps=steps)
        pass_steps = steps
    else:
        steps, strength, pass_steps = img2img_steps(steps, strength)
        call.update(image=images, strength=strength, num_inference_steps=steps)
        if mode == "inpaint":
            call.update(mask_image=masks, height=height, width=width)
    if controlnet is not None:
        call["controlnet_conditioning_scale"] = params.control_scale
        call["image" if mode == "txt2img" else "control_image"] = controls
    target = _sampling_pipe(family, pipe, mode, controlnet, params, [item.seed for item in items])
    call["callback_on_step_end"] = progress.callback(pass_steps)
    return target(**call).images


def _pass_steps(mode: str, steps: int, strength: float) -> int:
    return steps if mode == "txt2img" else img2img_steps(steps, strength)[2]


def hires_size(params: Params) -> tuple[int, int]:
    """The second pass's size: width x height times hires_scale, down to multiples of 8."""
    scale = params.hires_scale or 1.0
    return int(params.width * scale) // 8 * 8, int(params.height * scale) // 8 * 8


def run(family: Family, pipe, params: Params, items: list[Item], on_step: OnStep, controlnet=None,
        apply_resources: Callable | None = None) -> list[Image.Image]:
    """Generate one image per item, in order. Cancelled from on_step ends the batch (and is re-raised)."""
    if params.mode not in MODES:
        raise ValueError(f"unknown mode {params.mode!r}; one of: {', '.join(MODES)}")
    if not items:
        return []
    hires = bool(params.hires_scale) and params.hires_scale != 1
    if hires and params.mode != "txt2img":
        raise ValueError("hires fix is a txt2img option")
    if apply_resources is not None:  # a ControlNet given by the caller (its cache) is not loaded again
        loaded = apply_resources(pipe, params if controlnet is None else replace(params, controlnet=None))
        controlnet = controlnet if controlnet is not None else loaded.get("controlnet")
    if params.controlnet is None:
        controlnet = None
    elif controlnet is None:
        raise ValueError("params.controlnet is set but no ControlNet model was loaded")
    w, h = params.width, params.height
    images = masks = controls = None
    if params.mode in ("img2img", "inpaint"):
        images = [_fit(item.init_image, w, h) for item in items]
    if params.mode == "inpaint":
        masks = [_fit(item.mask, w, h, "L") for item in items]
    if controlnet is not None:
        controls = [_fit(item.control_image, w, h) for item in items]
    hires_w, hires_h = hires_size(params)
    hires_steps = params.hires_steps or params.steps
    total = _pass_steps(params.mode, params.steps, params.denoising_strength) + \
        (_pass_steps("img2img", hires_steps, params.denoising_strength) if hires else 0)
    progress = Progress(on_step, total)
    do_cfg = params.cfg_scale > 1 and pipe.unet.config.get("time_cond_proj_dim") is None
    embeds = encode_items(family, pipe, params, items, do_cfg)
    gens = generators(items)
    # Cancelled raised by on_step leaves the pipeline call at once and propagates from here
    out = _run_pass(family, pipe, params, params.mode, embeds=embeds, gens=gens, items=items, width=w,
                    height=h, steps=params.steps, strength=params.denoising_strength, images=images,
                    masks=masks, controls=controls, controlnet=controlnet, progress=progress)
    if hires:
        upscaled = [image.resize((hires_w, hires_h), Image.LANCZOS) for image in out]
        big_controls = [c.resize((hires_w, hires_h), Image.LANCZOS) for c in controls] if controls else None
        out = _run_pass(family, pipe, params, "img2img", embeds=embeds, gens=gens, items=items,
                        width=hires_w, height=hires_h, steps=hires_steps, strength=params.denoising_strength,
                        images=upscaled, controls=big_controls, controlnet=controlnet, progress=progress)
    if params.mode == "inpaint":  # keep the unmasked pixels exactly, as A1111 does
        out = [pipe.image_processor.apply_overlay(mask, image, result)
               for mask, image, result in zip(masks, images, out)]
    return out


def apply_resources(pipe, params: Params) -> dict:
    """Make exactly this batch's LoRAs and textual inversions active on `pipe` (and load its ControlNet when
    params.controlnet is still set); the one call site of gpu/pipelines/loading.py's resource handling."""
    from gpu.pipelines import loading
    return loading.apply_resources(pipe, params, pipe._execution_device, pipe.dtype) or {}
