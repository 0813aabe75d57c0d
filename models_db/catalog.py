"""The model catalog: models, versions, files, their hashes and tags (shapes of the Civitai API v1)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    Check,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from models_db.accounts import User
from models_db.db import BaseModel, utcnow
from models_db.ids import INT64_MAX, parse_id

MODEL_TYPES = ("Checkpoint", "TextualInversion", "Hypernetwork", "AestheticGradient", "LORA", "LoCon",
               "DoRA", "Controlnet", "Upscaler", "MotionModule", "VAE", "Poses", "Wildcards", "Workflows",
               "Other")
MODEL_STATUSES = ("Draft", "Training", "Published", "Scheduled", "Unpublished", "UnpublishedViolation",
                  "GatherInterest", "Deleted")
BASE_MODELS = ("SD 1.4", "SD 1.5", "SD 1.5 LCM", "SD 2.0", "SD 2.1", "SDXL 1.0", "SDXL Turbo",
               "SDXL Lightning", "Pony", "Illustrious", "NoobAI", "Flux.1 S", "Flux.1 D", "SD 3",
               "SD 3.5", "Other")
FILE_TYPES = ("Model", "Pruned Model", "Training Data", "Config", "VAE", "Text Encoder", "Archive")
FILE_FORMATS = ("SafeTensor", "PickleTensor", "Diffusers", "Other")
FILE_SIZES = ("full", "pruned")
FILE_FPS = ("fp32", "fp16", "bf16", "fp8", "nf4")
COMMERCIAL_USES = ("None", "Image", "Rent", "Sell")
HASH_TYPES = ("SHA256", "AutoV1", "AutoV2", "CRC32", "BLAKE3")
SCAN_RESULTS = ("Pending", "Success", "Danger", "Error")
NSFW_LEVELS = {"PG": 1, "PG13": 2, "R": 4, "X": 8, "XXX": 16, "Blocked": 32}


class Model(BaseModel):
    name = CharField(max_length=255)
    description = TextField(default="")
    type = CharField(max_length=32, constraints=[Check("type <> ''")])
    owner = ForeignKeyField(User, backref="models")
    status = CharField(max_length=32, default="Draft")
    nsfw = BooleanField(default=False)  # the creator's flag, or a showcase image rated R or above
    nsfw_level = IntegerField(default=0)  # OR of the versions' levels; R at least when the creator says nsfw
    creator_nsfw = BooleanField(default=False)  # what the creator declared: images never clear it
    poi = BooleanField(default=False)
    minor = BooleanField(default=False)
    allow_no_credit = BooleanField(default=True)
    allow_commercial_use = CharField(max_length=40, default="Image,Rent,Sell")
    allow_derivatives = BooleanField(default=True)
    allow_different_license = BooleanField(default=True)
    availability = CharField(max_length=16, default="Public")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    published_at = DateTimeField(null=True)
    download_count = IntegerField(default=0)
    favorite_count = IntegerField(default=0)
    thumbs_up_count = IntegerField(default=0)
    thumbs_down_count = IntegerField(default=0)
    comment_count = IntegerField(default=0)
    rating_count = IntegerField(default=0)
    rating = FloatField(default=0)
    tipped_amount_count = IntegerField(default=0)

    class Meta:
        indexes = (
            (("status", "published_at", "id"), False),
            (("status", "download_count", "id"), False),
            (("status", "rating", "id"), False),
            (("owner", "status"), False),
        )


class ModelVersion(BaseModel):
    model = ForeignKeyField(Model, backref="versions", on_delete="CASCADE")
    index = IntegerField(default=0)
    name = CharField(max_length=255)
    description = TextField(default="")
    base_model = CharField(max_length=32)
    base_model_type = CharField(max_length=16, default="Standard")
    status = CharField(max_length=32, default="Draft")
    availability = CharField(max_length=16, default="Public")
    nsfw_level = IntegerField(default=0)
    trained_words_json = TextField(default="[]")
    early_access_time_frame = IntegerField(default=0)
    upload_type = CharField(max_length=16, default="Created")
    login_required = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    published_at = DateTimeField(null=True)
    download_count = IntegerField(default=0)
    rating_count = IntegerField(default=0)
    rating = FloatField(default=0)
    thumbs_up_count = IntegerField(default=0)
    thumbs_down_count = IntegerField(default=0)

    @property
    def trained_words(self) -> list[str]:
        return json.loads(self.trained_words_json)

    @trained_words.setter
    def trained_words(self, words) -> None:
        self.trained_words_json = json.dumps([w.strip() for w in words if w and w.strip()])


class ModelFile(BaseModel):
    version = ForeignKeyField(ModelVersion, backref="files", on_delete="CASCADE")
    name = CharField(max_length=255)
    type = CharField(max_length=32, default="Model")
    blob = CharField(max_length=64, index=True)  # lower-case SHA256: the content address
    size_bytes = BigIntegerField()
    status = CharField(max_length=16, default="Pending")  # Pending | Ready | Danger
    format = CharField(max_length=16, default="Other")
    size_kind = CharField(max_length=8, default="full")
    fp = CharField(max_length=8, null=True)
    architecture = CharField(max_length=32, null=True)
    primary = BooleanField(default=False)
    pickle_scan_result = CharField(max_length=16, default="Pending")
    pickle_scan_message = TextField(null=True)
    virus_scan_result = CharField(max_length=16, default="Pending")
    virus_scan_message = TextField(null=True)
    scanned_at = DateTimeField(null=True)
    info_json = TextField(default="{}")  # tensor count, parameters, embedded metadata
    created_at = DateTimeField(default=utcnow)

    @property
    def downloadable(self) -> bool:
        return self.status == "Ready" and self.pickle_scan_result == "Success"


class ModelFileHash(BaseModel):
    file = ForeignKeyField(ModelFile, backref="hashes", on_delete="CASCADE")
    type = CharField(max_length=8)
    hash = CharField(max_length=64, index=True)  # upper-case hex

    class Meta:
        indexes = ((("file", "type"), True),)


class Tag(BaseModel):
    name = CharField(max_length=100, unique=True)


class ModelTag(BaseModel):
    model = ForeignKeyField(Model, backref="model_tags", on_delete="CASCADE")
    tag = ForeignKeyField(Tag, backref="model_tags", on_delete="CASCADE")

    class Meta:
        indexes = ((("model", "tag"), True), (("tag", "model"), False))


TABLES = [Model, ModelVersion, ModelFile, ModelFileHash, Tag, ModelTag]


def search_changed(model_ids) -> None:
    """The search index must pick these models up again once the transaction commits."""
    from models_db.search.sync import mark_after_commit
    mark_after_commit(model_ids)


def normalize_tags(names) -> list[str]:
    seen = []
    for name in names or []:
        name = " ".join(str(name).split()).lower()[:100]
        if name and name not in seen:
            seen.append(name)
    return seen


def set_tags(model: Model, names) -> None:
    search_changed([model.id])
    ModelTag.delete().where(ModelTag.model == model).execute()
    for name in normalize_tags(names):
        tag, _ = Tag.get_or_create(name=name)
        ModelTag.create(model=model, tag=tag)


def ecosystem(base_model: str) -> str:
    base = base_model.lower()
    for prefix, name in (("sd 1", "sd1"), ("sd 2", "sd2"), ("sdxl", "sdxl"), ("pony", "pony"),
                         ("illustrious", "sdxl"), ("noobai", "sdxl"), ("flux", "flux1"), ("sd 3", "sd3")):
        if base.startswith(prefix):
            return name
    return "other"


AIR_TYPES = {"Checkpoint": "checkpoint", "LORA": "lora", "LoCon": "lora", "DoRA": "lora",
             "TextualInversion": "embedding", "VAE": "vae", "Controlnet": "controlnet",
             "Upscaler": "upscaler", "Hypernetwork": "hypernet", "Wildcards": "wildcards",
             "Workflows": "workflow", "MotionModule": "motion"}


AIR = re.compile(r"urn:air:([\w.-]+):([\w-]+):([\w-]+):([^:@]+?)(?:@([^:@]+?))?(?:\.(\w+))?", re.ASCII)


class BadAir(ValueError):
    pass


@dataclass(frozen=True)
class ParsedAir:
    ecosystem: str
    type: str
    model_id: int
    version_id: int | None


def air(model_type: str, base_model: str, model_id: int, version_id: int) -> str:
    kind = AIR_TYPES.get(model_type, model_type.lower())
    return f"urn:air:{ecosystem(base_model)}:{kind}:civitai:{model_id}@{version_id}"


def parse_air(text: str) -> ParsedAir:
    """urn:air:ECOSYSTEM:TYPE:civitai:MODEL[@VERSION][.FORMAT]; BadAir says what is wrong."""
    match = AIR.fullmatch(text.strip())
    if match is None:
        raise BadAir(f"{text[:100]!r} is not an AIR (urn:air:ECOSYSTEM:TYPE:civitai:MODEL[@VERSION])")
    eco, kind, source, model, version, _ = match.groups()
    if source != "civitai":
        raise BadAir(f"AIR source {source!r}: only civitai AIRs name catalog models")
    ids = [parse_id(model), parse_id(version) if version is not None else 0]
    if None in ids:
        bad = model if ids[0] is None else version
        raise BadAir(f"AIR id {bad[:40]!r} is not a number from 1 to {INT64_MAX}")
    return ParsedAir(eco, kind, ids[0], ids[1] or None)


def refresh_published(model: Model) -> None:
    """A model is Published while at least one of its versions is."""
    search_changed([model.id])
    published = model.versions.where(ModelVersion.status == "Published").exists()
    if published and model.status != "Published":
        model.status, model.published_at = "Published", model.published_at or utcnow()
    elif not published and model.status == "Published":
        model.status = "Unpublished"
    model.updated_at = utcnow()
    model.save()


def visible_to(version: ModelVersion, user) -> bool:
    """Published versions of published models are everyone's; the others only their owner's and staff's."""
    model = version.model
    if model.status == "Deleted":
        return False
    if version.status == "Published" and model.status == "Published":
        return True
    return may_manage(version, user)


