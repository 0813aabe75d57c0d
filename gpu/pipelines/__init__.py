"""Diffusers pipelines per model family, behind one small interface that the GPU actors use.

The job layer turns database rows into these plain values; nothing here imports models_db or jobs.
    family modules: sd.py (SD1, SD2), sdxl.py (SDXL), flux.py (FLUX1); each exposes
        load(model: ModelRef, device, dtype) -> a diffusers pipeline (base txt2img pipeline)
        run(pipe, params: Params, items: list[Item], on_step) -> list[PIL.Image]  (one image per item)
    loading.py   single-file / diffusers-folder loading with the configs shipped in gpu/configs,
                 VAE override, LoRA and textual-inversion stacking, ControlNet models
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

FAMILIES = ("SD1", "SD2", "SDXL", "FLUX1")


class Cancelled(Exception):
    """Raised from an on_step callback to stop a batch at the next step."""


class CannotGenerate(ValueError):
    """This batch can never be made as asked (a resource whose tensors do not fit the checkpoint, an unreadable
    file, a missing tokenizer): trying again will not help. Its message is one short line."""

    MAX_CHARS = 300

    def __init__(self, what: str, cause: BaseException | str):
        super().__init__(f"{what}: {one_line(cause)}"[:self.MAX_CHARS])


def one_line(error: BaseException | str) -> str:
    """An error's gist on one line: PyTorch's state-dict errors list every mismatched tensor on a line of its
    own (hundreds of lines), so the first mismatch is kept and the others counted."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__ if isinstance(error, BaseException) else "failed"
    mismatches = [line for line in lines if line.startswith(("size mismatch", "Missing key", "Unexpected key"))]
    if mismatches:
        more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
        return re.sub(r"torch\.Size\((\[[^\]]*\])\)", r"\1", mismatches[0]) + more
    return lines[0] + (" …" if len(lines) > 1 else "")


@dataclass(frozen=True)
class Resource:
    kind: str  # "lora" | "embedding" | "vae" | "controlnet"
    path: str  # a local file (or diffusers folder)
    sha256: str
    name: str  # LoRA name for "Lora hashes"; the trigger token of an embedding
    weight: float = 1.0


@dataclass(frozen=True)
class ModelRef:
    family: str  # one of FAMILIES
    path: str  # single-file checkpoint (.safetensors/.ckpt) or a diffusers folder
    sha256: str  # identity of the weights (cache key)
    name: str = "model"
    vae: Resource | None = None


@dataclass(frozen=True)
class Params:
    """What every item of one batch shares (jobs are coalesced on these)."""
    mode: str = "txt2img"  # txt2img | img2img | inpaint
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "Euler a"  # an A1111 sampler name (gpu/samplers.py)
    clip_skip: int = 1  # A1111 meaning: 1 = last layer, 2 = penultimate
    denoising_strength: float = 0.75  # img2img / inpaint / hires second pass
    hires_scale: float | None = None  # hires fix: upscale factor of the second pass
    hires_steps: int = 0  # 0 = same as steps
    loras: tuple[Resource, ...] = ()
    embeddings: tuple[Resource, ...] = ()
    controlnet: Resource | None = None
    control_scale: float = 1.0


@dataclass
class Item:
    """One image to make."""
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    init_image: object | None = None  # PIL.Image for img2img / inpaint
    mask: object | None = None  # PIL.Image (white = repaint) for inpaint
    control_image: object | None = None  # PIL.Image for ControlNet


OnStep = Callable[[int, int], None]  # (step done, total steps); raise Cancelled to stop


@dataclass
class Loaded:
    """A warm pipeline and what it cost, kept by the worker's LRU cache."""
    model: ModelRef
    pipe: object
    bytes: int = 0
    extras: dict = field(default_factory=dict)
