"""The web process's app (gunicorn with uvicorn workers, `atelier web`): every request runs in the Flask
app on a bounded pool of request threads (a2wsgi), and what waits long (event streams, /sdapi calls
waiting for their images), once its Flask view has authorised it, is served on the event loop
(web/handoff.py) so that it holds no thread."""
from __future__ import annotations

import logging
import re

from a2wsgi import WSGIMiddleware
from uvicorn_worker import UvicornWorker

from web.handoff import HANDOFF

TOKEN = re.compile(r"([?&]token=)[^&#\s\"]*")


class App:
    def __init__(self, flask_app, threads: int):
        self.wsgi = WSGIMiddleware(flask_app, workers=threads)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.wsgi(scope, receive, send)
        handoff, start = [], {}
        scope[HANDOFF] = handoff

        async def forward(message):
            if not handoff:
                await send(message)
            elif message["type"] == "http.response.start":  # the view's status and headers, for the work
                start.update(message)
        await self.wsgi(scope, receive, forward)
        if handoff:
            await handoff[0].serve(start, receive, send, self.wsgi.executor)


class RedactTokens(logging.Filter):
    """API keys given as ?token= never reach the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = TOKEN.sub(r"\1[redacted]", message), ()
        return True


class Worker(UvicornWorker):
    """gunicorn's uvicorn worker; on shutdown, connections still open after 20 s (event streams: their
    clients reconnect) are closed."""
    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "timeout_graceful_shutdown": 20}


def create_app() -> App:
    import settings
    from web import create_app as create_flask_app
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    return App(create_flask_app(), settings.get().web_threads)
