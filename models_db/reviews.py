"""Reviews (a thumbs up or down per user and version, with a 1-5 rating) and comments on models: the raw
events that the rating and comment statistics are rolled up from (models_db.stats)."""
from __future__ import annotations

from peewee import BooleanField, DateTimeField, ForeignKeyField, IntegerField, TextField

from models_db.accounts import User
from models_db.catalog import Model, ModelVersion
from models_db.db import BaseModel, utcnow

MAX_TEXT = 5000


class Review(BaseModel):
    user = ForeignKeyField(User, on_delete="CASCADE")
    model = ForeignKeyField(Model, on_delete="CASCADE")
    version = ForeignKeyField(ModelVersion, on_delete="CASCADE")
    recommended = BooleanField()
    rating = IntegerField()  # 1..5; 5 for a plain thumbs up, 1 for a thumbs down
    details = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "version"), True), (("model", "created_at"), False), (("created_at",), False))


class Comment(BaseModel):
    user = ForeignKeyField(User, on_delete="CASCADE")
    model = ForeignKeyField(Model, on_delete="CASCADE")
    body = TextField()
    hidden = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("model", "created_at"), False), (("created_at",), False))


TABLES = [Review, Comment]


def review(user_id: int, version: ModelVersion, recommended: bool, rating: int | None, details: str) -> Review:
    """Adds or replaces the user's review of a version (one each)."""
    rating = rating if rating is not None else (5 if recommended else 1)
    now = utcnow()
    fields = {"recommended": recommended, "rating": rating, "details": details, "updated_at": now}
    (Review.insert(user=user_id, model=version.model_id, version=version.id, created_at=now, **fields)
     .on_conflict(conflict_target=[Review.user, Review.version], update=fields).execute())
    return Review.get(Review.user == user_id, Review.version == version.id)


def delete_review(user_id: int, version_id: int) -> bool:
    return bool(Review.delete().where(Review.user == user_id, Review.version == version_id).execute())


def comment(user_id: int, model_id: int, body: str) -> Comment:
    return Comment.create(user=user_id, model=model_id, body=body)


def hide_comment(comment_id: int) -> None:
    Comment.update(hidden=True).where(Comment.id == comment_id).execute()


def recent_reviews(model_id: int, limit: int = 20) -> list[dict]:
    """The model's newest reviews, with their authors' names."""
    return list(Review.select(Review, User.username).join(User).where(Review.model == model_id)
                .order_by(Review.updated_at.desc(), Review.id.desc()).limit(limit).dicts())


def recent_comments(model_id: int, limit: int = 20) -> list[dict]:
    """The model's newest visible comments, with their authors' names."""
    return list(Comment.select(Comment, User.username).join(User)
                .where(Comment.model == model_id, Comment.hidden == False)  # noqa: E712
                .order_by(Comment.created_at.desc(), Comment.id.desc()).limit(limit).dicts())
