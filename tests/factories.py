"""Real model files for tests: tiny random tensors under the real key layouts of each architecture,
written with safetensors / torch.save exactly as published checkpoints are."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

RNG = np.random.default_rng(1234)
SD_UNET = "model.diffusion_model."


def _t(*shape, dtype=np.float16):
    return RNG.standard_normal(shape).astype(dtype)


def layout(family: str, dtype=np.float16) -> dict:
    """Tensors named as in the original single-file checkpoints of each family (tiny shapes)."""
    unet = {SD_UNET + "input_blocks.0.0.weight": _t(8, 4, 3, 3, dtype=dtype),
            SD_UNET + "out.2.weight": _t(4, 8, 3, 3, dtype=dtype)}
    vae = {"first_stage_model.encoder.down.0.block.0.conv1.weight": _t(8, 8, 3, 3, dtype=dtype),
           "first_stage_model.decoder.up.0.block.0.conv1.weight": _t(8, 8, 3, 3, dtype=dtype)}
    if family == "SD1":
        return {**unet, **vae,
                SD_UNET + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": _t(16, 768, dtype=dtype),
                "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": _t(64, 768, dtype=dtype)}
    if family == "SD2":
        return {**unet, **vae,
                SD_UNET + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": _t(16, 1024, dtype=dtype),
                "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": _t(48, 16, dtype=dtype)}
    if family == "SDXL":
        return {**unet, **vae, SD_UNET + "label_emb.0.0.weight": _t(16, 2816, dtype=dtype),
                "conditioner.embedders.0.transformer.text_model."
                "embeddings.token_embedding.weight": _t(64, 768, dtype=dtype),
                "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": _t(48, 16, dtype=dtype)}
    if family == "FLUX1":
        return {"double_blocks.0.img_attn.qkv.weight": _t(48, 16, dtype=dtype),
                "single_blocks.0.linear1.weight": _t(64, 16, dtype=dtype),
                "img_in.weight": _t(16, 64, dtype=dtype)}
    if family == "LoRA":
        return {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": _t(4, 320, dtype=dtype),
                "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": _t(320, 4, dtype=dtype),
                "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": np.array(4.0, dtype=dtype),
                "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": _t(4, 768, dtype=dtype)}
    if family == "TextualInversion":
        return {"emb_params": _t(4, 768, dtype=dtype)}
    if family == "ControlNet":
        return {"control_model.input_hint_block.0.weight": _t(16, 3, 3, 3, dtype=dtype),
                "control_model.zero_convs.0.0.weight": _t(8, 8, 1, 1, dtype=dtype)}
    if family == "VAE":
        return {"encoder.down.0.block.0.conv1.weight": _t(8, 8, 3, 3, dtype=dtype),
                "decoder.up.0.block.0.conv1.weight": _t(8, 8, 3, 3, dtype=dtype)}
    raise ValueError(family)


def safetensors_file(path: Path, family: str = "SD1", *, min_bytes: int = 0, dtype=np.float16,
                     metadata: dict | None = None) -> Path:
    """A checkpoint of `family`; padded with an extra tensor to reach min_bytes (AutoV1 needs > 1 MiB)."""
    tensors = layout(family, dtype)
    have = sum(t.nbytes for t in tensors.values())
    if min_bytes > have:
        tensors["pad.weight"] = np.zeros(
            (min_bytes - have) // np.dtype(dtype).itemsize + 1, dtype=dtype) + RNG.standard_normal(1).astype(dtype)
    save_file(tensors, str(path), metadata=metadata)
    return Path(path)


def raw_safetensors(header, data: bytes = b"") -> bytes:
    """Safetensors bytes with a hand-made header (a dict, or raw JSON bytes): for files no writer would make."""
    import json
    import struct
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def torch_checkpoint(path: Path, family: str = "SD1") -> Path:
    import torch
    state = {k: torch.from_numpy(np.array(v)) for k, v in layout(family).items()}
    torch.save({"state_dict": state}, path)
    return Path(path)


def int_keyed_checkpoint(path: Path) -> Path:
    """A harmless torch.save file whose state dict has an integer key: real, but no model file looks so."""
    import torch
    torch.save({1: torch.zeros(2)}, path)
    return Path(path)


def long_pickle(path: Path, kind: str = "plain", items: int = 3_000_000) -> Path:
    """A harmless pickle stream of about `items` opcodes (a list of that many None), as a plain pickle, a
    torch zip checkpoint (in its data.pkl) or a legacy torch file."""
    values = [None] * items
    if kind == "plain":
        Path(path).write_bytes(pickle.dumps(values, protocol=4))
        return Path(path)
    import torch
    torch.save({"state_dict": {"w": torch.zeros(2)}, "history": values}, path,
               _use_new_zipfile_serialization=kind == "torch-zip")
    return Path(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned > /tmp/atelier-test-owned",))


def malicious_checkpoint(path: Path) -> Path:
    """A torch-style zip checkpoint whose pickle calls os.system when loaded."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"state_dict": {}, "x": _Exploit()}, protocol=2))
        z.writestr("archive/version", "3\n")
    return Path(path)


def protocol0_pickle(wrapped: bool = False) -> bytes:
    """A text-only (protocol 0) pickle that calls os.system when loaded: starts with "c", or "(" when wrapped
    in a list; no \\x80 or PK magic."""
    return pickle.dumps([_Exploit()] if wrapped else _Exploit(), protocol=0)


def zip_bytes(members: dict, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive of {name: bytes}; a dict value is itself written as a nested zip archive."""
    import io
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, zip_bytes(data, compression) if isinstance(data, dict) else data)
    return out.getvalue()


def tar_bytes(members: dict, mode: str = "w:gz") -> bytes:
    """A tar archive of {name: bytes} (gzip-compressed by default; "w" for a plain tar)."""
    import io
    import tarfile
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def truncate(path: Path, drop: int = 1000) -> Path:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-drop])
    return Path(path)


# ---- images ----------------------------------------------------------------------------------
A1111_TEXT = ("a lighthouse at dusk, dramatic sky\nNegative prompt: blurry, lowres\n"
              "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 64x48, "
              "Model hash: {model_hash}, Model: dreamshaper_8, Version: v1.10.1")


def picture(width=64, height=48, seed=0):
    """A small image with some structure (gradients and blocks), different per seed."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None].repeat(height, 0).repeat(3, 2)
    image = Image.fromarray((base + rng.integers(0, 40, (height, width, 3), dtype=np.uint8)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.integers(0, width - 8), rng.integers(0, height - 8)
        draw.rectangle([x, y, x + 8, y + 8], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


def png_bytes(parameters: str | None = None, **kw) -> bytes:
    """A PNG of picture(**kw), with A1111's "parameters" text when given."""
    import io

    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    out = io.BytesIO()
    picture(**kw).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def png_with_parameters(path: Path, text: str, **kw) -> Path:
    Path(path).write_bytes(png_bytes(text, **kw))
    return Path(path)


def png_with_comfy(path: Path, prompt: dict, workflow: dict) -> Path:
    import json as _json

    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", _json.dumps(prompt))
    info.add_text("workflow", _json.dumps(workflow))
    picture().save(path, "PNG", pnginfo=info)
    return Path(path)


def jpeg_with_gps(path: Path) -> Path:
    from PIL import Image
    image = picture()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    image.save(path, "JPEG", exif=exif.tobytes(), quality=90)
    return Path(path)


def decompression_bomb(path: Path) -> Path:
    from PIL import Image
    Image.new("1", (20000, 20000)).save(path, "PNG")  # 400 megapixels in a few KB
    return Path(path)
