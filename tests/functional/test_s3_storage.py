"""STORAGE_URL=s3://… against a real S3 HTTP endpoint (moto's standalone server on loopback):
store, dedupe, download through a presigned redirect with Range, delete."""
import hashlib
import io

import pytest
import requests

import settings
from models_db import storage

moto_server = pytest.importorskip("moto.server")


@pytest.fixture
def s3_store(monkeypatch):
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    env = dict(settings.get().env, STORAGE_URL="s3://atelier-blobs/models", S3_ENDPOINT_URL=endpoint)
    monkeypatch.setattr(settings, "_current", settings.load(env))
    store = storage.get_store()
    store.client.create_bucket(Bucket="atelier-blobs")
    yield store
    storage._stores.clear()
    server.stop()


def test_s3_blob_store_round_trip(s3_store):
    data = b"weights" * 5000
    sha, size = s3_store.put_stream(io.BytesIO(data))
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert s3_store.put_stream(io.BytesIO(data)) == (sha, size)  # stored once
    assert s3_store.exists(sha) and s3_store.size(sha) == len(data)
    with s3_store.local_path(sha) as path:
        assert path.read_bytes() == data
    url = s3_store.signed_url(sha, "my model.safetensors", 60)
    whole = requests.get(url)
    assert whole.content == data and 'filename="my model.safetensors"' in whole.headers["Content-Disposition"]
    part = requests.get(url, headers={"Range": "bytes=7-13"})
    assert part.status_code == 206 and part.content == data[7:14]
    s3_store.delete(sha)
    assert not s3_store.exists(sha)
    assert s3_store.check().startswith("s3://atelier-blobs")


def test_download_redirects_to_presigned_s3_url(s3_store, client, alice, tmp_path):
    from tests import factories
    from tests.helpers import import_model
    path = factories.safetensors_file(tmp_path / "s3.safetensors", "SD1")
    out = import_model(path, "--publish", "--owner", "alice")
    location = client.get(f"/api/download/models/{out['versionId']}").headers["Location"]
    assert location.startswith(s3_store.client.meta.endpoint_url)
    assert requests.get(location).content == path.read_bytes()
