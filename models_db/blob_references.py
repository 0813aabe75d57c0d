"""Every column that holds a blob address, in one place. A blob that none of them names, and that no writer
has marked pending (stored, its row not yet committed), is unused: only then are a rejected upload's bytes
deleted, and only those blobs does the orphan sweep remove."""
from __future__ import annotations

import json
from typing import Iterable

from peewee import chunked

from models_db.catalog import ModelFile
from models_db.generation import GenerationJob, GenerationRun
from models_db.images import Image, ImageVariant
from models_db.storage import get_store, pending

COLUMNS = (ModelFile.blob, Image.blob, ImageVariant.blob, GenerationJob.output_blob)  # one address a row
JSON_COLUMNS = (GenerationRun.grid_blobs,  # a JSON list of grid images
                GenerationJob.inputs_json)  # a JSON object: init image, mask, ControlNet image


def blobs_in_use(candidates: Iterable[str]) -> set[str]:
    """Those of candidates that some row still names or a writer is about to name."""
    wanted = set(candidates)
    used = pending(sorted(wanted))
    for chunk in chunked(sorted(wanted), 500):
        for field in COLUMNS:
            used.update(v for (v,) in field.model.select(field).where(field.in_(chunk)).tuples())
    for field in JSON_COLUMNS:  # no index can answer these: one pass over the distinct non-empty values
        rows = field.model.select(field).distinct().where(field.is_null(False), field.not_in(("{}", "[]")))
        for (text,) in rows.tuples():
            value = json.loads(text)
            used.update(wanted.intersection(value.values() if isinstance(value, dict) else value))
    return used


def delete_blob_if_unused(blob: str) -> None:
    if blob not in blobs_in_use([blob]):
        get_store().delete(blob)
