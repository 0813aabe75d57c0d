"""A run's batch parameters are stored once per distinct set (generation_params), not in every job row."""
from playhouse.migrate import SchemaMigrator, migrate

from models_db import generation


def up(db):
    db.create_tables([generation.GenerationParams], safe=True)
    jobs, params = generation.GenerationJob._meta.table_name, generation.GenerationParams._meta.table_name
    if "params_json" in {c.name for c in db.get_columns(jobs)}:
        db.execute_sql(f'INSERT INTO "{params}" (run_id, signature, params_json) '
                       f'SELECT run_id, signature, MIN(params_json) FROM "{jobs}" GROUP BY run_id, signature')
        migrate(SchemaMigrator.from_database(db.obj).drop_column(jobs, "params_json"))
