"""GET /api/v1/leaderboards/:board — ranked creators (creators-day|week|month|year|alltime)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from models_db import leaderboards
from web.api import absolute, error
from web.openapi import DATE, INT, NUM, STR, URL, array, doc, enum, nullable, obj

bp = Blueprint("leaderboards", __name__)


@bp.get("/api/v1/leaderboards/<board>")
@doc("Top creators by downloads in a period", "catalog", path={"board": enum(leaderboards.BOARDS)},
     response=obj(("board", "items"), board=STR, updatedAt=nullable(DATE), items=array(obj(
         position=INT, username=STR, image=nullable(STR), score=NUM, link=URL))))
def get_board(board: str):
    if board not in leaderboards.BOARDS:
        error(404, f"No leaderboard {board!r}; one of: {', '.join(leaderboards.BOARDS)}")
    rows = leaderboards.entries(board)
    return jsonify(board=board, updatedAt=rows[0][4].isoformat(timespec="seconds") + "Z" if rows else None,
                   items=[{"position": pos, "username": name, "image": image, "score": score,
                           "link": absolute("catalog.list_models", username=name)}
                          for pos, name, image, score, _ in rows])
