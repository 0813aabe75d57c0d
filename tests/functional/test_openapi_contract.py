"""The OpenAPI document is the contract: Schemathesis sends generated requests to every operation of
/api/v1/openapi.json on the live app, with a write-scope API key, and fails on any 5xx and on any status code,
content type or response body the document does not describe. Each operation gets valid cases, invalid ones,
and valid ones aimed at real objects (the path ids of what `seeded` made)."""
import io

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import settings
from jobs import generation as gen_jobs
from models_db import generation as gen
from tests.factories import png_bytes
from tests.helpers import auth, catalog_model, import_model

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 20  # per operation and pass; derandomized, so every run sends the same requests


@pytest.fixture
def seeded(app, alice, bob, tmp_path, monkeypatch):
    """Real objects for the path ids: a published model with a version and file, a checkpoint generation can
    use, a ready image, a finished run, an upload, a comment, a review, a post. Returns (key, path ids).
    Rate limits are raised for this test only."""
    from gpu.demo import write_checkpoint
    from jobs.images import process
    user, key = alice
    env = dict(settings.get().env, RATE_LIMIT_WRITES="100000/minute", RATE_LIMIT_AUTH_FAILURES="100000/minute",
               STREAM_MAX_LIFETIME_S="1")  # the stream of all one's runs ends after a second
    monkeypatch.setattr(settings, "_current", settings.load(env))
    client = app.test_client()

    def call(method, url, status, **kw):
        response = getattr(client, method)(url, headers=auth(key), **kw)
        assert response.status_code == status, (url, response.get_json())
        return response.get_json()
    catalog_model(bob[0], "seed-lora", model_type="LORA")
    checkpoint = import_model(write_checkpoint("SD1", tmp_path / "tiny.safetensors", size="tiny"), "--publish",
                              "--owner", user.username)
    image = call("post", "/api/v1/images", 202, data={"file": (io.BytesIO(png_bytes()), "seed.png")})
    assert process(image["id"]) == "Ready"
    tiny = {"width": 64, "height": 64, "steps": 1}
    run = call("post", "/api/v1/generation", 202, json={"model": checkpoint["versionId"], "prompt": "seed", **tiny})
    gen.GenerationRun.update(status="Cancelled").where(gen.GenerationRun.id == run["id"]).execute()
    gen_jobs.publish(gen.GenerationRun.get_by_id(run["id"]), "cancelled", {})  # its event stream ends at once
    upload = call("post", "/api/v1/uploads", 201, json={"modelVersionId": checkpoint["versionId"],
                                                        "filename": "more.safetensors", "size": 10})
    comment = call("post", f"/api/v1/models/{checkpoint['modelId']}/comments", 201, json={"content": "nice"})
    call("put", f"/api/v1/model-versions/{checkpoint['versionId']}/review", 200, json={"recommended": True})
    ids = {"model_id": checkpoint["modelId"], "version_id": checkpoint["versionId"], "file_id": checkpoint["fileId"],
           "filename": "tiny.safetensors", "file_hash": checkpoint["hashes"]["AutoV2"], "image_id": image["id"],
           "kind": "Like", "run_id": run["id"], "job_id": run["jobs"][0]["id"], "n": 0, "upload_id": upload["id"],
           "comment_id": comment["id"], "board": "creators-alltime"}
    return key, ids


def conformance_failures(base_url: str, key: str, ids: dict) -> dict[str, str]:
    """Runs each operation's cases and returns {operation: its first failure}."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json")
    failures = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        names = [p.name for p in operation.path_parameters]
        passes = [(GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None)]
        if names:
            passes.append((GenerationMode.POSITIVE, {name: ids[name] for name in names}))
        for mode, path in passes:
            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path))
            @hypothesis_settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                                 phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case):
                case.call_and_validate(headers=auth(key), checks=CHECKS, timeout=30)
            try:
                run()
            except Unsatisfiable:  # nothing of this operation can be made invalid (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # the checks' failure group, or the request failing
                failures.setdefault(operation.label, f"{type(exc).__name__}: {exc}")
    return failures


def test_every_operation_conforms_to_the_document(live_server, seeded):
    failures = conformance_failures(live_server, *seeded)
    assert not failures, "\n\n".join(f"=== {label}\n{text}" for label, text in failures.items())


@pytest.mark.parametrize("path,method", [
    ("/api/v1/me/settings", "put"), ("/api/v1/posts", "post"), ("/api/v1/images/1/report", "post"),
    ("/api/v1/rating-game/1", "post"), ("/api/v1/models", "post"), ("/api/v1/uploads", "post")])
@pytest.mark.parametrize("body", [1.5, [1], "x", None])
def test_json_bodies_that_are_not_objects_get_400(client, alice, path, method, body):
    response = getattr(client, method)(path, headers=auth(alice[1]), json=body)
    assert response.status_code == 400 and "JSON object" in response.get_json()["error"]
