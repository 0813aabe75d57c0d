"""Search documents: one per model, built in batches from the catalog."""
from __future__ import annotations

import re
from html import unescape

from models_db.accounts import User
from models_db.catalog import Model, ModelTag, ModelVersion, Tag

TAG_RE = re.compile(r"<[^>]+>")


def plain_text(html: str) -> str:
    return " ".join(unescape(TAG_RE.sub(" ", html or "")).split())


def embedding_text(doc: dict) -> str:
    return ". ".join(p for p in (doc["name"], " ".join(doc["tags"]), doc["description"][:300]) if p)


def build(model_ids: list[int]) -> tuple[list[dict], list[int]]:
    """(documents for the models that exist and are not deleted, ids to remove from the index)."""
    ids = list(dict.fromkeys(model_ids))
    rows = {m["id"]: m for m in Model.select(Model, User.username).join(User, on=(Model.owner == User.id))
            .where(Model.id.in_(ids), Model.status != "Deleted").dicts()}
    tags: dict[int, list[str]] = {i: [] for i in rows}
    for model_id, name in (ModelTag.select(ModelTag.model, Tag.name).join(Tag)
                           .where(ModelTag.model.in_(list(rows))).order_by(Tag.name).tuples()):
        tags[model_id].append(name)
    bases: dict[int, list[str]] = {i: [] for i in rows}
    for model_id, base in (ModelVersion.select(ModelVersion.model, ModelVersion.base_model).distinct()
                           .where(ModelVersion.model.in_(list(rows))).tuples()):
        bases[model_id].append(base)
    docs = [{
        "id": m["id"], "name": m["name"], "description": plain_text(m["description"]), "tags": tags[m["id"]],
        "creator": m["username"], "owner_id": m["owner"], "type": m["type"], "base_models": sorted(bases[m["id"]]),
        "status": m["status"], "nsfw": bool(m["nsfw"]), "nsfw_level": m["nsfw_level"],
        "published_at": m["published_at"], "download_count": m["download_count"], "rating": m["rating"],
    } for m in rows.values()]
    return docs, [i for i in ids if i not in rows]


def all_model_ids(batch: int = 1000):
    last = 0
    while True:
        ids = [i for (i,) in Model.select(Model.id).where(Model.id > last).order_by(Model.id).limit(batch).tuples()]
        if not ids:
            return
        yield ids
        last = ids[-1]
