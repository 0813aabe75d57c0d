"""/healthz and the OpenAPI document."""
import re

import settings
from models_db import storage


def test_healthz_reports_every_dependency(client):
    body = client.get("/healthz")
    assert body.status_code == 200
    checks = body.get_json()["checks"]
    assert set(checks) == {"database", "redis", "storage"} and all(c["ok"] for c in checks.values())


def test_healthz_is_503_when_storage_is_broken(client, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    env = dict(settings.get().env, STORAGE_URL=f"file://{blocker}/blobs")
    monkeypatch.setattr(settings, "_current", settings.load(env))
    body = client.get("/healthz")
    assert body.status_code == 503
    assert body.get_json()["checks"]["storage"]["ok"] is False and body.get_json()["status"] == "unavailable"
    storage._stores.clear()


def test_healthz_is_503_when_redis_is_down(client, monkeypatch):
    env = dict(settings.get().env, REDIS_URL="redis://127.0.0.1:1/0")
    monkeypatch.setattr(settings, "_current", settings.load(env))
    body = client.get("/healthz")
    assert body.status_code == 503 and body.get_json()["checks"]["redis"]["ok"] is False


def test_openapi_describes_every_api_route(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/", "/healthz")):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, f"{method} {rule.rule} is not in the OpenAPI document"


def test_openapi_document_is_valid(client):
    from openapi_spec_validator import validate
    validate(client.get("/api/v1/openapi.json").get_json())
