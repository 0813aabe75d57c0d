"""atelier search reindex | status | synonyms list|add|remove"""
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


@search_group.group("synonyms")
def synonyms_group():
    """Words that mean the same to a searcher (a query word matches any word of its group)."""


@synonyms_group.command("list")
def synonyms_list():
    """Every group, one a line."""
    from cli.common import open_db
    from models_db.search import synonyms
    open_db()
    for group in synonyms.groups():
        click.echo(", ".join(group))


@synonyms_group.command("add")
@click.argument("terms", nargs=-1, required=True)
def synonyms_add(terms):
    """Make TERMS synonyms of one another (joining the groups any of them is in already). A phrase in
    quotes is one term: atelier search synonyms add scifi "science fiction"."""
    from cli.common import open_db
    from models_db.search import synonyms
    open_db()
    try:
        click.echo(", ".join(synonyms.add(list(terms))))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


@synonyms_group.command("remove")
@click.argument("term")
def synonyms_remove(term):
    """Take TERM out of its group."""
    from cli.common import open_db
    from models_db.search import synonyms
    open_db()
    if not synonyms.remove(term):
        raise click.ClickException(f"{term!r} is in no synonym group")
    click.echo(f"removed {term!r}")
