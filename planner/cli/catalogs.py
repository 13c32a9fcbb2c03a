"""``pdplan catalog``: list the catalog or show one entry."""

from __future__ import annotations

import click

from planner.cli.options import (
    catalog_of,
    complete_ids,
    emit_json,
    fail,
    json_option,
)
from planner.types import CATALOG_TABLES


@click.command()
@click.argument("what", required=False, type=click.Choice(CATALOG_TABLES + ("show",)))
@click.argument("name", required=False, shell_complete=complete_ids("all"))
@json_option
@click.pass_context
def catalog(ctx, what, name, as_json):
    """List the catalog (models, gpus, links; all three by default) or show one entry.

    \b
    Examples:
      pdplan catalog
      pdplan catalog gpus --json
      pdplan catalog show h100-sxm
    """
    from planner import api, render

    cat = catalog_of(ctx)
    if what == "show":
        if not name:
            fail("catalog show: missing NAME; e.g. pdplan catalog show h100-sxm")
        kind, entry = api.catalog_entry(cat, name)  # an id, or a Hugging Face config.json
        if as_json:
            emit_json(render.entry_document(kind, entry))
        else:
            render.show_entry(render.stdout_console(), kind, entry)
        return
    if name is not None:
        fail(f"catalog: unexpected argument {name!r}; to show one entry use `pdplan catalog show NAME`")
    tables = (what,) if what else CATALOG_TABLES
    if as_json:
        emit_json(render.catalog_document(cat, tables))
    else:
        render.show_catalog(render.stdout_console(), cat, tables)
