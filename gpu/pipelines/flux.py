"""FLUX.1 (schnell and dev): loading the three file layouts and running one batch.

Layouts: a diffusers FLUX folder; a transformer-only single file in the original BFL layout (double_blocks.* /
single_blocks.*) whose text encoders and VAE come from FLUX_COMPONENTS_DIR; our all-in-one demo file (diffusers
names under transformer./vae./text_encoder./text_encoder_2. and metadata "atelier.config").
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

import settings
from gpu import configs
from gpu.pipelines import Item, ModelRef, OnStep, Params
from gpu.pipelines.common import mode_pipeline

GUIDANCE_KEYS = ("guidance_in.in_layer.weight", "time_text_embed.guidance_embedder.linear_1.weight")
DEMO_CONFIGS = ("flux1-tiny", "flux1-schnell", "flux1-dev")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


# ---- loading ----

def load(model: ModelRef, device, dtype):
    """A FluxPipeline (txt2img) on `device` for a diffusers folder or a .safetensors FLUX file."""
    from gpu.pipelines.loading import unusable
    dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    path = Path(model.path)
    with unusable(f"checkpoint {model.name}"):
        pipe = _load_folder(path, dtype) if path.is_dir() else _load_file(path, dtype)
    if model.vae is not None:
        with unusable(f"VAE {model.vae.name}"):
            pipe.vae = _load_vae(Path(model.vae.path), dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _load_file(path: Path, dtype):
    from gpu.checkpoints import read_safetensors_header
    if not path.name.endswith(".safetensors"):
        raise ValueError(f"{path.name}: FLUX checkpoints are read from .safetensors files only")
    header, metadata = read_safetensors_header(path)
    if metadata.get("atelier.config") or any(k.startswith("transformer.") for k in header):
        return _load_all_in_one(path, set(header), metadata, dtype)
    return _load_transformer_file(path, set(header), dtype)


def t5_tokenizer(folder: Path | None = None):
    """The T5 tokenizer from T5_TOKENIZER_DIR, else None when `folder` (a diffusers FLUX folder) has its own."""
    from transformers import T5Tokenizer
    configured = settings.get().t5_tokenizer_dir
    if configured:
        if not Path(configured).is_dir():
            raise ValueError(f"T5_TOKENIZER_DIR={configured} is not a folder")
        return T5Tokenizer.from_pretrained(configured, local_files_only=True)
    if folder is not None and (folder / "tokenizer_2").is_dir():
        return None
    where = f" and {folder} has no tokenizer_2 folder" if folder is not None else ""
    raise ValueError("FLUX needs a T5 tokenizer: set T5_TOKENIZER_DIR to a folder holding spiece.model (or "
                     f"tokenizer.json), e.g. the tokenizer_2 folder of black-forest-labs/FLUX.1-schnell{where}")


def _tokenizer_overrides(folder: Path) -> dict:
    from gpu.tokenizers import clip_tokenizer
    out = {}
    if not (folder / "tokenizer").is_dir():
        out["tokenizer"] = clip_tokenizer()
    t5 = t5_tokenizer(folder)
    if t5 is not None:
        out["tokenizer_2"] = t5
    return out


def _load_folder(folder: Path, dtype):
    from diffusers import FluxPipeline
    return FluxPipeline.from_pretrained(str(folder), dtype=dtype, local_files_only=True,
                                        **_tokenizer_overrides(folder))


def _load_transformer_file(path: Path, keys: set, dtype):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    from gpu.flux_demo import read_config
    components = settings.get().flux_components_dir
    if not components:
        raise ValueError(f"{path.name} holds only the FLUX transformer: set FLUX_COMPONENTS_DIR to a diffusers "
                         "FLUX folder (e.g. black-forest-labs/FLUX.1-schnell) for its text encoders and VAE")
    folder = Path(components)
    if not (folder / "model_index.json").is_file():
        raise ValueError(f"FLUX_COMPONENTS_DIR={folder} is not a diffusers folder (no model_index.json)")
    tokenizers = _tokenizer_overrides(folder)  # fails early, before the big transformer is read
    variant = "dev" if any(k.endswith(GUIDANCE_KEYS[0]) for k in keys) else "schnell"
    transformer = FluxTransformer2DModel.from_single_file(
        str(path), config=str(configs.ROOT / f"flux1-{variant}"), subfolder="transformer",
        local_files_only=True, dtype=dtype)
    pipe = FluxPipeline.from_pretrained(str(folder), transformer=transformer, dtype=dtype,
                                        local_files_only=True, **tokenizers)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(read_config(f"flux1-{variant}", "scheduler"))
    return pipe


def _load_all_in_one(path: Path, keys: set, metadata: dict, dtype):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from safetensors.torch import load_file
    from transformers import PreTrainedModel

    from gpu.flux_demo import build_models, demo_t5_tokenizer, read_config
    from gpu.tokenizers import clip_tokenizer
    name = metadata.get("atelier.config", "")
    if name not in DEMO_CONFIGS:
        raise ValueError(f"{path.name}: unknown atelier.config {name!r} (known: {', '.join(DEMO_CONFIGS)})")
    guidance = "transformer." + GUIDANCE_KEYS[1] in keys
    models = build_models(name, guidance, seed=None)  # parameters on the meta device until assigned
    state = load_file(str(path))
    for part, module in models.items():
        prefix = part + "."
        own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        unexpected = module.load_state_dict(own, strict=False, assign=True).unexpected_keys
        if isinstance(module, PreTrainedModel):
            module.tie_weights()
        missing = [n for n, p in module.named_parameters() if p.is_meta]
        if missing or unexpected:
            raise ValueError(f"{path.name}: {part} weights do not match {name} (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        module.to(dtype=dtype).eval()
    variant = "dev" if guidance else "schnell"
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(read_config(f"flux1-{variant}", "scheduler"))
    return FluxPipeline(scheduler=scheduler, tokenizer=clip_tokenizer(), tokenizer_2=demo_t5_tokenizer(), **models)


def _load_vae(path: Path, dtype):
    from diffusers import AutoencoderKL
    if path.is_dir():
        return AutoencoderKL.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    return AutoencoderKL.from_single_file(str(path), config=str(configs.ROOT / "flux1-schnell"), subfolder="vae",
                                          local_files_only=True, dtype=dtype)


# ---- LoRA ----

def adapter_name(lora) -> str:
    return "lora_" + (lora.sha256[:16] or re.sub(r"\W", "_", lora.name))


def apply_loras(pipe, loras) -> None:
    """Loads each LoRA once per pipeline (adapters stay on the warm pipeline) and activates exactly these."""
    loaded = {name for names in pipe.get_list_adapters().values() for name in names}
    if not loras:
        if loaded:
            pipe.disable_lora()
        return
    weights: dict[str, float] = {}
    for lora in loras:
        name = adapter_name(lora)
        if name not in loaded:
            from gpu.pipelines.loading import unusable
            with unusable(f"LoRA {lora.name}"):
                pipe.load_lora_weights(lora.path, adapter_name=name)
            loaded.add(name)
        weights[name] = weights.get(name, 0.0) + lora.weight
    pipe.enable_lora()
    pipe.set_adapters(list(weights), adapter_weights=list(weights.values()))


# ---- generation ----

def img2img_steps(steps: int, strength: float) -> int:
    """Denoising steps an img2img pass really runs (diffusers' FluxImg2ImgPipeline.get_timesteps)."""
    return steps - int(max(steps - min(steps * strength, steps), 0))


def run(pipe, params: Params, items: list[Item], on_step: OnStep):
    """One image per item: txt2img, img2img or inpaint, with an optional hires second pass."""
    from PIL import Image
    if params.controlnet is not None:
        raise ValueError("ControlNet is not supported for FLUX")
    if params.embeddings:
        raise ValueError("textual-inversion embeddings are not supported for FLUX")
    if params.mode not in ("txt2img", "img2img", "inpaint"):
        raise ValueError(f"unknown mode {params.mode!r}")
    if params.mode != "txt2img" and any(item.init_image is None for item in items):
        raise ValueError(f"{params.mode} needs an init image for every item")
    if params.mode == "inpaint" and any(item.mask is None for item in items):
        raise ValueError("inpaint needs a mask for every item")
    apply_loras(pipe, params.loras)

    first_steps = params.steps if params.mode == "txt2img" else \
        img2img_steps(params.steps, params.denoising_strength)
    hires_steps = img2img_steps(params.hires_steps or params.steps, params.denoising_strength) \
        if params.hires_scale else 0
    progress = _Progress(on_step, first_steps + hires_steps)
    guidance = bool(pipe.transformer.config.guidance_embeds)
    common = dict(guidance_scale=params.cfg_scale, max_sequence_length=512 if guidance else 256,
                  callback_on_step_end=progress)
    embeds = _encode(pipe, items, common["max_sequence_length"])

    size = dict(width=params.width, height=params.height)
    if params.mode == "txt2img":
        images = pipe(**embeds, **size, **common, num_inference_steps=params.steps,
                      generator=_generators(items)).images
    else:
        images = [item.init_image.convert("RGB") for item in items]
        extra = {}
        if params.mode == "inpaint":
            extra["mask_image"] = [item.mask.convert("L") for item in items]
        cls = "FluxInpaintPipeline" if params.mode == "inpaint" else "FluxImg2ImgPipeline"
        images = mode_pipeline(pipe, cls)(**embeds, **size, **common, **extra, image=images,
                                          strength=params.denoising_strength, num_inference_steps=params.steps,
                                          generator=_generators(items)).images
    if params.hires_scale:
        multiple = pipe.vae_scale_factor * 2
        width = int(params.width * params.hires_scale) // multiple * multiple
        height = int(params.height * params.hires_scale) // multiple * multiple
        upscaled = [image.resize((width, height), Image.BICUBIC) for image in images]
        progress.offset = first_steps
        images = mode_pipeline(pipe, "FluxImg2ImgPipeline")(
            **embeds, width=width, height=height, **common, image=upscaled,
            strength=params.denoising_strength, num_inference_steps=params.hires_steps or params.steps,
            generator=_generators(items)).images
    return images


class _Progress:
    """callback_on_step_end that reports (done, total) across passes; a Cancelled from on_step ends the run."""

    def __init__(self, on_step: OnStep, total: int):
        self.on_step, self.total, self.offset = on_step, total, 0

    def __call__(self, pipe, i, t, tensors):
        self.on_step(self.offset + i + 1, self.total)  # Cancelled propagates out of the pipeline call
        return {}


def _generators(items: list[Item]) -> list:
    return [torch.Generator("cpu").manual_seed(int(item.seed)) for item in items]


def _encode(pipe, items: list[Item], max_sequence_length: int) -> dict:
    """Runs both text encoders once over the distinct prompts, then one row per item."""
    prompts = list(dict.fromkeys(item.prompt for item in items))
    with torch.no_grad():
        embeds, pooled, _ = pipe.encode_prompt(prompts, prompt_2=None, device=pipe._execution_device,
                                               max_sequence_length=max_sequence_length)
    rows = torch.tensor([prompts.index(item.prompt) for item in items], device=embeds.device)
    return {"prompt_embeds": embeds[rows], "pooled_prompt_embeds": pooled[rows]}
