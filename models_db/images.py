"""Images: showcase images of model versions, posts, generated outputs; their reactions, reports and
NSFW levels (bit flags as in the Civitai API)."""
from __future__ import annotations

import json
from datetime import timedelta

from peewee import BooleanField, CharField, DateTimeField, FloatField, ForeignKeyField, IntegerField, TextField

import settings
from models_db.accounts import User
from models_db.catalog import ModelVersion
from models_db.db import BaseModel, compiled_dicts, id_set, utcnow

PG, PG13, R, X, XXX, BLOCKED = 1, 2, 4, 8, 16, 32
LEVELS = {"PG": PG, "PG13": PG13, "R": R, "X": X, "XXX": XXX, "Blocked": BLOCKED}
# the API's image nsfwLevel strings and the browsing levels they stand for
API_NAMES = {PG: "None", PG13: "Soft", R: "Mature", X: "X", XXX: "X", BLOCKED: "X"}
BROWSING = {"None": PG, "Soft": PG | PG13, "Mature": PG | PG13 | R, "X": PG | PG13 | R | X | XXX}
ANONYMOUS_BROWSING = PG | PG13
REACTIONS = ("Like", "Heart", "Laugh", "Cry", "Dislike")


class Post(BaseModel):
    user = ForeignKeyField(User, backref="posts", on_delete="CASCADE")
    model_version = ForeignKeyField(ModelVersion, null=True, on_delete="SET NULL")
    title = CharField(max_length=255, default="")
    created_at = DateTimeField(default=utcnow)


class Image(BaseModel):
    user = ForeignKeyField(User, backref="images", on_delete="CASCADE")
    post = ForeignKeyField(Post, null=True, backref="images", on_delete="SET NULL")
    model_version = ForeignKeyField(ModelVersion, null=True, backref="images", on_delete="SET NULL")
    # True: the version's showcase (added by its owner or staff), which sets its level. False: a community
    # image of the version (listed with it, never in its showcase or level)
    showcase = BooleanField(default=False)
    # True: a generated output its owner has not posted, seen by them and staff only (see shown_to, may_see)
    private = BooleanField(default=False, index=True)
    status = CharField(max_length=16, default="Pending")  # Pending | Ready | Rejected | Removed
    error = TextField(null=True)
    filename = CharField(max_length=255, default="")
    blob = CharField(max_length=64, null=True, index=True)
    mime = CharField(max_length=32, null=True)
    width = IntegerField(null=True)
    height = IntegerField(null=True)
    size_bytes = IntegerField(null=True)
    blurhash = CharField(max_length=64, null=True)
    phash = CharField(max_length=16, null=True, index=True)
    meta_json = TextField(null=True)
    nsfw_level = IntegerField(default=0)  # 0 until scored
    nsfw_source = CharField(max_length=16, null=True)  # detector | moderator | community
    detections_json = TextField(null=True)
    needs_review = BooleanField(default=False, index=True)
    proposed_level = IntegerField(null=True)  # a lower level the rating game settled on: a moderator confirms
    like_count = IntegerField(default=0)
    heart_count = IntegerField(default=0)
    laugh_count = IntegerField(default=0)
    cry_count = IntegerField(default=0)
    dislike_count = IntegerField(default=0)
    comment_count = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow, index=True)

    @property
    def meta(self) -> dict | None:
        return json.loads(self.meta_json) if self.meta_json else None


class ImageVariant(BaseModel):
    image = ForeignKeyField(Image, backref="variants", on_delete="CASCADE")
    width = IntegerField()
    blob = CharField(max_length=64)
    mime = CharField(max_length=32)

    class Meta:
        indexes = ((("image", "width"), True),)


class ImageResource(BaseModel):
    """A catalog version an image's metadata names (by Model hash / Lora hashes)."""
    image = ForeignKeyField(Image, backref="resources", on_delete="CASCADE")
    version = ForeignKeyField(ModelVersion, on_delete="CASCADE")
    kind = CharField(max_length=16)
    name = CharField(max_length=255, default="")

    class Meta:
        indexes = ((("image", "version"), True),)


class Reaction(BaseModel):
    image = ForeignKeyField(Image, backref="reactions", on_delete="CASCADE")
    user = ForeignKeyField(User, on_delete="CASCADE")
    kind = CharField(max_length=8)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("image", "user", "kind"), True),)


class Report(BaseModel):
    image = ForeignKeyField(Image, backref="reports", on_delete="CASCADE")
    user = ForeignKeyField(User, on_delete="CASCADE")
    reason = TextField()
    created_at = DateTimeField(default=utcnow)
    resolved = BooleanField(default=False)

    class Meta:
        indexes = ((("image", "user"), True),)


