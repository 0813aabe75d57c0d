"""The `atelier` command for operators and scripts."""
from __future__ import annotations

import click

from cli import accounts, catalog, database, generation, images, jobs, search, services


@click.group()
def main():
    """Atelier: self-hosted model hub and batch image generation."""


for module in (accounts, catalog, database, generation, images, jobs, search, services):
    for command in module.COMMANDS:
        main.add_command(command)
