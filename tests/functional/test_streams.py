"""One account must not be able to take the web tier down: run event streams are served off the request
threads (checked against the real `atelier web` process), capped per user, and they end; A1111's
synchronous waits are bounded and capped; request bodies have limits; API keys never reach the access log."""
import io
import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

import settings
from jobs import generation as jobs
from models_db import generation as gen
from models_db.accounts import User
from models_db.redis_store import client as redis
from tests.conftest import make_user
from tests.helpers import atelier_processes, auth

SMALL = {"width": 64, "height": 64, "steps": 2, "sampler": "Euler"}


@pytest.fixture
def web(tmp_path):
    """`atelier web` as `make run` starts it (one worker process: the smallest request-thread pool)."""
    with atelier_processes(tmp_path) as base:
        yield base


@pytest.fixture
def env(monkeypatch):
    """Changes settings for one test (read at request time by the in-process app)."""
    def change(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        settings.reload()
    yield change
    monkeypatch.undo()
    settings.reload()


def queued_run(base: str, key: str, sd1: dict, **body) -> int:
    """A run that stays queued: no GPU worker runs in these tests."""
    answer = requests.post(f"{base}/api/v1/generation", headers=auth(key),
                           json={"model": sd1["versionId"], "prompt": "a kite", **SMALL, **body})
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


class Call:
    """An HTTP request on a socket of its own: sent at once, its answer read later."""

    def __init__(self, base: str, method: str, path: str, key: str, body: dict | None = None, extra: str = ""):
        url = urlsplit(base)
        data = json.dumps(body).encode() if body is not None else b""
        self.sock = socket.create_connection((url.hostname, url.port), timeout=10)
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {key}\r\n{extra}"
                          f"Accept: text/event-stream, application/json\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        self.data = b""

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.data:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.data += chunk
        return self.data

    @property
    def status(self) -> int:
        return int(self.read_until(b"\r\n\r\n").split(b" ", 2)[1])

    def close(self) -> None:
        self.sock.close()


class Stream(Call):
    """GET .../events on a socket of its own."""

    def __init__(self, base: str, run_id: int, key: str):
        super().__init__(base, "GET", f"/api/v1/generation/runs/{run_id}/events", key)


def answers_within_a_second(url: str) -> None:
    started = time.monotonic()
    response = requests.get(url, timeout=1)
    assert response.status_code == 200 and time.monotonic() - started < 1, url


def test_fifty_streams_of_one_user_leave_the_site_answering(web, sd1):
    _, key = make_user("mallory")
    run_id = queued_run(web, key, sd1)
    streams = [Stream(web, run_id, key) for _ in range(50)]
    try:
        answers_within_a_second(f"{web}/healthz")
        cap = settings.get().stream_max_per_user
        statuses = [s.status for s in streams]
        assert statuses.count(200) == cap and statuses.count(429) == 50 - cap, statuses
        for stream, status in zip(streams, statuses):
            if status == 200:  # really open: the run's kept events were replayed
                assert b"event: queued" in stream.read_until(b"event: queued")
            else:
                assert b'"error"' in stream.read_until(b"}") and b"application/json" in stream.data
        answers_within_a_second(f"{web}/healthz")
    finally:
        for stream in streams:
            stream.close()


def test_streams_of_several_users_leave_the_request_threads_free(web, sd1):
    cap = settings.get().stream_max_per_user
    keys, runs, streams = [], [], []
    for n in range(4):
        _, key = make_user(f"watcher{n}")
        keys.append(key)
        runs.append(queued_run(web, key, sd1))
        streams.append([Stream(web, runs[-1], key) for _ in range(cap)])
    try:
        for stream in sum(streams, []):
            assert stream.status == 200 and b"event: queued" in stream.read_until(b"event: queued")
        for path in ("/healthz", "/", "/api/v1/models"):
            answers_within_a_second(web + path)
        # a live event reaches every stream of the run, and the run's end ends them
        cancelled = requests.post(f"{web}/api/v1/generation/runs/{runs[0]}/cancel", headers=auth(keys[0]))
        assert cancelled.status_code == 200
        for stream in streams[0]:
            assert stream.read_until(b"0\r\n\r\n").endswith(b"0\r\n\r\n") and b"event: cancelled" in stream.data
        # a client that goes away gives its place back
        for stream in streams[1]:
            stream.close()
        deadline = time.monotonic() + 10
        while True:
            again = Stream(web, runs[1], keys[1])
            if again.status == 200 or time.monotonic() > deadline:
                break
            again.close()
            time.sleep(0.2)
        assert again.status == 200
        again.close()
    finally:
        for stream in sum(streams, []):
            stream.close()


def test_api_keys_given_as_token_never_reach_the_access_log(web, tmp_path):
    _, key = make_user("logged", scope="read")
    assert requests.get(f"{web}/api/v1/me?token={key}&x=1").status_code == 200
    assert requests.get(f"{web}/api/v1/me?x=1&token={key}").status_code == 200
    time.sleep(0.5)
    log = (tmp_path / "web.log").read_text()
    assert "/api/v1/me?token=[redacted]&x=1" in log and "/api/v1/me?x=1&token=[redacted]" in log
    assert key not in log


def test_a_run_with_no_jobs_is_refused(client, alice, sd1):
    _, key = alice
    answer = client.post("/api/v1/generation", json={"model": sd1["versionId"], "prompts": []}, headers=auth(key))
    assert answer.status_code == 400 and answer.get_json()["field"] == "prompts"
    assert gen.GenerationRun.select().count() == 0


def read_stream(client, key: str, run_id: int, timeout: float = 20, **headers) -> tuple[int, str]:
    """The whole answer of a stream that must end by itself within timeout seconds."""
    answer = []

    def read():
        response = client.get(f"/api/v1/generation/runs/{run_id}/events", headers={**auth(key), **headers})
        answer.append((response.status_code, response.get_data(as_text=True)))
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout)
    assert answer, f"the stream did not end within {timeout} s"
    return answer[0]


