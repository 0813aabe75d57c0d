"""The Procfile's processes as real programs: `atelier web` (gunicorn) and `atelier worker` (Dramatiq)
serve an upload end to end, through the same database and Redis as the rest of the suite."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests import factories
from tests.conftest import make_user
from tests.helpers import free_port, wait_http

BIN = Path(sys.executable).parent


@pytest.fixture
def processes(tmp_path):
    port = free_port()
    started = []
    for args in (["web", "--bind", f"127.0.0.1:{port}"], ["worker"]):
        log = open(tmp_path / f"{args[0]}.log", "wb")
        started.append(subprocess.Popen([str(BIN / "atelier"), *args], stdout=log, stderr=subprocess.STDOUT,
                                        env=dict(os.environ, WEB_WORKERS="1"), start_new_session=True))
    base = f"http://127.0.0.1:{port}"
    if not wait_http(f"{base}/healthz"):
        pytest.fail("web did not answer /healthz: " + (tmp_path / "web.log").read_text()[-2000:])
    yield base
    for proc in started:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_upload_is_ingested_by_the_worker_process_and_downloaded(processes, tmp_path):
    _, key = make_user("dora")
    headers = {"Authorization": f"Bearer {key}"}
    model = requests.post(f"{processes}/api/v1/models", headers=headers, json={"name": "Proc", "type": "LORA"}).json()
    version = requests.post(f"{processes}/api/v1/model-versions", headers=headers, json={
        "modelId": model["id"], "name": "v1", "baseModel": "SDXL 1.0"}).json()
    data = factories.safetensors_file(tmp_path / "proc.safetensors", "LoRA").read_bytes()
    upload = requests.post(f"{processes}/api/v1/model-versions/{version['id']}/files", headers=headers,
                           files={"file": ("proc.safetensors", data)}).json()
    deadline = time.monotonic() + 60
    while upload["state"] == "processing" and time.monotonic() < deadline:
        time.sleep(0.3)
        upload = requests.get(f"{processes}/api/v1/uploads/{upload['id']}", headers=headers).json()
    assert upload["state"] == "done", upload
    published = requests.post(f"{processes}/api/v1/model-versions/{version['id']}/publish", headers=headers)
    assert published.status_code == 200
    download = requests.get(f"{processes}/api/download/models/{version['id']}")
    assert download.history[0].status_code == 307 and download.content == data
