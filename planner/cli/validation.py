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
    from planner import api, render
    from planner.progress import Progress

    if fit:
        with Progress("fitting the per-iteration overhead"):
            res = api.fit_overhead(catalog_of(ctx))
        if as_json:
            emit_json(res)
            return
        render.show_overhead_fit(render.stdout_console(), res)
        return
    with Progress(f"validating {profile or dataset}"):
        report = api.validate(catalog_of(ctx), dataset=dataset, profile=profile)
    if as_json:
        emit_json(render.validate_document(report))
        return
    render.show_validate(render.stdout_console(), report)
