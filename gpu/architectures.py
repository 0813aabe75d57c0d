"""Which architecture a set of tensor names (and shapes) belongs to."""
from __future__ import annotations

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
