"""Random-weight FLUX.1 pipelines and checkpoint files for tests, demos and benchmarks.

The T5 tokenizer of real FLUX has no offline source, so demos use a tiny SentencePiece model trained here on a
fixed text (deterministic); real checkpoints take theirs from T5_TOKENIZER_DIR or a diffusers FLUX folder.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path

import torch

import settings
from gpu import configs

NOTE = "random weights: produces noise"
COMPONENTS = ("transformer", "vae", "text_encoder", "text_encoder_2")
TOKENIZER_TEXT = """\
a photo of a cat sitting on a red chair in the afternoon sun
a painting of a squirrel eating a burger, studio lighting
an astronaut riding a horse on the moon, highly detailed, digital art
portrait of an old man with a grey beard, oil on canvas, dramatic light
a castle on a hill at sunset, fantasy landscape with mountains and rivers
a bowl of fruit on a wooden table, still life, soft shadows, 35mm photograph
a city street at night in the rain, neon signs reflected in puddles, cinematic
a watercolor of a lighthouse by the sea with seagulls flying over the waves
"""


def config_dir(size: str = "tiny", variant: str = "schnell") -> Path:
    if variant not in ("schnell", "dev") or size not in ("tiny", "full"):
        raise ValueError(f"unknown FLUX demo size/variant {size!r}/{variant!r}")
    return configs.ROOT / ("flux1-tiny" if size == "tiny" else f"flux1-{variant}")


def read_config(name: str, component: str) -> dict:
    file = "scheduler_config.json" if component == "scheduler" else "config.json"
    return json.loads((configs.ROOT / name / component / file).read_text())


@functools.cache
def demo_t5_tokenizer_dir() -> Path:
    """A folder with spiece.model: a small unigram SentencePiece model, trained deterministically (one thread)."""
    import io

    import sentencepiece as spm
    out = settings.get().home / "cache" / "t5-demo-tokenizer"
    if (out / "spiece.model").exists():
        return out
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TOKENIZER_TEXT.splitlines() * 4), model_writer=model, vocab_size=200,
        hard_vocab_limit=False, model_type="unigram", character_coverage=1.0, num_threads=1,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "spiece.model").write_bytes(model.getvalue())
    return configs.publish_dir(tmp, out)


def demo_t5_tokenizer():
    from transformers import T5Tokenizer
    return T5Tokenizer.from_pretrained(str(demo_t5_tokenizer_dir()), local_files_only=True)


@contextlib.contextmanager
def _default_dtype(dtype):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def build_models(name: str, guidance: bool, seed: int | None = 0) -> dict:
    """The four networks of a shipped FLUX config, random for `seed`; seed None leaves parameters on the
    meta device (for loading weights with assign=True)."""
    import accelerate
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    builders = {
        "transformer": lambda: FluxTransformer2DModel.from_config(
            {**read_config(name, "transformer"), "guidance_embeds": guidance}),
        "vae": lambda: AutoencoderKL.from_config(read_config(name, "vae")),
        "text_encoder": lambda: CLIPTextModel(CLIPTextConfig.from_dict(read_config(name, "text_encoder"))),
        "text_encoder_2": lambda: T5EncoderModel(T5Config.from_dict(read_config(name, "text_encoder_2"))),
    }
    models = {}
    for k, part in enumerate(COMPONENTS, start=1):
        if seed is None:
            with accelerate.init_empty_weights():
                models[part] = builders[part]()
        else:
            torch.manual_seed(seed * 1000 + k)
            models[part] = builders[part]().eval()
    return models


def build_pipeline(size: str = "tiny", variant: str = "schnell", seed: int = 0, device="cpu",
                   dtype=torch.float32):
    """A random-weight FluxPipeline from the shipped configs ("full" = the real 12B architecture: huge)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from gpu.tokenizers import clip_tokenizer
    name = config_dir(size, variant).name
    with torch.device(device), _default_dtype(dtype), torch.random.fork_rng(devices=[]):
        models = build_models(name, variant == "dev", seed)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(read_config(f"flux1-{variant}", "scheduler"))
    return FluxPipeline(scheduler=scheduler, tokenizer=clip_tokenizer(), tokenizer_2=demo_t5_tokenizer(),
                        **models)


def state_dict_for_file(pipe) -> dict:
    """All four networks under their component prefix, each shared tensor (T5's tied embedding) once."""
    out, seen = {}, set()
    for part in COMPONENTS:
        for key, tensor in getattr(pipe, part).state_dict().items():
            ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
            if ident in seen:
                continue
            seen.add(ident)
            out[f"{part}.{key}"] = tensor.detach().to("cpu").contiguous()
    return out


def write_checkpoint(out_path, size: str = "tiny", variant: str = "schnell", seed: int = 0, device="cpu",
                     dtype=None) -> Path:
    """One .safetensors holding a whole random-weight FLUX pipeline, readable by gpu.pipelines.flux.load
    (fp32 for tiny; bf16 for full, like the published files: about 34 GB)."""
    from safetensors.torch import save_file
    dtype = dtype or (torch.float32 if size == "tiny" else torch.bfloat16)
    pipe = build_pipeline(size=size, variant=variant, seed=seed, device=device, dtype=dtype)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"modelspec.architecture": f"flux-1-{variant}", "atelier.config": config_dir(size, variant).name,
                "atelier.note": NOTE}
    save_file(state_dict_for_file(pipe), str(out_path), metadata=metadata)
    return out_path
