"""Persistence: peewee models per feature, migrations, blob storage, search backends."""
