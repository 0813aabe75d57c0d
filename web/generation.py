"""The generation API: queue a run, watch it (JSON or Server-Sent Events), cancel it, fetch outputs."""
from __future__ import annotations

import json

from flask import Blueprint, Response, jsonify, request

import settings

from gpu.request import GenerationRequest, RequestError, parse
from jobs import generation as jobs
from models_db import generation as gen
from models_db import images as im
from models_db.ids import INT64_MAX
from models_db.quotas import QuotaExceeded, summary
from models_db.redis_store import give_back_place, take_place
from web import run_archive, streams
from web.api import (absolute, body_limit, current_api_user, error, integer, page_url, require_user, retry_later,
                     send_blob)
from web.catalog import iso
from web.handoff import hand_off
from web.images import image_url
from web.openapi import BINARY, BOOL, INT, LIMIT, NUM, STR, doc, enum, obj, paged, param, ref

PNG = {"type": "string", "format": "binary"}

bp = Blueprint("generation", __name__)


def job_json(job: gen.GenerationJob, image: dict | None = None) -> dict:
    """`image`: the job's catalog image row (id, mime, width, status), for links to its small variants."""
    out = {"id": job.id, "index": job.index, "state": job.state, "prompt": job.prompt,
           "negativePrompt": job.negative_prompt, "seed": job.seed, "error": job.error,
           "cell": json.loads(job.cell_json) if job.cell_json else None, "imageId": job.image_id,
           "imageUrl": absolute("generation.job_image", job_id=job.id) if job.output_blob else None,
           "thumbUrl": None, "previewUrl": None}
    if image and image["status"] == "Ready":  # its 96 and 450 px variants exist once jobs/images.py ran
        out["thumbUrl"], out["previewUrl"] = image_url(image, 96), image_url(image, 450)
    return out


def jobs_json(jobs: list[gen.GenerationJob]) -> list[dict]:
    """Jobs with their images' variant URLs (one query for the images of them all)."""
    images = {r["id"]: r for r in im.Image.select(im.Image.id, im.Image.mime, im.Image.width, im.Image.status)
              .where(im.Image.id.in_([j.image_id for j in jobs if j.image_id])).dicts()}
    return [job_json(j, images.get(j.image_id)) for j in jobs]


JOBS_PAGE = 100  # a run's jobs per page unless ?limit= says otherwise (at most MAX_JOBS_PAGE)
MAX_JOBS_PAGE = 500


def run_json(run: gen.GenerationRun, with_jobs: bool = True, limit: int = JOBS_PAGE, cursor: str = "",
             state: str | None = None) -> dict:
    """The run's summary; with_jobs: also one page of its jobs (in order) and `metadata` to page on."""
    out = {"id": run.id, "status": run.status, "source": run.source, "total": run.total, "done": run.done,
           "failed": run.failed, "progress": (run.done + run.failed) / run.total if run.total else 1.0,
           "createdAt": iso(run.created_at), "finishedAt": iso(run.finished_at), "request": run.request,
           "grids": [absolute("generation.grid_image", run_id=run.id, n=n)
                     for n in range(len(json.loads(run.grid_blobs or "[]")))],
           "eventsUrl": absolute("generation.events", run_id=run.id)}
    if with_jobs:
        jobs_, next_cursor = gen.jobs_page(run.id, limit, cursor, state)
        out["jobs"] = jobs_json(jobs_)
        out["metadata"] = {"pageSize": limit}
        if next_cursor:
            args = {"state": state} if state else {}
            out["metadata"].update(nextCursor=next_cursor, nextPage=absolute(
                "generation.run_status", run_id=run.id, cursor=next_cursor, limit=limit, **args))
    return out


def own_run(run_id: int) -> gen.GenerationRun:
    run = gen.GenerationRun.get_or_none(gen.GenerationRun.id == run_id, gen.GenerationRun.deleted_at.is_null())
    user = current_api_user()
    if run is None or (run.user_id != user.id and not user.is_staff):
        error(404, "No such generation run")
    return run


def request_error(exc: RequestError):
    if isinstance(exc, QuotaExceeded):
        retry_later(exc.message, exc.retry_after)
    error(400, exc.message if exc.field in ("", "body") else f"{exc.field}: {exc.message}", field=exc.field or None)


@bp.post("/api/v1/generation")
@body_limit(lambda s: s.max_generation_request_bytes)
@require_user("write")
@doc("Queue a generation run: one prompt × quantity, a prompts list, {a|b}/__wildcard__ templates or an XYZ grid",
     "generation", status=202, response=ref("GenerationRun"), body=GenerationRequest,
     errors={429: "over one of your limits (GET /api/v1/generation/quota): `retryAfter` and Retry-After say when "
                  "to try again"})
def create():
    try:
        req = parse(request.get_json(silent=True))
        if req.prompt is not None and not req.prompt.strip():
            raise RequestError("prompt", "write a prompt: an empty one makes nothing worth keeping")
        run = jobs.submit(current_api_user(), req, source="api")
    except RequestError as exc:
        request_error(exc)
    return jsonify(run_json(run)), 202


