"""``pdplan validate``: predicted versus published measurements."""

from __future__ import annotations

import click

from planner.cli.options import (
    catalog_of,
    emit_json,
    json_option,
)


@click.command()
@click.option("--set", "dataset",
              type=click.Choice(("measurements", "offline-grid", "kernels", "pass-grid", "serving",
                                 "deepseek")),
              default="measurements", show_default=True,
              help="Validation set: the curated measurements (the overhead fit uses them), the "
                   "rest of the TensorRT-LLM offline grids (out of sample), held-out silicon "
                   "kernel timings (GEMM, attention, MoE; out of sample), whole passes summed "
                   "from silicon kernel timings (the vLLM tables out of sample), published "
                   "serving runs, or DeepSeek-class runs with data-parallel attention and wide "
                   "expert parallelism (out of sample).")
@click.option("--fit", "fit", is_flag=True,
              help="Refit the per-iteration engine overhead (the step model's one fitted constant) "
                   "on the measurements and print it with its bounds (takes ~10 s).")
@click.option("--profile", "profile", metavar="FILE",
              help="A calibration profile: its own benchmark results (the files it names), "
                   "predicted with and without it.")
@json_option
@click.pass_context
def validate(ctx, dataset, fit, profile, as_json):
    """Predicted versus published measurements, with the relative error of each row."""
    from planner import render
    from planner import validate as validation
    from planner.progress import Progress

    if fit:
        with Progress("fitting the per-iteration overhead"):
            res = validation.fit_overhead(catalog_of(ctx))
        if as_json:
            emit_json(res)
            return
        con = render.stdout_console()
        lo, hi = res["bounds_s"]
        con.print(f"per-iteration overhead fitted on {res['rows']} rows: {res['overhead_s'] * 1e3:.3f} ms "
                  f"(bounds {lo * 1e3:g}-{hi * 1e3:g} ms; loss {res['loss_at_catalog']:.4f} at the "
                  f"catalog's {res['catalog_overhead_s'] * 1e3:.3f} ms -> {res['loss']:.4f}, group-balanced "
                  "mean |log(predicted/measured)|)")
        return
    with Progress(f"validating {profile or dataset}"):
        if profile:
            report = validation.run_profile(catalog_of(ctx), profile)
        else:
            report = validation.run(catalog_of(ctx), dataset=dataset)
    if as_json:
        emit_json(render.validate_document(report))
        return
    render.show_validate(render.stdout_console(), report)