def event_names(body: str) -> list[str]:
    return [line.removeprefix("event: ") for line in body.splitlines() if line.startswith("event: ")]


def test_a_failed_job_does_not_end_its_runs_stream(client, alice, sd1):
    _, key = alice
    run = client.post("/api/v1/generation", headers=auth(key),
                      json={"model": sd1["versionId"], "prompt": "x", "quantity": 2, **SMALL}).get_json()
    first, second = (j["id"] for j in run["jobs"])
    jobs.finish_failed([first], None, "out of luck")  # one job failed; the other is still queued
    jobs.finish_failed([second], None, "out of luck")  # now the run has failed
    status, body = read_stream(client, key, run["id"])
    assert status == 200 and event_names(body) == ["queued", "failed", "failed", "failed"]
    assert '"jobs"' not in body.strip().rsplit("\n\n", 1)[-1]  # the run-level end carries no jobs


def test_a_stream_ends_when_its_event_log_expires(client, alice, sd1, env):
    env(STREAM_KEEPALIVE_S=1, STREAM_MAX_LIFETIME_S=60)
    _, key = alice
    run_id = client.post("/api/v1/generation", headers=auth(key),
                         json={"model": sd1["versionId"], "prompt": "x", **SMALL}).get_json()["id"]
    redis().pexpire(jobs.channel(run_id) + ":log", 1500)
    started = time.monotonic()
    status, body = read_stream(client, key, run_id)
    assert status == 200 and event_names(body) == ["queued"] and ": keep-alive" in body
    assert time.monotonic() - started < 10
    # nothing is left to replay: 204 tells EventSource clients not to reconnect
    assert read_stream(client, key, run_id)[0] == 204


def test_a_stream_ends_after_its_maximum_lifetime(client, alice, sd1, env):
    env(STREAM_KEEPALIVE_S=1, STREAM_MAX_LIFETIME_S=3)
    _, key = alice
    run_id = client.post("/api/v1/generation", headers=auth(key),
                         json={"model": sd1["versionId"], "prompt": "x", **SMALL}).get_json()["id"]
    started = time.monotonic()
    status, body = read_stream(client, key, run_id)
    assert status == 200 and event_names(body) == ["queued"] and body.count(": keep-alive") >= 2
    assert 3 <= time.monotonic() - started < 10
    # the client reconnects with the last id it saw and gets the rest (nothing yet), then live events
    status, body = read_stream(client, key, run_id, **{"Last-Event-ID": "0"})
    assert status == 200 and event_names(body) == []


