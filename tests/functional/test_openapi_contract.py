"""The OpenAPI document is the contract: Schemathesis sends generated requests (valid and invalid) to every
operation of /api/v1/openapi.json on the live app, with a write-scope API key, and fails on any 5xx, any
status code, content type or response body the document does not describe."""
import io

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis.errors import Unsatisfiable
from hypothesis import settings as hypothesis_settings
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
EXAMPLES = 8  # per operation and phase; with the fixed seed the run is the same every time


@pytest.fixture
def seeded(app, alice, tmp_path, monkeypatch):
    """Objects for the path ids to hit sometimes: a published model with a version and file, a checkpoint
    generation can use, a ready image, a finished run. Rate limits are raised for this test only."""
    from gpu.demo import write_checkpoint
    from jobs.images import process
    user, key = alice
    env = dict(settings.get().env, RATE_LIMIT_WRITES="100000/minute")
    monkeypatch.setattr(settings, "_current", settings.load(env))
    catalog_model(user, "seed-lora", model_type="LORA")
    checkpoint = import_model(write_checkpoint("SD1", tmp_path / "tiny.safetensors", size="tiny"), "--publish")
    client = app.test_client()
    sent = client.post("/api/v1/images", headers=auth(key), data={"file": (io.BytesIO(png_bytes()), "seed.png")})
    assert sent.status_code == 202, sent.get_json()
    assert process(sent.get_json()["id"]) == "Ready"
    run = client.post("/api/v1/generation", headers=auth(key), json={
        "model": checkpoint["versionId"], "prompt": "seed", "width": 64, "height": 64, "steps": 1})
    assert run.status_code == 202, run.get_json()
    run_id = run.get_json()["id"]
    gen.GenerationRun.update(status="Cancelled").where(gen.GenerationRun.id == run_id).execute()
    gen_jobs.publish(run_id, "cancelled", {})
    return key


def conformance_failures(base_url: str, key: str, operations=None) -> dict[str, str]:
    """Runs each operation's generated cases (positive, then negative) and returns {operation: first failure}."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json")
    failures = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operations is not None and operation.label not in operations:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                                 phases=[Phase.explicit, Phase.generate],
                                 suppress_health_check=list(HealthCheck))
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
    failures = conformance_failures(live_server, seeded)
    assert not failures, "\n\n".join(f"=== {label}\n{text}" for label, text in failures.items())


@pytest.mark.parametrize("path,method", [
    ("/api/v1/me/settings", "put"), ("/api/v1/posts", "post"), ("/api/v1/images/1/report", "post"),
    ("/api/v1/rating-game/1", "post"), ("/api/v1/models", "post"), ("/api/v1/uploads", "post")])
@pytest.mark.parametrize("body", [1.5, [1], "x", None])
def test_json_bodies_that_are_not_objects_get_400(client, alice, path, method, body):
    response = getattr(client, method)(path, headers=auth(alice[1]), json=body)
    assert response.status_code == 400 and "JSON object" in response.get_json()["error"]
