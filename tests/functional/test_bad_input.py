"""Every bad input is a clear 4xx, never a 500: a table of hostile values thrown at every route of the app
(path parameters, every query parameter a route reads, JSON bodies, headers), anonymous and with a
moderator's key, plus the cases the issue names one by one."""
from __future__ import annotations

import base64
import dataclasses
import json
import re
from urllib.parse import quote, urlsplit

import pytest
from flask import Request
from werkzeug.datastructures import ImmutableMultiDict

import settings
from tests.conftest import make_user
from tests.helpers import auth, catalog_model

INT64_MAX = 2 ** 63 - 1
HUGE = "99999999999999999999999"


def b64(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# values a path segment of any kind may hold (already percent-encoded)
PATH_VALUES = [HUGE, str(INT64_MAX + 1), str(INT64_MAX), "0", "-1", "1.5", "NaN", "%EF%BC%91", "%C2%B2",
               "%FF%FE", "%00", "x" * 600, "urn:air:sd1:checkpoint:civitai:abc@1", "..%2F..", "%F0%9F%98%80"]
# values of a query parameter (raw, encoded when sent) and of a JSON field
QUERY_VALUES = [HUGE, str(INT64_MAX + 1), str(-INT64_MAX - 2), "-1", "0", "1.5", "NaN", "inf", "1e309", "²",
                "١٢", " ", "\x00", "é", "WzFd", "[]", "true", "-", "5-x", f"{HUGE}-1", f"1-{HUGE}",
                b64([{"t": "not a date"}, 1]), b64([1, HUGE]), b64([1, int(HUGE)]), b64({"o": 1e300}),
                b64({"o": -5}), b64({"o": "x"}), b64({"k": [1, int(HUGE)]}), b64({"k": "ab"}), b64({"m": 1}),
                b64([]), b64("x"), b64(None), "x" * 5000]
JSON_VALUES = [int(HUGE), INT64_MAX + 1, -1, 0, 1.5, 1e308, -1e308, True, None, "", "x", "a\x00b", "é" * 300, [],
               [1], {},
               {"a": 1}, "urn:air:sd1:checkpoint:civitai:abc@1", "urn:air:sd1:lora:civitai:1@" + HUGE]
BODIES = [(b"", "application/json"), (b"[]", "application/json"), (b'"x"', "application/json"),
          (b"1", "application/json"), (b"null", "application/json"), (b"{}", "application/json"),
          (b"\xff\xfe{", "application/json"), (b'{"a": NaN}', "application/json"), (b"{", "application/json"),
          (b"a=1&b=%FF", "application/x-www-form-urlencoded"),
          (b"name=a%00b&content=%00", "application/x-www-form-urlencoded"), (b"\xff" * 64, "application/octet-stream"),
          (b"--x\r\n\r\n", "multipart/form-data; boundary=x"), (b'{"x": 1}', "text/plain")]
# a valid body per write route, so that each field's hostile value is met past the fields checked before it
SEED_BODIES = {
    "creators.post_model": {"name": "m", "type": "LORA"},
    "creators.post_version": {"modelId": 1, "name": "v", "baseModel": "SD 1.5"},
    "uploads.start_upload": {"modelVersionId": 1, "filename": "a.safetensors", "size": 10},
    "images.create_post": {"title": "t"},
    "images.report": {"reason": "r"},
    "reviews.put_review": {"recommended": True},
    "reviews.post_comment": {"content": "c"},
    "moderation.decide": {"action": "set-level", "level": "PG"},
    "moderation.rate": {"level": "PG"},
    "moderation.settings_": {"browsingLevel": "PG"},
    "generation.create": {"model": 1, "prompt": "p", "steps": 1, "width": 64, "height": 64},
    "sdapi.options": {"CLIP_stop_at_last_layers": 1},
}
HEADERS = {"Range": ["bytes=0-1,2-3", "bytes=0-0,-1", f"bytes={HUGE}-", "bytes=-0", "bytes=5-1", "bytes=x",
                     "bytes=" + ",".join(["0-0"] * 300)],
           "Last-Event-ID": [HUGE, "-5", "x", "1.5"],
           "Content-Range": [f"bytes 0-{HUGE}/{HUGE}", "bytes 5-1/2", "bytes x"],
           "If-Modified-Since": ["garbage", "Mon, 99 Foo 9999 99:99:99 GMT"],
           "If-Range": ["garbage"], "If-None-Match": ["\x7f"],
           "Authorization": ["Bearer é", "Basic !!!", "Basic " + base64.b64encode(b"\xff:\xff").decode(),
                             "Bearer " + "x" * 5000]}
SKIP = {"static", "sdapi.txt2img", "sdapi.img2img"}  # static files; sdapi generation waits for the run


class NotesReads:
    """Notes in Recording.read each key a view looks up or tests for."""

    def __getitem__(self, key):
        Recording.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        Recording.read.add(key)
        return super().__contains__(key)


class Recording(NotesReads, ImmutableMultiDict):
    """Query arguments that note which names a view reads, so each route gets hostile values for its own."""
    read: set = set()

    def getlist(self, key, type=None):
        Recording.read.add(key)
        return super().getlist(key, type)


class RecordingDict(NotesReads, dict):
    """A JSON object that notes which fields a view reads."""

    def get(self, key, default=None):
        Recording.read.add(key)
        return super().get(key, default)


class RecordingRequest(Request):
    parameter_storage_class = Recording

    def get_json(self, *args, **kwargs):
        data = super().get_json(*args, **kwargs)
        return RecordingDict(data) if isinstance(data, dict) else data


@pytest.fixture
def world(app, monkeypatch):
    """A moderator with a key, a published model, an upload and a generation run to point paths at."""
    from models_db import generation as gen
    from models_db.catalog import ModelVersion
    from models_db.uploads import Upload
    monkeypatch.setattr(settings, "_current", dataclasses.replace(settings.get(), rate_limit_writes="100000/minute",
                                                                  rate_limit_login="100000/minute"))
    app.request_class = RecordingRequest
    mod, key = make_user("mod", role="moderator")
    model = catalog_model(mod, "Target", model_type="Checkpoint")
    version = ModelVersion.get(ModelVersion.model == model)
    upload = Upload.create(version=version, user=mod, filename="x.safetensors", file_type="Model", total_size=10)
    run = gen.GenerationRun.create(user=mod, request_json="{}", total=1)
    from jobs.generation import channel
    from models_db.redis_store import client as redis
    redis().rpush(channel(run.id) + ":log", json.dumps({"seq": 0, "event": "done"}))  # its stream ends at once
    ids = {"model_id": model.id, "version_id": version.id, "upload_id": upload.id, "run_id": run.id,
           "file_id": version.files.get().id, "username": "mod", "board": "overall", "kind": "Like"}
    return {"key": key, "ids": ids, "app": app}


def routes(app):
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in SKIP:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def fill(rule, values: dict, default="1") -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: str(values.get(m.group(1), default)), rule.rule)


