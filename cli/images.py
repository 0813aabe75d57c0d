"""atelier import-images: add image files (with their generation metadata) to the catalog."""
from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import open_db

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


@click.command("import-images")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--user", "username", help="Owner (default: the first admin).")
@click.option("--model-version", type=int, help="Make them showcase images of this version.")
@click.option("--post-title", default=None, help="Group them in a new post with this title.")
def import_images(paths, username, model_version, post_title):
    """Validate, strip location data, hash, read generation metadata and score NSFW levels.
    Directories are walked for PNG, JPEG and WebP files. Prints one JSON line per image."""
    from tqdm import tqdm

    from cli.catalog import default_owner
    from jobs.images import process, score, staging_path
    from models_db import images as im
    from models_db.accounts import User
    from models_db.catalog import ModelVersion
    open_db()
    owner = User.get_or_none(User.username == username) if username else default_owner()
    if owner is None:
        raise click.ClickException(f"no user named {username!r}")
    version = ModelVersion.get_or_none(ModelVersion.id == model_version) if model_version else None
    if model_version and version is None:
        raise click.ClickException(f"no model version with id {model_version}")
    files = sorted(p for path in paths for p in ([path] if path.is_file() else path.rglob("*"))
                   if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise click.ClickException("no PNG, JPEG or WebP files found")
    post = im.Post.create(user=owner, model_version=version, title=post_title) if post_title is not None else None
    ready, failed = [], 0
    for path in tqdm(files, unit="image", desc="importing", disable=None):
        image = im.Image.create(user=owner, post=post, model_version=version, showcase=version is not None,
                                filename=path.name[:255])
        staging_path(image.id).write_bytes(path.read_bytes())
        status = process(image.id)
        image = im.Image.get_by_id(image.id)
        if status == "Ready":
            ready.append(image.id)
        else:
            failed += 1
            click.echo(f"{path}: {image.error}", err=True)
    for i in tqdm(range(0, len(ready), 16), unit="batch", desc="nsfw levels", disable=None):
        score(ready[i:i + 16])
    for image in im.Image.select().where(im.Image.id.in_(ready)).order_by(im.Image.id):
        click.echo(json.dumps({"id": image.id, "file": image.filename, "width": image.width, "height": image.height,
                               "nsfwLevel": image.nsfw_level, "needsReview": image.needs_review,
                               "hasMeta": image.meta_json is not None, "blurhash": image.blurhash}))
    if failed:
        raise SystemExit(1)


COMMANDS = [import_images]
