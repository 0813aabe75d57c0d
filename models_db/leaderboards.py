"""Leaderboards: ranked creators, rebuilt by an actor from the rolled-up statistics."""
from __future__ import annotations

from peewee import CharField, DateTimeField, FloatField, ForeignKeyField, IntegerField, fn

from models_db.accounts import User
from models_db.catalog import Model
from models_db.db import BaseModel, db, utcnow
from models_db.stats import PERIODS, ModelStat

BOARDS = {f"creators-{p.lower()}": p for p in PERIODS}
SIZE = 100


class LeaderboardEntry(BaseModel):
    board = CharField(max_length=32)
    position = IntegerField()
    user = ForeignKeyField(User, on_delete="CASCADE")
    score = FloatField()
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("board", "position"), True),)


TABLES = [LeaderboardEntry]


def refresh(board: str) -> int:
    """Top creators by downloads of their published models in the board's period."""
    period = BOARDS[board]
    if period == "AllTime":
        score = fn.SUM(Model.download_count)
        query = Model.select(Model.owner, score).where(Model.status == "Published")
    else:
        score = fn.SUM(ModelStat.download_count)
        query = (Model.select(Model.owner, score).join(ModelStat, on=(ModelStat.model == Model.id))
                 .where(Model.status == "Published", ModelStat.period == period))
    rows = query.group_by(Model.owner).having(score > 0).order_by(score.desc(), Model.owner).limit(SIZE).tuples()
    now = utcnow()
    entries = [{"board": board, "position": i + 1, "user": owner, "score": float(total), "updated_at": now}
               for i, (owner, total) in enumerate(rows)]
    with db.atomic():
        LeaderboardEntry.delete().where(LeaderboardEntry.board == board).execute()
        if entries:
            LeaderboardEntry.insert_many(entries).execute()
    return len(entries)


def entries(board: str) -> list[tuple]:
    return list(LeaderboardEntry.select(LeaderboardEntry.position, User.username, User.image,
                                        LeaderboardEntry.score, LeaderboardEntry.updated_at)
                .join(User).where(LeaderboardEntry.board == board).order_by(LeaderboardEntry.position).tuples())
