"""CLIP's BPE tokenizer without a model hub: vocab.json and merges.txt are derived from the BPE file
that ships in the open-clip-torch wheel, exactly the way CLIP's own simple tokenizer builds them."""
from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import os
from pathlib import Path

import settings

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2


def bytes_to_unicode() -> dict[int, str]:
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def bpe_source() -> Path:
    spec = importlib.util.find_spec("open_clip")  # located, never imported (it would import torchvision)
    if spec is None or not spec.submodule_search_locations:
        from gpu.pipelines import CannotGenerate
        raise CannotGenerate("CLIP tokenizer", "the CLIP vocabulary comes from the open-clip-torch package; "
                                               "install it (pip install --no-deps open-clip-torch)")
    return Path(next(iter(spec.submodule_search_locations))) / BPE_FILE


@functools.cache
def clip_tokenizer_dir() -> Path:
    """A folder with vocab.json, merges.txt and the tokenizer configs that CLIPTokenizer reads."""
    out = settings.get().home / "cache" / "clip-tokenizer"
    if (out / "vocab.json").exists():
        return out
    lines = gzip.open(bpe_source(), "rt", encoding="utf-8").read().split("\n")[1:MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>"}
    (tmp / "special_tokens_map.json").write_text(json.dumps(special))
    (tmp / "tokenizer_config.json").write_text(json.dumps({**special, "model_max_length": 77,
                                                           "tokenizer_class": "CLIPTokenizer",
                                                           "do_lower_case": True}))
    from gpu.configs import publish_dir
    return publish_dir(tmp, out)


def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """SD1.x / SDXL-first-encoder tokenizer; SDXL's second (OpenCLIP) encoder pads with "!"."""
    from transformers import CLIPTokenizer
    return CLIPTokenizer.from_pretrained(str(clip_tokenizer_dir()), pad_token=pad_token, local_files_only=True)