def send(client, method, url, **kw):
    try:
        response = client.open(url, method=method, buffered=False, **kw)
    except Exception as exc:  # raised while streaming, after the status went out
        return f"raised {exc!r:.80}"
    status = response.status_code
    response.close()
    return status


def check(failures, client, method, url, label, auth_headers, headers=None, **kw):
    for who, credentials in (("anonymous", {}), ("key", auth_headers)):
        status = send(client, method, url, headers={**credentials, **(headers or {})}, **kw)
        if isinstance(status, str) or status >= 500:
            failures.append(f"{status} {method} {url} [{who}] {label}")


def test_hostile_path_values_never_answer_5xx(client, world):
    failures = []
    for rule, method in routes(world["app"]):
        if not rule.arguments:
            continue
        for name in rule.arguments:
            for value in PATH_VALUES:
                url = fill(rule, {**world["ids"], name: value})
                check(failures, client, method, url, f"{name}={value[:40]}", auth_headers=auth(world["key"]))
    assert not failures, "\n".join(failures)


def test_hostile_query_values_never_answer_5xx(client, world):
    failures = []
    for rule, method in routes(world["app"]):
        url = fill(rule, world["ids"])
        pairs = []  # each name the route reads, with each branch (seed query) that reads it
        for seed in ({}, {"query": "target", "mode": "keyword"}):  # the catalog's and the search engine's
            Recording.read = set()
            send(client, method, url, query_string=seed, headers=auth(world["key"]))
            pairs += [(name, seed) for name in sorted(Recording.read - {"token"} - set(seed))]
        names = {name for name, _ in pairs}
        for name, seed in pairs:
            for value in QUERY_VALUES:
                query = "&".join(f"{k}={quote(v, safe='')}" for k, v in {**seed, name: value}.items())
                check(failures, client, method, f"{url}?{query}", f"{name}={value[:40]!r}",
                      auth_headers=auth(world["key"]))
        for value in ("%FF", "%C3", "%00"):  # not UTF-8 at all
            for name in names:
                check(failures, client, method, f"{url}?{name}={value}", f"{name} raw {value}",
                      auth_headers=auth(world["key"]))
    assert not failures, "\n".join(failures)


