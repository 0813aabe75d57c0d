"""Leaderboard refresh."""
import dramatiq

from jobs.broker import logs_result
from models_db import leaderboards


@dramatiq.actor(queue_name="default", max_retries=3, time_limit=10 * 60 * 1000)
@logs_result
def refresh_leaderboards() -> dict:
    return {board: leaderboards.refresh(board) for board in leaderboards.BOARDS}