LIMIT_OR_NONE = {"type": ["number", "null"]}


@bp.get("/api/v1/generation/quota")
@require_user("read")
@doc("Your generation limits (null: none) and today's use (UTC day; failed and cancelled images are given "
     "back), your fair-share weight, and seconds until the daily budget renews", "generation",
     response=obj(("limits", "usage", "exempt", "weight", "resetsIn"),
                  limits=obj(openImages=LIMIT_OR_NONE, imagesPerDay=LIMIT_OR_NONE, costPerDay=LIMIT_OR_NONE),
                  usage=obj(openImages=INT, imagesToday=INT, costToday=NUM), exempt=BOOL, weight=NUM,
                  resetsIn=INT))
def quota():
    return jsonify(summary(current_api_user()))


CURSOR = param("cursor", description="opaque; from metadata.nextCursor")


@bp.get("/api/v1/generation/runs")
@require_user("read")
@doc("Your runs, newest first, without their jobs (`jobs=N`: with the first N of each); page on with "
     "metadata.nextCursor", "generation", response=paged(ref("GenerationRun")),
     params=[LIMIT(100), CURSOR, param("jobs", {"type": "integer", "minimum": 0, "maximum": MAX_JOBS_PAGE})])
def runs():
    limit, jobs_limit = integer("limit", 20, 1, 100), integer("jobs", 0, 0, MAX_JOBS_PAGE)
    items, next_cursor = runs_page(current_api_user().id, limit, request.args.get("cursor", ""), jobs_limit)
    metadata = {"pageSize": limit}
    if next_cursor:
        metadata.update(nextCursor=next_cursor, nextPage=page_url(cursor=next_cursor))
    return jsonify(items=items, metadata=metadata)


def runs_page(user_id: int, limit: int, cursor: str = "", jobs_limit: int = 0) -> tuple[list[dict], str | None]:
    """A page of the user's runs as the API shows them, each with its first `jobs_limit` jobs (none for 0),
    and the next page's cursor."""
    rows, next_cursor = gen.runs_page(user_id, limit, cursor)
    return [run_json(r, with_jobs=bool(jobs_limit), limit=jobs_limit) for r in rows], next_cursor


@bp.get("/api/v1/generation/runs/<id:run_id>")
@require_user("read")
@doc("A run: status, progress, and one page of its jobs in order (their image URLs, failures' reasons); "
     "page on with metadata.nextCursor; `state` keeps only jobs in that state", "generation",
     response=ref("GenerationRun"), params=[LIMIT(MAX_JOBS_PAGE), CURSOR, param("state", enum(gen.JOB_STATES))])
def run_status(run_id: int):
    run = own_run(run_id)
    state = request.args.get("state") or None
    if state is not None and state not in gen.JOB_STATES:
        error(400, f"state must be one of: {', '.join(gen.JOB_STATES)}", field="state")
    return jsonify(run_json(run, limit=integer("limit", JOBS_PAGE, 1, MAX_JOBS_PAGE),
                            cursor=request.args.get("cursor", ""), state=state))


@bp.post("/api/v1/generation/runs/<id:run_id>/cancel")
@require_user("write")
@doc("Cancel: queued jobs are dropped, a running batch stops at its next step", "generation",
     response=ref("GenerationRun"))
def cancel(run_id: int):
    run = own_run(run_id)
    if run.status not in gen.RUN_FINISHED:
        jobs.cancel(run)
    return jsonify(run_json(gen.GenerationRun.get_by_id(run_id)))


@bp.delete("/api/v1/generation/runs/<id:run_id>")
@require_user("write")
@doc("Delete a run (cancelled first if it has not ended): it is gone at once; its jobs, its outputs that were "
     "not posted and the files only they used are removed by a worker", "generation", status=202,
     response=obj(("id", "deleted"), id=INT, deleted=BOOL))
def delete(run_id: int):
    run = own_run(run_id)
    jobs.delete(gen.GenerationRun.select().where(gen.GenerationRun.id == run.id))
    return jsonify(id=run.id, deleted=True), 202


@bp.post("/api/v1/generation/runs/<id:run_id>/retry")
@require_user("write")
@doc("Queue a run's failed jobs again (a worker does it; the run reopens)", "generation", status=202,
     response=obj(("id", "failed"), id=INT, failed=INT), errors={409: "the run was cancelled"})
def retry(run_id: int):
    run = own_run(run_id)
    if run.cancelled:
        error(409, "the run was cancelled: its failed jobs are not retried")
    failed = gen.GenerationJob.select().where(gen.GenerationJob.run == run.id, gen.GenerationJob.state == "failed")
    count = failed.count()
    if count:
        jobs.retry_run.send(run.id)
    return jsonify(id=run.id, failed=count), 202


@bp.post("/api/v1/generation/runs/clear")
@require_user("write")
@doc("Delete all your finished runs (Done, Failed, Cancelled), as DELETE does each", "generation", status=202,
     response=obj(("deleted",), deleted=INT))
