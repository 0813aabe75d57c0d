"""The site's pages over the real app: blurring by browsing level, cursor paging, generation data on the
image page, creator pages, HTML error pages."""
import io
import re
from html.parser import HTMLParser

from models_db.accounts import User
from models_db.images import BROWSING
from tests.conftest import make_user, run_jobs
from tests.factories import A1111_TEXT, png_bytes
from tests.helpers import auth, catalog_model


def log_in(client, user) -> None:
    from models_db.accounts import start_session
    with client.session_transaction() as session:  # what flask-login's login_user stores
        session["_user_id"] = start_session(user, 1)
        session["_fresh"] = True


def upload_showcase(client, key, version_id, text=None) -> int:
    body = png_bytes(text, width=96, height=128)
    r = client.post("/api/v1/images", headers=auth(key), content_type="multipart/form-data",
                    data={"file": (io.BytesIO(body), "s.png"), "modelVersionId": str(version_id)})
    assert r.status_code == 202, r.get_json()
    return r.get_json()["id"]


def test_thumbnails_above_the_viewers_level_are_blurred(client, worker):
    owner, key = make_user("pia")
    _, mod_key = make_user("quin", role="moderator")
    model = catalog_model(owner, "Night Club")
    image_id = upload_showcase(client, key, model.versions.get().id)
    run_jobs(worker)
    r = client.post(f"/api/v1/moderation/images/{image_id}", headers=auth(mod_key),
                    json={"action": "set-level", "level": "R"})
    assert r.status_code == 200
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'class="thumb blurred" data-level="R"', html)  # anonymous: PG and PG13
    User.update(browsing_level=BROWSING["Mature"]).where(User.id == owner.id).execute()
    log_in(client, owner)
    html = client.get("/").get_data(as_text=True)
    assert f"/images/{image_id}/width=450/" in html and "thumb blurred" not in html


def test_the_grid_pages_with_a_cursor_link(client):
    owner, _ = make_user("rae")
    for n in range(30):
        catalog_model(owner, f"Model {n:02d}")
    first = client.get("/").get_data(as_text=True)
    names = re.findall(r'class="name" title="([^"]+)"', first)
    assert len(names) == 24 and names[0] == "Model 29"
    next_url = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(next_url).get_data(as_text=True)
    assert re.findall(r'class="name" title="([^"]+)"', second) == [f"Model {n:02d}" for n in range(5, -1, -1)]
    assert 'rel="next"' not in second
    assert client.get("/?cursor=garbage").status_code == 400


def test_image_page_offers_its_generation_data(client, worker):
    owner, key = make_user("sol")
    model = catalog_model(owner, "Dusk")
    image_id = upload_showcase(client, key, model.versions.get().id, A1111_TEXT.format(model_hash="abc123"))
    run_jobs(worker)
    html = client.get(f"/images/{image_id}").get_data(as_text=True)
    assert "a lighthouse at dusk, dramatic sky" in html
    copied = re.search(r'id="copy-generation-data" data-copy="([^"]+)"', html).group(1)
    from html import unescape

    from gpu.png_meta import parse_a1111
    meta = parse_a1111(unescape(copied))
    assert meta["prompt"] == "a lighthouse at dusk, dramatic sky" and meta["negativePrompt"] == "blurry, lowres"
    assert meta["steps"] == 30 and meta["seed"] == 1234 and meta["sampler"] == "DPM++ 2M"


def test_creator_page_shows_drafts_only_to_their_owner(client):
    owner, _ = make_user("tom")
    catalog_model(owner, "Public One")
    catalog_model(owner, "Hidden Draft", publish=False)
    public = client.get("/user/tom").get_data(as_text=True)
    assert "Public One" in public and "Hidden Draft" not in public
    log_in(client, owner)
    assert "Hidden Draft" in client.get("/user/tom").get_data(as_text=True)
    assert client.get("/user/nobody").status_code == 404


