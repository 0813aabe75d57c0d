"""Diffusers state dicts -> the original single-file (LDM / SGM) key layout.

Adapted from diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py and
scripts/convert_diffusers_to_original_sdxl.py (Copyright The HuggingFace Team, Apache License 2.0,
https://github.com/huggingface/diffusers). Unlike those scripts the block counts come from the model config, so
the tiny test architectures convert too; diffusers' own `from_single_file` converts the result back.
"""
from __future__ import annotations

import re

import torch

UNET_TOP = {  # diffusers -> original
    "time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
}
RESNET_PARTS = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
VAE_ATTN_PARTS = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
                  ("to_out.0.", "proj_out."), ("query.", "q."), ("key.", "k."), ("value.", "v."),
                  ("proj_attn.", "proj_out."))
OPENCLIP_PARTS = (("text_model.encoder.layers.", "transformer.resblocks."), ("layer_norm1", "ln_1"),
                  ("layer_norm2", "ln_2"), (".fc1.", ".c_fc."), (".fc2.", ".c_proj."), (".self_attn", ".attn"),
                  ("text_model.final_layer_norm.", "ln_final."),
                  ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
                  ("text_model.embeddings.position_embedding.weight", "positional_embedding"))


def _rename(state: dict, prefixes: dict) -> dict:
    """Replace the longest matching diffusers prefix of every key."""
    ordered = sorted(prefixes, key=len, reverse=True)
    out = {}
    for key, value in state.items():
        new = key
        for hf in ordered:
            if key.startswith(hf):
                new = prefixes[hf] + key[len(hf):]
                break
        out[new] = value
    return out