def test_hostile_bodies_never_answer_5xx(client, world):
    failures = []
    for rule, method in routes(world["app"]):
        if method == "GET":
            continue
        url = fill(rule, world["ids"])
        for data, content_type in BODIES:
            check(failures, client, method, url, f"body {data[:20]!r} as {content_type}", data=data,
                  content_type=content_type, auth_headers=auth(world["key"]))
        seed = SEED_BODIES.get(rule.endpoint, {})
        Recording.read = set()
        send(client, method, url, json=seed, headers=auth(world["key"]))
        keys, done = set(Recording.read), set()
        while keys - done:  # fields read only once earlier ones are valid join in as they show up
            key = sorted(keys - done)[0]
            done.add(key)
            for value in JSON_VALUES:
                Recording.read = set()
                body = json.dumps({**seed, key: value})
                status = send(client, method, url, data=body, content_type="application/json",
                              headers=auth(world["key"]))
                if isinstance(status, str) or status >= 500:
                    failures.append(f"{status} {method} {url} [key] {key}={value!r:.40}")
                keys |= Recording.read
    assert not failures, "\n".join(failures)


def test_hostile_headers_never_answer_5xx(client, world):
    failures = []
    signed = urlsplit(client.get(f"/api/download/models/{world['ids']['version_id']}").headers["Location"])
    extra = [signed.path + "?" + signed.query]
    for rule, method in routes(world["app"]):
        for url in [fill(rule, world["ids"])] + (extra if rule.endpoint == "downloads.blob" else []):
            for header, values in HEADERS.items():
                for value in values:
                    headers = {header: value}
                    auth_headers = {} if header == "Authorization" else auth(world["key"])
                    check(failures, client, method, url, f"{header}: {value[:40]}", headers=headers,
                          auth_headers=auth_headers)
    assert not failures, "\n".join(failures)


def test_every_integer_path_parameter_uses_a_bounded_converter(app):
    from werkzeug.routing import IntegerConverter

    from web.api import IdConverter
    loose = [f"{rule.rule} <{name}>" for rule in app.url_map.iter_rules() for name, conv in rule._converters.items()
             if isinstance(conv, IntegerConverter) and not isinstance(conv, IdConverter)]
    assert not loose


