"""GPU utilisation and memory gauges, sampled with NVML (nvidia-ml-py) when a GPU is present."""
from __future__ import annotations

import logging
import threading

from metrics import definitions as m

log = logging.getLogger("atelier.metrics.gpu")


def sample_once() -> int:
    """Reads every GPU once; returns how many were read (0 without NVML or GPUs)."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:  # no nvidia-ml-py, no driver or no GPU
        return 0
    count = pynvml.nvmlDeviceGetCount()
    for index in range(count):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        util = pynvml.nvmlDeviceGetUtilizationRates(handle)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        m.gpu_utilization.labels(str(index)).set(util.gpu / 100)
        m.gpu_memory_used.labels(str(index)).set(memory.used)
        m.gpu_memory_total.labels(str(index)).set(memory.total)
    return count


def start_sampler(every_s: float = 5.0) -> threading.Event | None:
    """Samples in a daemon thread until the returned event is set; None when there is no GPU."""
    if not sample_once():
        return None
    stop = threading.Event()

    def loop():
        while not stop.wait(every_s):
            try:
                sample_once()
            except Exception:
                log.exception("GPU sampling failed")
    threading.Thread(target=loop, name="gpu-metrics", daemon=True).start()
    return stop
