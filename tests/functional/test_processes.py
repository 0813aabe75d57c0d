"""The Procfile's processes as real programs: `atelier web` (gunicorn) and `atelier worker` (Dramatiq)
serve an upload end to end, through the same database and Redis as the rest of the suite."""
import time

import pytest
import requests

from tests import factories
from tests.conftest import make_user
from tests.helpers import atelier_processes


@pytest.fixture
def processes(tmp_path):
    with atelier_processes(tmp_path, "worker") as base:
        yield base


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
