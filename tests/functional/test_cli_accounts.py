"""atelier user create / api-key create / db upgrade."""
from models_db.accounts import ApiKey, User, hash_key
from tests.helpers import auth, cli


def test_user_and_key_creation(client):
    made = cli("user", "create", "erin", "--role", "admin", "--password-stdin", input="correct horse\n")
    assert made.exit_code == 0
    user = User.get(User.username == "erin")
    assert user.role == "admin" and user.check_password("correct horse") and not user.check_password("nope")
    key = cli("api-key", "create", "erin", "--scope", "read")
    assert key.exit_code == 0
    lines = key.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("atl_")
    stored = ApiKey.get(ApiKey.user == user)
    assert stored.key_hash == hash_key(lines[0]) and lines[0] not in (stored.key_hash, stored.prefix)
    assert client.get("/api/v1/me", headers=auth(lines[0])).get_json()["username"] == "erin"
    assert client.post("/api/v1/models", headers=auth(lines[0]), json={"name": "x", "type": "LORA"}).status_code == 403


def test_cli_errors_are_clear():
    assert cli("user", "create", "erin").exit_code == 0
    again = cli("user", "create", "erin")
    assert again.exit_code == 1 and "already exists" in again.output
    bad = cli("user", "create", "x y")
    assert bad.exit_code == 1 and "username" in bad.output
    short = cli("user", "create", "frank", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "8 characters" in short.output
    assert cli("api-key", "create", "ghost").exit_code == 1


def test_db_upgrade_is_idempotent():
    result = cli("db", "upgrade")
    assert result.exit_code == 0 and "0 migration(s) applied" in result.output
    assert "applied  0001_initial" in cli("db", "status").output


def test_set_role_makes_staff():
    assert cli("user", "create", "olga").exit_code == 0
    assert cli("user", "set-role", "olga", "moderator").exit_code == 0
    assert User.get(User.username == "olga").role == "moderator"
    missing = cli("user", "set-role", "nobody", "admin")
    assert missing.exit_code == 1 and "no user" in missing.output


def test_set_password_signs_every_browser_out():
    from models_db.accounts import LoginSession, start_session, user_for_session
    assert cli("user", "create", "petra").exit_code == 0
    user = User.get(User.username == "petra")
    token = start_session(user, 30)
    short = cli("user", "set-password", "petra", input="short\n")
    assert short.exit_code == 1 and "8 characters" in short.output and user_for_session(token)
    assert cli("user", "set-password", "petra", input="a long new password\n").exit_code == 0
    assert User.get(User.username == "petra").check_password("a long new password")
    assert user_for_session(token) is None and not LoginSession.select().exists()
    assert cli("user", "set-password", "nobody", input="a long new password\n").exit_code == 1


def test_skeletons_are_recomputed_and_accounts_that_now_look_alike_are_kept():
    """A migration recomputes stored skeletons when their definition changes; accounts that only now look
    alike keep their names (the later one's skeleton is marked with its id), and new look-alikes are refused."""
    import importlib

    import pytest

    from models_db import names
    from models_db.accounts import create_user
    from models_db.db import db
    old = {"bob": "bob", "b0b": "b0b", "AIice": "aiice", "alice": "a1ice", "a0": "a0", "ao": "ao"}
    for name, skeleton in old.items():  # stored by the previous definition, unique then
        User.create(username=name, username_skeleton=skeleton)
    importlib.import_module("models_db.migrations.0018_username_skeleton_digits").up(db)
    stored = {u.username: (u.id, u.username_skeleton) for u in User.select()}
    for first, later in (("bob", "b0b"), ("AIice", "alice"), ("a0", "ao")):
        assert stored[first][1] == names.skeleton(first) == names.skeleton(later)
        assert stored[later][1] == f"{names.skeleton(later)}#{stored[later][0]}"
    for look_alike in ("B0B", "ALICE", "A0"):
        with pytest.raises(ValueError, match="looks like"):
            create_user(look_alike)
