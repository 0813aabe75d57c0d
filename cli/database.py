"""atelier db upgrade|status"""
import click


@click.group("db")
def db_group():
    """Database schema migrations."""


@db_group.command("upgrade")
def upgrade():
    """Apply pending migrations."""
    from models_db.migrations import upgrade as run
    ran = run(echo=click.echo)
    click.echo(f"database is up to date ({len(ran)} migration(s) applied)")


@db_group.command("status")
def status():
    """List migrations and whether each is applied."""
    from models_db.migrations import applied, available
    done = applied()
    for name in available():
        click.echo(f"{'applied' if name in done else 'pending'}  {name}")


COMMANDS = [db_group]
