"""Search documents: one per model, built in batches from the catalog."""
from __future__ import annotations

import json
import re
from html import unescape
from pathlib import PurePosixPath

from models_db.accounts import User
from models_db.catalog import Model, ModelFile, ModelTag, ModelVersion, Tag

TAG_RE = re.compile(r"<[^>]+>")
SEPARATORS = re.compile(r"[_\-.+]+")


def plain_text(html: str) -> str:
    return " ".join(unescape(TAG_RE.sub(" ", html or "")).split())


def embedding_text(doc: dict) -> str:
    return ". ".join(p for p in (doc["name"], " ".join(doc["tags"]), doc["description"][:300]) if p)


def add_new(into: list[str], values) -> None:
    into.extend(v for v in values if v and v not in into)


def trained_words(stored: str) -> list[str]:
    try:
        words = json.loads(stored or "[]")
    except ValueError:
        return []
    return [str(w)[:200] for w in words if w] if isinstance(words, list) else []


def file_stem(name: str) -> str:
    """A file's name as words: without its extension, separators read as spaces ("my_lora-v2.safetensors"
    -> "my lora v2")."""
    stem = PurePosixPath(name or "").stem if "." in (name or "") else (name or "")
    return " ".join(SEPARATORS.sub(" ", stem).split())


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
    versions: dict[int, list[str]] = {i: [] for i in rows}
    triggers: dict[int, list[str]] = {i: [] for i in rows}
    for model_id, base, name, words in (ModelVersion.select(ModelVersion.model, ModelVersion.base_model,
                                                            ModelVersion.name, ModelVersion.trained_words_json)
                                        .where(ModelVersion.model.in_(list(rows))).order_by(ModelVersion.id).tuples()):
        add_new(bases[model_id], [base])
        add_new(versions[model_id], [name])
        add_new(triggers[model_id], trained_words(words))
    files: dict[int, list[str]] = {i: [] for i in rows}
    for model_id, name in (ModelFile.select(ModelVersion.model, ModelFile.name).join(ModelVersion)
                           .where(ModelVersion.model.in_(list(rows))).order_by(ModelFile.id).tuples()):
        add_new(files[model_id], [file_stem(name)])
    docs = [{
        "id": m["id"], "name": m["name"], "description": plain_text(m["description"]), "tags": tags[m["id"]],
        "creator": m["username"], "owner_id": m["owner"], "type": m["type"], "base_models": sorted(bases[m["id"]]),
        "triggers": triggers[m["id"]][:50], "files": files[m["id"]][:50], "versions": versions[m["id"]][:50],
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
