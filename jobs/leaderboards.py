"""Leaderboard refresh, and the popular tags the catalog page shows."""
import dramatiq

from jobs.broker import logs_result
from models_db import catalog_queries, leaderboards


@dramatiq.actor(queue_name="default", max_retries=3, time_limit=10 * 60 * 1000)
@logs_result
def refresh_leaderboards() -> dict:
    return {board: leaderboards.refresh(board) for board in leaderboards.BOARDS}


@dramatiq.actor(queue_name="default", max_retries=3)
@logs_result
def refresh_popular_tags() -> dict:
    return {"tags": catalog_queries.refresh_popular_tags()}
