"""The PyTorch/diffusers backend: device and dtype from settings, warm pipelines in an LRU bounded by bytes,
speed options, memory-aware batch sizes."""
from __future__ import annotations

import gc
import importlib
import inspect
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import torch

import settings
from gpu.backends import Backend, OutOfMemory
from gpu.pipelines import Item, Loaded, ModelRef, OnStep, Params, Resource

log = logging.getLogger(__name__)

FAMILY_MODULES = {"SD1": "gpu.pipelines.sd", "SD2": "gpu.pipelines.sd", "SDXL": "gpu.pipelines.sdxl",
                  "FLUX1": "gpu.pipelines.flux"}
DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp32": torch.float32, "float32": torch.float32}
OPTIMIZATIONS = ("channels_last", "compile", "tomesd", "vae_tiling", "attention_slicing", "cpu_offload")
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt", ".pth")
VAE_SLICING_FROM = 3  # batches this big decode one image at a time (lower peak memory, same result)
CACHE_SHARE = 0.8  # GPU_PIPELINE_CACHE_BYTES=0: this share of the device's memory
FREE_SHARE = 0.9  # of the free memory a batch may plan to use
# Working memory per image and megapixel in 16-bit with CFG (SDPA attention, VAE slicing): conservative
# estimates, not yet measured on a GPU (full-size random-weight models from gpu.demo can calibrate them);
# fp32 doubles them.
ACTIVATION_BYTES_PER_MEGAPIXEL = {"SD1": 1.5 * 2**30, "SD2": 1.5 * 2**30, "SDXL": 1.0 * 2**30,
                                  "FLUX1": 3.0 * 2**30}