def clear_finished():
    finished = gen.GenerationRun.select().where(gen.GenerationRun.user == current_api_user().id,
                                                gen.GenerationRun.status.in_(gen.RUN_FINISHED))
    return jsonify(deleted=len(jobs.delete(finished))), 202


@bp.get("/api/v1/generation/jobs/<id:job_id>/image.png")
@require_user("read")
@doc("A job's PNG (with its A1111 parameters chunk)", "generation", response=PNG, media="image/png",
     errors={302: {"description": "redirect to the stored file (S3 storage)"}})
def job_image(job_id: int):
    job = gen.GenerationJob.get_or_none(gen.GenerationJob.id == job_id)
    if job is None or not job.output_blob:
        error(404, "No image for this job")
    own_run(job.run_id)
    return send_blob(job.output_blob, "image/png", f"{job.run_id}-{job.index}.png")


@bp.get("/api/v1/generation/runs/<id:run_id>/zip")
@require_user("read")
@doc("The run's images as a zip, streamed: each PNG (with its A1111 parameters chunk) named INDEX-SEED.png, "
     "its XYZ grids, and run.json (the request, and each image's file, prompt and seed)", "generation",
     response=BINARY, media="application/zip")
def run_zip(run_id: int):
    run = own_run(run_id)
    return Response(run_archive.zip_stream(run_archive.run_files(run)), mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="run-{run.id}.zip"'})


@bp.get("/api/v1/generation/runs/<id:run_id>/grid/<index:n>.png")
@require_user("read")
@doc("The n-th XYZ grid image of a run", "generation", response=PNG, media="image/png",
     errors={302: {"description": "redirect to the stored file (S3 storage)"}})
def grid_image(run_id: int, n: int):
    blobs = json.loads(own_run(run_id).grid_blobs or "[]")
    if not 0 <= n < len(blobs):
        error(404, "No such grid")
    return send_blob(blobs[n], "image/png", f"grid-{run_id}-{n}.png")


@bp.get("/api/v1/generation/runs/<id:run_id>/events")
@require_user("read")
@doc("Server-Sent Events until the run ends: queued, started, step, image, grid, done, failed, cancelled, "
     "deleted; each kept event has an id for Last-Event-ID", "generation", media="text/event-stream",
     response=obj(("event", "data"), id=STR, event=STR,
                  data={"type": "string", "contentMediaType": "application/json"}),
     params=[param("Last-Event-ID", INT, where="header"), param("after", INT)],
     errors={204: {"description": "nothing left to send: the run ended and its event log expired"},
             429: "too many of your event streams are open"})
def events(run_id: int):
    """Server-Sent Events: every kept event since Last-Event-ID (or the start), then live ones, until
    the run ends (web/streams.py). Under the ASGI server the stream holds no request thread."""
    run = own_run(run_id)
    after = last_event_id()
    if streams.nothing_more(run_id, after, run.status in gen.RUN_FINISHED):
        return Response(status=204)  # EventSource clients do not reconnect after a 204
    return open_stream(streams.RunFeed(run_id, after))


@bp.get("/api/v1/generation/events")
@require_user("read")
@doc("Server-Sent Events of all your runs, those queued later included (one stream for a whole queue): "
     "each event names its run; kept events have an id for Last-Event-ID. Without one (or `after`) it "
     "starts with what happens next; `reset` says events after yours are no longer kept (read your runs "
     "again). It ends after STREAM_MAX_LIFETIME_S; reconnect with Last-Event-ID", "generation",
     media="text/event-stream", response=obj(("event", "data"), id=STR, event=STR,
                                             data={"type": "string", "contentMediaType": "application/json"}),
     params=[param("Last-Event-ID", INT, where="header"), param("after", INT)],
     errors={429: "too many of your event streams are open"})
def user_events():
    """One stream of every event of the caller's runs (web/streams.py UserFeed), counted as one stream."""
    return open_stream(streams.user_feed(current_api_user().id, last_event_id()))


def last_event_id() -> int:
    """The last event id the client has (Last-Event-ID, or `after`); -1 when none."""
    header = request.headers.get("Last-Event-ID")
    return integer("Last-Event-ID" if header else "after", -1, -1, INT64_MAX - 1, value=header)


def open_stream(feed) -> Response:
    """The feed's events, as one of the user's STREAM_MAX_PER_USER open streams (429 beyond)."""
    s, place = settings.get(), f"streams:{current_api_user().id}"
    token = take_place(place, s.stream_max_per_user, s.stream_max_lifetime_s + 60)
    if token is None:
        error(429, f"at most {s.stream_max_per_user} event streams may be open at once; close one")
    stream = streams.Stream(feed, place, token)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if hand_off(stream):  # web/asgi.py serves the body on its event loop
        return Response(mimetype="text/event-stream", headers=headers)
    response = Response(stream.blocking(), mimetype="text/event-stream", headers=headers)
    response.call_on_close(lambda: give_back_place(place, token))  # also when the body was never read
    return response