def test_pages_answer_html_errors_and_the_api_json(client):
    page = client.get("/models/999")
    assert (page.status_code == 404 and page.mimetype == "text/html"
            and "Back to the models" in page.get_data(as_text=True))
    api = client.get("/api/v1/models/999")
    assert api.status_code == 404 and api.get_json()["error"]
    assert client.get("/generate").headers["Location"].startswith("/login?next=")


def test_popular_tags_are_cached_and_refreshed_by_the_scheduled_actor(client, worker):
    from jobs.leaderboards import refresh_popular_tags
    owner, _ = make_user("uma")
    catalog_model(owner, "First", tags=("alpha",))
    chips = lambda: re.findall(r'class="chip(?: on)?" href="[^"]*">([^<]+)</a>',  # noqa: E731
                               client.get("/").get_data(as_text=True))
    assert chips() == ["alpha"]
    catalog_model(owner, "Second", tags=("beta",))
    catalog_model(owner, "Third", tags=("beta",))
    assert chips() == ["alpha"]  # served from the cache
    refresh_popular_tags.send()
    run_jobs(worker)
    assert chips() == ["beta", "alpha"]


def test_operations_page_lists_a_failed_job_and_retries_it(client, worker):
    from models_db.redis_store import client as redis
    from tests.functional import ops_actors
    admin, _ = make_user("vic", role="admin")
    ops_actors.always_fails.send("page")
    run_jobs(worker)
    log_in(client, admin)
    html = client.get("/operations").get_data(as_text=True)
    assert "always_fails" in html and "broken on purpose (page)" in html
    retry_url = re.search(r'action="(/operations/failed/[^"]+/retry)"', html).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    assert client.post(retry_url).status_code == 400  # no CSRF token
    redis().set(ops_actors.tk("heal:page"), 1)
    assert client.post(retry_url, data={"csrf_token": token}).status_code == 302
    run_jobs(worker)
    assert int(redis().get(ops_actors.tk("healed:page"))) == 1
    assert "No failed jobs." in client.get("/operations").get_data(as_text=True)


class InlineCode(HTMLParser):
    """What a strict Content-Security-Policy (no 'unsafe-inline') would block: inline scripts, <style>
    elements, style="" attributes, on…="" handlers and javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.found, self.in_script = [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and "src" not in attrs and attrs.get("type") != "application/json":
            self.found.append(f"inline <script> {attrs}")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs.items():
            if name == "style" or name.startswith("on"):
                self.found.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value!r}>")


def test_every_page_sends_security_headers_and_has_no_inline_code(client, worker):
    admin, key = make_user("wyn", role="admin")
    model = catalog_model(admin, "Headers")
    image_id = upload_showcase(client, key, model.versions.get().id, A1111_TEXT.format(model_hash="abc123"))
    run_jobs(worker)
    anonymous = ["/login", "/register", "/models/999"]
    signed_in = ["/", f"/models/{model.id}", f"/models/{model.id}/manage", "/models/new", f"/images/{image_id}",
                 "/user/wyn", "/generate", "/account", "/moderation", "/rating-game", "/operations"]
    for path in anonymous + ["log in"] + signed_in:
        if path == "log in":
            log_in(client, admin)
            continue
        r = client.get(path)
        assert r.status_code in (200, 404) and r.mimetype == "text/html", (path, r.status_code)
        policy = r.headers.get("Content-Security-Policy", "")
        assert policy, (path, dict(r.headers))
        csp = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert csp["script-src"] == "'self'" and csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
        assert "unsafe-inline" not in policy and csp["default-src"] == "'self'"
        assert r.headers.get("X-Frame-Options") == "DENY" and r.headers.get("X-Content-Type-Options") == "nosniff"
        assert r.headers.get("Referrer-Policy") in ("strict-origin-when-cross-origin", "same-origin")
        parser = InlineCode()
        parser.feed(r.get_data(as_text=True))
        assert not parser.found, (path, parser.found)
    for api in ("/api/v1/models", "/api/v1/models/999", f"/api/v1/images/{image_id}", "/healthz"):
        assert client.get(api).headers["X-Content-Type-Options"] == "nosniff", api