@pytest.mark.parametrize("url,status,message", [
    (f"/api/v1/images/{HUGE}", 404, "Not found"),
    (f"/api/v1/models/{INT64_MAX + 1}", 404, "Not found"),
    (f"/api/v1/models?page={HUGE}", 400, "page must be an integer"),
    (f"/api/v1/images?modelVersionId={HUGE}", 400, "modelVersionId must be an integer"),
    (f"/api/v1/images?cursor={HUGE}", 400, "invalid cursor"),
    ("/api/v1/images?postId=%C2%B2", 400, "postId must be an integer"),
    (f"/api/v1/models?ids={HUGE}", 400, "ids must be ids"),
    ("/api/v1/models?cursor=WzFd", 400, "invalid cursor"),
    ("/api/v1/models?cursor=" + b64([{"t": "not a date"}, 1]), 400, "invalid cursor"),
    ("/api/v1/models?sort=Most%20Downloaded&cursor=" + b64([{"t": "2024-01-01T00:00:00"}, 1]), 400,
     "invalid cursor"),
    ("/api/v1/search?query=x&cursor=" + b64({"o": 1e300}), 400, "invalid cursor"),
    (f"/api/v1/tags?cursor={HUGE}", 400, "invalid cursor"),
    ("/?cursor=WzFd", 400, None),
    ("/api/v1/models?username=a%00", 400, "NUL characters"),
    ("/api/v1/model-versions/by-hash/%00", 400, "NUL characters"),
])
def test_the_reported_bad_values_get_a_clear_4xx(client, alice, url, status, message):
    catalog_model(alice[0], "Target")
    response = client.get(url, headers={"Accept": "application/json"} if message else {})
    assert response.status_code == status, response.data[:300]
    if message:
        assert response.get_json()["error"].startswith(message)


def test_an_air_with_a_bad_id_is_a_400_with_the_reason(client, alice):
    for air in ("urn:air:sd1:checkpoint:civitai:abc@1", f"urn:air:sd1:checkpoint:civitai:1@{HUGE}"):
        response = client.post("/api/v1/generation", json={"model": air, "prompt": "x"}, headers=auth(alice[1]))
        assert response.status_code == 400, response.get_json()
        assert response.get_json()["field"] == "model" and "is not a number" in response.get_json()["error"]
    response = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "urn:air:sd1:checkpoint:civitai:abc"},
                           headers=auth(alice[1]))
    assert response.status_code == 422 and "is not a number" in response.get_json()["detail"]


def test_events_after_beyond_int64_is_a_400(client, alice):
    from models_db import generation as gen
    run = gen.GenerationRun.create(user=alice[0], request_json="{}", total=1)
    for query, headers in ((f"?after={HUGE}", {}), ("", {"Last-Event-ID": HUGE}), ("?after=-2", {})):
        response = client.get(f"/api/v1/generation/runs/{run.id}/events{query}", headers={**auth(alice[1]), **headers})
        assert response.status_code == 400, response.data[:200]


def test_signed_links_with_a_non_ascii_sig_or_odd_ranges(client, alice):
    from tests.helpers import tiny_safetensors
    model = catalog_model(alice[0], "Target")
    link = urlsplit(client.get(f"/api/download/models/{model.versions.get().id}").headers["Location"])
    url = f"{link.path}?{link.query}"
    whole = tiny_safetensors("Target")
    assert client.get(url.replace("sig=", "sig=%C3%A9")).status_code == 403
    assert client.get(url.replace("expires=", "expires=%C2%B2")).status_code == 403
    for ranges in ("bytes=0-1,2-3", "bytes=0-0,-1"):  # several ranges: the whole file (RFC 9110 lets us ignore Range)
        response = client.get(url, headers={"Range": ranges})
        assert (response.status_code, response.data) == (200, whole)
    response = client.get(url, headers={"Range": "bytes=2-5"})
    assert (response.status_code, response.data) == (206, whole[2:6])
    response = client.get(url, headers={"Range": f"bytes={len(whole) + 10}-"})
    assert response.status_code == 416 and response.headers["Content-Range"] == f"bytes */{len(whole)}"


