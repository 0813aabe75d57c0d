"""Tables shared by the database search backends: one row per document with the filter and sort
columns, its facet values, and the vocabulary used for typo correction."""
from __future__ import annotations

from peewee import BigIntegerField, BooleanField, CharField, DateTimeField, FloatField, IntegerField, TextField

from models_db.db import BaseModel


class SearchDoc(BaseModel):
    id = IntegerField(primary_key=True)  # the model's id
    name = TextField()
    tags_text = TextField(default="")
    triggers_text = TextField(default="")  # the versions' trigger words
    files_text = TextField(default="")  # file names without extensions
    versions_text = TextField(default="")  # version names
    description = TextField(default="")
    creator = CharField(max_length=64)
    owner_id = IntegerField()
    type = CharField(max_length=32, index=True)
    status = CharField(max_length=32)
    nsfw = BooleanField()
    nsfw_level = IntegerField()
    published_at = DateTimeField(null=True)
    download_count = BigIntegerField()
    rating = FloatField()

    class Meta:
        indexes = ((("status", "published_at"), False), (("status", "download_count"), False),
                   (("status", "rating"), False))


class SearchFacet(BaseModel):
    doc_id = IntegerField()
    field = CharField(max_length=16)  # type | baseModel | tags
    value = CharField(max_length=100)

    class Meta:
        primary_key = False
        indexes = ((("field", "value", "doc_id"), False), (("doc_id", "field", "value"), False))  # both covering


class SearchTerm(BaseModel):
    term = CharField(max_length=64, primary_key=True)


class SearchSynonym(BaseModel):
    """Words (or phrases) that mean the same to a searcher: one row per word, grouped by `group`."""
    term = CharField(max_length=64, primary_key=True)
    group = IntegerField(index=True)


TABLES = [SearchDoc, SearchFacet, SearchTerm, SearchSynonym]


def facet_rows(doc: dict) -> list[dict]:
    rows = [{"doc_id": doc["id"], "field": "type", "value": doc["type"]}]
    rows += [{"doc_id": doc["id"], "field": "baseModel", "value": b[:100]} for b in doc["base_models"]]
    rows += [{"doc_id": doc["id"], "field": "tags", "value": t[:100]} for t in doc["tags"]]
    return rows