class RatingVote(BaseModel):
    """A signed-in user's vote on the level of an image in the review queue."""
    image = ForeignKeyField(Image, backref="votes", on_delete="CASCADE")
    user = ForeignKeyField(User, on_delete="CASCADE")
    level = IntegerField()
    weight = FloatField()
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("image", "user"), True),)


class Rater(BaseModel):
    user = ForeignKeyField(User, primary_key=True, on_delete="CASCADE")
    weight = FloatField(default=1.0)
    votes = IntegerField(default=0)
    agreed = IntegerField(default=0)
    disagreed = IntegerField(default=0)


TABLES = [Post, Image, ImageVariant, ImageResource, Reaction, Report, RatingVote, Rater]


# ---- levels ------------------------------------------------------------------------------------
def browsing_mask(user) -> int:
    """The NSFW levels a viewer sees: their setting, or PG and PG13 when anonymous."""
    return user.browsing_level if user is not None else ANONYMOUS_BROWSING


def listed(mask: int, viewer=None):
    """Condition: images that may appear in listings for this browsing mask: posted ones, and the viewer's
    own unposted outputs (None: posted ones only, as in showcases)."""
    return (shown_to(viewer) & (Image.status == "Ready") & (Image.nsfw_level > 0)
            & (Image.nsfw_level.bin_and(~mask & 63) == 0))


# ---- privacy: generated outputs are their owner's until posted -----------------------------------
def shown_to(viewer):
    """Condition for listings: posted (public) images, and the viewer's own unposted outputs. Staff open
    anyone's by id (may_see) but listings never mix other users' private outputs in."""
    if viewer is None:
        return Image.private == False  # noqa: E712
    return (Image.private == False) | (Image.user == viewer.id)  # noqa: E712


def may_see(private: bool, owner_id: int, viewer) -> bool:
    """One image looked up by id: public, or the viewer's own, or the viewer is staff. Others get a 404."""
    return not private or (viewer is not None and (viewer.id == owner_id or viewer.is_staff))


def refresh_version_levels(version_ids) -> None:
    """A version's nsfwLevel is the OR of its showcase images' (community images never count); its
    model's the OR of its versions', with R at least when its creator flagged it nsfw."""
    from functools import reduce

    from models_db.catalog import Model, search_changed
    changed = set()
    for version_id in {v for v in version_ids if v}:
        levels = [lvl for (lvl,) in Image.select(Image.nsfw_level).where(
            Image.model_version == version_id, Image.showcase == True, Image.status == "Ready",  # noqa: E712
            Image.private == False, Image.nsfw_level > 0).tuples()]  # noqa: E712
        level = reduce(lambda a, b: a | b, levels, 0) & ~BLOCKED
        ModelVersion.update(nsfw_level=level).where(ModelVersion.id == version_id).execute()
        model_id, declared = (ModelVersion.select(ModelVersion.model, Model.creator_nsfw).join(Model)
                              .where(ModelVersion.id == version_id).tuples().get())
        model_levels = [lvl for (lvl,) in ModelVersion.select(ModelVersion.nsfw_level)
                        .where(ModelVersion.model == model_id).tuples()]
        model_level = reduce(lambda a, b: a | b, model_levels, R if declared else 0)
        Model.update(nsfw_level=model_level, nsfw=bool(declared) or model_level >= R).where(
            Model.id == model_id).execute()
        changed.add(model_id)
    if changed:
        search_changed(changed)


def near_duplicates(image: Image, max_distance: int = 6) -> list[int]:
    """Ids of other images whose perceptual hash is within max_distance bits of this one's."""
    if not image.phash:
        return []
    mine = int(image.phash, 16)
    return [i for i, h in Image.select(Image.id, Image.phash).where(
        Image.phash.is_null(False), Image.id != image.id, Image.status == "Ready", shown_to(None)).tuples()
        if bin(mine ^ int(h, 16)).count("1") <= max_distance]


# ---- reactions and reports ---------------------------------------------------------------------
def react(image: Image, user, kind: str, on: bool) -> bool:
    """Adds or removes one reaction; the image's counter follows. True when something changed."""
    column = getattr(Image, f"{kind.lower()}_count")
    if on:
        changed = Reaction.insert(image=image, user=user, kind=kind).on_conflict_ignore().as_rowcount().execute()
        delta = 1
    else:
        changed = Reaction.delete().where(Reaction.image == image, Reaction.user == user,
                                          Reaction.kind == kind).execute()
        delta = -1
    if changed:
        Image.update({column: column + delta}).where(Image.id == image.id).execute()
    return bool(changed)


def report(image: Image, user, reason: str) -> None:
    Report.insert(image=image, user=user, reason=reason).on_conflict_ignore().execute()
    Image.update(needs_review=True).where(Image.id == image.id).execute()


