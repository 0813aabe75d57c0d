"""Accounts: register, log in/out, settings (browsing level, email), API keys."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import EqualTo, InputRequired, Length, Optional, Regexp

import settings
from models_db import accounts as a
from models_db.db import transaction
from models_db.images import BROWSING
from web.pages import safe_next
from web.security import auth_attempt, auth_failed, known_device, login_limit, register_limit, remember_device

bp = Blueprint("site_accounts", __name__)
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class PageForm(FlaskForm):
    """A page's form reads the posted form only: Flask-WTF would also take a JSON body as the form, whose
    numbers, lists and objects no text field or validator expects (a 500)."""

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form, formdata):
            if formdata is _Auto and request.is_json:
                return None  # an empty form: each field's own "required" error, a 400
            return super().wrap_formdata(form, formdata)


class RegisterForm(PageForm):
    username = StringField("Username", [InputRequired(), Length(2, 64),
                                        Regexp(r"^[\w.-]+$", message="letters, digits, '-', '_' or '.'")])
    email = StringField("Email (optional)", [Optional(), Regexp(EMAIL, message="not an email address")])
    password = PasswordField("Password", [InputRequired(), Length(min=a.MIN_PASSWORD, max=200)])
    confirm = PasswordField("Repeat password", [EqualTo("password", message="the passwords differ")])


class LoginForm(PageForm):
    username = StringField("Username", [InputRequired()])
    password = PasswordField("Password", [InputRequired()])
    remember = BooleanField("Keep me logged in")


class PasswordForm(PageForm):
    current = PasswordField("Current password", [InputRequired()])
    password = PasswordField("New password", [InputRequired(), Length(min=a.MIN_PASSWORD, max=200)])
    confirm = PasswordField("Repeat new password", [EqualTo("password", message="the passwords differ")])


class SettingsForm(PageForm):
    browsing_level = SelectField("Browsing level", choices=[SelectChoice(*c) for c in (
        ("None", "Safe (PG)"), ("Soft", "PG-13"), ("Mature", "Mature (R)"), ("X", "Everything (X, XXX)"))])
    email = StringField("Email", [Optional(), Regexp(EMAIL, message="not an email address")])
    new_outputs = SelectField("New generation outputs", choices=[SelectChoice(*c) for c in (
        ("private", "Private until I post them"), ("public", "Posted when the run ends"))])


class ApiKeyForm(PageForm):
    name = StringField("Key name", [InputRequired(), Length(1, 100)])
    scope = SelectField("Scope", choices=[SelectChoice("read", "read"), SelectChoice("write", "read and write")])


@bp.route("/register", methods=["GET", "POST"])
@register_limit()
def register():
    form = RegisterForm()
    if form.validate_on_submit():
        email = form.email.data or None
        if email and a.User.select().where(a.User.email == email).exists():
            form.email.errors.append("that email is already registered")
        else:
            try:
                with transaction():
                    user = a.create_user(form.username.data, password=form.password.data, email=email)
            except ValueError as exc:
                form.username.errors.append(str(exc))
            else:
                sign_in(user, remember=False)
                flash(f"Welcome to Atelier, {user.username}!", "success")
                return redirect(url_for("site_catalog.home"))
    return render_template("accounts/register.html", form=form), 400 if form.errors else 200


@bp.route("/login", methods=["GET", "POST"])
@login_limit()
def login():
    form = LoginForm()
    if form.validate_on_submit():
        username = a.normal_username(form.username.data)
        user = a.User.get_or_none(a.User.username == username, a.User.is_active == True)  # noqa: E712
        auth_attempt(None if known_device(user) else username)
        if user is not None and user.check_password(form.password.data):
            sign_in(user, remember=form.remember.data)
            return redirect(safe_next(request.args.get("next"), url_for("site_catalog.home")))
        auth_failed(username)
        form.password.errors.append("wrong username or password")
    return render_template("accounts/login.html", form=form), 400 if form.errors else 200


def sign_in(user, remember: bool) -> None:
    """A new LoginSession for this browser: its token goes into the session (and remember-me) cookie; the
    browser becomes a known device of the user."""
    a.start_session(user, settings.get().session_days)
    login_user(user, remember=remember)
    remember_device(user)


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        a.end_session(current_user.get_id())  # the session and remember-me cookies are dead now
    logout_user()
    return redirect(url_for("site_catalog.home"))


def profile_form(**kwargs) -> SettingsForm:
    level = next((name for name, mask in BROWSING.items() if mask == current_user.browsing_level), "Soft")
    return SettingsForm(data={"browsing_level": level, "email": current_user.email,
                              "new_outputs": "public" if current_user.post_outputs else "private"}, **kwargs)


def settings_html(status: int = 200, **forms):
    """The settings page with these forms (the others empty), the user's keys, and a new key if any."""
    forms.setdefault("form", profile_form(formdata=None))
    forms.setdefault("key_form", ApiKeyForm(formdata=None))
    forms.setdefault("password_form", PasswordForm(formdata=None))
    from models_db.quotas import summary
    keys = list(current_user.api_keys.order_by(a.ApiKey.created_at.desc()))
    return render_template("accounts/settings.html", keys=keys, quota=summary(current_user), **forms), status


@bp.route("/account", methods=["GET", "POST"])
@login_required
def settings_page():
    form = profile_form()
    if form.validate_on_submit():
        email = form.email.data or None
        taken = email and a.User.select().where(a.User.email == email, a.User.id != current_user.id).exists()
        if taken:
            form.email.errors.append("that email is used by another account")
        else:
            a.User.update(browsing_level=BROWSING[form.browsing_level.data], email=email,
                          post_outputs=form.new_outputs.data == "public").where(
                a.User.id == current_user.id).execute()
            flash("Settings saved.", "success")
            return redirect(url_for(".settings_page"))
    return settings_html(form=form)


@bp.post("/account/password")
@login_required
def change_password():
    """A new password signs every browser out; this one gets a fresh log-in."""
    form = PasswordForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        auth_attempt(None if known_device(user) else user.username)
        if user.check_password(form.current.data):
            with transaction():
                a.change_password(user, form.password.data)
            sign_in(user, remember="remember_token" in request.cookies)
            flash("Password changed; every other browser is signed out.", "success")
            return redirect(url_for(".settings_page"))
        auth_failed(user.username)
        form.current.errors.append("wrong password")
    return settings_html(400, password_form=form)


@bp.post("/account/api-keys")
@login_required
def create_key():
    form = ApiKeyForm()
    if not form.validate_on_submit():
        flash("A key needs a name.", "error")
        return redirect(url_for(".settings_page"))
    try:
        row, key = a.create_api_key(current_user._get_current_object(), form.name.data, form.scope.data)
    except ValueError as exc:
        flash(f"{exc}.", "error")
        return redirect(url_for(".settings_page"))
    return settings_html(new_key=key, new_row=row)  # the plain key is shown on this one response, never again


@bp.post("/account/api-keys/<id:key_id>/revoke")
@login_required
def revoke_key(key_id: int):
    deleted = a.ApiKey.delete().where(a.ApiKey.id == key_id, a.ApiKey.user == current_user.id).execute()
    flash("Key revoked." if deleted else "No such key.", "success" if deleted else "error")
    return redirect(url_for(".settings_page"))
