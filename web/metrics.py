"""GET /metrics for Prometheus, and the HTTP request metrics of every view."""
from __future__ import annotations

import hmac
import time

from flask import Blueprint, Response, g, request
from flask_login import current_user

import settings

bp = Blueprint("metrics", __name__)


def allowed() -> bool:
    """Without METRICS_TOKEN anyone; with it, its bearer (Prometheus) or a signed-in admin (the link on
    the Operations page)."""
    token = settings.get().metrics_token
    if not token or hmac.compare_digest(request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()):
        return True
    return current_user.is_authenticated and current_user.role == "admin"


@bp.get("/metrics")
def scrape():
    if not allowed():
        return Response("a METRICS_TOKEN is required: Authorization: Bearer <token>\n", status=401,
                        content_type="text/plain", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    import metrics
    from jobs.fairness import UserQueueCollector
    from jobs.queues import QueueCollector
    body, content_type = metrics.render(QueueCollector(), UserQueueCollector())
    return Response(body, content_type=content_type)


def init_app(app) -> None:
    from metrics import definitions as m

    @app.before_request
    def _start_timer():
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.pop("request_started", None)
        if started is not None and request.endpoint != "metrics.scrape":
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            m.http_requests.labels(endpoint, request.method, str(response.status_code)).inc()
            m.http_latency.labels(endpoint, request.method).observe(time.perf_counter() - started)
        return response
