"""TensorRT backend: not implemented yet; only its place in the backend registry exists."""
from __future__ import annotations

import importlib.util

from gpu.backends import Backend


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self):
        if importlib.util.find_spec("tensorrt") is None:
            raise RuntimeError("GPU_BACKEND=tensorrt needs TensorRT: install the tensorrt extra "
                               "(pip install 'atelier[tensorrt]'), or use GPU_BACKEND=torch")
        raise NotImplementedError("the TensorRT backend is not implemented yet; use GPU_BACKEND=torch")

    def load(self, model):
        raise NotImplementedError

    def generate(self, model, params, items, on_step):
        raise NotImplementedError

    def max_batch(self, model, params):
        raise NotImplementedError

    def release(self):
        pass