def test_a_finished_runs_stream_replays_and_ends_and_a_caught_up_client_gets_204(client, alice, sd1):
    _, key = alice
    run = client.post("/api/v1/generation", headers=auth(key),
                      json={"model": sd1["versionId"], "prompt": "x", **SMALL}).get_json()
    client.post(f"/api/v1/generation/runs/{run['id']}/cancel", headers=auth(key))
    status, body = read_stream(client, key, run["id"])
    assert status == 200 and event_names(body) == ["queued", "cancelled"]
    assert read_stream(client, key, run["id"], **{"Last-Event-ID": "1"})[0] == 204


def test_a1111_waits_are_bounded_and_capped_per_user(live_server, alice, sd1, env):
    env(SDAPI_WAIT_S=3, SDAPI_MAX_WAITS=1)
    user, key = alice
    body = {"prompt": "a kite", "steps": 2, "width": 64, "height": 64}
    first = []
    waiting = threading.Thread(target=lambda: first.append(requests.post(
        f"{live_server}/sdapi/v1/txt2img", json=body, auth=(user.username, key), timeout=20)), daemon=True)
    started = time.monotonic()
    waiting.start()
    while gen.GenerationRun.select().count() == 0:
        assert time.monotonic() - started < 10, "the first txt2img never queued its run"
        time.sleep(0.05)
    second = requests.post(f"{live_server}/sdapi/v1/txt2img", json=body, auth=(user.username, key), timeout=10)
    assert second.status_code == 429 and second.json()["detail"]
    assert gen.GenerationRun.select().count() == 1  # refused before anything was queued
    waiting.join(20)
    assert first and first[0].status_code == 504 and "run" in first[0].json()["detail"]
    assert 3 <= time.monotonic() - started < 10


def test_a1111_waits_of_several_users_leave_the_request_threads_free(tmp_path, sd1):
    """Each user stays within SDAPI_MAX_WAITS, but together they wait more calls than the web has threads."""
    users, per_user = 3, settings.get().sdapi_max_waits
    with atelier_processes(tmp_path, env={"WEB_THREADS": str(users * per_user - 2), "SDAPI_WAIT_S": "120"}) as web:
        calls, keys = [], []
        for n in range(users):
            _, key = make_user(f"painter{n}")
            keys.append(key)
            calls += [Call(web, "POST", "/sdapi/v1/txt2img", key, {"prompt": f"a kite {i}", "steps": 2,
                                                                   "width": 64, "height": 64})
                      for i in range(per_user)]
        try:
            deadline = time.monotonic() + 10
            while gen.GenerationRun.select().count() < len(calls) and time.monotonic() < deadline:
                time.sleep(0.1)
            for path in ("/healthz", "/api/v1/models", "/healthz"):
                answers_within_a_second(web + path)
            assert gen.GenerationRun.select().count() == len(calls)  # every call is waiting for its run
            # a waiting call answers as soon as its run ends: here the first user cancels theirs
            first = gen.GenerationRun.select().join(User).where(User.username == "painter0")
            for run in first:
                assert requests.post(f"{web}/api/v1/generation/runs/{run.id}/cancel", headers=auth(keys[0])).ok
            for call in calls[:per_user]:
                assert call.status == 409 and b"generation cancelled" in call.read_until(b"}"), call.data
        finally:
            for call in calls:
                call.close()


def test_the_live_server_is_the_production_server(live_server, alice, sd1):
    """Browser and third-party-client tests run against `live_server`: it serves web.asgi.App under uvicorn
    as `atelier web` does, so event streams and /sdapi waits take the event loop's path there too."""
    assert requests.get(f"{live_server}/healthz").headers["server"] == "uvicorn"
    _, key = alice
    stream = Stream(live_server, queued_run(live_server, key, sd1), key)
    try:
        assert stream.status == 200 and b"event: queued" in stream.read_until(b"event: queued")
        assert b"server: uvicorn" in stream.data.lower()
    finally:
        stream.close()


