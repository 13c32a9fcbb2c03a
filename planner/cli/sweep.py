"""``pdplan whatif``: how the recommendation moves along one or two axes."""

from __future__ import annotations

import math

import click

from planner import units
from planner.cli.options import (
    WHATIF_AXES,
    _approaches,
    _gpu_list,
    build_inputs,
    common_options,
    emit_json,
    fail,
    search_options,
)


def _parse_vary(ctx, specs) -> list:
    """``AXIS=v1,v2`` -> [(axis, [values as given])]."""
    from planner.errors import did_you_mean

    axes: list[tuple[str, list]] = []
    for spec in specs:
        axis, eq, vals = spec.partition("=")
        axis = axis.strip().lower()
        if not eq:
            fail(f"--vary: expected AXIS=v1,v2,..., got {spec!r}")
        if axis not in WHATIF_AXES:
            fail(f"--vary: unknown axis {axis!r}{did_you_mean(axis, WHATIF_AXES)}; valid: {', '.join(WHATIF_AXES)}")
        values = [v.strip() for v in vals.split(",") if v.strip()]
        if not values:
            fail(f"--vary: {axis}: no values given")
        if len(values) > units.MAX_WHATIF_VALUES:
            fail(f"--vary: {axis}: at most {units.MAX_WHATIF_VALUES} values, got {len(values)}")
        if any(a == axis for a, _ in axes):
            fail(f"--vary: {axis} given twice")
        axes.append((axis, values))
    if not axes:
        fail("--vary: missing; e.g. --vary qps=10,20,40,80")
    if len(axes) > 2:
        fail("--vary: at most two axes")
    cells = math.prod(len(v) for _, v in axes)
    if cells > units.MAX_WHATIF_CELLS:
        fail(f"--vary: {' x '.join(str(len(v)) for _, v in axes)} = {cells:,} cells; at most "
             f"{units.MAX_WHATIF_CELLS:,} (each cell is a recommendation)")
    return axes


def _apply(opts: dict, axis: str, value: str) -> dict:
    o = dict(opts)
    key = {"ttft-slo": "ttft_slo", "tpot-slo": "tpot_slo", "prefix-tokens": "prefix_tokens",
           "prefix-hit-rate": "prefix_hit_rate"}.get(axis, axis)
    if axis == "qps":
        o["qps"] = units.parse_number(value, "--vary: qps", units.MIN_QPS, units.MAX_QPS)
        o["concurrency"] = None
    elif axis == "concurrency":
        o["concurrency"] = units.parse_count(value, "--vary: concurrency", 1, 1_000_000,
                                             "a whole number of clients")
        o["qps"] = None
    elif axis in ("isl", "osl"):
        o[key] = value
        o[f"{key}_dist"] = None
    else:
        o[key] = value
    return o


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
@click.pass_context
def whatif(ctx, as_json, approach, max_gpus, objective, vary, plot, plot_file, force, **opts):
    """How the recommendation moves with traffic, prompt length, SLOs, GPU or model.

    \b
    Examples:
      pdplan whatif --vary qps=10,20,40,80 --ttft-slo 500ms
      pdplan whatif --vary qps=5,20,80 --vary isl=512,2048,8192 --ttft-slo 1s
    """
    from planner import render

    axes = _parse_vary(ctx, vary)
    if plot_file:
        from planner.render.charts import plot_output

        plot_out = plot_output(plot_file, force)[1]
    if len(axes) == 2 and (plot or plot_file):
        fail("--plot/--plot-file: only with one --vary axis")
    if (opts.get("qps") is None and opts.get("concurrency") is None
            and not any(a in ("qps", "concurrency") for a, _ in axes)):
        fail("--qps: missing; give the request rate (or --concurrency) or vary it with --vary qps=...")
    combos = [[(axes[0][0], v)] for v in axes[0][1]]
    if len(axes) == 2:
        combos = [[(axes[0][0], a), (axes[1][0], b)] for a in axes[0][1] for b in axes[1][1]]
    from planner import api
    from planner.progress import Progress

    cells, assumed = [], None
    for combo in combos:
        o = dict(opts)
        for axis, value in combo:
            o = _apply(o, axis, value)
        gpus = _gpu_list(ctx, o)
        o["force"] = force
        inputs = build_inputs(ctx, o)
        if assumed is None:  # the defaults, less the axes being varied
            assumed = [a for a in inputs.assumed
                       if not any(a.lower().startswith(ax.split("-")[0]) for ax, _ in axes)]
        cells.append((dict(combo), inputs, gpus or [inputs.gpu]))
    with Progress("what-if", total=len(cells)) as progress:
        rows = api.whatif(cells, _approaches(approach), max_gpus, objective, on_cell=progress.update)
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
    render.print_assumed(con, assumed or [])
    render.show_whatif(con, rows, [a for a, _ in axes])
    if plot:
        render.show_whatif_plot(con, rows, axes[0][0])
    if plot_file:
        con.print(f"wrote {plot_file}")