@pytest.mark.parametrize("path,body", [
    ("/api/v1/posts", {"modelVersionId": INT64_MAX + 1}),
    ("/api/v1/model-versions", {"modelId": INT64_MAX + 1, "name": "v", "baseModel": "SD 1.5"}),
    ("/api/v1/uploads", {"modelVersionId": INT64_MAX + 1, "filename": "a.safetensors", "size": 1}),
    ("/api/v1/images/1/report", [1]),
    ("/api/v1/images/1/report", {"reason": 5}),
    ("/api/v1/models", {"name": "a\x00", "type": "LORA"}),
])
def test_json_bodies_of_the_wrong_shape_or_beyond_int64_are_4xx(client, alice, path, body):
    response = client.post(path, data=json.dumps(body), content_type="application/json", headers=auth(alice[1]))
    assert 400 <= response.status_code < 500 and response.get_json()["error"], response.data[:200]


# ---- page forms: every POST route of the site, signed in as a user and as an admin ---------------------
PASSWORD = "correct horse battery"
# a valid form per page POST route, so that each field's hostile value is met past the fields checked before it
SEED_FORMS = {
    "site_accounts.register": {"username": "newcomer", "email": "n@example.com", "password": PASSWORD,
                               "confirm": PASSWORD},
    "site_accounts.login": {"username": "{me}", "password": PASSWORD, "remember": "y"},
    "site_accounts.settings_page": {"browsing_level": "Soft", "email": "me@example.com"},
    "site_accounts.change_password": {"current": PASSWORD, "password": PASSWORD, "confirm": PASSWORD},
    "site_accounts.create_key": {"name": "k", "scope": "read"},
    "site_catalog.review": {"modelVersionId": "{version_id}", "rating": "4", "recommended": "true", "details": "d"},
    "site_catalog.comment": {"content": "c"},
    "site_creators.new_model": {"name": "m", "type": "LORA", "description": "d", "nsfw": "y", "tags": "a, b",
                                "allowCommercialUse": "Image", "allowNoCredit": "y", "versionName": "v1",
                                "baseModel": "SD 1.5", "versionDescription": "d", "trainedWords": "w"},
    "site_creators.add_version": {"versionName": "v2", "baseModel": "SD 1.5", "versionDescription": "d",
                                  "trainedWords": "w"},
}
# browser forms send text: hostile text, and what a hand-made request can put in its place
FORM_VALUES = [HUGE, str(INT64_MAX + 1), "-1", "1.5", "²", "", "é" * 300, "x" * 100_000]
RAW_VALUES = {"%FF%FE": b"\xff\xfe", "a%00b": b"a\x00b"}  # not UTF-8, and NUL (urlencoded and multipart)
FORM_JSON_VALUES = [int(HUGE), -1, 1.5, True, None, [1], {"a": 1}, "a\x00b"]
SESSION_CHANGING = {"site_accounts.register", "site_accounts.login", "site_accounts.logout",
                    "site_accounts.change_password"}


def page_post_routes(app):
    return [(rule, m) for rule, m in routes(app) if rule.endpoint.startswith("site_") and m == "POST"]


def sign_in_as(client, user) -> str:
    """A browser session of `user` and its CSRF token."""
    from models_db.accounts import start_session
    with client.session_transaction() as session:
        session["_user_id"] = start_session(user, 1)
        session["_fresh"] = True
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/account").get_data(as_text=True)).group(1)


