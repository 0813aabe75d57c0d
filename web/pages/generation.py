"""The generation page: a form that mirrors the request schema (with the chosen family's real defaults), the
user's queue with live per-step progress (one Server-Sent Events stream of all the user's runs), cancel,
and the results, paged. Ways in: "Generate with this model" (?model= or ?lora=) and "Remix" (?remix=)."""
from __future__ import annotations

import json
import re

from flask import Blueprint, render_template, request
from flask_login import current_user, login_required
from peewee import fn

from gpu import presets
from gpu.samplers import SAMPLERS, canonical_name
from gpu.xyz import AXIS_FIELDS, LORA_WEIGHT
from jobs import generation as jobs
from models_db import catalog as c
from models_db import generation as gen
from models_db.catalog_queries import version_ids_by_hash
from models_db.ids import parse_id
from models_db.images import Image, ImageResource, may_see
from web.generation import runs_page
from web.images import image_url

bp = Blueprint("site_generation", __name__)
PICKER_LIMIT = 200
RUNS_SHOWN, IMAGES_SHOWN = 10, 40  # per page of the queue, and per page of a run's images
LORA_TYPES = ("LORA", "LoCon", "DoRA")
INIT_IMAGES = 12  # the viewer's latest images offered as img2img inputs
LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([-\d.]+))?[^>]*>")


def family_of(base_model: str) -> tuple[str, str | None] | None:
    """The generation family (and FLUX variant) of a catalog base model; None when it cannot be generated."""
    families = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL", "pony": "SDXL", "flux1": "FLUX1"}
    family = families.get(c.ecosystem(base_model))
    return (family, gen.FLUX_VARIANTS.get(base_model)) if family else None


def bases() -> dict:
    """Per catalog base model: its compatibility group (models_db.generation.compatible: a LoRA fits a
    checkpoint of the same group, "other" fits any), and for generable ones the family's defaults and sizes."""
    out = {}
    for base in c.BASE_MODELS:
        eco = c.ecosystem(base)
        entry = {"group": {"pony": "sdxl"}.get(eco, eco)}
        found = family_of(base)
        if found:
            family, variant = found
            d = presets.defaults(family, variant)
            entry.update(family=family, defaults={k: d[k] for k in ("width", "height", "steps", "cfg_scale",
                                                                    "sampler", "clip_skip")},
                         sizes=[[name, w, h] for name, (w, h) in presets.SIZE_PRESETS[family].items()],
                         limits=presets.size_limits(family))
        out[base] = entry
    return out


def option(row: dict) -> dict:
    return {"id": row["id"], "label": f"{row['model_name']} — {row['name']}", "base": row["base_model"],
            "type": row["type"]}


def ready_versions(model_ids: list[int]) -> list[dict]:
    """The versions with a ready file of these models the viewer may use (published, or the viewer's own)."""
    M, V, F = c.Model, c.ModelVersion, c.ModelFile
    if not model_ids:
        return []
    ready = F.select(F.version).where(F.status == "Ready", F.version == V.id)
    return list(V.select(V.id, V.name, V.base_model, V.index, V.model, M.name.alias("model_name"), M.type)
                .join(M).where(V.model.in_(model_ids), (V.status == "Published") | (M.owner == current_user.id),
                               M.status != "Deleted", fn.EXISTS(ready)).dicts())


def picker(types: tuple[str, ...]) -> list[dict]:
    """Versions with a ready file of the viewer's own models (drafts included) and of the most downloaded
    published ones; the form searches the whole catalog beyond these as the user types."""
    M = c.Model
    top = list(M.select(M.id).where(M.status == "Published", M.type.in_(types))
               .order_by(M.download_count.desc(), M.id.desc()).limit(PICKER_LIMIT).tuples())
    own = list(M.select(M.id).where(M.owner == current_user.id, M.type.in_(types), M.status != "Deleted").tuples())
    order = {mid: n for n, (mid,) in enumerate(own + top)}
    rows = sorted(ready_versions(list(order)), key=lambda r: (order[r["model"]], r["index"]))
    return [option(r) for r in rows]


def version_option(version_id: int | None, types: tuple[str, ...]) -> dict | None:
    """A version the viewer may generate with, of one of these model types, as the form's pickers show it."""
    version = c.ModelVersion.get_or_none(c.ModelVersion.id == (version_id or 0))
    rows = [r for r in ready_versions([version.model_id]) if r["id"] == version.id and r["type"] in types] \
        if version else []
    return option(rows[0]) if rows else None


def compatible_checkpoint(base_model: str) -> dict | None:
    """The viewer's own, else the most downloaded, checkpoint version a LoRA of this base model fits."""
    M = c.Model
    eco = c.ecosystem(base_model)
    for query in (M.select(M.id).where(M.owner == current_user.id, M.type == "Checkpoint", M.status != "Deleted"),
                  M.select(M.id).where(M.status == "Published", M.type == "Checkpoint")
                  .order_by(M.download_count.desc(), M.id.desc()).limit(PICKER_LIMIT)):
        order = {mid: n for n, (mid,) in enumerate(query.tuples())}
        fits = [r for r in ready_versions(list(order))
                if family_of(r["base_model"]) and gen.compatible(eco, c.ecosystem(r["base_model"]))]
        if fits:
            return option(min(fits, key=lambda r: (order[r["model"]], r["index"])))
    return None