def sse(data: bytes) -> list[tuple]:
    """(id, event, run) of each event in a stream's bytes so far."""
    out = []
    for block in data.split(b"\r\n\r\n", 1)[-1].decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":")
        if "event" in fields:
            out.append((fields.get("id"), fields["event"], json.loads(fields["data"]).get("run")))
    return out


def user_events(base: str, key: str, last: int | None = None) -> Call:
    return Call(base, "GET", "/api/v1/generation/events", key,
                extra=f"Last-Event-ID: {last}\r\n" if last is not None else "")


def test_one_stream_follows_all_of_a_users_runs_and_only_theirs(live_server, sd1, env, monkeypatch):
    env(STREAM_MAX_PER_USER=1)
    _, key = make_user("quinn")
    _, other = make_user("rita")
    stream = user_events(live_server, key)
    assert stream.status == 200
    refused = user_events(live_server, key)  # it is one of the user's streams
    assert refused.status == 429
    refused.close()
    queued_run(live_server, other, sd1)  # someone else's run: none of its events reach quinn
    first, second = queued_run(live_server, key, sd1), queued_run(live_server, key, sd1)
    assert requests.post(f"{live_server}/api/v1/generation/runs/{second}/cancel", headers=auth(key)).ok
    stream.read_until(b"event: cancelled")
    assert sse(stream.data) == [("1", "queued", first), ("2", "queued", second), ("3", "cancelled", second)]
    stream.close()
    # a client that reconnects with the last id it has gets the rest; when some of the rest is no longer
    # kept, it is told to read its runs again instead
    deadline = time.monotonic() + 10
    while (again := user_events(live_server, key, last=1)).status != 200 and time.monotonic() < deadline:
        again.close()  # until the closed stream's place is given back
        time.sleep(0.2)
    assert again.read_until(b"event: cancelled") and sse(again.data) == [("2", "queued", second),
                                                                         ("3", "cancelled", second)]
    again.close()
    monkeypatch.setattr(jobs, "USER_EVENTS_KEPT", 2)
    third = queued_run(live_server, key, sd1)
    deadline = time.monotonic() + 10
    while (again := user_events(live_server, key, last=1)).status != 200 and time.monotonic() < deadline:
        again.close()
        time.sleep(0.2)
    assert requests.post(f"{live_server}/api/v1/generation/runs/{third}/cancel", headers=auth(key)).ok
    again.read_until(b"event: cancelled")  # told to read its runs again, then what happens next
    assert sse(again.data) == [(None, "reset", None), ("5", "cancelled", third)]
    again.close()


def test_request_bodies_have_limits_by_kind(client, alice, sd1):
    _, key = alice
    huge = b'{"name": "' + b"a" * (50 << 20) + b'"}'
    for path in ("/api/v1/models", "/api/v1/generation", "/sdapi/v1/txt2img"):
        answer = client.post(path, data=huge, content_type="application/json")
        assert answer.status_code == 413 and answer.get_json()["error"], path
    form = client.post("/login", data={"username": "x", "password": "a" * (50 << 20)})
    assert form.status_code == 413
    # the generation API takes base64 images: a body of several MB is read (and judged on its content)
    image = "A" * (6 << 20)
    answer = client.post("/api/v1/generation", headers=auth(key),
                         json={"model": sd1["versionId"], "prompt": "x", "init_image": image, **SMALL})
    assert answer.status_code == 400 and answer.get_json()["field"] == "init_image"
    # a model file upload keeps its own, larger limit
    version = client.post("/api/v1/model-versions", headers=auth(key), json={
        "modelId": client.post("/api/v1/models", headers=auth(key), json={"name": "Big", "type": "LORA"}
                               ).get_json()["id"], "name": "v1", "baseModel": "SD 1.5"}).get_json()
    upload = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(key),
                         data={"file": (io.BytesIO(b"x" * (12 << 20)), "big.safetensors")})
    assert upload.status_code == 202, upload.get_json()
