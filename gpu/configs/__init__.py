"""Diffusers-folder-shaped configs (no weights) of the supported architectures.

sd15 / sd2 (2.1 768-v) / sdxl (base 1.0) carry the published upstream values; sd15-tiny and sdxl-tiny keep the
same block types at diffusers-test-suite widths (plus sd2-tiny) for tests and demos. Tokenizers are added at run time.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import settings

ROOT = Path(__file__).parent
NAMES = ("sd15", "sd2", "sdxl", "sd15-tiny", "sd2-tiny", "sdxl-tiny")
FAMILY_CONFIGS = {("SD1", "full"): "sd15", ("SD2", "full"): "sd2", ("SDXL", "full"): "sdxl",
                  ("SD1", "tiny"): "sd15-tiny", ("SD2", "tiny"): "sd2-tiny", ("SDXL", "tiny"): "sdxl-tiny"}
TOKENIZER_FILES = ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json")


def config_name(family: str, size: str = "full") -> str:
    try:
        return FAMILY_CONFIGS[(family, size)]
    except KeyError:
        raise ValueError(f"no {size} config for family {family!r}") from None


def shipped_dir(name: str) -> Path:
    if name not in NAMES:
        raise ValueError(f"unknown config {name!r}; known: {', '.join(NAMES)}")
    return ROOT / name


def read(name: str, component: str) -> dict:
    file = "scheduler_config.json" if component == "scheduler" else "config.json"
    return json.loads((shipped_dir(name) / component / file).read_text())


def _write_tokenizer(out: Path, pad_token: str | None) -> None:
    from gpu.tokenizers import clip_tokenizer_dir
    out.mkdir(parents=True, exist_ok=True)
    src = clip_tokenizer_dir()
    for file in TOKENIZER_FILES:
        shutil.copyfile(src / file, out / file)
    if pad_token:  # SDXL's OpenCLIP-bigG tokenizer pads with "!"
        for file in ("special_tokens_map.json", "tokenizer_config.json"):
            data = json.loads((out / file).read_text())
            data["pad_token"] = pad_token
            (out / file).write_text(json.dumps(data))


def prepared_dir(name: str) -> Path:
    """A complete local diffusers folder (configs + tokenizers, no weights) for `from_single_file(config=...)`."""
    src = shipped_dir(name)
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(src.rglob("*.json")))).hexdigest()[:12]
    out = settings.get().home / "cache" / "configs" / f"{name}-{digest}"  # a changed config gets a new folder
    if (out / "model_index.json").exists() and (out / "tokenizer" / "vocab.json").exists():
        return out
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    index = json.loads((src / "model_index.json").read_text())
    _write_tokenizer(tmp / "tokenizer", None)
    if "tokenizer_2" in index:
        _write_tokenizer(tmp / "tokenizer_2", "!")
    (tmp / "controlnet").mkdir()
    (tmp / "controlnet" / "config.json").write_text(json.dumps(controlnet_config(name), indent=2))
    return publish_dir(tmp, out)


def publish_dir(tmp: Path, out: Path) -> Path:
    """Moves a fully written cache folder into place (racing processes: the first one wins)."""
    shutil.rmtree(out, ignore_errors=True)
    try:
        tmp.replace(out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def controlnet_config(name: str) -> dict:
    """The ControlNetModel config that mirrors a UNet config (what ControlNetModel.from_unet builds)."""
    import inspect

    from diffusers import ControlNetModel
    accepted = set(inspect.signature(ControlNetModel.__init__).parameters)
    unet = read(name, "unet")
    config = {k: v for k, v in unet.items() if k in accepted}
    # the hint is downscaled to the latent size: one stage per VAE downsampling (8x: 16, 32, 96, 256)
    stages = len(read(name, "vae")["block_out_channels"])
    return {"_class_name": "ControlNetModel", **config, "conditioning_channels": 3,
            "controlnet_conditioning_channel_order": "rgb",
            "conditioning_embedding_out_channels": [16, 32, 96, 256][:stages]}
