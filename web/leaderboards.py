"""GET /api/v1/leaderboards/:board — ranked creators (creators-day|week|month|year|alltime)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from models_db import leaderboards
from web.api import absolute, error

bp = Blueprint("leaderboards", __name__)


@bp.get("/api/v1/leaderboards/<board>")
def get_board(board: str):
    if board not in leaderboards.BOARDS:
        error(404, f"No leaderboard {board!r}; one of: {', '.join(leaderboards.BOARDS)}")
    rows = leaderboards.entries(board)
    return jsonify(board=board, updatedAt=rows[0][4].isoformat(timespec="seconds") + "Z" if rows else None,
                   items=[{"position": pos, "username": name, "image": image, "score": score,
                           "link": absolute("catalog.list_models", username=name)}
                          for pos, name, image, score, _ in rows])
