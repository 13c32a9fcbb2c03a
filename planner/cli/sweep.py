"""``pdplan whatif``: how the recommendation moves along one or two axes."""

from __future__ import annotations

import click

from planner.cli.day import day_options
from planner.cli.options import (
    catalog_of,
    common_options,
    emit_json,
    fail,
    search_options,
    warn_all,
)


@click.command()
@common_options
@search_options
@click.option("--vary", "vary", multiple=True, metavar="AXIS=v1,v2,...",
              help="Axis to vary (qps, concurrency, isl, osl, ttft-slo, tpot-slo, gpu, model, "
                   "engine, prefix-tokens, prefix-hit-rate); once for a "
                   "table, twice for a grid of winning approaches.")
@click.option("--plot", is_flag=True, help="Draw TTFT and TPOT against the axis in the terminal.")
@click.option("--plot-file", "plot_file", metavar="FILE.png|FILE.svg",
              help="Write the same plot as an image (needs pip install '.[plot]').")
@click.option("--force", is_flag=True, help="Overwrite the --plot-file if it exists; apply a "
                                            "--profile fitted on another model or GPU.")
@day_options
@click.pass_context
def whatif(ctx, as_json, approach, max_gpus, objective, vary, plot, plot_file, force, **opts):
    """How the recommendation moves with traffic, prompt length, SLOs, GPU or model.

    \b
    Examples:
      pdplan whatif --vary qps=10,20,40,80 --ttft-slo 500ms
      pdplan whatif --vary qps=5,20,80 --vary isl=512,2048,8192 --ttft-slo 1s
      pdplan whatif --vary peak=60,120,240 --load-profile diurnal:peak=120,trough=30
    """
    from planner import api, render
    from planner.cli import day as day_cli
    from planner.inputs import approaches_of, parse_vary, whatif_cells
    from planner.progress import Progress

    axes = parse_vary(vary)
    if any(a == "peak" for a, _ in axes) or opts.get("load_profile") is not None:
        return day_cli.whatif(ctx, axes, opts, as_json=as_json, approach=approach, max_gpus=max_gpus,
                              objective=objective, plot=plot or bool(plot_file), force=force)
    day_cli.reject_without_profile(opts)
    if plot_file:
        from planner.render.charts import plot_output

        plot_out = plot_output(plot_file, force)[1]
    if len(axes) == 2 and (plot or plot_file):
        fail("--plot/--plot-file: only with one --vary axis")
    said: list[str] = []
    cells, assumed = whatif_cells(catalog_of(ctx), opts, axes, force=force, warnings=said)
    warn_all(said)
    with Progress("what-if", total=len(cells)) as progress:
        rows = api.whatif(cells, approaches_of(approach), max_gpus, objective, on_cell=progress.update)
    if plot_file:
        from planner.render.charts import whatif_plot

        try:
            whatif_plot(rows, axes[0][0], plot_file, force=force, output=plot_out)
            plot_out.commit()
        finally:
            plot_out.discard()
    if as_json:
        emit_json(render.whatif_document(rows, [a for a, _ in axes]))
        return
    con = render.stdout_console()
    render.print_assumed(con, assumed)
    render.show_whatif(con, rows, [a for a, _ in axes])
    if plot:
        render.show_whatif_plot(con, rows, axes[0][0])
    if plot_file:
        con.print(f"wrote {plot_file}")
