"""Inference backends of the GPU worker: one small interface, chosen by GPU_BACKEND.

A backend keeps pipelines warm, runs one batch (list of Items sharing Params) and says how many images one
batch may hold. Running out of device memory surfaces as `OutOfMemory` so the caller can split the batch.
"""
from __future__ import annotations

import abc
import importlib
import threading

from gpu.pipelines import Item, Loaded, ModelRef, OnStep, Params


class OutOfMemory(RuntimeError):
    """The device ran out of memory for this batch; a smaller batch may fit."""


class Backend(abc.ABC):
    name = ""

    @abc.abstractmethod
    def load(self, model: ModelRef) -> Loaded:
        """The model's warm pipeline, loading it (and evicting others) when needed."""

    @abc.abstractmethod
    def generate(self, model: ModelRef, params: Params, items: list[Item], on_step: OnStep) -> list:
        """One PIL image per item, in order; raises Cancelled (from on_step) or OutOfMemory."""

    @abc.abstractmethod
    def max_batch(self, model: ModelRef, params: Params) -> int:
        """The most items one `generate` call should get for these params (at least 1)."""

    def is_warm(self, model: ModelRef) -> bool:
        """Whether `load` would find the model's pipeline already loaded (False when the backend cannot say)."""
        return False

    @abc.abstractmethod
    def release(self) -> None:
        """Drop every warm pipeline and give the device memory back."""

    def status(self) -> dict:
        """What an operator sees of it (the worker's heartbeat): device, warm pipelines, device memory. Called
        from another thread while a batch runs: it only reads."""
        return {"backend": self.name}


BACKENDS = {"torch": ("gpu.backends.torch_backend", "TorchBackend"),
            "tensorrt": ("gpu.backends.tensorrt_backend", "TensorRTBackend")}
_instances: dict[str, Backend] = {}
_lock = threading.Lock()


def get_backend(name: str | None = None) -> Backend:
    """The process's backend called `name` (default: GPU_BACKEND), created on first use."""
    if name is None:
        import settings
        name = settings.get().gpu_backend
    if name not in BACKENDS:
        raise ValueError(f"unknown GPU backend {name!r}; one of: {', '.join(BACKENDS)}")
    with _lock:
        if name not in _instances:
            module, cls = BACKENDS[name]
            _instances[name] = getattr(importlib.import_module(module), cls)()
        return _instances[name]


def created_backend(name: str) -> Backend | None:
    """The process's backend called `name` if it has been created, else None (never creates it)."""
    with _lock:
        return _instances.get(name)
