"""Moderation and operations pages: the review queue and the rating game (moderators; the game is open to
every signed-in user), queue depths, GPU workers, the per-user generation queue and failed jobs (admins)."""
from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from jobs import gpu_workers, queues
from models_db import generation as gen
from models_db import images as im
from web.moderation import queue_item

bp = Blueprint("site_staff", __name__)


def role(*roles: str):
    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)
        return wrapped
    return decorator


@bp.get("/moderation")
@role("moderator", "admin")
def moderation():
    return render_template("staff/moderation.html", items=[queue_item(i) for i in im.review_queue(60)],
                           levels=[name for name in im.LEVELS if name != "Blocked"])


@bp.get("/rating-game")
@login_required
def rating_game():
    return render_template("staff/rating_game.html", levels=[name for name in im.LEVELS if name != "Blocked"])


QUEUE_USERS_SHOWN = 20


@bp.get("/operations")
@role("admin")
def operations():
    return render_template("staff/operations.html", queues=queues.queue_stats(), failed=queues.failed_by_run()[:100],
                           actors=sorted(queues.actor_totals().items()), stale=queues.stale_jobs(),
                           workers=gpu_workers.workers(), users=gen.queue_by_user(QUEUE_USERS_SHOWN),
                           stale_beats=gpu_workers.STALE_BEATS, drop_beats=gpu_workers.TTL_BEATS)


RETRIED = {"sent": "Sent again.", "settled": "Nothing left to do for that job (it is no longer failed): removed.",
           None: "That job is no longer in the failed list."}


@bp.post("/operations/failed/<message_id>/retry")
@role("admin")
def retry(message_id: str):
    outcome = queues.retry_failed(message_id)
    flash(RETRIED[outcome], "error" if outcome is None else "success")
    return redirect(url_for(".operations"))


@bp.post("/operations/failed/runs/<id:run_id>/retry")
@role("admin")
def retry_run(run_id: int):
    flash(f"Sent {queues.retry_failed_run(run_id)} again.", "success")
    return redirect(url_for(".operations"))
