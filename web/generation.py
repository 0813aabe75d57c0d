"""The generation API: queue a run, watch it (JSON or Server-Sent Events), cancel it, fetch outputs."""
from __future__ import annotations

import json

from flask import Blueprint, Response, jsonify, request

import settings

from gpu.request import GenerationRequest, RequestError, parse
from jobs import generation as jobs
from models_db import generation as gen
from models_db.ids import INT64_MAX
from models_db.redis_store import give_back_place, take_place
from web import streams
from web.api import absolute, body_limit, current_api_user, error, integer, require_user, send_blob
from web.catalog import iso
from web.handoff import hand_off
from web.openapi import INT, LIMIT, STR, doc, items_of, obj, param, ref

PNG = {"type": "string", "format": "binary"}

bp = Blueprint("generation", __name__)


def job_json(job: gen.GenerationJob) -> dict:
    return {"id": job.id, "index": job.index, "state": job.state, "prompt": job.prompt,
            "negativePrompt": job.negative_prompt, "seed": job.seed, "error": job.error,
            "cell": json.loads(job.cell_json) if job.cell_json else None, "imageId": job.image_id,
            "imageUrl": absolute("generation.job_image", job_id=job.id) if job.output_blob else None}


def run_json(run: gen.GenerationRun, with_jobs: bool = True) -> dict:
    out = {"id": run.id, "status": run.status, "source": run.source, "total": run.total, "done": run.done,
           "failed": run.failed, "progress": (run.done + run.failed) / run.total if run.total else 1.0,
           "createdAt": iso(run.created_at), "finishedAt": iso(run.finished_at), "request": run.request,
           "grids": [absolute("generation.grid_image", run_id=run.id, n=n)
                     for n in range(len(json.loads(run.grid_blobs or "[]")))],
           "eventsUrl": absolute("generation.events", run_id=run.id)}
    if with_jobs:
        out["jobs"] = [job_json(j) for j in run.jobs.order_by(gen.GenerationJob.index)]
    return out


def own_run(run_id: int) -> gen.GenerationRun:
    run = gen.GenerationRun.get_or_none(gen.GenerationRun.id == run_id)
    user = current_api_user()
    if run is None or (run.user_id != user.id and not user.is_staff):
        error(404, "No such generation run")
    return run


def request_error(exc: RequestError):
    error(400, exc.message if exc.field in ("", "body") else f"{exc.field}: {exc.message}", field=exc.field or None)


@bp.post("/api/v1/generation")
@body_limit(lambda s: s.max_generation_request_bytes)
@require_user("write")
@doc("Queue a generation run: one prompt × quantity, a prompts list, {a|b}/__wildcard__ templates or an XYZ grid",
     "generation", status=202, response=ref("GenerationRun"), body=GenerationRequest)
def create():
    try:
        run = jobs.submit(current_api_user(), parse(request.get_json(silent=True)), source="api")
    except RequestError as exc:
        request_error(exc)
    return jsonify(run_json(run)), 202


@bp.get("/api/v1/generation/runs")
@require_user("read")
@doc("Your latest runs (without their jobs)", "generation", response=items_of(ref("GenerationRun")),
     params=[LIMIT(100)])
def runs():
    limit = integer("limit", 20, 1, 100)
    query = (gen.GenerationRun.select().where(gen.GenerationRun.user == current_api_user())
             .order_by(gen.GenerationRun.id.desc()).limit(limit))
    return jsonify(items=[run_json(r, with_jobs=False) for r in query])


@bp.get("/api/v1/generation/runs/<id:run_id>")
@require_user("read")
@doc("A run: status, progress, jobs and image URLs", "generation", response=ref("GenerationRun"))
def run_status(run_id: int):
    return jsonify(run_json(own_run(run_id)))


@bp.delete("/api/v1/generation/runs/<id:run_id>")
@require_user("write")
@doc("Cancel: queued jobs are dropped, a running batch stops at its next step", "generation",
     response=ref("GenerationRun"))
def cancel(run_id: int):
    run = own_run(run_id)
    if run.status not in gen.RUN_FINISHED:
        jobs.cancel(run)
    return jsonify(run_json(gen.GenerationRun.get_by_id(run_id)))


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
@doc("Server-Sent Events until the run ends: queued, started, step, image, grid, done, failed, cancelled; each "
     "kept event has an id for Last-Event-ID", "generation", media="text/event-stream",
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
