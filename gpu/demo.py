"""Random-weight models of the real architectures, for tests, demos and benchmarks (no trained weights exist here).

Everything is deterministic for a seed. Files are written in the layouts that real downloads use, so they go
through exactly the same loading code as real models.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from gpu import configs

NOTE = "random weights: produces noise"
ARCHITECTURES = {"SD1": "stable-diffusion-v1", "SD2": "stable-diffusion-v2-768-v",
                 "SDXL": "stable-diffusion-xl-v1-base"}


def _flux(name: str):
    import importlib
    return getattr(importlib.import_module("gpu.flux_demo"), name)


def _components(name: str, seed: int, device, dtype) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from gpu.tokenizers import clip_tokenizer

    def seeded(k: int):
        torch.manual_seed(seed * 1000 + k)

    with torch.device(device), torch.random.fork_rng(devices=[]):  # the caller's RNG stays untouched
        seeded(1)
        unet = UNet2DConditionModel.from_config(configs.read(name, "unet"))
        seeded(2)
        vae = AutoencoderKL.from_config(configs.read(name, "vae"))
        seeded(3)
        text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(configs.read(name, "text_encoder")))
        parts = {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": clip_tokenizer()}
        if (configs.shipped_dir(name) / "text_encoder_2").exists():
            seeded(4)
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_dict(configs.read(name, "text_encoder_2")))
            parts["tokenizer_2"] = clip_tokenizer(pad_token="!")
    for part in parts.values():
        if isinstance(part, torch.nn.Module):
            part.eval()
            if dtype != torch.float32:
                part.to(dtype=dtype)
    return parts


def build_pipeline(family: str, size: str = "tiny", seed: int = 0, device="cpu", dtype=torch.float32):
    """A random-weight diffusers txt2img pipeline from the shipped configs ("full" = real-size architecture)."""
    if family == "FLUX1":
        return _flux("build_pipeline")(size=size, seed=seed, device=device, dtype=dtype)
    import diffusers
    name = configs.config_name(family, size)
    index = json.loads((configs.shipped_dir(name) / "model_index.json").read_text())
    parts = _components(name, seed, device, dtype)
    scheduler_cls = getattr(diffusers, index["scheduler"][1])
    parts["scheduler"] = scheduler_cls.from_config(configs.read(name, "scheduler"))
    if family == "SDXL":
        return diffusers.StableDiffusionXLPipeline(**parts)
    return diffusers.StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)


def _save(state: dict, out_path, metadata: dict) -> Path:
    from safetensors.torch import save_file
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out), metadata={"atelier.note": NOTE, **metadata})
    return out


def write_checkpoint(family: str, out_path, size: str = "tiny", seed: int = 0) -> Path:
    """A single-file .safetensors checkpoint in the original (LDM / SGM) layout."""
    if family == "FLUX1":
        return _flux("write_checkpoint")(out_path, size=size, seed=seed)
    from gpu.ldm_convert import pipeline_to_original
    pipe = build_pipeline(family, size, seed)
    metadata = {"modelspec.architecture": ARCHITECTURES[family], "atelier.config": configs.config_name(family, size)}
    return _save(pipeline_to_original(pipe, family), out_path, metadata)


def _randomize(state: dict, seed: int, scale: float = 0.1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * scale for k, v in state.items()}


def write_vae(out, family: str, size: str = "tiny", seed: int = 1) -> Path:
    """A standalone VAE file in the original layout (`encoder.*`, `decoder.*`, like vae-ft-mse-840000)."""
    from diffusers import AutoencoderKL

    from gpu.ldm_convert import convert_vae
    name = configs.config_name(family, size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL.from_config(configs.read(name, "vae"))
    return _save(convert_vae(vae.state_dict(), vae.config), out, {"atelier.config": name})


def write_controlnet(out, family: str, size: str = "tiny", seed: int = 2) -> Path:
    """A single-file ControlNet: the original `control_model.*` layout for SD1/SD2; diffusers keys for SDXL
    (how SDXL ControlNets are published, and what ControlNetModel.from_single_file converts)."""
    from diffusers import ControlNetModel

    from gpu.ldm_convert import convert_controlnet
    name = configs.config_name(family, size)
    config = configs.controlnet_config(name)
    with torch.device("meta"):  # only the shapes are needed
        model = ControlNetModel.from_config(config)
    state = _randomize(model.state_dict(), seed)  # real ControlNets start from zero convs; make this one act
    if family != "SDXL":
        state = convert_controlnet(state, config)
    return _save(state, out, {"atelier.config": name, "modelspec.architecture": ARCHITECTURES[family] + "/controlnet"})


def _linear_modules(model, suffixes: tuple[str, ...]) -> dict:
    return {n: m for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and n.endswith(suffixes)}


def write_lora(out, family: str, rank: int = 4, seed: int = 3, size: str = "tiny") -> Path:
    """A kohya-ss LoRA (`lora_unet_*` / `lora_te*_*` with lora_down, lora_up and alpha) fitting `family`'s
    `size` model: SD1/SD2 use diffusers module names, SDXL the original block names, as kohya writes them."""
    from gpu.ldm_convert import _rename, _unet_prefixes
    pipe = build_pipeline(family, size, seed=0)
    g = torch.Generator().manual_seed(seed)
    state = {}

    def add(prefix: str, name: str, module: torch.nn.Linear):
        key = f"{prefix}_{name.replace('.', '_')}"
        state[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=g) * 0.5
        state[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=g) * 0.5
        state[f"{key}.alpha"] = torch.tensor(float(rank))

    unet_modules = _linear_modules(pipe.unet, ("to_q", "to_k", "to_v", "to_out.0"))
    if family == "SDXL":  # kohya names SDXL UNet modules by their original (SGM) paths
        prefixes = _unet_prefixes(dict(pipe.unet.config))
        unet_modules = {next(iter(_rename({n + ".w": 0}, prefixes)))[:-2]: m for n, m in unet_modules.items()}
    for name, module in unet_modules.items():
        add("lora_unet", name, module)
    encoders = [("lora_te1", pipe.text_encoder), ("lora_te2", pipe.text_encoder_2)] if family == "SDXL" \
        else [("lora_te", pipe.text_encoder)]
    for prefix, encoder in encoders:
        for name, module in _linear_modules(encoder, ("q_proj", "k_proj", "v_proj", "out_proj")).items():
            add(prefix, name if name.startswith("text_model.") else "text_model." + name, module)
    return _save(state, out, {"modelspec.architecture": ARCHITECTURES[family] + "/lora",
                              "atelier.config": configs.config_name(family, size), "ss_network_dim": str(rank),
                              "ss_network_alpha": str(rank)})


def write_embedding(out, family: str, token_count: int = 2, size: str = "tiny", seed: int = 4) -> Path:
    """An A1111 textual inversion: `emb_params` for SD1/SD2, `clip_l` + `clip_g` for SDXL."""
    name = configs.config_name(family, size)
    g = torch.Generator().manual_seed(seed)

    def vectors(encoder: str):
        width = configs.read(name, encoder)["hidden_size"]
        return torch.randn(token_count, width, generator=g) * 0.1

    state = {"clip_l": vectors("text_encoder"), "clip_g": vectors("text_encoder_2")} if family == "SDXL" \
        else {"emb_params": vectors("text_encoder")}
    return _save(state, out, {"atelier.config": name})