def resolve_device(name: str) -> torch.device:
    if name in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name in ("", "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"GPU_DTYPE must be auto, fp16, bf16 or fp32, got {name!r}") from None


def family_module(family: str):
    try:
        return importlib.import_module(FAMILY_MODULES[family])
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; one of: {', '.join(FAMILY_MODULES)}") from None


def module_bytes(*modules) -> int:
    return sum(t.numel() * t.element_size() for m in modules if isinstance(m, torch.nn.Module)
               for t in (*m.parameters(), *m.buffers()))


def pipeline_bytes(pipe) -> int:
    return module_bytes(*pipe.components.values())


def file_bytes(path: str) -> int:
    """Size of a weights file, or of the weight files in a diffusers folder (an estimate before loading)."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.suffix in WEIGHT_SUFFIXES)
    return p.stat().st_size if p.exists() else 0


def device_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def per_image_bytes(family: str, params: Params, dtype: torch.dtype) -> int:
    """Estimated working memory of one more image in a batch, at the largest size the batch samples."""
    width, height = params.width, params.height
    if params.hires_scale:
        width, height = int(width * params.hires_scale), int(height * params.hires_scale)
    scale = max(1.0, torch.finfo(dtype).bits / 16)
    return int(ACTIVATION_BYTES_PER_MEGAPIXEL[family] * width * height / 1e6 * scale)


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, device: str | None = None, dtype: str | None = None, optimizations=None,
                 cache_bytes: int | None = None, max_batch: int | None = None):
        s = settings.get()
        self.device = resolve_device(device or s.gpu_device)
        self.dtype = resolve_dtype(dtype or s.gpu_dtype, self.device)
        self.optimizations = frozenset(s.gpu_optimizations if optimizations is None else optimizations)
        unknown = self.optimizations - set(OPTIMIZATIONS)
        if unknown:
            raise ValueError(f"unknown GPU_OPTIMIZATIONS {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(OPTIMIZATIONS)}")
        self.batch_cap = max(1, max_batch or s.gpu_max_batch)
        cache_bytes = s.gpu_pipeline_cache_bytes if cache_bytes is None else cache_bytes
        self.cache_bytes = cache_bytes or int(device_memory(self.device) * CACHE_SHARE)
        self._cache: OrderedDict[tuple, Loaded] = OrderedDict()
        self._lock = threading.RLock()

    # --- warm pipelines ------------------------------------------------------------------------------------

    @staticmethod
    def _key(model: ModelRef) -> tuple:
        return model.sha256, model.vae.sha256 if model.vae else None

    def is_warm(self, model: ModelRef) -> bool:
        return self._key(model) in self._cache  # no lock: a load in progress must not hold this up

    def cached(self) -> list[Loaded]:
        """Warm pipelines, least recently used first."""
        return list(self._cache.values())

    def _make_room(self, incoming: int, keep: tuple | None = None) -> None:
        used = sum(loaded.bytes for loaded in self._cache.values())
        for key in list(self._cache):
            if used + incoming <= self.cache_bytes:
                break
            if key != keep:
                used -= self._cache.pop(key).bytes
                log.info("evicted pipeline %s from the warm cache", key[0][:10])
        self._free_memory()

    def _free_memory(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def load(self, model: ModelRef) -> Loaded:
        with self._lock:
            key = self._key(model)
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            self._make_room(file_bytes(model.path))
            offload = "cpu_offload" in self.optimizations and self.device.type == "cuda"
            pipe = family_module(model.family).load(model, torch.device("cpu") if offload else self.device,
                                                    self.dtype)
            self._optimize(pipe)
            loaded = Loaded(model=model, pipe=pipe, bytes=pipeline_bytes(pipe))
            self._cache[key] = loaded
            self._make_room(0, keep=key)
            return loaded

    def _optimize(self, pipe) -> None:
        opts = self.optimizations
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        pipe.set_progress_bar_config(disable=True)
        if "channels_last" in opts and getattr(pipe, "unet", None) is not None:
            pipe.unet.to(memory_format=torch.channels_last)
        if "attention_slicing" in opts and hasattr(pipe, "enable_attention_slicing"):
            pipe.enable_attention_slicing()
        if "vae_tiling" in opts and hasattr(pipe.vae, "enable_tiling"):
            pipe.vae.enable_tiling()
        if "tomesd" in opts and getattr(pipe, "unet", None) is not None:
            import tomesd
            tomesd.apply_patch(pipe, ratio=0.5)
        if "compile" in opts and denoiser is not None:
            denoiser.compile()  # in place: the module keeps its class, so from_pipe still shares it
        if "cpu_offload" in opts and self.device.type == "cuda":
            pipe.enable_model_cpu_offload(device=self.device)

    def _controlnet(self, loaded: Loaded, res: Resource):
        """The ControlNet model, kept with the pipeline it serves (one at a time)."""
        held = loaded.extras.get("controlnet")
        if held is not None and held[0] == res.sha256:
            return held[1]
        if held is not None:
            loaded.bytes -= module_bytes(held[1])
            loaded.extras.pop("controlnet")
            self._free_memory()
        from gpu.pipelines.loading import load_controlnet
        offload = "cpu_offload" in self.optimizations and self.device.type == "cuda"
        model = load_controlnet(res, loaded.model.family, torch.device("cpu") if offload else self.device,
                                self.dtype)
        loaded.extras["controlnet"] = (res.sha256, model)
        loaded.bytes += module_bytes(model)
        return model

    def release(self) -> None:
        with self._lock:
            self._cache.clear()
            self._free_memory()

    def status(self) -> dict:
        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        for _ in range(3):  # the batch's thread may change the cache meanwhile
            try:
                warm = [{"name": loaded.model.name, "family": loaded.model.family, "bytes": loaded.bytes}
                        for loaded in reversed(self._cache.values())]
                break
            except RuntimeError:
                warm = []
        memory = None
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            memory = {"used": total - free, "total": total, "allocated": torch.cuda.memory_allocated(self.device)}
        return {"backend": self.name, "device": device, "dtype": str(self.dtype).removeprefix("torch."),
                "warm": warm, "vram": memory}

    # --- generation ----------------------------------------------------------------------------------------

    def generate(self, model: ModelRef, params: Params, items: list[Item], on_step: OnStep) -> list:
        with self._lock:
            try:
                loaded = self.load(model)
                run = family_module(model.family).run
                extra = {}
                if params.controlnet is not None:
                    if "controlnet" not in inspect.signature(run).parameters:
                        raise ValueError(f"ControlNet is not supported for {model.family} models")
                    extra["controlnet"] = self._controlnet(loaded, params.controlnet)
                vae = getattr(loaded.pipe, "vae", None)
                if vae is not None and hasattr(vae, "enable_slicing"):
                    vae.enable_slicing() if len(items) >= VAE_SLICING_FROM else vae.disable_slicing()
                return run(loaded.pipe, params, items, on_step, **extra)
            except torch.cuda.OutOfMemoryError as error:
                self._free_memory()
                raise OutOfMemory(f"out of device memory for {len(items)} images of {params.width}x"
                                  f"{params.height} ({model.family}): {error}") from error

    def max_batch(self, model: ModelRef, params: Params) -> int:
        if self.device.type != "cuda":
            return self.batch_cap
        free, _total = torch.cuda.mem_get_info(self.device)
        free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        if self._key(model) not in self._cache and "cpu_offload" not in self.optimizations:
            free -= file_bytes(model.path)  # it still has to be loaded
        fits = int(free * FREE_SHARE) // max(1, per_image_bytes(model.family, params, self.dtype))
        return max(1, min(self.batch_cap, fits))
