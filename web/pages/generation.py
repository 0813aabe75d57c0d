"""The generation page: a form that mirrors the request schema, the user's queue with live per-step
progress (one Server-Sent Events stream of all the user's runs), cancel, and the results gallery."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required
from peewee import fn

from gpu.samplers import SAMPLERS
from jobs import generation as jobs
from models_db import catalog as c
from models_db import generation as gen
from web.generation import run_json

bp = Blueprint("site_generation", __name__)
SIZES = ((512, 512), (512, 768), (768, 512), (768, 768), (1024, 1024), (832, 1216), (1216, 832), (896, 1152))
PICKER_LIMIT = 200


def picker(types: tuple[str, ...]) -> list[dict]:
    """Versions with a ready file of the most downloaded published models of these types, and of the
    viewer's own models (drafts included). Two index-friendly steps: models first, then their versions."""
    M, V, F = c.Model, c.ModelVersion, c.ModelFile
    top = list(M.select(M.id).where(M.status == "Published", M.type.in_(types))
               .order_by(M.download_count.desc(), M.id.desc()).limit(PICKER_LIMIT).tuples())
    own = list(M.select(M.id).where(M.owner == current_user.id, M.type.in_(types), M.status != "Deleted").tuples())
    order = {mid: n for n, (mid,) in enumerate(own + top)}
    if not order:
        return []
    ready = F.select(F.version).where(F.status == "Ready", F.version == V.id)
    rows = (V.select(V.id, V.name, V.base_model, V.index, V.status, M.id.alias("model_id"),
                     M.name.alias("model_name"), M.owner).join(M)
            .where(V.model.in_(list(order)), (V.status == "Published") | (M.owner == current_user.id),
                   fn.EXISTS(ready)).dicts())
    rows = sorted(rows, key=lambda r: (order[r["model_id"]], r["index"]))
    return [{"id": r["id"], "label": f"{r['model_name']} — {r['name']}", "base": r["base_model"],
             "ecosystem": c.ecosystem(r["base_model"])} for r in rows]


@bp.get("/generate")
@login_required
def page():
    events_after = jobs.user_position(current_user.id)  # before the runs are read: the page replays from it
    runs = (gen.GenerationRun.select().where(gen.GenerationRun.user == current_user.id)
            .order_by(gen.GenerationRun.id.desc()).limit(20))
    return render_template("generation.html", checkpoints=picker(("Checkpoint",)),
                           loras=picker(("LORA", "LoCon", "DoRA")), samplers=[s["name"] for s in SAMPLERS],
                           sizes=SIZES, runs=[run_json(r) for r in runs],
                           events_after=events_after)