def may_manage(version: ModelVersion, user) -> bool:
    """The version's owner and staff manage it (and only they add its showcase images)."""
    return user is not None and (version.model.owner_id == user.id or getattr(user, "is_staff", False))


class NotPublishable(ValueError):
    pass


def create_model(owner, *, tags=(), **fields) -> Model:
    declared = bool(fields.get("nsfw"))
    model = Model.create(owner=owner, creator_nsfw=declared, nsfw_level=NSFW_LEVELS["R"] if declared else 0, **fields)
    set_tags(model, tags)
    return model


def create_version(model: Model, *, trained_words=(), **fields) -> ModelVersion:
    """A new version goes first (index 0): versions are listed newest first."""
    search_changed([model.id])
    ModelVersion.update(index=ModelVersion.index + 1).where(ModelVersion.model == model).execute()
    version = ModelVersion(model=model, index=0, **fields)
    version.trained_words = trained_words
    version.save()
    return version


def publish_version(version: ModelVersion) -> None:
    """Publishes a version that has an ingested, safe file, and with it its model."""
    if not version.files.where(ModelFile.status == "Ready").exists():
        raise NotPublishable("this version has no ingested, safe file yet; upload one (or wait for its ingest)")
    if version.status != "Published":
        version.status, version.published_at, version.updated_at = "Published", utcnow(), utcnow()
        version.save()
    refresh_published(version.model)
