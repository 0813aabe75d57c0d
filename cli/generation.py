"""atelier generate: queue bulk runs (as a named user, here or on a remote server) and follow them; atelier
demo-checkpoint: a tiny random-weight model."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.common import open_db

FAMILIES = {"sd15": "SD1", "sdxl": "SDXL", "flux": "FLUX1"}
RUN_OVER = ("Done", "Failed", "Cancelled")


def model_reference(model: str, user) -> str | int:
    """ID, AIR or hash as given; a local file is imported into the catalog first (once, by SHA256)."""
    path = Path(model)
    if not path.is_file():
        return model
    if user is None:
        raise click.UsageError("with --url, --model is a catalog version id, AIR or hash (import the file first)")
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


def line_requests(lines: list[dict], base: dict, model_of) -> list[dict]:
    """One request per set of per-line options (A1111 "prompts from file" lines), in the file's order; lines
    with the same options share a run. A line with its own --seed is a run of its own (seeds count up
    within a run)."""
    runs: dict[str, dict] = {}
    for number, line in enumerate(lines):
        options = {k: v for k, v in line.items() if k != "prompt"}
        styles = options.pop("styles", None)
        if styles:
            if len(styles) > 1:
                raise click.ClickException(f"--styles {','.join(styles)}: one style per line")
            options["style"] = styles[0]
        if "batch_size" in options or "n_iter" in options:
            options["quantity"] = options.pop("batch_size", 1) * options.pop("n_iter", 1)
        if "checkpoint" in options:
            options["model"] = model_of(options.pop("checkpoint"))
        key = json.dumps(options, sort_keys=True) + (f"#{number}" if "seed" in options else "")
        body = runs.setdefault(key, {**base, **options, "prompts": []})
        body["prompts"].append(line["prompt"])
    for body in runs.values():
        body.pop("prompt", None)
    return list(runs.values())


@click.command("generate")
@click.option("--model", help="Catalog version id, AIR, file hash, or a local checkpoint file (not with --url).")
@click.option("--prompt", help="One prompt ({a|b} and __wildcard__ templates allowed).")
@click.option("--prompts", "prompts_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file of prompts: one per line, or A1111 '--prompt \"…\" --steps 20 --seed 5' lines "
                   "(prompt, negative_prompt, seed, steps, width, height, cfg_scale, sampler_name, batch_size, "
                   "n_iter, styles, sd_model, clip_skip, denoising_strength); '#' lines are comments.")
@click.option("--follow", "follow_run", type=int, help="Re-attach to run RUN: its progress, then its images.")
@click.option("--count", "quantity", type=int, default=1, show_default=True, help="Images per prompt.")
@click.option("--batch-size", type=int, help="Most images per GPU batch (the worker coalesces up to GPU_MAX_BATCH).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True,
              help="Each run's PNGs go to OUT/RUN_ID/ (files already there are never overwritten).")
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
@click.option("--user", "username", help="Run as this user of this install (default: the first admin).")
@click.option("--url", help="Run on this Atelier server (http://host:port) through its API, as the owner of "
                            "the API key (ATELIER_API_KEY or --api-key).")
@click.option("--api-key", envvar="ATELIER_API_KEY", help="API key for --url (default: $ATELIER_API_KEY).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the runs until they end.")
def generate(model, prompt, prompts_file, follow_run, quantity, batch_size, out, username, url, api_key, wait,
             **options):
    """Queue a bulk generation run, show its progress in steps, write its images to OUT/RUN_ID/."""
    client, user = connect(url, api_key, username)
    try:
        if follow_run is not None:
            if model or prompt or prompts_file:
                raise click.UsageError("--follow takes no --model, --prompt or --prompts")
            sys.exit(1 if follow(client, follow_run, out, detach=True) else 0)
        if model is None:
            raise click.UsageError("--model is required (or --follow RUN)")
        if (prompt is None) == (prompts_file is None):
            raise click.UsageError("give exactly one of --prompt and --prompts")
        if batch_size:
            click.echo("note: batches are sized by the GPU worker (GPU_MAX_BATCH); --batch-size is advisory",
                       err=True)
        model_ref = model_reference(model, user)
        base = build_request(dict(options, prompt=prompt, quantity=quantity), model_ref, None)
        bodies = [base] if prompts_file is None else line_requests(
            read_prompts_file(prompts_file), base, lambda ref: model_reference(ref, user))
        runs = [client.submit(body) for body in bodies]
        for run in runs:
            click.echo(f"run {run['id']}: {run['total']} images queued", err=True)
        if not wait:
            click.echo(json.dumps({"runs": [{"runId": r["id"], "total": r["total"]} for r in runs]}))
            return
        failed = sum(follow(client, run["id"], out) for run in runs)
    finally:
        client.close()
    sys.exit(1 if failed else 0)


def connect(url: str | None, api_key: str | None, username: str | None):
    """(client, local user or None): Remote with --url, else Local as --user (or the first admin)."""
    from cli.run_clients import Local, Remote
    if url:
        if username:
            raise click.UsageError("--user is for this install; with --url the API key names the user")
        if not api_key:
            raise click.UsageError("--url needs an API key: set ATELIER_API_KEY or give --api-key")
        return Remote(url, api_key), None
    from cli.catalog import default_owner
    from models_db.accounts import User
    open_db()
    user = User.get_or_none(User.username == username) if username else default_owner()
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    return Local(user), user


def read_prompts_file(path: Path) -> list[dict]:
    from gpu.prompts import parse_prompts_file
    try:
        return parse_prompts_file(path.read_text())
    except ValueError as exc:
        raise click.ClickException(f"{path}: {exc}")


def follow(client, run_id: int, out: Path, detach: bool = False) -> int:
    """Follows the run with a progress bar counting steps (its images × their steps); writes each image to
    OUT/RUN_ID/ as it lands, and any left at the end. Returns how many images failed or were cancelled.
    Ctrl-C cancels the run, or only stops following it (detach: a re-attached run)."""
    from tqdm import tqdm
    status = client.status(run_id)
    folder = out / str(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    total, written = status["total"], set()
    steps, own, ended = None, 0, status["status"] in RUN_OVER
    bar = tqdm(total=total, unit="step", desc=f"run {run_id}")
    try:
        events = client.events(run_id)
        while not ended:
            event = next(events)
            kind = event["event"]
            if kind == "started":
                own = len(event["jobs"])
            elif kind == "step":
                if steps != event["steps"]:
                    steps = event["steps"]
                    bar.total = total * steps
                bar.n = min(bar.total, (status["done"] + status["failed"]) * steps + event["step"] * own)
                bar.refresh()
                continue
            elif kind == "image":
                save(client, folder, written, event["job"], event["index"], event["seed"])
            if kind in ("image", "failed", "done", "cancelled", "deleted", "poll", "queued"):
                status = client.status(run_id) if kind != "deleted" else {**status, "status": "Deleted"}
                bar.n = (status["done"] + status["failed"]) * (steps or 1)
                bar.refresh()
                ended = status["status"] in (*RUN_OVER, "Deleted")
    except KeyboardInterrupt:
        if detach:
            click.echo(f"\nstopped following run {run_id}; it goes on (atelier generate --follow {run_id})", err=True)
        else:
            client.cancel(run_id)
            click.echo(f"\nrun {run_id} cancelled", err=True)
        sys.exit(130)
    finally:
        bar.close()
    if status["status"] != "Deleted":
        for job_id, index, seed in client.done_jobs(run_id):
            save(client, folder, written, job_id, index, seed)
    missing = status["total"] - status["done"]
    click.echo(f"run {run_id}: {status['status']}, {status['done']} images in {folder}"
               + (f", {missing} failed or cancelled" if missing else ""), err=True)
    return missing


def save(client, folder: Path, written: set, job_id: int, index: int, seed: int) -> None:
    """Writes the job's PNG as INDEX-SEED.png unless it is there already (never overwritten)."""
    if job_id in written:
        return
    written.add(job_id)
    path = folder / f"{index:05d}-{seed}.png"
    try:
        with open(path, "xb") as f:
            f.write(client.image(job_id))
    except FileExistsError:
        pass


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
