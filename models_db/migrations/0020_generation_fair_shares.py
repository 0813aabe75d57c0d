"""Generation limits and fair shares: each parameter set's cost per image (for the daily cost budget), and an
index to find queued and running jobs (the fair choice and the per-user counts)."""
import json

from peewee import DoubleField

from models_db import generation
from models_db.migrations import add_column


def up(db):
    from models_db.quotas import params_cost
    params, jobs = generation.GenerationParams, generation.GenerationJob
    add_column(db, params._meta.table_name, "cost", DoubleField(default=0.0))
    for row_id, text in params.select(params.id, params.params_json).where(params.cost == 0).tuples().iterator():
        params.update(cost=params_cost(json.loads(text))).where(params.id == row_id).execute()
    db.execute_sql(f'CREATE INDEX IF NOT EXISTS "{jobs._meta.table_name}_state_run_id" '
                   f'ON "{jobs._meta.table_name}" (state, run_id)')
