"""atelier search reindex | status"""
import click


@click.group("search")
def search_group():
    """The search index."""


@search_group.command("reindex")
@click.option("--backend", type=click.Choice(["sqlite", "postgres", "solr"]), default=None,
              help="Default: the configured one.")
@click.option("--batch", default=500, show_default=True)
def reindex(backend, batch):
    """Rebuild the whole index from the catalog."""
    from tqdm import tqdm

    from cli.common import open_db
    from models_db import search
    from models_db.catalog import Model
    from models_db.search import documents
    open_db()
    index = search.get_backend(backend)
    index.clear()
    total = Model.select().count()
    indexed = 0
    with tqdm(total=total, unit="model", desc=f"indexing ({index.name})", disable=None) as bar:
        for ids in documents.all_model_ids(batch):
            indexed += search.index_models(ids, index)[0]
            bar.update(len(ids))
    click.echo(f"indexed {indexed} model(s) into {index.name}")


@search_group.command("status")
def status():
    """Pending changes and index size."""
    from cli.common import open_db
    from models_db import search
    from models_db.search import sync
    open_db()
    index = search.get_backend()
    click.echo(f"backend: {index.name}\ndocuments: {index.count()}\npending: {sync.pending_count()}")


COMMANDS = [search_group]
