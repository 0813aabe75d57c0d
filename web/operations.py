"""Operations API (admins): the GPU workers' heartbeats and the generation queue per user, the data of the
Operations page."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, jsonify

from jobs import gpu_workers
from models_db import generation as gen
from web.api import current_api_user, error, integer, require_user
from web.openapi import BOOL, COUNT, DATE, INT, NUM, STR, LIMIT, array, doc, items_of, nullable, obj

bp = Blueprint("operations", __name__)

BATCH = obj(("jobs", "runs", "model", "step", "steps"), jobs=COUNT, runs=array(INT), model=STR, family=STR,
            width=INT, height=INT, steps=INT, sampler=STR, step=COUNT, started=DATE)
WORKER = obj(
    ("id", "backend", "lastHeartbeat", "stale", "images", "batches"),
    id=STR, host=STR, pid=INT, backend=STR, device=STR, dtype=STR, error=STR,
    warm=array(obj(name=STR, family=STR, bytes=COUNT)),
    vram=nullable(obj(used=COUNT, total=COUNT, allocated=COUNT)), ram=obj(rss=COUNT, total=COUNT),
    batch=nullable(BATCH), batches=COUNT, images=COUNT, busySeconds=NUM, imagesPerSecond=nullable(NUM),
    started=DATE, lastHeartbeat=DATE, heartbeatSeconds=INT, ageSeconds=NUM, stale=BOOL)
QUEUE_USER = obj(("userId", "username", "queued", "running", "runs"), userId=INT, username=STR, queued=COUNT,
                 running=COUNT, runs=COUNT)


def require_admin():
    if current_api_user().role != "admin":
        error(403, "admins only")


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat().replace("+00:00", "Z")


def worker_json(w: dict) -> dict:
    batch = w.get("batch")
    if batch:
        batch = {**batch, "started": iso(batch["started"])}
    out = {"id": w["id"], "host": w["host"], "pid": w["pid"], "backend": w["backend"], "warm": w.get("warm", []),
           "vram": w.get("vram"), "ram": w["ram"], "batch": batch, "batches": w["batches"], "images": w["images"],
           "busySeconds": w["busy_s"], "imagesPerSecond": w["rate"], "started": iso(w["started"]),
           "lastHeartbeat": iso(w["beat"]), "heartbeatSeconds": w["every"], "ageSeconds": round(w["age"], 3),
           "stale": w["stale"]}
    out.update({k: w[k] for k in ("device", "dtype", "error") if k in w})
    return out


@bp.get("/api/v1/operations/workers")
@require_user("read")
@doc("GPU workers: device, warm pipelines, memory, current batch, speed, last heartbeat (admins)", "operations",
     response=items_of(WORKER), errors={403: "admins only"})
def workers():
    require_admin()
    return jsonify(items=[worker_json(w) for w in gpu_workers.workers()])


@bp.get("/api/v1/operations/queue")
@require_user("read")
@doc("Users with queued or running generation jobs, most first (admins)", "operations",
     response=items_of(QUEUE_USER), params=[LIMIT(100)], errors={403: "admins only"})
def queue():
    require_admin()
    rows = gen.queue_by_user(integer("limit", 20, 1, 100))
    return jsonify(items=[{"userId": r["user"], "username": r["username"], "queued": r["queued"],
                           "running": r["running"], "runs": r["runs"]} for r in rows])
