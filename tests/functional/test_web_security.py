"""The site's defences over real HTTP: CSRF tokens, rate limits (kept in Redis), role-gated pages."""
import re

import requests

from tests.conftest import make_user
from tests.helpers import catalog_model

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
