"""The ONNX sentence encoder gives the vectors of the shipped MiniLM run in torch, padded batches included."""
import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from gpu import embeddings

TEXTS = ["rainy neon city at night", "Café crème — a portrait in the rain", "x",
         "a long description " * 200, "cyberpunk street in the rain"]


def reference(texts: list[str]) -> np.ndarray:
    """Mean of the last hidden states over real tokens, normalised (what sentence-transformers does)."""
    folder = embeddings.model_dir()
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    out = []
    for text in texts:  # one at a time: no padding in the reference
        batch = tokenizer([text], return_tensors="pt", truncation=True, max_length=embeddings.max_tokens())
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state[0]
        out.append(torch.nn.functional.normalize(hidden.mean(0), dim=0).numpy())
    return np.stack(out)


def test_onnx_encoder_matches_the_torch_model_and_keeps_input_order():
    vectors = embeddings.encode(TEXTS, batch_size=3)  # texts of unlike lengths padded together
    assert vectors.shape == (len(TEXTS), embeddings.DIM) and vectors.dtype == np.float32
    cosines = (vectors * reference(TEXTS)).sum(axis=1)
    assert cosines.min() > 0.9999, cosines
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert embeddings.encode([]).shape == (0, embeddings.DIM)


def test_the_export_is_made_once_and_reused():
    embeddings.encoder()
    path = embeddings.onnx_path()
    made = path.stat().st_mtime_ns
    again = embeddings.Encoder()  # a new process would do this
    assert path.stat().st_mtime_ns == made
    assert np.allclose(again(["same text"]), embeddings.encode(["same text"]), atol=1e-6)
    assert embeddings.query_vector("same text") is embeddings.query_vector("same text")