def _unet_prefixes(config: dict, controlnet: bool = False) -> dict:
    levels, per = len(config["block_out_channels"]), config["layers_per_block"]
    down_attn = ["CrossAttn" in t for t in config["down_block_types"]]
    up_attn = ["CrossAttn" in t for t in config.get("up_block_types", ())]
    p = dict(UNET_TOP)
    for i in range(levels):
        for j in range(per):
            n = 1 + i * (per + 1) + j
            p[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{n}.0."
            if down_attn[i]:
                p[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{n}.1."
        if i < levels - 1:
            p[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{(i + 1) * (per + 1)}.0.op."
        if controlnet:
            continue
        for j in range(per + 1):
            n = i * (per + 1) + j
            p[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{n}.0."
            if up_attn[i]:
                p[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{n}.1."
        if i < levels - 1:
            p[f"up_blocks.{i}.upsamplers.0."] = f"output_blocks.{i * (per + 1) + per}.{2 if up_attn[i] else 1}."
    p["mid_block.resnets.0."] = "middle_block.0."
    p["mid_block.attentions.0."] = "middle_block.1."
    p["mid_block.resnets.1."] = "middle_block.2."
    return p


def _resnet_parts(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        if "resnets." in key:
            for hf, sd in RESNET_PARTS:
                key = key.replace(f".{hf}.", f".{sd}.")
        out[key] = value
    return out


def convert_unet(state: dict, config: dict) -> dict:
    return _rename(_resnet_parts(state), _unet_prefixes(config))


def convert_controlnet(state: dict, config: dict) -> dict:
    """ControlNetModel -> the `control_model.*` layout of the original ControlNet releases."""
    p = _unet_prefixes(config, controlnet=True)
    p.update({"controlnet_cond_embedding.conv_in.": "input_hint_block.0.",
              "controlnet_cond_embedding.conv_out.": "input_hint_block.14.",
              "controlnet_mid_block.": "middle_block_out.0."})
    blocks = {k.split(".")[2] for k in state if k.startswith("controlnet_cond_embedding.blocks.")}
    for b in blocks:
        p[f"controlnet_cond_embedding.blocks.{b}."] = f"input_hint_block.{2 * (int(b) + 1)}."
    zeros = {k.split(".")[1] for k in state if k.startswith("controlnet_down_blocks.")}
    for z in zeros:
        p[f"controlnet_down_blocks.{z}."] = f"zero_convs.{z}.0."
    return {"control_model." + k: v for k, v in _rename(_resnet_parts(state), p).items()}


def convert_vae(state: dict, config: dict) -> dict:
    levels, per = len(config["block_out_channels"]), config["layers_per_block"]
    p = {"encoder.conv_norm_out.": "encoder.norm_out.", "decoder.conv_norm_out.": "decoder.norm_out."}
    for part in ("encoder", "decoder"):
        p[f"{part}.mid_block.attentions.0."] = f"{part}.mid.attn_1."
        for k in range(2):
            p[f"{part}.mid_block.resnets.{k}."] = f"{part}.mid.block_{k + 1}."
    for i in range(levels):
        for j in range(per):
            p[f"encoder.down_blocks.{i}.resnets.{j}."] = f"encoder.down.{i}.block.{j}."
        for j in range(per + 1):
            p[f"decoder.up_blocks.{i}.resnets.{j}."] = f"decoder.up.{levels - 1 - i}.block.{j}."
        if i < levels - 1:
            p[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
            p[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{levels - 1 - i}.upsample."
    out = {}
    for key, value in _rename(state, p).items():
        key = key.replace(".conv_shortcut.", ".nin_shortcut.")
        if ".mid.attn_1." in key:
            head, tail = key.split(".mid.attn_1.")
            for hf, sd in VAE_ATTN_PARTS:
                if tail.startswith(hf):
                    tail = sd + tail[len(hf):]
                    break
            key = f"{head}.mid.attn_1.{tail}"
            if tail.endswith(".weight") and value.ndim == 2:  # linear -> 1x1 conv
                value = value.reshape(*value.shape, 1, 1)
        out[key] = value
    return out


def _with_text_model(state: dict) -> dict:
    """transformers >= 5.6 flattened CLIPTextModel; the original files keep the `text_model.` level."""
    return {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
            for k, v in state.items() if not k.endswith("position_ids")}


def convert_clip_l(state: dict) -> dict:
    return _with_text_model(state)


def convert_open_clip(state: dict) -> dict:
    """CLIPTextModel(WithProjection) -> OpenCLIP names with fused q/k/v (`in_proj_*`)."""
    out, fused = {}, {}
    pattern = re.compile(r"(.*)\.self_attn\.([qkv])_proj\.(weight|bias)$")
    for key, value in _with_text_model(state).items():
        match = pattern.match(key)
        if match:
            fused.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = value
            continue
        if key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
            continue
        for hf, sd in OPENCLIP_PARTS:
            key = key.replace(hf, sd)
        out[key] = value
    for (layer, kind), qkv in fused.items():
        for hf, sd in OPENCLIP_PARTS:
            layer = layer.replace(hf, sd)
        out[f"{layer}.attn.in_proj_{kind}"] = torch.cat([qkv["q"], qkv["k"], qkv["v"]])
    return out


def pipeline_to_original(pipe, family: str) -> dict:
    """A whole SD1 / SD2 / SDXL pipeline as one original-layout state dict."""
    unet = convert_unet(pipe.unet.state_dict(), dict(pipe.unet.config))
    state = {"model.diffusion_model." + k: v for k, v in unet.items()}
    state.update({"first_stage_model." + k: v for k, v in convert_vae(pipe.vae.state_dict(), pipe.vae.config).items()})
    text = pipe.text_encoder.state_dict()
    if family == "SDXL":
        state.update({"conditioner.embedders.0.transformer." + k: v for k, v in convert_clip_l(text).items()})
        state.update({"conditioner.embedders.1.model." + k: v
                      for k, v in convert_open_clip(pipe.text_encoder_2.state_dict()).items()})
    elif family == "SD2":  # OpenCLIP-ViT-H
        state.update({"cond_stage_model.model." + k: v for k, v in convert_open_clip(text).items()})
    else:
        state.update({"cond_stage_model.transformer." + k: v for k, v in convert_clip_l(text).items()})
    return state
