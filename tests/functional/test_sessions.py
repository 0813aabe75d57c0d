"""Browser sessions over real HTTP: each log-in is its own server-side session whose token the session
and remember-me cookies carry; log-out and a password change end them."""
from datetime import datetime, timedelta, timezone

import requests

from tests.functional.test_web_security import PASSWORD, token


def log_in(base: str, username: str, remember: bool = True) -> requests.Session:
    s = requests.Session()
    data = {"username": username, "password": PASSWORD, "csrf_token": token(s.get(f"{base}/login").text)}
    if remember:
        data["remember"] = "y"
    assert s.post(f"{base}/login", data=data, allow_redirects=False).status_code == 302
    return s


def signed_in(base: str, cookies: dict) -> bool:
    r = requests.get(f"{base}/account", cookies=cookies, allow_redirects=False)
    assert r.status_code in (200, 302)
    return r.status_code == 200


def test_log_out_ends_the_session_and_its_remember_token(live_server):
    from models_db.accounts import create_user
    create_user("uma", password=PASSWORD)
    s = log_in(live_server, "uma")
    old = s.cookies.get_dict()
    assert {"session", "remember_token"} <= set(old) and signed_in(live_server, old)
    other = log_in(live_server, "uma", remember=False)  # another browser stays signed in
    s.post(f"{live_server}/logout", data={"csrf_token": token(s.get(f"{live_server}/account").text)})
    assert not signed_in(live_server, {"session": old["session"]})
    assert not signed_in(live_server, {"remember_token": old["remember_token"]})
    assert signed_in(live_server, other.cookies.get_dict())


def test_remember_tokens_are_per_log_in_and_last_thirty_days(live_server):
    from models_db.accounts import create_user
    create_user("vera", password=PASSWORD)
    first, second = log_in(live_server, "vera"), log_in(live_server, "vera")
    assert first.cookies["remember_token"] != second.cookies["remember_token"]
    expires = next(c.expires for c in second.cookies if c.name == "remember_token")
    lasts = datetime.fromtimestamp(expires, timezone.utc) - datetime.now(timezone.utc)
    assert timedelta(days=29) < lasts <= timedelta(days=30)
    assert signed_in(live_server, {"remember_token": first.cookies["remember_token"]})


def test_a_password_change_ends_every_session(live_server):
    from models_db.accounts import User, create_user
    create_user("wade", password=PASSWORD)
    laptop, phone = log_in(live_server, "wade"), log_in(live_server, "wade")
    old_phone = phone.cookies.get_dict()
    page = laptop.get(f"{live_server}/account").text
    r = laptop.post(f"{live_server}/account/password", data={
        "current": "not the password", "password": "a new password 1", "confirm": "a new password 1",
        "csrf_token": token(page)})
    assert r.status_code == 400 and "wrong password" in r.text
    assert signed_in(live_server, old_phone)
    r = laptop.post(f"{live_server}/account/password", data={
        "current": PASSWORD, "password": "a new password 1", "confirm": "a new password 1",
        "csrf_token": token(page)}, allow_redirects=False)
    assert r.status_code == 302
    assert User.get(User.username == "wade").check_password("a new password 1")
    assert not signed_in(live_server, {"session": old_phone["session"]})
    assert not signed_in(live_server, {"remember_token": old_phone["remember_token"]})
    assert signed_in(live_server, laptop.cookies.get_dict())  # the browser that changed it signs in afresh


def test_expired_log_ins_are_refused(live_server):
    from models_db.accounts import LoginSession, create_user
    create_user("xena", password=PASSWORD)
    s = log_in(live_server, "xena")
    LoginSession.update(expires_at=datetime(2000, 1, 1)).execute()
    assert not signed_in(live_server, s.cookies.get_dict())


def test_expired_log_ins_are_swept_on_schedule(worker):
    """Expired rows go without their user logging in again: the scheduler sends the sweep, a worker runs it."""
    from models_db.accounts import LoginSession, create_user, start_session, user_for_session
    from scheduler import fire, schedule_table
    from tests.conftest import run_jobs
    gone, kept = create_user("yael"), create_user("zoe")
    start_session(gone, 30)
    live = start_session(kept, 30)
    LoginSession.update(expires_at=datetime(2000, 1, 1)).where(LoginSession.user == gone).execute()
    entry = next(e for e in schedule_table() if e.actor.actor_name == "expire_login_sessions")
    assert fire(entry)
    run_jobs(worker)
    assert [row.user_id for row in LoginSession.select()] == [kept.id]
    assert user_for_session(live).id == kept.id
    entry.actor.send()  # idempotent: nothing left to do
    run_jobs(worker)
    assert LoginSession.select().count() == 1
