"""Test helpers that drive the real entrances (CLI, HTTP)."""
from __future__ import annotations

import contextlib
import json

from click.testing import CliRunner

from cli import main


def cli(*args, input=None):
    result = CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)
    return result


def import_model(path, *args) -> dict:
    result = cli("import-model", path, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def basic(username: str, password: str) -> dict:
    """HTTP basic auth headers, for the Flask test client."""
    import base64
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def catalog_model(owner, name: str, *, model_type="Checkpoint", base_model="SD 1.5", tags=(), publish=True,
                  nsfw=False, downloads=0, rating=0.0, file_bytes: bytes | None = None, trained_words=(),
                  file_name: str | None = None, **fields):
    """A model with one version and one ingested file, built through the catalog's own functions."""
    import io

    from jobs.ingest import ingest
    from models_db import catalog as c
    from models_db.db import transaction
    from models_db.storage import get_store
    data = file_bytes if file_bytes is not None else tiny_safetensors(name)
    sha, size = get_store().put_stream(io.BytesIO(data))
    with transaction():
        model = c.create_model(owner, name=name, type=model_type, tags=tags, nsfw=nsfw,
                               download_count=downloads, rating=rating, **fields)
        version = c.create_version(model, name="v1", base_model=base_model, trained_words=trained_words)
        file = c.ModelFile.create(version=version, name=file_name or f"{name}.safetensors", blob=sha, size_bytes=size)
    assert ingest(file.id).status == "Ready"
    if publish:
        with transaction():
            c.publish_version(version)
    return c.Model.get_by_id(model.id)


def tiny_safetensors(name: str) -> bytes:
    """A small valid safetensors file whose bytes are unique to `name`."""
    import numpy as np
    from safetensors.numpy import save
    return save({"w": np.arange(16, dtype=np.float16)}, metadata={"name": name})


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> bool:
    """True once url answers 200 (a server process has come up), False after timeout seconds."""
    import time

    import requests
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return True
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow on a busy machine
            time.sleep(0.2)
    return False


@contextlib.contextmanager
def atelier_processes(log_dir, *commands, env=None):
    """The Procfile's `atelier web` (on a free port) and any other `atelier` commands as real processes;
    yields the web's base URL. Each writes its log to log_dir/<command>.log."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import pytest
    port = free_port()
    started = []
    try:
        for args in (["web", "--bind", f"127.0.0.1:{port}"], *([c] for c in commands)):
            with open(Path(log_dir) / f"{args[0]}.log", "wb") as log:
                started.append(subprocess.Popen([str(Path(sys.executable).parent / "atelier"), *args], stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True,
                                                env=dict(os.environ, WEB_WORKERS="1", **(env or {}))))
        base = f"http://127.0.0.1:{port}"
        if not wait_http(f"{base}/healthz"):
            pytest.fail("web did not answer /healthz: " + (Path(log_dir) / "web.log").read_text()[-2000:])
        yield base
    finally:
        for proc in started:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
