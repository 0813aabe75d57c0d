"""Image processing (validation, location stripping, hashes, variants, metadata, resource links) and
NSFW scoring by the real detector, batched."""
from __future__ import annotations

import io
import json

import dramatiq

from gpu import image_files, nsfw
from gpu.png_meta import parse_image_text
from jobs.broker import logs_result
from models_db import images as im
from models_db.catalog_queries import version_ids_by_hash
from models_db.db import on_commit, transaction
from models_db.storage import get_store, holding
from models_db.uploads import part_path

VARIANT_WIDTHS = (96, 450)


def staging_path(image_id: int):
    return part_path(f"image-{image_id}")


@dramatiq.actor(queue_name="default", max_retries=5, time_limit=10 * 60 * 1000)
def process_image(image_id: int) -> None:
    process(image_id)


def process(image_id: int) -> str:
    """Idempotent: only a Pending image is processed. Returns the image's status afterwards."""
    image = im.Image.get_or_none(im.Image.id == image_id)
    if image is None or image.status != "Pending":
        return image.status if image else "Missing"
    staged = staging_path(image.id)
    store = get_store()
    if staged.exists():
        data = staged.read_bytes()
    elif image.blob and store.exists(image.blob):  # generated: stored by the GPU worker already
        with store.open(image.blob) as f:
            data = f.read()
    else:
        return reject(image, "the uploaded bytes were lost; upload again")
    try:
        decoded, info = image_files.inspect(data)
    except image_files.InvalidImage as exc:
        return reject(image, str(exc))
    clean = image_files.without_location(data, decoded)
    with holding():  # the blobs' pending marks go once the rows name them
        blob, size = store.put_stream(io.BytesIO(clean))
        variants = []
        for width in VARIANT_WIDTHS:
            body, mime = image_files.resized(decoded, width)
            variants.append((width, store.put_stream(io.BytesIO(body))[0], mime))
        meta = parse_image_text(info.text)
        with transaction():
            image.blob, image.size_bytes, image.mime = blob, size, info.mime
            image.width, image.height = info.width, info.height
            image.blurhash, image.phash = image_files.blurhash(decoded), image_files.perceptual_hash(decoded)
            image.meta_json = json.dumps(meta) if meta else None
            image.status = "Ready"
            image.save(only=image.dirty_fields)  # a post made meanwhile (private, post) stays
            for width, variant_blob, mime in variants:
                (im.ImageVariant.insert(image=image, width=width, blob=variant_blob, mime=mime)
                 .on_conflict_ignore().execute())
            link_resources(image, meta or {})
            on_commit(lambda: check_nsfw.send([image.id]))
    staged.unlink(missing_ok=True)
    return "Ready"


def reject(image: im.Image, reason: str) -> str:
    with transaction():
        image.status, image.error = "Rejected", reason
        image.save(only=image.dirty_fields)
    staging_path(image.id).unlink(missing_ok=True)
    return "Rejected"


def link_resources(image: im.Image, meta: dict) -> None:
    """Links the catalog versions named by the metadata's Model hash and Lora hashes: those the image's
    owner may see (the links are public, so never someone else's draft)."""
    wanted = []
    if meta.get("Model hash"):
        wanted.append(("checkpoint", str(meta["Model hash"]), str(meta.get("Model", ""))))
    wanted += [("lora", str(h), name) for name, h in (meta.get("loraHashes") or {}).items()]
    for kind, file_hash, name in wanted:
        for version_id in version_ids_by_hash([file_hash], image.user_id):
            im.ImageResource.insert(image=image, version=version_id, kind=kind, name=name[:255]
                                    ).on_conflict_ignore().execute()


@dramatiq.actor(queue_name="default", max_retries=5, time_limit=30 * 60 * 1000)
def check_nsfw(image_ids: list[int]) -> None:
    score(image_ids)


def score(image_ids: list[int], batch_size: int = 8) -> int:
    """Runs the detector over these images (their 450px variants) and sets their levels, unless a
    moderator or the community already decided. Returns how many were scored."""
    rows = list(im.Image.select().where(im.Image.id.in_(image_ids), im.Image.status == "Ready",
                                        (im.Image.nsfw_source.is_null()) | (im.Image.nsfw_source == "detector")))
    if not rows:
        return 0
    variants = {v.image_id: v.blob for v in im.ImageVariant.select().where(
        im.ImageVariant.image.in_([r.id for r in rows]), im.ImageVariant.width == 450)}
    store = get_store()
    payloads = []
    for row in rows:
        with store.open(variants.get(row.id, row.blob)) as stream:
            payloads.append(stream.read())
    detections = nsfw.detect(payloads, batch_size=batch_size)
    with transaction():
        for row, found in zip(rows, detections):
            level, uncertain = nsfw.level_for(found)
            row.nsfw_level, row.nsfw_source = level, "detector"
            row.detections_json = json.dumps(found)
            row.needs_review = row.needs_review or uncertain
            row.save(only=row.dirty_fields)
        im.refresh_version_levels([r.model_version_id for r in rows])
    return len(rows)


@dramatiq.actor(queue_name="default", max_retries=3, time_limit=30 * 60 * 1000)
@logs_result
def score_unscored_images(limit: int = 512) -> int:
    """Scores Ready images that have no level yet (a lost or failed check_nsfw message), in batches."""
    ids = [i for (i,) in im.Image.select(im.Image.id).where(im.Image.status == "Ready", im.Image.nsfw_level == 0)
           .order_by(im.Image.id).limit(limit).tuples()]
    return sum(score(ids[i:i + 16]) for i in range(0, len(ids), 16))
