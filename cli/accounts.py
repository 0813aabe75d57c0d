"""atelier user create / atelier api-key create"""
import sys

import click

from cli.common import open_db


@click.group("user")
def user_group():
    """Manage users."""


@user_group.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["user", "moderator", "admin"]), default="user")
@click.option("--email", default=None)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_user(username, role, email, password_stdin):
    """Create a user (no password unless --password-stdin: API keys still work)."""
    from models_db.accounts import create_user as create
    open_db()
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    if password_stdin and len(password) < 8:
        raise click.ClickException("the password must have at least 8 characters")
    try:
        user = create(username, role=role, password=password, email=email)
    except ValueError as exc:
        raise click.ClickException(str(exc))
    click.echo(f"created {user.role} {user.username} (id {user.id})", err=True)


@user_group.command("set-password")
@click.argument("username")
def set_password(username):
    """Set a user's password, read from standard input; every browser of theirs is signed out."""
    from models_db.accounts import User, change_password
    from models_db.db import transaction
    open_db()
    user = User.get_or_none(User.username == username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        with transaction():
            change_password(user, password)
    except ValueError as exc:
        raise click.ClickException(str(exc))
    click.echo(f"{username}'s password is set; their browsers are signed out", err=True)


@user_group.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(["user", "moderator", "admin"]))
def set_role(username, role):
    """Make a user a moderator or admin (or a plain user again)."""
    from models_db.accounts import User
    open_db()
    if not User.update(role=role).where(User.username == username).execute():
        raise click.ClickException(f"no user {username!r}")
    click.echo(f"{username} is now {role}", err=True)


@click.group("api-key")
def key_group():
    """Manage API keys."""


@key_group.command("create")
@click.argument("username")
@click.option("--scope", type=click.Choice(["read", "write"]), default="read")
@click.option("--name", default="cli", help="A label for the key.")
def create_key(username, scope, name):
    """Create an API key for USERNAME; the key is printed once, on its own line."""
    from models_db.accounts import User, create_api_key
    open_db()
    user = User.get_or_none(User.username == username)
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    try:
        _, key = create_api_key(user, name, scope)
    except ValueError as exc:
        raise click.ClickException(str(exc))
    click.echo(f"{scope} key for {username} (shown once, keep it):", err=True)
    click.echo(key)


COMMANDS = [user_group, key_group]