def multipart(fields: list[tuple[str, bytes]]) -> bytes:
    parts = [b'--x\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (k.encode(), v) for k, v in fields]
    return b"".join(parts) + b"--x--\r\n"


def test_hostile_page_form_values_never_answer_5xx(client, world, monkeypatch):
    from models_db.accounts import User
    monkeypatch.setattr(settings, "_current", dataclasses.replace(
        settings.get(), rate_limit_register="100000/minute", rate_limit_auth_failures="100000/minute"))
    mod = User.get(User.username == "mod")
    mod.set_password(PASSWORD)
    mod.save()
    admin, _ = make_user("root", role="admin")
    admin.set_password(PASSWORD)
    admin.save()
    failures = []
    for user in (mod, admin):
        world["ids"]["me"] = user.username
        token = sign_in_as(client, user)
        for rule, method in page_post_routes(world["app"]):
            url = fill(rule, world["ids"])
            seed = {k: v.format(**world["ids"]) for k, v in SEED_FORMS.get(rule.endpoint, {}).items()}

            def post(label, **kw):
                if rule.endpoint in SESSION_CHANGING:
                    sign_in_as(client, user)
                status = send(client, method, url, **kw)
                if isinstance(status, str) or status >= 500:
                    failures.append(f"{status} {method} {url} [{user.role}] {label}")

            Recording.read = set()
            post("seed", data={**seed, "csrf_token": token})
            fields = sorted(Recording.read | set(seed))
            for name in fields:
                others = {k: v for k, v in seed.items() if k != name}
                if name != "csrf_token":
                    others["csrf_token"] = token
                for value in FORM_VALUES:
                    post(f"{name}={value[:20]!r}", data={**others, name: value})
                post(f"{name} missing", data=others)
                post(f"{name} repeated", data={**others, name: ["1", seed.get(name, "x")]})
                encoded = "&".join(f"{k}={quote(v)}" for k, v in others.items())
                for raw, raw_bytes in RAW_VALUES.items():
                    post(f"{name} raw {raw}", data=f"{encoded}&{name}={raw}",
                         content_type="application/x-www-form-urlencoded")
                    post(f"{name} multipart {raw}", data=multipart([*((k, v.encode()) for k, v in others.items()),
                                                                   (name, raw_bytes)]),
                         content_type="multipart/form-data; boundary=x")
                for value in FORM_JSON_VALUES:  # a JSON body in place of the form
                    post(f"{name}={value!r:.20} as JSON", data=json.dumps({**others, name: value}),
                         content_type="application/json", headers={"X-CSRFToken": token})
    assert not failures, "\n".join(failures)


def test_look_alike_registrations_at_the_same_moment_get_the_clear_error(app):
    """Both pass the look-alike check before either inserts: the unique skeleton index decides, and the loser
    gets the same ValueError as when the other name was there first (the page shows it), never IntegrityError."""
    import contextlib
    import threading

    from models_db.accounts import create_user
    from models_db.db import db, transaction
    outcomes = []

    def register(name, barrier, atomic):
        try:
            barrier.wait()
            with transaction() if atomic else contextlib.nullcontext():  # as the page does, as the CLI does
                outcomes.append(create_user(name).username)
        except ValueError as exc:
            outcomes.append(f"refused: {exc}")
        except Exception as exc:  # noqa: BLE001 - what must not happen
            outcomes.append(f"raised {exc!r:.100}")
        finally:
            db.close()

    for i in range(15):
        barrier = threading.Barrier(2)
        names = (f"racer{i}", f"r\u0430cer{i}")  # Latin and Cyrillic 'a': one skeleton
        threads = [threading.Thread(target=register, args=(name, barrier, i % 2)) for name in names]
        [t.start() for t in threads]
        [t.join() for t in threads]
    raised = [o for o in outcomes if o.startswith("raised")]
    assert not raised, raised
    assert sum(not o.startswith("refused") for o in outcomes) == 15, outcomes


# ---- /sdapi/v1 generation bodies: each field hostile, the others valid; nothing may be queued -----------
NOT_A_NUMBER = ["x" * 100_000, {"a": {"b": [1]}}, [[1]], 10 ** 30, -1e308, "1e309"]
NOT_TEXT = [10 ** 30, {"a": {"b": [1]}}, [[1]], "x" * 100_000]
NOT_A_FLAG = ["x" * 100_000, {"a": {"b": [1]}}, [[1]], 10 ** 30]
SDAPI_FIELDS = {
    **{name: NOT_A_NUMBER for name in ("seed", "steps", "cfg_scale", "width", "height", "batch_size", "n_iter",
                                       "denoising_strength", "hr_scale", "hr_second_pass_steps")},
    **{name: NOT_TEXT for name in ("prompt", "negative_prompt", "sampler_name", "sampler_index", "scheduler",
                                   "script_name")},
    "enable_hr": NOT_A_FLAG,
    "override_settings": ["x" * 100_000, [[1]], 10 ** 30, {"sd_model_checkpoint": {"a": 1}},
                          {"sd_model_checkpoint": "x" * 100_000}, {"CLIP_stop_at_last_layers": 10 ** 30},
                          {"CLIP_stop_at_last_layers": "x"}, {"sd_vae": [1]}],
    "alwayson_scripts": ["x", [[1]], 10 ** 30, {"controlnet": {"args": [{"image": "!!!"}]}}, {"x" * 1000: {}}],
    "script_args": ["x" * 100_000, {"a": 1}, 10 ** 30],
    "init_images": ["!!!not base64", ["!!!not base64"], [base64.b64encode(b"not an image").decode()], [10 ** 30],
                    {"a": 1}, [{"a": 1}], [[1]], ["x" * 100_000], []],
    "mask": ["!!!not base64", base64.b64encode(b"not an image").decode(), 10 ** 30, {"a": 1}, [[1]]],
}
IMG2IMG_ONLY = {"init_images", "mask"}


def test_hostile_sdapi_generation_bodies_are_4xx_and_queue_nothing(client, app, sd1, monkeypatch):
    from models_db import generation as gen
    from tests.factories import png_bytes
    monkeypatch.setattr(settings, "_current", dataclasses.replace(settings.get(), sdapi_wait_s=1,
                                                                  rate_limit_writes="100000/minute"))
    _, key = make_user("painter")
    valid = {"prompt": "a boat", "steps": 2, "width": 64, "height": 64}
    image = base64.b64encode(png_bytes(width=64, height=64)).decode()
    failures = []
    for path in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img"):
        seed = {**valid, "init_images": [image]} if path.endswith("img2img") else valid
        raw = [b'{"prompt": "x", "steps": NaN}', b'{"seed": Infinity}', b'{"width": -Infinity}', b"[" * 5000,
               b'{"prompt": "x", "steps": 1e999}', json.dumps({k: v[0] for k, v in SDAPI_FIELDS.items()}).encode()]
        bodies = [(f"raw {body[:30]!r}", body) for body in raw]
        bodies += [(f"{name}={value!r:.40}", json.dumps({**seed, name: value}).encode())
                   for name, values in SDAPI_FIELDS.items() for value in values
                   if path.endswith("img2img") or name not in IMG2IMG_ONLY]
        for label, body in bodies:
            status = send(client, "POST", path, data=body, content_type="application/json", headers=auth(key))
            if status == 422:
                continue
            failures.append(f"{status} {path} {label}")
        assert gen.GenerationRun.select().count() == 0, failures  # nothing queued by any of them
        response = client.post(path, json={**seed, "alwayson_scripts": {}, "script_args": []}, headers=auth(key))
        assert response.status_code == 504, response.get_json()  # the seed itself is valid: queued, not done in 1 s
        gen.GenerationRun.delete().execute()
    for value in (10 ** 30, "x" * 100_000, {"a": {"b": [1]}}, [[1]], None):
        for name in ("CLIP_stop_at_last_layers", "sd_vae", "sd_model_checkpoint", "x"):
            status = send(client, "POST", "/sdapi/v1/options", data=json.dumps({name: value}),
                          content_type="application/json", headers=auth(key))
            if status != 422 and not (name == "x" and status == 200):  # an unknown option: ignored, as A1111 does
                failures.append(f"{status} /sdapi/v1/options {name}={value!r:.40}")
    options = client.get("/sdapi/v1/options", headers=auth(key)).get_json()
    if (options["CLIP_stop_at_last_layers"], options["sd_vae"], "x" in options) != (1, "Automatic", False):
        failures.append(f"options stored: {str(options)[:200]}")
    assert not failures, "\n".join(failures)
