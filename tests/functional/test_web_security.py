"""The site's defences over real HTTP: CSRF tokens, rate limits (kept in Redis), role-gated pages."""
import re

import requests

from tests.conftest import make_user
from tests.helpers import auth, basic, catalog_model

PASSWORD = "correct horse battery"


def token(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def logged_in(base: str, username: str, role: str = "user") -> requests.Session:
    from models_db.accounts import create_user
    create_user(username, role=role, password=PASSWORD)
    s = requests.Session()
    form = token(s.get(f"{base}/login").text)
    r = s.post(f"{base}/login", data={"username": username, "password": PASSWORD, "csrf_token": form},
               allow_redirects=False)
    assert r.status_code == 302
    return s


def test_forms_and_cookie_authenticated_api_writes_need_the_csrf_token(live_server):
    s = logged_in(live_server, "grace")
    assert s.post(f"{live_server}/account/api-keys", data={"name": "k", "scope": "read"}).status_code == 400
    r = s.post(f"{live_server}/api/v1/generation", json={"model": 1, "prompt": "x"})
    assert r.status_code == 400 and "CSRF" in r.json()["error"]
    good = token(s.get(f"{live_server}/account").text)
    r = s.post(f"{live_server}/account/api-keys", data={"name": "k", "scope": "read", "csrf_token": good})
    assert r.status_code == 200 and "atl_" in r.text
    # an API key in a header is not ambient authority: no token needed
    _, key = make_user("hank")
    r = requests.post(f"{live_server}/api/v1/generation", json={"model": 999, "prompt": "x"},
                      headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400 and "CSRF" not in r.json()["error"]


def test_login_attempts_are_rate_limited(live_server):
    from models_db.accounts import create_user
    create_user("ivy", password=PASSWORD)
    s = requests.Session()
    statuses = []
    for _ in range(11):
        form = token(s.get(f"{live_server}/login").text)
        statuses.append(s.post(f"{live_server}/login", data={"username": "ivy", "password": "wrong-password",
                                                             "csrf_token": form}).status_code)
    assert statuses[:10] == [400] * 10 and statuses[10] == 429
    assert "Retry-After" in s.post(f"{live_server}/login", data={}).headers


def test_passwords_are_argon2_and_wrong_ones_refused(live_server):
    from models_db.accounts import User, create_user
    create_user("judy", password=PASSWORD)
    assert User.get(User.username == "judy").password_hash.startswith("$argon2id$")
    s = requests.Session()
    r = s.post(f"{live_server}/login", data={"username": "judy", "password": "nope-nope",
                                             "csrf_token": token(s.get(f"{live_server}/login").text)})
    assert r.status_code == 400 and "wrong username or password" in r.text
    assert s.get(f"{live_server}/generate", allow_redirects=False).status_code == 302


def test_drafts_are_private_and_staff_pages_need_their_role(live_server):
    owner, _ = make_user("kim")
    draft = catalog_model(owner, "Secret Draft", publish=False)
    visitor = logged_in(live_server, "leo")
    assert visitor.get(f"{live_server}/models/{draft.id}").status_code == 404
    assert visitor.get(f"{live_server}/models/{draft.id}/manage").status_code == 404
    assert visitor.get(f"{live_server}/moderation").status_code == 403
    assert visitor.get(f"{live_server}/operations").status_code == 403
    admin = logged_in(live_server, "mona", role="admin")
    assert admin.get(f"{live_server}/models/{draft.id}").status_code == 200
    page = admin.get(f"{live_server}/operations")
    assert page.status_code == 200 and 'id="queues"' in page.text and "/metrics" in page.text
    assert admin.get(f"{live_server}/moderation").status_code == 200


SDAPI_WRITES = (("txt2img", {"prompt": "x"}), ("img2img", {"prompt": "x", "init_images": ["x"]}),
                ("options", {"CLIP_stop_at_last_layers": 2}), ("interrupt", None), ("skip", None))


def test_a_read_scope_key_cannot_write_through_sdapi(client):
    user, read_key = make_user("olga", scope="read")
    for headers, query in ((auth(read_key), ""), (basic("olga", read_key), ""), ({}, f"?token={read_key}")):
        for path, body in SDAPI_WRITES:
            r = client.post(f"/sdapi/v1/{path}{query}", json=body, headers=headers)
            assert r.status_code == 403 and "write" in r.get_json()["error"], (path, r.status_code, r.get_json())
    options = client.get("/sdapi/v1/options", headers=basic("olga", read_key))
    assert options.status_code == 200 and options.get_json()["CLIP_stop_at_last_layers"] == 1  # nothing stored
    _, write_key = make_user("otto")
    assert client.post("/sdapi/v1/skip", headers=basic("otto", write_key)).status_code == 200


def test_sdapi_basic_auth_takes_api_keys_not_the_account_password(client):
    from models_db.accounts import create_api_key, create_user
    pat = create_user("pat", password=PASSWORD)
    _, key = create_api_key(pat, "k", "read")
    _, other_key = make_user("quinn")
    assert client.get("/sdapi/v1/sd-models", headers=basic("pat", PASSWORD)).status_code == 401
    assert client.get("/sdapi/v1/sd-models", headers=basic("pat", other_key)).status_code == 401
    assert client.get("/sdapi/v1/sd-models", headers=basic("pat", key)).status_code == 200
    assert client.get("/sdapi/v1/samplers").status_code == 401  # every /sdapi route needs a user


def test_failed_authentication_is_rate_limited_per_address(client, configure):
    configure(RATE_LIMIT_AUTH_FAILURES="3/minute")
    _, key = make_user("rosa")
    bad = [client.get("/sdapi/v1/options", headers=auth("atl_wrong")).status_code,
           client.get("/api/v1/me?token=atl_wrong").status_code,
           client.get("/sdapi/v1/options", headers=basic("rosa", "atl_wrong")).status_code]
    assert bad == [401] * 3
    for request in (lambda: client.get("/api/v1/me", headers=auth("atl_wrong")),
                    lambda: client.get("/api/v1/me", headers=auth(key)),  # blocked means blocked
                    lambda: client.get("/sdapi/v1/options", headers=basic("rosa", key))):
        r = request()
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, r.get_json()
    elsewhere = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/api/v1/me", headers=auth(key), environ_base=elsewhere).status_code == 200


def test_failed_authentication_is_rate_limited_per_username(client, configure):
    from models_db.accounts import create_user
    configure(RATE_LIMIT_AUTH_FAILURES="3/minute", RATE_LIMIT_LOGIN="100/minute")
    create_user("sam", password=PASSWORD)
    _, key = make_user("tess")

    def login(password, address):
        with client.session_transaction() as session:
            session.clear()
        page = client.get("/login", environ_base={"REMOTE_ADDR": address}).get_data(as_text=True)
        return client.post("/login", data={"username": "sam", "password": password, "csrf_token": token(page)},
                           environ_base={"REMOTE_ADDR": address})

    assert [login("wrong-password", f"10.0.0.{i}").status_code for i in range(3)] == [400] * 3
    r = login(PASSWORD, "10.0.0.9")  # a new address, the right password: the account is resting
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    r = client.get("/sdapi/v1/options", headers=basic("sam", "atl_wrong"), environ_base={"REMOTE_ADDR": "10.0.1.1"})
    assert r.status_code == 429
    assert client.get("/sdapi/v1/options", headers=basic("tess", key),
                      environ_base={"REMOTE_ADDR": "10.0.1.1"}).status_code == 200


def test_others_failures_cannot_lock_the_owners_browser_out(app, configure):
    """Failing on purpose for someone's username from many addresses throttles everyone guessing it, but
    not the browser its owner signed in from before (a signed known-device cookie, as OWASP suggests)."""
    from models_db.accounts import create_user
    configure(RATE_LIMIT_AUTH_FAILURES="3/minute", RATE_LIMIT_LOGIN="100/minute")
    create_user("sam", password=PASSWORD)
    create_user("mal", password=PASSWORD)

    def login(browser, username, password, address):
        with browser.session_transaction() as session:
            session.clear()  # signed out (the session ended), only the cookies the browser kept
        page = browser.get("/login", environ_base={"REMOTE_ADDR": address}).get_data(as_text=True)
        return browser.post("/login", data={"username": username, "password": password, "csrf_token": token(page)},
                            environ_base={"REMOTE_ADDR": address}).status_code

    owner, attacker = app.test_client(), app.test_client()
    assert login(owner, "sam", PASSWORD, "10.0.0.1") == 302
    assert login(attacker, "mal", PASSWORD, "10.9.9.9") == 302  # a known browser, but for its own account
    assert [login(attacker, "sam", "wrong-password", f"10.9.0.{i}") for i in range(3)] == [400] * 3
    assert login(owner, "sam", PASSWORD, "10.0.0.2") == 302  # the owner's browser, even from a new network
    assert login(owner, "sam", "wrong-password", "10.0.0.3") == 400  # it still only gets in with the password
    assert login(attacker, "sam", PASSWORD, "10.9.1.1") == 429  # guessing stays throttled per username
    stranger = app.test_client()
    assert login(stranger, "sam", PASSWORD, "10.9.1.2") == 429
    forged = owner.get_cookie("known_device").value
    stranger.set_cookie("known_device", forged[:-2] + ("AA" if forged[-2:] != "AA" else "BB"))
    assert login(stranger, "sam", PASSWORD, "10.9.1.3") == 429
    assert [login(owner, "sam", "wrong-password", "10.0.0.9") for _ in range(3)] == [400] * 3
    assert login(owner, "sam", PASSWORD, "10.0.0.9") == 429  # the per-address limit holds for it too


def test_a_resting_username_still_takes_its_api_keys(client, configure):
    """An API key cannot be guessed: failures for a username rest that username's wrong keys, not its real one."""
    configure(RATE_LIMIT_AUTH_FAILURES="3/minute")
    _, key = make_user("una")
    for i in range(3):
        assert client.get("/sdapi/v1/options", headers=basic("una", "atl_wrong"),
                          environ_base={"REMOTE_ADDR": f"10.8.0.{i}"}).status_code == 401
    assert client.get("/sdapi/v1/options", headers=basic("una", "atl_wrong"),
                      environ_base={"REMOTE_ADDR": "10.8.1.1"}).status_code == 429
    assert client.get("/sdapi/v1/options", headers=basic("una", key),
                      environ_base={"REMOTE_ADDR": "10.8.1.2"}).status_code == 200


def test_usernames_are_nfkc_and_look_alikes_of_existing_ones_are_refused(client):
    import pytest

    from models_db.accounts import User, create_user
    create_user("alice")
    for look_alike in ("\u0430lice", "ALICE", "\uff41\uff4c\uff49\uff43\uff45", "AIice", "a1ice"):
        with pytest.raises(ValueError, match="already exists|looks like"):
            create_user(look_alike)
    assert create_user("\uff42\uff4f\uff42").username == "bob"  # fullwidth letters are stored as NFKC
    for bidi in ("bob\u202eevil", "\u2066carl", "dan\u200f", "e\u061cve"):
        with pytest.raises(ValueError):
            create_user(bidi)
    page = client.get("/register").get_data(as_text=True)
    r = client.post("/register", data={"username": "\u0430lice", "password": PASSWORD, "confirm": PASSWORD,
                                       "csrf_token": token(page)})
    assert r.status_code == 400 and "looks like" in r.get_data(as_text=True)
    assert User.select().count() == 2


def test_model_and_file_names_carry_no_bidi_controls(client, alice):
    import io
    _, key = alice
    r = client.post("/api/v1/models", headers=auth(key), json={"name": "cute cat\u202egnp.exe", "type": "LORA"})
    assert r.status_code == 400 and "bidirectional" in r.get_json()["error"]
    model = client.post("/api/v1/models", headers=auth(key), json={"name": "Cat", "type": "LORA"}).get_json()
    r = client.post("/api/v1/model-versions", headers=auth(key),
                    json={"modelId": model["id"], "name": "v1\u2067", "baseModel": "SD 1.5"})
    assert r.status_code == 400 and "bidirectional" in r.get_json()["error"]
    version = client.post("/api/v1/model-versions", headers=auth(key),
                          json={"modelId": model["id"], "name": "v1", "baseModel": "SD 1.5"}).get_json()
    r = client.post("/api/v1/uploads", headers=auth(key), json={
        "modelVersionId": version["id"], "filename": "cat\u202eexe.safetensors", "size": 10})
    assert r.status_code == 201 and r.get_json()["filename"] == "catexe.safetensors"
    r = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(key),
                    content_type="multipart/form-data", data={"file": (io.BytesIO(b"x" * 10), "\u200fdog.safetensors")})
    assert r.status_code == 202 and r.get_json()["filename"] == "dog.safetensors"


def test_the_operations_pages_metrics_link_works_for_its_admin(live_server, configure):
    """With METRICS_TOKEN set, a signed-in admin following the Operations page's link gets the metrics;
    anyone else still needs the token."""
    configure(METRICS_TOKEN="scrape-token")
    admin = logged_in(live_server, "nell", role="admin")
    link = re.search(r'href="([^"]*metrics[^"]*)"', admin.get(f"{live_server}/operations").text).group(1)
    r = admin.get(f"{live_server}{link}")
    assert r.status_code == 200 and "atelier_queue_messages" in r.text
    for visitor in (logged_in(live_server, "ned", role="moderator"), logged_in(live_server, "nia"),
                    requests.Session()):
        r = visitor.get(f"{live_server}{link}")
        assert r.status_code == 401 and "atelier_" not in r.text


def test_digit_and_letter_look_alikes_collide_whichever_came_first():
    import pytest

    from models_db.accounts import create_user
    for first, later in (("AIice", "alice"), ("b0b", "bob"), ("bob2", "B0B2"), ("carol", "car0l"),
                         ("milo", "m1l0"), ("ivan", "lvan"), ("l1nus", "iinus")):
        create_user(first)
        with pytest.raises(ValueError, match="looks like"):
            create_user(later)


def test_tags_trigger_words_titles_and_key_names_carry_no_bidi_controls(client, live_server, alice):
    from models_db.accounts import ApiKey
    from models_db.catalog import Model, Tag
    from models_db.images import Post
    from tests.helpers import cli
    _, key = alice
    r = client.post("/api/v1/models", headers=auth(key),
                    json={"name": "Cat", "type": "LORA", "tags": ["cat", "x\u202e"]})
    assert r.status_code == 400 and "bidirectional" in r.get_json()["error"]
    assert not Model.select().exists() and not Tag.select().exists()
    model = client.post("/api/v1/models", headers=auth(key), json={"name": "Cat", "type": "LORA"}).get_json()
    r = client.post("/api/v1/model-versions", headers=auth(key), json={
        "modelId": model["id"], "name": "v1", "baseModel": "SD 1.5", "trainedWords": ["\u2066trigger"]})
    assert r.status_code == 400 and "bidirectional" in r.get_json()["error"]
    r = client.post("/api/v1/posts", headers=auth(key), json={"title": "my \u202egnp.exe"})
    assert r.status_code == 400 and "bidirectional" in r.get_json()["error"] and not Post.select().exists()
    browser = logged_in(live_server, "kay")
    page = browser.get(f"{live_server}/account").text
    r = browser.post(f"{live_server}/account/api-keys", data={"name": "laptop\u200f", "scope": "read",
                                                              "csrf_token": token(page)})
    assert r.status_code in (200, 400) and "bidirectional" in r.text and "atl_" not in r.text
    made = cli("api-key", "create", "kay", "--name", "\u202ecli")
    assert made.exit_code == 1 and "bidirectional" in made.output
    assert not ApiKey.select().where(ApiKey.name.contains("\u202e") | ApiKey.name.contains("\u200f")).exists()
