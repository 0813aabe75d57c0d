"""Users and API keys."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegrityError, IntegerField, TextField
from werkzeug.security import check_password_hash

from models_db import names
from models_db.db import BaseModel, db, utcnow

ROLES = ("user", "moderator", "admin")
SCOPES = ("read", "write")
KEY_PREFIX = "atl_"
MIN_PASSWORD = 8
hasher = PasswordHasher()


class User(BaseModel):
    username = CharField(max_length=64, unique=True)
    username_skeleton = CharField(max_length=256, null=True, unique=True)  # names.skeleton(username)
    email = CharField(max_length=254, null=True, unique=True)
    password_hash = TextField(null=True)
    role = CharField(max_length=16, default="user")
    image = TextField(null=True)
    is_active = BooleanField(default=True)
    browsing_level = IntegerField(default=3)  # NSFW bit flags the user sees (3 = PG and PG13)
    post_outputs = BooleanField(default=False)  # new generation outputs: posted when their run ends, or private
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "users"  # "user" is reserved in PostgreSQL

    def set_password(self, password: str) -> None:
        if len(password or "") < MIN_PASSWORD:
            raise ValueError(f"password must be at least {MIN_PASSWORD} characters")
        self.password_hash = hasher.hash(password)

    def check_password(self, password: str) -> bool:
        """argon2id; a hash of an older scheme (werkzeug's) is verified once and replaced."""
        stored = self.password_hash or ""
        if not stored.startswith("$argon2"):
            if not (stored and check_password_hash(stored, password)):
                return False
            self.set_password(password)
            self.save(only=[User.password_hash])
            return True
        try:
            hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        if hasher.check_needs_rehash(stored):
            self.set_password(password)
            self.save(only=[User.password_hash])
        return True

    @property
    def is_staff(self) -> bool:
        return self.role in ("moderator", "admin")

    # flask-login protocol: the id it keeps in the session and remember-me cookies is the token of
    # this log-in (a LoginSession), never the user's id, so that ending the log-in ends both cookies
    is_authenticated = True
    is_anonymous = False
    login_token: str | None = None

    def get_id(self) -> str:
        if not self.login_token:
            raise RuntimeError("start_session() first: a browser session is a LoginSession")
        return self.login_token


class ApiKey(BaseModel):
    user = ForeignKeyField(User, backref="api_keys", on_delete="CASCADE")
    name = CharField(max_length=100)
    key_hash = CharField(max_length=64, unique=True)
    prefix = CharField(max_length=12)
    scope = CharField(max_length=8, default="read")
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)

    def allows(self, scope: str) -> bool:
        return scope == "read" or self.scope == "write"


class LoginSession(BaseModel):
    """One browser log-in. Its random token is in the session cookie (and the remember-me cookie); only
    its hash is stored. Deleting the row signs that browser out."""
    user = ForeignKeyField(User, backref="login_sessions", on_delete="CASCADE")
    token_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()


TABLES = [User, ApiKey, LoginSession]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def normal_username(name: str | None) -> str:
    """A username as typed, in the form it is stored and looked up in (NFKC, no outer spaces)."""
    return names.normal(name)


def validate_username(name: str) -> str:
    """NFKC letters, digits, '-', '_', '.' (so no bidirectional or other invisible controls)."""
    name = normal_username(name)
    names.refuse_bidi_controls(name, "a username")
    if not (2 <= len(name) <= 64) or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError("username must be 2-64 letters, digits, '-', '_' or '.'")
    return name


def create_user(username: str, *, role: str = "user", password: str | None = None,
                email: str | None = None) -> User:
    """A new account; ValueError if the name (or one that looks like it) is taken, also when another
    registration takes it between the check and the insert (the unique indexes decide)."""
    username = validate_username(username)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    key = names.skeleton(username)
    refuse_taken(username, key)
    user = User(username=username, username_skeleton=key, role=role, email=email or None)
    if password:
        user.set_password(password)
    try:
        with db.atomic():  # a savepoint inside the caller's transaction, which stays usable
            user.save()
    except IntegrityError:
        refuse_taken(username, key, email)
        raise
    return user


def refuse_taken(username: str, skeleton: str, email: str | None = None) -> None:
    if email and User.select().where(User.email == email).exists():
        raise ValueError("that email is already registered")
    if User.select().where(User.username == username).exists():
        raise ValueError(f"user {username!r} already exists")
    alike = User.select(User.username).where(User.username_skeleton == skeleton).first()
    if alike is not None:
        raise ValueError(f"{username!r} looks like the existing user {alike.username!r}: choose another name")


def store_username_skeletons() -> None:
    """Computes every user's skeleton again (a migration runs it when names.skeleton changed). Accounts
    that look alike already keep their names; the later one's skeleton gets '#<id>' (the column is unique)."""
    User.update(username_skeleton=None).execute()  # no stale value stands in the way of a new one
    taken = set()
    for user in User.select(User.id, User.username).order_by(User.id):
        key = names.skeleton(user.username)
        key = key if key not in taken else f"{key}#{user.id}"
        taken.add(key)
        User.update(username_skeleton=key).where(User.id == user.id).execute()


def create_api_key(user: User, name: str, scope: str = "read") -> tuple[ApiKey, str]:
    """Returns the row and the plain key; only the key's hash is stored."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    names.refuse_bidi_controls(name, "a key name")
    key = KEY_PREFIX + secrets.token_urlsafe(30)
    row = ApiKey.create(user=user, name=name, key_hash=hash_key(key), prefix=key[:10], scope=scope)
    return row, key


def user_for_key(key: str) -> tuple[User, ApiKey] | None:
    row = (ApiKey.select(ApiKey, User).join(User)
           .where(ApiKey.key_hash == hash_key(key.strip()), User.is_active == True)  # noqa: E712
           .first())
    return (row.user, row) if row else None


def start_session(user: User, days: int) -> str:
    """A new log-in of `user` lasting `days`; its token becomes user.get_id()."""
    token = secrets.token_urlsafe(32)
    LoginSession.create(user=user, token_hash=hash_key(token), expires_at=utcnow() + timedelta(days=days))
    user.login_token = token
    return token


def user_for_session(token: str) -> User | None:
    row = (LoginSession.select(LoginSession, User).join(User)
           .where(LoginSession.token_hash == hash_key(token), LoginSession.expires_at > utcnow(),
                  User.is_active == True)  # noqa: E712
           .first())
    if row is None:
        return None
    row.user.login_token = token
    return row.user


def delete_expired_sessions() -> int:
    """Drops every log-in past its expiry (the scheduled jobs.accounts.expire_login_sessions)."""
    return LoginSession.delete().where(LoginSession.expires_at <= utcnow()).execute()


def end_session(token: str) -> None:
    LoginSession.delete().where(LoginSession.token_hash == hash_key(token)).execute()


def change_password(user: User, password: str) -> None:
    """A new password ends every log-in of the user (API keys are revoked one by one, by their owner)."""
    user.set_password(password)
    user.save(only=[User.password_hash])
    LoginSession.delete().where(LoginSession.user == user).execute()
