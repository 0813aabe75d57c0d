"""The long-running processes of the Procfile: web, worker, worker-gpu, scheduler; and the embedded Redis."""
from __future__ import annotations

import os
import shutil
import sys

import click

NON_GPU_QUEUES = ("default", "index")


def _exec(argv: list[str]) -> None:
    click.echo(" ".join(argv), err=True)
    os.execvp(argv[0], argv)


def _bin(name: str) -> str:
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else (shutil.which(name) or name)


@click.command("web")
@click.option("--bind", help="host:port (default 127.0.0.1:$PORT)")
def web(bind):
    """Serve the web app and API with gunicorn: uvicorn workers, each running the Flask app on WEB_THREADS
    request threads and the event streams on its event loop (web/asgi.py)."""
    import settings
    from models_db.redis_store import redis_url
    s = settings.get()
    redis_url()  # start the embedded redis before forking workers
    _exec([_bin("gunicorn"), "--config", "python:web.gunicorn_conf", "--workers", str(s.web_workers),
           "--worker-class", "web.asgi.Worker", "--bind", bind or f"127.0.0.1:{s.port}", "--timeout", "600",
           "--access-logfile", "-", "web.asgi:create_app()"])


@click.command("worker")
@click.option("--gpu", is_flag=True, help="Serve the gpu queue: one process, one thread.")
def worker(gpu):
    """Run Dramatiq workers (all non-GPU queues, or the gpu queue)."""
    import settings
    from models_db.redis_store import redis_url
    s = settings.get()
    redis_url()
    if gpu:
        args = ["--processes", "1", "--threads", "1", "--queues", "gpu"]
    else:
        args = ["--processes", str(s.worker_processes), "--threads", str(s.worker_threads),
                "--queues", *NON_GPU_QUEUES]
    _exec([_bin("dramatiq"), "jobs", *args])


@click.command("metrics-reset")
def metrics_reset():
    """Forget the metrics files of processes from an earlier run (the Procfile's start does this)."""
    import metrics
    metrics.reset()


@click.command("scheduler")
def scheduler():
    """Run the APScheduler schedule table (it only enqueues actors)."""
    from scheduler import run
    run()


@click.group("redis")
def redis_group():
    """The embedded Redis (used when REDIS_URL is unset)."""


@redis_group.command("start")
def redis_start():
    """Start the embedded server in the background (it keeps running until `atelier redis stop`); print its URL."""
    from models_db.redis_store import redis_url
    click.echo(redis_url())


@redis_group.command("stop")
def redis_stop():
    """Stop the embedded server (saving its data), whichever process started it."""
    from models_db.redis_store import stop_embedded
    stop_embedded()


@redis_group.command("serve")
def redis_serve():
    """Run the embedded server while this command runs (the Procfile's `redis`): SIGTERM or Ctrl-C stops it,
    after the other processes have disconnected. With REDIS_URL set there is nothing to run: it just waits."""
    import signal
    import threading

    import settings
    from models_db.redis_store import serve_embedded
    s = settings.get()
    if not s.redis_url:
        sys.exit(serve_embedded(s, lambda started: click.echo(
            f"redis-server at unix://{s.redis_socket} ({'started' if started else 'already running'}); "
            "it stops when this does", err=True)))
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    click.echo("REDIS_URL is set: no embedded redis-server to run; waiting to be stopped", err=True)
    stopping.wait()


COMMANDS = [web, worker, scheduler, redis_group, metrics_reset]
