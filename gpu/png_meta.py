"""Generation metadata in image files: A1111's "parameters" text (written by our generator, read
from uploads) and ComfyUI's "prompt"/"workflow" JSON chunks."""
from __future__ import annotations

import json
import re

PAIR = re.compile(r'\s*([\w ][\w \-/+]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
NUMBERS = {"Steps": int, "Seed": int, "CFG scale": float, "Clip skip": int, "Denoising strength": float,
           "Hires steps": int, "Hires upscale": float}
META_KEYS = {"Steps": "steps", "Sampler": "sampler", "CFG scale": "cfgScale", "Seed": "seed"}


def parse_a1111(text: str) -> dict:
    """{"prompt", "negativePrompt", "steps", "sampler", "cfgScale", "seed", "Size", "Model hash", ...}"""
    lines = (text or "").strip().split("\n")
    settings_line = ""
    if lines and PAIR.match(lines[-1]) and ("Steps:" in lines[-1] or "Seed:" in lines[-1]):
        settings_line = lines.pop()
    prompt, negative, target = [], [], None
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative
            line = line[len("Negative prompt:"):].strip()
        (negative if target is negative else prompt).append(line)
    meta: dict = {"prompt": "\n".join(prompt).strip()}
    if negative:
        meta["negativePrompt"] = "\n".join(negative).strip()
    for key, value in PAIR.findall(settings_line):
        key, value = key.strip(), value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = json.loads(value)
        if key in NUMBERS:
            try:
                value = NUMBERS[key](value)
            except ValueError:
                pass
        meta[META_KEYS.get(key, key)] = value
    if "Lora hashes" in meta:
        meta["loraHashes"] = dict(part.strip().rsplit(": ", 1) for part in str(meta["Lora hashes"]).split(",")
                                  if ": " in part)
    return meta


def format_a1111(prompt: str, negative: str | None, params: dict) -> str:
    """The parameters text A1111 writes; values with commas are quoted."""
    def value(v):
        v = str(v)
        return json.dumps(v) if ("," in v or ":" in v or '"' in v) else v
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{k}: {value(v)}" for k, v in params.items() if v is not None and v != ""))
    return "\n".join(lines)


def parse_comfyui(prompt_json: str | None, workflow_json: str | None) -> dict:
    """Prompt, negative, sampler settings and checkpoint from a ComfyUI API-format graph."""
    meta: dict = {}
    try:
        graph = json.loads(prompt_json) if prompt_json else {}
    except json.JSONDecodeError:
        graph = {}
    if workflow_json:
        try:
            meta["workflow"] = json.loads(workflow_json)
        except json.JSONDecodeError:
            pass
    meta["comfy"] = bool(graph) or "workflow" in meta
    texts = {nid: n.get("inputs", {}).get("text") for nid, n in graph.items()
             if isinstance(n, dict) and "CLIPTextEncode" in str(n.get("class_type", ""))}
    for node in graph.values():
        if not isinstance(node, dict):
            continue
        kind, inputs = str(node.get("class_type", "")), node.get("inputs", {})
        if kind.startswith("KSampler"):
            for ours, theirs in (("seed", "seed"), ("steps", "steps"), ("cfgScale", "cfg"),
                                 ("sampler", "sampler_name"), ("scheduler", "scheduler")):
                if theirs in inputs and not isinstance(inputs[theirs], list):
                    meta[ours] = inputs[theirs]
            for ours, theirs in (("prompt", "positive"), ("negativePrompt", "negative")):
                ref = inputs.get(theirs)
                if isinstance(ref, list) and texts.get(str(ref[0])) is not None:
                    meta[ours] = texts[str(ref[0])]
        elif kind.startswith("CheckpointLoader"):
            meta["Model"] = inputs.get("ckpt_name")
        elif kind == "EmptyLatentImage" and "width" in inputs:
            meta["Size"] = f"{inputs['width']}x{inputs['height']}"
    return meta


def parse_image_text(info: dict) -> dict | None:
    """Metadata from a PIL image's text chunks / info, or None when it carries none."""
    if info.get("parameters"):
        return parse_a1111(str(info["parameters"]))
    if info.get("prompt") or info.get("workflow"):
        return parse_comfyui(info.get("prompt"), info.get("workflow"))
    return None


def meta_to_a1111(meta: dict) -> str:
    """Stored image meta back to the parameters text ("copy generation data", pasted into A1111)."""
    names = {v: k for k, v in META_KEYS.items()}
    params = {names.get(k, k): v for k, v in meta.items()
              if k not in ("prompt", "negativePrompt", "loraHashes") and not isinstance(v, (dict, list))}
    return format_a1111(meta.get("prompt", ""), meta.get("negativePrompt"), params)
