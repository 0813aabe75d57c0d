"""atelier import-model: publish a local model file into the catalog."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from cli.common import open_db

BASE_FOR_ARCH = {"SD1": "SD 1.5", "SD2": "SD 2.1", "SDXL": "SDXL 1.0", "FLUX1": "Flux.1 D", "SD3": "SD 3.5"}


def guess_base_model(info) -> str | None:
    """From the architecture; FLUX schnell and dev by the file's modelspec metadata (dev when unsaid)."""
    spec = str(info.details.get("metadata", {}).get("modelspec.architecture", ""))
    if info.architecture == "FLUX1" and "schnell" in spec:
        return "Flux.1 S"
    return BASE_FOR_ARCH.get(info.architecture or "")


def progress_bar(total: int, label: str):
    from tqdm import tqdm
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False,
                disable=None)


def default_owner():
    from models_db.accounts import User, create_user
    owner = User.select().where(User.role == "admin").order_by(User.id).first()
    if owner is None:
        owner = create_user("admin", role="admin")
        click.echo("created user 'admin' to own imported models (give it a password with "
                   "`atelier user set-password admin` or use `atelier api-key create admin`)", err=True)
    return owner


def file_summary(file) -> dict:
    return {"fileId": file.id, "fileStatus": file.status, "format": file.format, "fp": file.fp,
            "size": file.size_kind, "architecture": file.architecture, "sizeBytes": file.size_bytes,
            "pickleScanResult": file.pickle_scan_result, "pickleScanMessage": file.pickle_scan_message,
            "hashes": {h.type: h.hash for h in file.hashes}}


@click.command("import-model")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Model name (default: the file name without extension).")
@click.option("--type", "model_type", default="Checkpoint", show_default=True,
              help="Checkpoint, LORA, TextualInversion, VAE, Controlnet, ...")
@click.option("--base-model", help='e.g. "SD 1.5", "SDXL 1.0", "Flux.1 D" (default: from the architecture).')
@click.option("--version-name", default="v1.0", show_default=True)
@click.option("--trained-words", default="", help="Comma-separated trigger words.")
@click.option("--tags", default="", help="Comma-separated tags.")
@click.option("--description", default="")
@click.option("--owner", help="Username of the owner (default: the first admin).")
@click.option("--model-id", type=int, help="Add the file as a new version of this model.")
@click.option("--file-type", default="Model", show_default=True)
@click.option("--login-required", is_flag=True, help="Downloads need an API key.")
@click.option("--publish", is_flag=True, help="Publish the version once the file is accepted.")
@click.option("--allow-duplicate", is_flag=True, help="Import even if the same bytes are already in the catalog.")
def import_model(path, name, model_type, base_model, version_name, trained_words, tags, description, owner,
                 model_id, file_type, login_required, publish, allow_duplicate):
    """Store PATH once (by SHA256), hash, scan and recognise it, and print the new ids as JSON."""
    summary = import_file(path, name=name, model_type=model_type, base_model=base_model, version_name=version_name,
                          trained_words=trained_words, tags=tags, description=description, owner=owner,
                          model_id=model_id, file_type=file_type, login_required=login_required, publish=publish,
                          allow_duplicate=allow_duplicate)
    click.echo(json.dumps(summary, indent=2))
    if summary.get("existing"):
        click.echo("these bytes are already in the catalog; pass --allow-duplicate to import them again", err=True)
    if summary["fileStatus"] == "Danger":
        click.echo(f"warning: {path.name} was flagged Danger and will never be offered for download: "
                   f"{summary['pickleScanMessage']}", err=True)
        raise SystemExit(3)


def import_file(path: Path, *, name=None, model_type="Checkpoint", base_model=None, version_name="v1.0",
                trained_words="", tags="", description="", owner=None, model_id=None, file_type="Model",
                login_required=False, publish=False, allow_duplicate=False) -> dict:
    """import-model's work; returns its JSON summary ({"existing": True, …} when the bytes were there)."""
    from gpu.checkpoints import InvalidModelFile, inspect_file
    from jobs.ingest import ingest
    from models_db import catalog as c
    from models_db.accounts import User
    from models_db.db import transaction
    from models_db.names import strip_bidi_controls
    from models_db.storage import get_store, holding

    open_db()
    if model_type not in c.MODEL_TYPES:
        raise click.BadParameter(f"one of {', '.join(c.MODEL_TYPES)}", param_hint="--type")
    if file_type not in c.FILE_TYPES:
        raise click.BadParameter(f"one of {', '.join(c.FILE_TYPES)}", param_hint="--file-type")
    try:  # cheap checks first: a bad file leaves nothing behind
        info, _ = inspect_file(path, path.name, model_type)
    except InvalidModelFile as exc:
        raise click.ClickException(f"{path.name}: {exc}")
    base_model = base_model or guess_base_model(info)
    if base_model not in c.BASE_MODELS:
        raise click.BadParameter(f"cannot tell the base model of this file; pass one of: {', '.join(c.BASE_MODELS)}",
                                 param_hint="--base-model")
    owner_user = User.get_or_none(User.username == owner) if owner else default_owner()
    if owner_user is None:
        raise click.ClickException(f"no user named {owner!r} (create it with `atelier user create {owner}`)")
    model = None
    if model_id is not None:
        model = c.Model.get_or_none(c.Model.id == model_id)
        if model is None:
            raise click.ClickException(f"no model with id {model_id}")

    with holding():  # the blob stays marked pending until its row is committed
        with progress_bar(os.path.getsize(path), "storing") as bar, open(path, "rb") as stream:
            sha256, size = get_store().put_stream(_Counting(stream, bar.update))
        twin = c.ModelFile.select().where(c.ModelFile.blob == sha256, c.ModelFile.status != "Pending").first()
        if twin is not None and not allow_duplicate:
            return {"existing": True, "modelId": twin.version.model_id, "versionId": twin.version_id,
                    **file_summary(twin)}

        with transaction():
            created_model = model is None
            if created_model:
                model = c.create_model(owner_user, name=strip_bidi_controls(name or path.stem), type=model_type,
                                       description=description, tags=tags.split(","))
            version = c.create_version(model, name=strip_bidi_controls(version_name), base_model=base_model,
                                       login_required=login_required, trained_words=trained_words.split(","))
            file = c.ModelFile.create(version=version, name=strip_bidi_controls(path.name), type=file_type,
                                      blob=sha256, size_bytes=size)

    with progress_bar(size, "hashing") as bar:
        outcome = ingest(file.id, progress=bar.update)
    if outcome.status == "Rejected":
        with transaction():
            version.delete_instance()
            if created_model:
                model.delete_instance()
        raise click.ClickException(f"{path.name}: {outcome.message}")
    file = c.ModelFile.get_by_id(file.id)
    if outcome.status == "Ready" and publish:
        with transaction():
            c.publish_version(c.ModelVersion.get_by_id(version.id))
    version = c.ModelVersion.get_by_id(version.id)
    return {"modelId": model.id, "versionId": version.id, "versionStatus": version.status,
            "baseModel": version.base_model, **file_summary(file)}


class _Counting:
    """A read-only stream wrapper that reports how many bytes were read."""

    def __init__(self, stream, report):
        self.stream, self.report = stream, report

    def read(self, n=-1):
        data = self.stream.read(n)
        self.report(len(data))
        return data


COMMANDS = [import_model]
