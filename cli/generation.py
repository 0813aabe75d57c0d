"""atelier generate: queue a bulk run and follow it; atelier demo-checkpoint: a tiny random-weight model."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.common import open_db

FAMILIES = {"sd15": "SD1", "sdxl": "SDXL", "flux": "FLUX1"}
TERMINAL = ("done", "failed", "cancelled")


def model_reference(model: str, user) -> str | int:
    """ID, AIR or hash as given; a local file is imported into the catalog first (once, by SHA256)."""
    path = Path(model)
    if not path.is_file():
        return model
    from cli.catalog import import_file
    summary = import_file(path, owner=user.username, publish=True)
    if summary["fileStatus"] != "Ready":
        raise click.ClickException(f"{path.name} was not accepted: {summary['pickleScanMessage']}")
    return summary["versionId"]


def build_request(options: dict, model, prompts: list[str] | None) -> dict:
    req = {key: value for key, value in options.items() if value is not None}
    req["model"] = model
    if prompts is not None:
        req.pop("prompt", None)
        req["prompts"] = prompts
    for name in ("init_image", "mask"):
        if name in req:
            import base64
            req[name] = base64.b64encode(Path(req[name]).read_bytes()).decode()
    if "resources" in req:
        req["resources"] = [{"id": ref, "weight": float(weight or 1)} for ref, _, weight in
                            (r.partition(":") for r in req["resources"])]
    return req


@click.command("generate")
@click.option("--model", required=True, help="Catalog version id, AIR, file hash, or a local checkpoint file.")
@click.option("--prompt", help="One prompt ({a|b} and __wildcard__ templates allowed).")
@click.option("--prompts", "prompts_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file of prompts: one per line, or A1111 '--prompt \"…\" --steps 20' lines.")
@click.option("--count", "quantity", type=int, default=1, show_default=True, help="Images per prompt.")
@click.option("--batch-size", type=int, help="Most images per GPU batch (the worker coalesces up to GPU_MAX_BATCH).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write the PNGs here.")
@click.option("--negative-prompt", default=None)
@click.option("--width", type=int)
@click.option("--height", type=int)
@click.option("--steps", type=int)
@click.option("--cfg-scale", type=float)
@click.option("--sampler")
@click.option("--seed", type=int, default=-1, show_default=True)
@click.option("--clip-skip", type=int)
@click.option("--style")
@click.option("--lora", "resources", multiple=True, help="REF[:WEIGHT], repeatable.")
@click.option("--init-image", type=click.Path(exists=True, dir_okay=False), help="img2img source image.")
@click.option("--mask", type=click.Path(exists=True, dir_okay=False), help="inpaint mask (white = repaint).")
@click.option("--denoising-strength", type=float)
@click.option("--user", "username", help="Run as this user (default: the first admin).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the run until it ends.")
def generate(model, prompt, prompts_file, quantity, batch_size, out, username, wait, **options):
    """Queue a bulk generation run, show its progress, write its images to --out."""
    from cli.catalog import default_owner
    from gpu.prompts import parse_prompts_file
    from gpu.request import RequestError, parse
    from jobs import generation as jobs
    from models_db.accounts import User

    open_db()
    if (prompt is None) == (prompts_file is None):
        raise click.UsageError("give exactly one of --prompt and --prompts")
    user = User.get_or_none(User.username == username) if username else default_owner()
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    prompts = None
    if prompts_file is not None:
        try:
            lines = parse_prompts_file(prompts_file.read_text())
        except ValueError as exc:
            raise click.ClickException(f"{prompts_file}: {exc}")
        if any(set(line) - {"prompt"} for line in lines):
            raise click.ClickException("per-line options in a prompts file are not supported by `generate` yet; "
                                       "use one prompt per line")
        prompts = [line["prompt"] for line in lines]
    if batch_size:
        click.echo("note: batches are sized by the GPU worker (GPU_MAX_BATCH); --batch-size is advisory", err=True)
    body = build_request(dict(options, prompt=prompt, quantity=quantity), model_reference(model, user), prompts)
    try:
        run = jobs.submit(user, parse(body), source="cli")
    except RequestError as exc:
        raise click.ClickException(str(exc))
    click.echo(f"run {run.id}: {run.total} images queued", err=True)
    if not wait:
        click.echo(json.dumps({"runId": run.id, "total": run.total}))
        return
    failed = follow(run.id, run.total, out)
    sys.exit(1 if failed else 0)


def follow(run_id: int, total: int, out: Path | None) -> int:
    """Follows the run's events with a progress bar; writes each image as it lands. Returns failures."""
    from tqdm import tqdm

    from jobs import generation as jobs
    from models_db import generation as gen
    from models_db.redis_store import client
    from models_db.storage import get_store
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    pubsub = client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(jobs.channel(run_id))
    written, failed = set(), 0
    bar = tqdm(total=total, unit="img", desc=f"run {run_id}")
    try:
        while True:
            message = pubsub.get_message(timeout=2.0)
            event = json.loads(message["data"]) if message else {"event": "poll"}
            if event["event"] == "step":
                bar.set_postfix(step=f"{event['step']}/{event['steps']}")
                continue
            run = gen.GenerationRun.get_by_id(run_id)
            for job in run.jobs.where(gen.GenerationJob.state == "done", gen.GenerationJob.id.not_in(written or [0])):
                if out is not None:
                    with get_store().open(job.output_blob) as f:
                        (out / f"{job.index:05d}-{job.seed}.png").write_bytes(f.read())
                written.add(job.id)
            bar.n = run.done + run.failed
            bar.refresh()
            if run.status in ("Done", "Failed", "Cancelled"):
                failed = run.failed + (run.total - run.done - run.failed)
                break
    except KeyboardInterrupt:
        jobs.cancel(gen.GenerationRun.get_by_id(run_id))
        click.echo(f"\nrun {run_id} cancelled", err=True)
        sys.exit(130)
    finally:
        bar.close()
        pubsub.close()
    click.echo(f"run {run_id}: {len(written)} images" + (f" written to {out}" if out else "")
               + (f", {failed} failed or cancelled" if failed else ""), err=True)
    return failed


@click.command("demo-checkpoint")
@click.option("--family", type=click.Choice(sorted(FAMILIES)), default="sd15", show_default=True)
@click.option("--size", type=click.Choice(["tiny", "full"]), default="tiny", show_default=True,
              help="tiny: seconds on a CPU; full: the real architecture's size (GBs).")
@click.option("--import", "do_import", is_flag=True, help="Also import it into the catalog, published.")
@click.option("--if-empty", is_flag=True, help="Do nothing when the catalog already has a checkpoint.")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def demo_checkpoint(family, size, do_import, if_empty, out):
    """Write a random-weight checkpoint of a real architecture to OUT (it produces noise: for trying the
    whole flow without real weights)."""
    if if_empty:
        from models_db.catalog import Model
        open_db()
        if Model.select().where(Model.type == "Checkpoint").exists():
            return
    from gpu.demo import write_checkpoint
    out.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(FAMILIES[family], out, size=size)
    click.echo(f"wrote {out} ({out.stat().st_size >> 20} MiB): random weights, it generates noise", err=True)
    if do_import:
        from cli.catalog import import_file
        summary = import_file(out, name=f"Demo {family} (random weights)", publish=True,
                              description="Random weights of the real architecture: it generates noise. "
                                          "Made by `atelier demo-checkpoint` so the whole flow can be tried.")
        click.echo(json.dumps(summary, indent=2))


COMMANDS = [generate, demo_checkpoint]
