"""Indexes for filtered model listings (type, and base model of published versions)."""


def up(db):
    db.execute_sql("CREATE INDEX IF NOT EXISTS model_status_type_published ON model (status, type, published_at, id)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS model_version_model_status_base "
                   "ON model_version (model_id, status, base_model)")