# ---- moderation and the community rating game ---------------------------------------------------
SETTLE_WEIGHT = 3.0      # weighted votes needed to settle a level
SETTLE_SHARE = 0.7       # share of all weighted votes the winning level must hold
WEIGHT_MIN, WEIGHT_MAX = 0.2, 5.0
UNTRUSTED_WEIGHT = 0.1   # the weight of a vote from a new account or a rater without a confirmed record


def moderate(image: Image, action: str, level: int | None = None) -> None:
    """approve (keep the level) | set-level | remove | block. Re-weights the raters who voted."""
    if action == "remove":
        image.status = "Removed"
    elif action == "block":
        image.nsfw_level, image.nsfw_source = BLOCKED, "moderator"
    elif action == "set-level":
        image.nsfw_level, image.nsfw_source = level, "moderator"
    elif action == "approve":
        image.nsfw_source = "moderator"
    image.needs_review, image.proposed_level = False, None
    image.save(only=image.dirty_fields)
    Report.update(resolved=True).where(Report.image == image).execute()
    if action in ("approve", "set-level", "block"):
        for vote in RatingVote.select().where(RatingVote.image == image):
            rater, _ = Rater.get_or_create(user=vote.user_id)
            if vote.level == image.nsfw_level:
                rater.agreed, rater.weight = rater.agreed + 1, min(WEIGHT_MAX, rater.weight + 0.1)
            else:
                rater.disagreed, rater.weight = rater.disagreed + 1, max(WEIGHT_MIN, rater.weight * 0.8)
            rater.save()
    refresh_version_levels([image.model_version_id])


def vote_weight(rater: Rater, user) -> float:
    """A rater's weight, or UNTRUSTED_WEIGHT until their account is old enough and moderators have
    confirmed enough of their votes (so fresh accounts cannot settle levels between them)."""
    s = settings.get()
    old_enough = user.created_at <= utcnow() - timedelta(days=s.rating_trusted_account_days)
    if old_enough and rater.agreed >= s.rating_trusted_agreements:
        return rater.weight
    return min(rater.weight, UNTRUSTED_WEIGHT)


def vote(image: Image, user, level: int) -> bool:
    """Records a rater's vote (weighted by their record); returns True when it settled the level. The
    game may raise a level (or confirm it); a lower one (more visible) is only proposed to the moderators:
    the image leaves the game and stays in their queue. Blocked is never a game vote (the caller refuses it)."""
    rater, _ = Rater.get_or_create(user=user)
    inserted = RatingVote.insert(image=image, user=user, level=level, weight=vote_weight(rater, user)
                                 ).on_conflict_ignore().as_rowcount().execute()
    if not inserted:
        return False
    Rater.update(votes=Rater.votes + 1).where(Rater.user == user).execute()
    totals: dict[int, float] = {}
    for lvl, weight in RatingVote.select(RatingVote.level, RatingVote.weight).where(
            RatingVote.image == image).tuples():
        totals[lvl] = totals.get(lvl, 0.0) + weight
    best, best_weight = max(totals.items(), key=lambda item: item[1])
    if best_weight < SETTLE_WEIGHT or best_weight < SETTLE_SHARE * sum(totals.values()):
        return False
    if best < image.nsfw_level:
        image.proposed_level = best
        image.save(only=image.dirty_fields)
        return False
    image.nsfw_level, image.nsfw_source, image.needs_review = best, "community", False
    image.save(only=image.dirty_fields)
    refresh_version_levels([image.model_version_id])
    return True


def game_queue(user):
    """Images the rating game serves this user: waiting for review, neither theirs nor reported or
    already rated by them, oldest first."""
    mine = (RatingVote.select(RatingVote.image).where(RatingVote.user == user)
            | Report.select(Report.image).where(Report.user == user))
    return (Image.select().where(Image.needs_review == True, Image.status == "Ready",  # noqa: E712
                                 Image.proposed_level.is_null(), Image.user != user, Image.id.not_in(mine),
                                 shown_to(None))
            .order_by(Image.id))


def review_queue(limit: int):
    """Images waiting for a moderator, oldest first (posted ones: unposted outputs are shown to no one)."""
    return (Image.select().where(Image.needs_review == True, Image.status == "Ready", shown_to(None))  # noqa: E712
            .order_by(Image.id).limit(limit))


def showcase(version_ids, mask: int, per_version: int = 10) -> dict[int, list[dict]]:
    """Listed showcase images per version, oldest first (the creator's order of upload)."""
    out: dict[int, list[dict]] = {}
    if not version_ids:
        return out
    for row in compiled_dicts(("showcase", mask), lambda ids: Image.select().where(
            Image.model_version.in_(id_set(ids)), Image.showcase == True, listed(mask, None))  # noqa: E712
            .order_by(Image.id), list(version_ids)):
        bucket = out.setdefault(row["model_version"], [])
        if len(bucket) < per_version:
            bucket.append(row)
    return out
