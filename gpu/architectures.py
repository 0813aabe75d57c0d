"""Which architecture a set of tensor names (and shapes) belongs to."""
from __future__ import annotations

import re

LORA_MARKERS = ("lora_down", "lora_up", "lora_A.", "lora_B.", "hada_w1", "lokr_w1", ".dora_scale")
CROSS_ATTN_KEY = "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
CONTEXT_DIMS = {768: "SD1", 1024: "SD2", 2048: "SDXL"}
MODELSPEC = {"stable-diffusion-v1": "SD1", "stable-diffusion-v2": "SD2", "stable-diffusion-xl": "SDXL",
             "stable-diffusion-v3": "SD3", "flux-1": "FLUX1"}


def _has(names, *parts) -> bool:
    return any(all(p in n for p in parts) for n in names)


def detect_architecture(shapes: dict, metadata: dict | None = None) -> str | None:
    names = list(shapes)
    spec = str((metadata or {}).get("modelspec.architecture", ""))
    if any(m in n for n in names for m in LORA_MARKERS) or "/lora" in spec:
        return "LoRA"
    if set(names) <= {"emb_params", "clip_l", "clip_g"} and names or _has(names, "string_to_param"):
        return "TextualInversion"
    if _has(names, "input_hint_block") or _has(names, "controlnet_cond_embedding"):
        return "ControlNet"
    if _has(names, "double_blocks.") and _has(names, "single_blocks.") or \
            _has(names, "single_transformer_blocks.") and _has(names, "x_embedder"):
        return "FLUX1"
    if _has(names, "joint_blocks."):
        return "SD3"
    if _has(names, "conditioner.embedders.") or _has(names, "label_emb.0.0"):
        return "SDXL"
    if _has(names, "cond_stage_model.model.transformer.resblocks"):
        return "SD2"
    if _has(names, "cond_stage_model.transformer."):
        return "SD1"
    for name, shape in shapes.items():
        if name.endswith(CROSS_ATTN_KEY) and len(shape) == 2 and shape[1] in CONTEXT_DIMS:
            return CONTEXT_DIMS[shape[1]]
    if _has(names, "encoder.down") and _has(names, "decoder.up") and not _has(names, "diffusion_model"):
        return "VAE"
    for prefix, arch in MODELSPEC.items():
        if spec.startswith(prefix):
            return arch
    return None


# ---- does a resource fit a checkpoint? (tensor shapes only, e.g. from safetensors headers) -------------
_DOWN = (".lora_down.weight", ".lora_A.weight", ".lora.down.weight")
_TEXT_ENCODERS = (  # (which encoder, checkpoint key pattern) in the original and diffusers layouts
    (1, re.compile(r"^(cond_stage_model|conditioner\.embedders\.0|text_encoder)\..*"
                   r"(self_attn\.q_proj\.weight|attn\.in_proj_weight)$")),
    (2, re.compile(r"^(conditioner\.embedders\.1|text_encoder_2)\..*"
                   r"(self_attn\.q_proj\.weight|attn\.in_proj_weight)$")),
)


def checkpoint_widths(shapes: dict) -> dict:
    """What resources must match in an SD-family checkpoint: the width of the text features its
    cross-attention reads ("context"), its attention widths ("unet", a set) and its text encoders' widths
    (1 and 2). Keys it has no tensors for are absent."""
    widths: dict = {}
    for name, shape in shapes.items():
        if len(shape) != 2:
            continue
        if name.endswith("attn2.to_k.weight"):
            widths.setdefault("context", shape[1])
        elif name.endswith("attn1.to_q.weight"):
            widths.setdefault("unet", set()).add(shape[1])
        for encoder, pattern in _TEXT_ENCODERS:
            if pattern.match(name):
                widths.setdefault(encoder, shape[1])
    return widths


def _lora_needs(shapes: dict) -> dict:
    """The same widths as a LoRA's down (A) matrices read them, kohya-ss and diffusers/PEFT names alike."""
    needs: dict = {}
    for name, shape in shapes.items():
        if not name.endswith(_DOWN) or len(shape) != 2:
            continue
        flat = name.replace(".", "_")
        if flat.startswith(("lora_te2_", "text_encoder_2_")):
            key = 2 if "q_proj" in flat else None
        elif flat.startswith(("lora_te_", "lora_te1_", "text_encoder_")):
            key = 1 if "q_proj" in flat else None
        elif "attn2_to_k" in flat or "attn2_to_v" in flat:
            key = "context"
        else:
            key = "unet" if "attn1_to_q" in flat else None
        if key is not None:
            needs.setdefault(key, set()).add(shape[1])
    return needs


def _embedding_needs(shapes: dict) -> dict:
    needs: dict = {}
    for name, shape in shapes.items():
        encoder = 2 if name == "clip_g" else 1 if name in ("clip_l", "emb_params") or \
            name.startswith("string_to_param") else None
        if encoder is not None and len(shape) == 2:
            needs.setdefault(encoder, set()).add(shape[1])
    return needs


_WHAT = {"context": "cross-attention text width", "unet": "attention width", 1: "text encoder width",
         2: "second text encoder width"}


def _controlnet_needs(shapes: dict) -> dict:
    """A ControlNet copies the UNet's encoder: the same attention and cross-attention widths."""
    return {key: value if isinstance(value, set) else {value}
            for key, value in checkpoint_widths(shapes).items() if key in ("context", "unet")}


_NEEDS = {"lora": _lora_needs, "embedding": _embedding_needs, "controlnet": _controlnet_needs}


def misfit(kind: str, resource_shapes: dict, checkpoint_shapes: dict) -> str | None:
    """Why a LoRA, embedding or ControlNet cannot be loaded on a checkpoint, from their tensor shapes alone;
    None when it fits or when the shapes cannot tell."""
    needs = _NEEDS[kind](resource_shapes) if kind in _NEEDS else {}
    has = checkpoint_widths(checkpoint_shapes)
    for key, widths in needs.items():
        if key not in has:
            continue
        allowed = has[key] if isinstance(has[key], set) else {has[key]}
        if not widths <= allowed:
            listed = ["/".join(map(str, sorted(w))) for w in (widths, allowed)]
            return f"{_WHAT[key]} {listed[0]}, the checkpoint's {listed[1]}"
    return None