def sampler_of(meta: dict) -> str | None:
    """A1111 writes "DPM++ 2M" with "Schedule type: Karras"; ours are one name."""
    name, schedule = str(meta.get("sampler") or ""), str(meta.get("Schedule type") or "")
    for candidate in (f"{name} {schedule}", name):
        try:
            return canonical_name(candidate.strip())
        except ValueError:
            continue
    return None


def remix(image_id: int | None) -> dict | None:
    """The form's values from an image's generation data: parameters, and its checkpoint and LoRAs (the
    versions its hashes name, as linked to the image or looked up by hash)."""
    image = Image.get_or_none(Image.id == (image_id or 0))
    if image is None or not image.meta_json or not may_see(image.private or image.status != "Ready",
                                                           image.user_id, current_user):
        return None  # someone else's unposted output or unfinished image is not theirs to remix
    meta = json.loads(image.meta_json)
    weights = {name: float(w) for name, w in LORA_TAG.findall(str(meta.get("prompt", ""))) if w}
    out = {"prompt": LORA_TAG.sub("", str(meta.get("prompt", ""))).strip(" ,"),
           "negative_prompt": meta.get("negativePrompt", ""), "seed": meta.get("seed"), "steps": meta.get("steps"),
           "cfg_scale": meta.get("cfgScale"), "sampler": sampler_of(meta), "clip_skip": meta.get("Clip skip"),
           "loras": [], "source": f"image {image.id}"}
    size = re.fullmatch(r"(\d+)x(\d+)", str(meta.get("Size", "")))
    if size:
        out["width"], out["height"] = int(size[1]), int(size[2])
    if meta.get("Hires upscale"):
        out["hires"] = {"scale": meta["Hires upscale"], "steps": meta.get("Hires steps", 0),
                        "denoising_strength": meta.get("Denoising strength", 0.5)}
    linked = ImageResource.get_or_none(ImageResource.image == image, ImageResource.kind == "checkpoint")
    checkpoint = linked.version_id if linked else next(iter(version_ids_by_hash(
        [str(meta.get("Model hash", ""))], current_user.id, current_user.is_staff)), None)
    out["model"] = version_option(checkpoint, ("Checkpoint",))
    for name, file_hash in (meta.get("loraHashes") or {}).items():
        found = version_ids_by_hash([file_hash], current_user.id, current_user.is_staff)
        lora = version_option(found[0], LORA_TYPES) if found else None
        if lora:
            out["loras"].append(dict(lora, weight=weights.get(name, 1.0)))
    return out


def prefill() -> dict | None:
    """What a link into the form asks for: ?model=VERSION, ?lora=VERSION (with a checkpoint it fits), or
    ?remix=IMAGE."""
    args = request.args
    if args.get("remix"):
        return remix(parse_id(args["remix"]))
    if args.get("lora"):
        lora = version_option(parse_id(args["lora"]), LORA_TYPES)
        if lora:
            return {"model": compatible_checkpoint(lora["base"]), "loras": [dict(lora, weight=0.8)],
                    "source": lora["label"]}
    if args.get("model"):
        model = version_option(parse_id(args["model"]), ("Checkpoint",))
        if model:
            return {"model": model, "source": model["label"]}
    return None


def init_images() -> list[dict]:
    """The viewer's latest ready images, to pick as img2img / inpaint input."""
    rows = (Image.select(Image.id, Image.mime, Image.width, Image.height).where(
        Image.user == current_user.id, Image.status == "Ready").order_by(Image.id.desc()).limit(INIT_IMAGES).dicts())
    return [{"id": r["id"], "thumb": image_url(r, 96), "url": image_url(r)} for r in rows]


@bp.get("/generate")
@login_required
def page():
    events_after = jobs.user_position(current_user.id)  # before the runs are read: the page replays from it
    runs, older = runs_page(current_user.id, RUNS_SHOWN, jobs_limit=IMAGES_SHOWN)
    config = {"bases": bases(), "prefill": prefill(), "loras": picker(LORA_TYPES)}
    return render_template("generation.html", checkpoints=picker(("Checkpoint",)), vaes=picker(("VAE",)),
                           controlnets=picker(("Controlnet",)), wildcards=picker(("Wildcards",)),
                           styles=list(presets.STYLES), samplers=[s["name"] for s in SAMPLERS],
                           axis_fields=[*AXIS_FIELDS, f"{LORA_WEIGHT}:0"], init_images=init_images(),
                           runs=runs, older=older, events_after=events_after, config=config,
                           runs_shown=RUNS_SHOWN, images_shown=IMAGES_SHOWN)
