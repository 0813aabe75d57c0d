"""Browser log-ins as rows (revocable sessions and remember-me tokens)."""
from models_db import accounts


def up(db):
    db.create_tables([accounts.LoginSession])
