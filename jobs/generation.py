"""Generation on GPU workers: a job's message claims the fairest job across users (jobs/fairness.py) and
queued compatible jobs (same model, resources, size, steps, sampler…) into one batch, runs it with per-step
progress and cancel, and stores one PNG per job (A1111 "parameters" inside). Outputs are keyed by job id: a
redelivered job never makes a second image."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import threading
import time
import uuid

import dramatiq
from peewee import chunked

from gpu.pipelines import Cancelled, Item, ModelRef, Params, Resource, one_line
from gpu.png_meta import format_a1111
from jobs import fairness, gpu_workers
from jobs.broker import PermanentError, logs_result
from jobs.images import process_image
from models_db import generation as gen
from models_db import quotas
from models_db.db import on_commit, transaction, utcnow
from models_db.images import Image
from models_db.redis_store import client, redis_key
from models_db.storage import BlobMissing, LocalBlobStore, get_store, holding

HEARTBEAT_S = 2.0
RECHECK_S = 2 * HEARTBEAT_S
CLAIM_TRIES = 20  # fair choices made again when other workers claimed the chosen jobs first


def lease_s() -> float:
    """A running job whose heartbeat is older than this belongs to a dead worker."""
    import settings
    return float(settings.get().job_heartbeat_timeout_s)


MAX_ATTEMPTS = gen.MAX_ATTEMPTS
EVENT_TTL_S = 24 * 3600
VERSION = "Atelier 0.1.0"
log = logging.getLogger("atelier.jobs.generation")


# ---- submitting ------------------------------------------------------------------------------------
def submit(user, req, source: str = "api") -> gen.GenerationRun:
    """Stores the run and, once committed, publishes its "queued" event, then queues one message per job
    (in that order: a running worker's "started" must not come before "queued"). Raises
    models_db.quotas.QuotaExceeded (nothing stored) when the run would pass one of the user's limits."""
    with quotas.held(user), holding(), transaction():  # its input images' pending marks go once the run names them
        run, job_ids = gen.create_run(user, req, source)
        on_commit(lambda: (publish(run, "queued", {"total": run.total}), send_jobs(job_ids)))
    return run


def send_jobs(job_ids) -> None:
    for job_id in job_ids:
        generate.send(job_id)


# ---- events ----------------------------------------------------------------------------------------
def channel(run_id: int) -> str:
    return redis_key(f"gen:run:{run_id}")


def run_log_key(run_id: int) -> str:
    """The run's kept events, in order (an event's "seq" is its index)."""
    return channel(run_id) + ":log"


def user_channel(user_id: int) -> str:
    """Every event of the user's runs, for one stream of them all."""
    return redis_key(f"gen:user:{user_id}")


def user_log_key(user_id: int) -> str:
    """The user's last USER_EVENTS_KEPT kept events, scored by their "useq"."""
    return user_channel(user_id) + ":log"


def user_seq_key(user_id: int) -> str:
    """The last "useq" given (kept without expiry, so that a client's Last-Event-ID stays meaningful)."""
    return user_channel(user_id) + ":seq"


def user_position(user_id: int) -> int:
    """The "useq" of the user's last kept event (0: none yet)."""
    return int(client().get(user_seq_key(user_id)) or 0)


USER_EVENTS_KEPT = 5000
# appends a kept event to its run's log ("seq": its position there) and to its user's ("useq": the user's
# count of kept events), and publishes it on both channels, atomically
_KEEP = """
local seq = redis.call('RPUSH', KEYS[1], '') - 1
local useq = redis.call('INCR', KEYS[3])
local event = string.gsub(ARGV[1], '"__SEQ__"', tostring(seq))
event = string.gsub(event, '"__USEQ__"', tostring(useq))
redis.call('LSET', KEYS[1], seq, event)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], event)
redis.call('ZADD', KEYS[4], useq, event)
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -1 - tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[4], ARGV[2])
redis.call('PUBLISH', KEYS[5], event)
return seq
"""


RUN_END = ("done", "failed", "cancelled", "deleted")


def ends_run(event: dict) -> bool:
    """A run-level end. A job-level `failed` names its `jobs` and leaves the run going."""
    return event["event"] in RUN_END and "jobs" not in event


def publish(run: gen.GenerationRun, kind: str, data: dict, keep: bool = True) -> None:
    """Pub/sub for live listeners of the run and of its user; kept events (all but steps) are also replayed
    to late ones (SSE Last-Event-ID is their "seq" on the run's stream, "useq" on the user's)."""
    if not keep:
        event = json.dumps({"event": kind, "run": run.id, **data})
        pipe = client().pipeline(transaction=False)
        pipe.publish(channel(run.id), event)
        pipe.publish(user_channel(run.user_id), event)
        pipe.execute()
        return
    event = json.dumps({"event": kind, "run": run.id, **data, "seq": "__SEQ__", "useq": "__USEQ__"})
    client().eval(_KEEP, 5, run_log_key(run.id), channel(run.id), user_seq_key(run.user_id),
                  user_log_key(run.user_id), user_channel(run.user_id), event, EVENT_TTL_S, USER_EVENTS_KEPT)


def cancel_key(run_id: int) -> str:
    return redis_key(f"gen:cancel:{run_id}")


def progress_key(user_id: int) -> str:
    return redis_key(f"gen:progress:{user_id}")


def cancel(run: gen.GenerationRun) -> None:
    with transaction():
        running = gen.cancel_run(run)
    client().set(cancel_key(run.id), 1, ex=EVENT_TTL_S)
    publish(run, "cancelled", {"running": len(running)})


def delete(runs) -> list[int]:
    """Deletes a GenerationRun query's runs: unfinished ones are cancelled first; all are hidden at once and
    removed, with their private outputs and the blobs only they used, by delete_runs. Returns their ids."""
    runs = list(runs.where(gen.GenerationRun.deleted_at.is_null()))
    for run in runs:
        if run.status not in gen.RUN_FINISHED:
            cancel(run)
    with transaction():
        ids = gen.mark_deleted(gen.GenerationRun.select().where(gen.GenerationRun.id.in_([r.id for r in runs])))
        on_commit(lambda: [delete_runs.send(chunk) for chunk in chunked(ids, 20)])
    for run in runs:
        if run.id in ids:
            publish(run, "deleted", {})
            client().delete(run_log_key(run.id))
    return ids


@dramatiq.actor(queue_name="default", max_retries=5, time_limit=3600 * 1000)
@logs_result
def delete_runs(run_ids: list[int]) -> str:
    """Removes runs marked deleted, one transaction each; the blobs only they named follow (jobs.storage)."""
    from jobs.storage import remove_unused_later
    blobs = 0
    for run_id in run_ids:
        with transaction():
            freed = gen.delete_run(run_id)
            on_commit(lambda freed=freed: remove_unused_later(freed))
        blobs += len(freed)
    return f"{len(run_ids)} runs deleted, {blobs} blobs to check"


@dramatiq.actor(queue_name="default", max_retries=3)
@logs_result
def retry_run(run_id: int) -> str:
    """A run's failed jobs back in the queue: their dead messages sent again (as an operator's retry does),
    then those with no dead message left (purged, expired) reopened and sent."""
    from jobs.queues import retry_failed_run
    sent = retry_failed_run(run_id)
    failed = [j for (j,) in gen.GenerationJob.select(gen.GenerationJob.id).where(
        gen.GenerationJob.run == run_id, gen.GenerationJob.state == "failed").tuples()]
    reopened = [j for j in failed if requeue_failed(j)]
    send_jobs(reopened)
    return f"{sent} dead messages sent again, {len(reopened)} failed jobs queued again"


# ---- the GPU actor ---------------------------------------------------------------------------------
_backend = None
GPU_LOCK = threading.Lock()


def backend():
    global _backend
    if _backend is None:
        from gpu.backends import get_backend

        import settings
        _backend = get_backend(settings.get().gpu_backend)
    return _backend


class InputMissing(PermanentError):
    """A file a job needs is gone from the store: retries cannot bring it back (an operator who restores it
    can retry the failed job)."""


@contextlib.contextmanager
def needed(what: str):
    try:
        yield
    except BlobMissing as exc:
        raise InputMissing(f"{what} missing from the store (blob {exc.args[0][:12]})") from None


class ImageFailed(PermanentError):
    """The job's image failed for good (it is marked failed and its event sent): the message fails too, so
    that metrics, `atelier jobs failed` and the Operations page count it, and is not retried."""


@dramatiq.actor(queue_name="gpu", max_retries=3, time_limit=6 * 3600 * 1000, min_backoff=2000,
                throws=(PermanentError,))
@logs_result
def generate(job_id: int) -> str:
    return run_job(job_id)


def run_job(job_id: int) -> str:
    """The message of a job is a work token: it runs the batch that is fairest now (jobs/fairness.py), with
    or without its own job, and is sent again until its own job has finished, so every job is run once and
    its message ends with it. Raises ImageFailed when its own job ends failed, also for a redelivered
    message of a failed job."""
    job = gen.GenerationJob.get_or_none(gen.GenerationJob.id == job_id)
    if job is not None and job.state == "failed":
        raise ImageFailed(job.error or "failed")
    if job is None or job.state in gen.FINISHED:
        return "already finished"
    if job.attempts >= MAX_ATTEMPTS and job.state == "queued":
        finish_failed([job.id], None, job.error or "failed too many times")
        raise ImageFailed(job.error or "failed too many times")
    token = uuid.uuid4().hex
    leader, start, order = claim_fairest(token)
    if leader is None:  # nothing to claim, its job is in a live batch: look again soon (done, or gone stale)
        generate.send_with_options(args=(job.id,), delay=int(RECHECK_S * 1000))
        return "running in another batch; checking again later"
    claimed = [leader.id]
    try:  # from here on every way out leaves the claimed jobs finished or queued again, never running
        model, params = to_gpu(leader.params)
        claimed += gen.claim(fairness.fill(leader, batch_room(model, params), lease_s(), order), token, lease_s())
        fairness.observe_waits(claimed, fairness.charge(start, claimed, quotas.params_cost(leader.params)))
        jobs = list(gen.GenerationJob.select().where(gen.GenerationJob.id.in_(claimed))
                    .order_by(gen.GenerationJob.id))
        summary = run_batch(jobs, token, model, params)
    except PermanentError as exc:  # a file the whole batch needs is gone from the store
        finish_failed(claimed, token, one_line(exc))
        if job.id in claimed:
            raise ImageFailed(one_line(exc)) from None
        summary = f"failed: {one_line(exc)}"
    except Exception as exc:
        released = gen.release(claimed, token)
        gen.GenerationJob.update(error=f"{type(exc).__name__}: {one_line(exc)}").where(
            gen.GenerationJob.id.in_(released)).execute()
        send_jobs([j for j in released if j != job.id])  # this message comes back by the actor's retry
        raise
    own = gen.GenerationJob.get_by_id(job.id)
    if own.state == "failed":
        raise ImageFailed(own.error or summary)
    if own.state not in gen.FINISHED:  # it served someone else's turn: its own job waits for a later one
        if own.state == "queued":
            generate.send(job.id)
        else:
            generate.send_with_options(args=(job.id,), delay=int(RECHECK_S * 1000))
        summary += f"; job {job.id} still {own.state}"
    return summary


def claim_fairest(token: str) -> tuple[gen.GenerationJob | None, float, list[int]]:
    """Claims the oldest claimable job of the user whose turn it is (the next one when another worker took
    it first; the choice is made again while jobs are left to claim): the leader of this batch, the chosen
    user's pass, and the users in fair order. None when nothing is claimable."""
    for _ in range(CLAIM_TRIES):
        order = fairness.fair_order(lease_s())
        for _user_id, job_id, start in order:
            if gen.claim([job_id], token, lease_s()):
                return gen.GenerationJob.get_by_id(job_id), start, [u for u, _, _ in order]
        if not order:
            break
    return None, 0.0, []


def batch_room(model: ModelRef, params: Params) -> int:
    """How many more jobs the leader's batch can take."""
    try:
        return backend().max_batch(model, params) - 1
    except Exception:  # noqa: BLE001 - sizing must never lose the claim
        return 0


def run_batch(jobs: list, token: str, model: ModelRef, params: Params) -> str:
    from gpu.backends import OutOfMemory
    jobs, items = with_inputs(jobs, token)
    if not jobs:
        return "failed: inputs missing"
    runs = [gen.refresh_run(run_id) for run_id in sorted({j.run_id for j in jobs})]
    for run in runs:
        publish(run, "started", {"jobs": [j.id for j in jobs if j.run_id == run.id], "batch": len(jobs)})
    if not backend().is_warm(model):  # the pipeline loads first (seconds to minutes): say so, not kept
        for run in runs:
            publish(run, "loading", {"model": model.name}, keep=False)
    started = time.monotonic()
    try:
        # one batch at a time per process; claims stay fresh; the worker's heartbeat shows the batch
        with (beating([j.id for j in jobs], token), GPU_LOCK,
              gpu_workers.heartbeat.running(jobs, model, params) as batch):
            images = backend().generate(model, params, items, batch.on_step(progress(jobs, token, runs)))
            batch.images = len(images)
    except Cancelled:
        return stop_cancelled(jobs, token)
    except OutOfMemory:
        if len(jobs) == 1:
            finish_failed([jobs[0].id], token, f"out of GPU memory at {params.width}x{params.height}")
            return "failed: out of memory"
        half = len(jobs) // 2
        return "; ".join(run_batch(part, token, model, params) for part in (jobs[:half], jobs[half:]))
    except (ValueError, PermanentError) as exc:  # gpu.pipelines.CannotGenerate among them
        finish_failed([j.id for j in jobs], token, one_line(exc))
        return f"failed: {one_line(exc)}"
    record_speed(model.family, len(jobs), params, time.monotonic() - started)
    stored = sum(store_output(job, image, token, model, params) for job, image in zip(jobs, images))
    return f"{stored} images from a batch of {len(jobs)}"


def with_inputs(jobs: list, token: str) -> tuple[list, list[Item]]:
    """The jobs whose input images load, with their items; a job whose input is gone fails alone."""
    kept, items = [], []
    for job in jobs:
        try:
            items.append(to_item(job))
        except InputMissing as exc:
            finish_failed([job.id], token, one_line(exc))
        else:
            kept.append(job)
    return kept, items


def record_speed(family: str, count: int, params: Params, seconds: float) -> None:
    from metrics import definitions as m
    m.generation_images.labels(family).inc(count)
    m.generation_batch.labels(family).observe(count)
    m.generation_steps.labels(family).inc(count * params.steps)
    m.generation_seconds.labels(family).observe(seconds)


def progress(jobs: list, token: str, runs: list):
    """The on_step callback: cancel check, step events, A1111 progress."""
    job_ids = [j.id for j in jobs]
    keys = [cancel_key(r.id) for r in runs]
    users = {r.user_id for r in runs}

    def on_step(done: int, total: int) -> None:
        if client().exists(*keys):
            raise Cancelled()
        for run in runs:
            publish(run, "step", {"step": done, "steps": total, "jobs": job_ids}, keep=False)
        pipe = client().pipeline(transaction=False)
        for user_id in users:
            pipe.hset(progress_key(user_id), mapping={"step": done, "steps": total, "jobs": len(job_ids),
                                                      "at": time.time()})
            pipe.expire(progress_key(user_id), 3600)
        pipe.execute()
    return on_step


@contextlib.contextmanager
def beating(job_ids: list[int], token: str):
    """Keeps the batch's claim fresh while it runs (model loading included), from a side thread."""
    from models_db.db import db
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(HEARTBEAT_S):
                gen.heartbeat(job_ids, token)
        finally:
            if not db.is_closed():
                db.close()
    thread = threading.Thread(target=beat, name="generation-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def stop_cancelled(jobs: list, token: str) -> str:
    """The batch stopped: jobs of cancelled runs end cancelled, the others go back to the queue."""
    cancelled_runs = {r.id for r in gen.GenerationRun.select().where(
        gen.GenerationRun.id.in_({j.run_id for j in jobs}), gen.GenerationRun.cancelled == True)}  # noqa: E712
    mine = [j.id for j in jobs if j.run_id in cancelled_runs]
    with transaction():
        gen.GenerationJob.update(state="cancelled", finished_at=utcnow()).where(
            gen.GenerationJob.id.in_(mine), gen.GenerationJob.claimed_by == token).execute()
        others = gen.release([j.id for j in jobs if j.run_id not in cancelled_runs], token)
        for run_id in cancelled_runs:
            gen.refresh_run(run_id)
    send_jobs(others)
    return f"cancelled {len(mine)}, requeued {len(others)}"


def requeue_failed(job_id: int) -> bool:
    """An operator's retry of a failed job: the job goes back to the queue and its run reopens; False (and
    nothing changes) when the job is not failed any more, so the caller does not send it again."""
    with transaction():
        run_id = gen.reopen_failed(job_id)
    if run_id is None:
        return False
    publish(gen.GenerationRun.get_by_id(run_id), "queued", {"jobs": [job_id], "retried": True})
    return True


def finish_failed(job_ids, token: str | None, reason: str) -> None:
    query = gen.GenerationJob.update(state="failed", error=reason, finished_at=utcnow())
    where = [gen.GenerationJob.id.in_(job_ids)]
    if token:
        where += [gen.GenerationJob.claimed_by == token, gen.GenerationJob.state == "running"]
    with transaction():
        query.where(*where).execute()
        runs = gen.GenerationRun.select().where(gen.GenerationRun.id.in_(
            gen.GenerationJob.select(gen.GenerationJob.run).where(gen.GenerationJob.id.in_(job_ids)))
        ).order_by(gen.GenerationRun.id)  # runs are locked in one order (refresh_run)
        for run in runs:  # the jobs' event first, then (if it is over) the run's end
            on_commit(lambda run=run: publish(run, "failed", {"jobs": list(job_ids), "error": reason}))
            after_job(run.id)


def after_job(run_id: int) -> None:
    """Inside the transaction that finished a job: the run's counts; the grid once all are done."""
    run = gen.refresh_run(run_id)
    if run.status in gen.RUN_FINISHED:
        on_commit(lambda: publish(run, run.status.lower(), {"done": run.done, "failed": run.failed,
                                                            "total": run.total}))
        if run.grid_json and run.done:
            on_commit(lambda: assemble_grid.send(run_id))
        if run.done and run.user.post_outputs:
            on_commit(lambda: post_outputs.send(run_id))


@dramatiq.actor(queue_name="default", max_retries=5)
@logs_result
def post_outputs(run_id: int) -> str:
    """A finished run of a user whose outputs are public by default: its unposted outputs become one post."""
    from models_db.posts import post_run_outputs
    with transaction():
        return f"posted {post_run_outputs(run_id)} images"


# ---- outputs ---------------------------------------------------------------------------------------
def parameters_text(job, model: ModelRef, params: Params) -> str:
    fields = {"Steps": params.steps, "Sampler": params.sampler, "CFG scale": params.cfg_scale, "Seed": job.seed,
              "Size": f"{params.width}x{params.height}", "Model hash": model.sha256[:10], "Model": model.name}
    if params.clip_skip > 1:
        fields["Clip skip"] = params.clip_skip
    if params.mode != "txt2img" or params.hires_scale:
        fields["Denoising strength"] = params.denoising_strength
    if params.hires_scale:
        fields.update({"Hires upscale": params.hires_scale, "Hires steps": params.hires_steps or params.steps,
                       "Hires upscaler": "Latent"})
    if model.vae:
        fields.update({"VAE hash": model.vae.sha256[:10], "VAE": model.vae.name})
    if params.loras:
        fields["Lora hashes"] = ", ".join(f"{r.name}: {r.sha256[:10]}" for r in params.loras)
    if params.embeddings:
        fields["TI hashes"] = ", ".join(f"{r.name}: {r.sha256[:10]}" for r in params.embeddings)
    if params.controlnet:
        fields["ControlNet 0"] = f"Model: {params.controlnet.name} [{params.controlnet.sha256[:8]}], " \
                                 f"Weight: {params.control_scale}"
    fields["Version"] = VERSION
    prompt = job.prompt + "".join(f" <lora:{r.name}:{r.weight:g}>" for r in params.loras)
    return format_a1111(prompt, job.negative_prompt, fields)


def png_bytes(image, text: str) -> bytes:
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=info)
    return out.getvalue()


def store_output(job, image, token: str, model: ModelRef, params: Params) -> int:
    """Stores the PNG and marks the job done in one transaction, unless the job left this batch."""
    data = png_bytes(image, parameters_text(job, model, params))
    with holding():  # the PNG's pending mark goes once the job names it
        return _record_output(job, image, token, *get_store().put_stream(io.BytesIO(data)))


def _record_output(job, image, token: str, blob: str, size: int) -> int:
    with transaction():
        row = Image.create(user=job.run.user_id, model_version=job.model_version_id, status="Pending", blob=blob,
                           private=True,  # the owner's until posted (models_db.posts)
                           filename=f"{job.run_id}-{job.index:05d}-{job.seed}.png", mime="image/png",
                           size_bytes=size, width=image.width, height=image.height)
        updated = (gen.GenerationJob.update(state="done", image=row.id, output_blob=blob, finished_at=utcnow(),
                                            error=None)
                   .where(gen.GenerationJob.id == job.id, gen.GenerationJob.claimed_by == token,
                          gen.GenerationJob.state == "running").execute())
        if not updated:
            row.delete_instance()
            return 0
        on_commit(lambda: publish(job.run, "image", {"job": job.id, "index": job.index, "image": row.id,
                                                     "seed": job.seed}))
        on_commit(lambda: process_image.send(row.id))
        after_job(job.run_id)  # its "done" event follows the image's
    return 1


@dramatiq.actor(queue_name="default", max_retries=5)
@logs_result
def assemble_grid(run_id: int) -> str:
    """The XYZ grid image(s) of a finished run, labelled by axis values."""
    from PIL import Image as PILImage

    from gpu import xyz
    run = gen.GenerationRun.get_or_none(gen.GenerationRun.id == run_id)
    if run is None or not run.grid_json or run.grid_blobs:
        return "nothing to do"
    axes = json.loads(run.grid_json)
    labels = {name: xyz.axis_labels(axis["field"], axis["values"]) for name, axis in axes.items()}
    store, tiles = get_store(), {}
    for job in run.jobs.where(gen.GenerationJob.state == "done", gen.GenerationJob.cell_json.is_null(False)):
        with store.open(job.output_blob) as f:
            tiles.setdefault(tuple(json.loads(job.cell_json)), PILImage.open(io.BytesIO(f.read())).convert("RGB"))
    grids = xyz.assemble_grid(tiles, labels.get("x", []), labels.get("y", [""]), labels.get("z", [""]))
    with holding():
        blobs = [store.put_stream(io.BytesIO(png_bytes(g, f"XYZ grid of run {run_id}")))[0] for g in grids]
        gen.GenerationRun.update(grid_blobs=json.dumps(blobs)).where(gen.GenerationRun.id == run_id).execute()
    publish(run, "grid", {"grids": len(blobs)})
    return f"{len(blobs)} grid images"


@dramatiq.actor(queue_name="default", max_retries=3)
@logs_result
def reap_generation() -> str:
    """Jobs claimed by a worker that died go back to the queue."""
    stale = gen.stale_running(lease_s())
    if stale:
        gen.GenerationJob.update(state="queued", claimed_by=None).where(gen.GenerationJob.id.in_(stale)).execute()
        send_jobs(stale)
    return f"requeued {len(stale)}"


# ---- rows -> gpu values ----------------------------------------------------------------------------
def local_file(described: dict) -> str:
    """A path with the file's own extension (loaders go by it) for a stored catalog file."""
    import settings
    ext = described["file"].rsplit(".", 1)[-1].lower() if "." in described["file"] else "safetensors"
    path = settings.get().home / "cache" / "models" / f"{described['blob']}.{ext}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        store = get_store()
        with needed(f"{described['name']}'s file"), store.local_path(described["blob"]) as source:
            tmp = path.with_name(path.name + f".{uuid.uuid4().hex}")
            try:
                if isinstance(store, LocalBlobStore):
                    tmp.symlink_to(source)
                else:
                    shutil.copyfile(source, tmp)
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
    return str(path)


def to_resource(described: dict | None, kind: str | None = None) -> Resource | None:
    if not described:
        return None
    return Resource(kind=kind or described["kind"], path=local_file(described), sha256=described["blob"],
                    name=described["name"], weight=float(described.get("weight", 1.0)))


def to_gpu(params: dict) -> tuple[ModelRef, Params]:
    m = params["model"]
    model = ModelRef(family=m["family"], path=local_file(m), sha256=m["blob"], name=m["name"],
                     vae=to_resource(params.get("vae"), "vae"))
    return model, Params(
        mode=params["mode"], width=params["width"], height=params["height"], steps=params["steps"],
        cfg_scale=params["cfg_scale"], sampler=params["sampler"], clip_skip=params["clip_skip"],
        denoising_strength=params["denoising_strength"], hires_scale=params["hires_scale"],
        hires_steps=params["hires_steps"], loras=tuple(to_resource(r) for r in params["loras"]),
        embeddings=tuple(to_resource(r) for r in params["embeddings"]),
        controlnet=to_resource(params.get("controlnet"), "controlnet"), control_scale=params["control_scale"])


def to_item(job) -> Item:
    from PIL import Image as PILImage
    images = {}
    for name, blob in job.inputs.items():
        with needed(name.replace("_", " ")), get_store().open(blob) as f:
            picture = PILImage.open(io.BytesIO(f.read()))
            images[name] = picture.convert("L" if name == "mask" else "RGB")
    return Item(prompt=job.prompt, negative_prompt=job.negative_prompt, seed=job.seed, **images)
