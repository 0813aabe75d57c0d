"""Unmodified third-party Civitai API clients, pointed at a live Atelier server."""
import asyncio
import hashlib
from pathlib import Path

import pytest

from tests import factories
from tests.helpers import catalog_model, import_model

civitapy = pytest.importorskip("civitapy")
downloader = pytest.importorskip("civitai_downloader.downloader")


@pytest.fixture
def published(tmp_path, alice, bob):
    for i in range(5):
        catalog_model(bob[0], f"filler {i}", downloads=i)
    open_file = factories.safetensors_file(tmp_path / "open model.safetensors", "SD1", min_bytes=2 << 20)
    gated_file = factories.safetensors_file(tmp_path / "gated.safetensors", "LoRA")
    open_out = import_model(open_file, "--name", "Open", "--publish", "--owner", "alice")
    gated_out = import_model(gated_file, "--name", "Gated", "--type", "LORA", "--base-model", "SD 1.5",
                             "--login-required", "--publish", "--owner", "alice")
    return {"open": (open_out, open_file.read_bytes()), "gated": (gated_out, gated_file.read_bytes())}


def test_civitapy_lists_pages_looks_up_and_downloads(live_server, published, alice, tmp_path):
    client = civitapy.CivitAIClient(base_url=f"{live_server}/api/v1", token=alice[1],
                                    download_dir=str(tmp_path / "dl"), verify_hash=True, retry_count=1)
    first = client.models_list(limit=3)
    assert len(first["items"]) == 3 and first["metadata"]["nextCursor"]

    async def walk():
        return [m.id async for m in client.models_list_paginated_async(limit=2)]
    ids = asyncio.run(walk())
    assert len(ids) == len(set(ids)) == 7
    out, data = published["open"]
    sha = hashlib.sha256(data).hexdigest()
    assert client.model_versions_by_hash(sha.lower())["id"] == out["versionId"]
    assert client.model_versions_by_hash("0" * 64) is None
    assert client.users_me()["username"] == "alice"
    for name in ("open", "gated"):
        out, data = published[name]
        paths = client.download_model_version(out["versionId"])
        assert len(paths) == 1 and Path(paths[0]).read_bytes() == data


def test_civitapy_without_a_key_is_refused_gated_files(live_server, published, tmp_path):
    client = civitapy.CivitAIClient(base_url=f"{live_server}/api/v1", download_dir=str(tmp_path / "anon"),
                                    retry_count=1)
    out, _ = published["gated"]
    with pytest.raises(Exception):
        client.download_model_version(out["versionId"])
    assert not list((tmp_path / "anon").rglob("*.safetensors"))


def test_civitai_downloader_follows_the_redirect_without_the_key(live_server, published, alice, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setattr(downloader, "TOKEN_FILE", tmp_path / "civitai-config")
    target = tmp_path / "models"
    target.mkdir()
    for name, expected_name in (("open", "open model.safetensors"), ("gated", "gated.safetensors")):
        out, data = published[name]
        downloader.download_file(f"{live_server}/api/download/models/{out['versionId']}", str(target), alice[1])
        assert (target / expected_name).read_bytes() == data
    out, _ = published["gated"]
    with pytest.raises(Exception):
        downloader.download_file(f"{live_server}/api/download/models/{out['versionId']}", str(target), "bad-key")
