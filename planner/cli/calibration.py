"""``pdplan calibrate``: fit pdplan's constants to your own benchmark results."""

from __future__ import annotations

import click

from planner.cli.options import (
    FORMAT_KEY,
    KV_DTYPES,
    WEIGHT_DTYPES,
    Whole,
    catalog_of,
    complete_ids,
    emit_json,
    json_flag,
)


@click.command()
@click.argument("results", nargs=-1, required=True, metavar="RESULTS...")
@click.option("--model", "model", metavar="NAME", shell_complete=complete_ids("models"),
              help="Model id from the catalog [default: the one the results name].")
@click.option("--gpu", "gpu", metavar="NAME", shell_complete=complete_ids("gpus"),
              help="GPU the results were measured on [default: a CSV's gpu column].")
@click.option("--tp", type=Whole(1, 1024), help="Tensor parallelism of the measured instance [default: 1].")
@click.option("--replicas", type=Whole(1, 100_000), default=1, show_default=True,
              help="Instances behind the benchmarked endpoint.")
@click.option("--engine", "engine", metavar="NAME", shell_complete=complete_ids("engines"),
              help="Engine that served the runs: vllm, sglang, trtllm [default: the results', else vllm].")
@click.option("--dtype", type=click.Choice(WEIGHT_DTYPES), help="Weight dtype [default: the model's].")
@click.option("--kv-dtype", "kv_dtype", type=click.Choice(KV_DTYPES), help="KV-cache dtype [default: the model's].")
@click.option("--format", "fmt", type=click.Choice(("vllm", "sglang", "aiperf", "genai-perf", "guidellm", "csv")),
              help="Result file format [default: detected from the content].")
@click.option("--fit", "fit_names", metavar="NAMES",
              help="Constants to fit, comma-separated: compute, memory, request_ms, overhead_ms, comm "
                   "[default: every one the data can pin].")
@click.option("--no-loo", "no_loo", is_flag=True, help="Skip the leave-one-out refits (faster; no ranges).")
@click.option("-o", "--output", metavar="FILE", help="Write the profile (YAML) to FILE.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@json_flag
@click.pass_context
def calibrate(ctx, results, model, gpu, tp, replicas, engine, dtype, kv_dtype, fmt, fit_names, no_loo,
              output, force, as_json):
    """Fit pdplan's constants to your own benchmark results and write a profile for --profile.

    \b
    Examples:
      pdplan calibrate run_qps*.json --gpu h100-sxm --model llama-3.1-8b -o profile.yaml
      pdplan estimate --approach chunked --replicas 1xtp1 --qps 6 --profile profile.yaml
    """
    from planner import api, render
    from planner.files import Outputs
    from planner.progress import Progress

    names = api.fit_constants(fit_names or None)  # checked before anything is read
    if as_json:  # --json alone here (no json_option): tell the progress bar and the error path
        ctx.meta[FORMAT_KEY] = "json"
    outs = Outputs()  # checked now, before the fit; written at the end
    out_file = outs.add(output, "-o", force) if output is not None else None
    with Progress(f"calibrating on {len(results)} result file(s)"):
        report, profile, res = api.calibrate(catalog_of(ctx), list(results), model=model, gpu=gpu, tp=tp,
                                             replicas=replicas, engine=engine, dtype=dtype,
                                             kv_dtype=kv_dtype, fmt=fmt, constants=names,
                                             loo=not no_loo)
    doc = render.calibration_document(report, profile)
    try:
        if out_file is not None:
            out_file.stage(render.to_yaml(profile.document()))
        outs.commit()
    finally:
        outs.discard()
    if as_json:
        emit_json(doc)
        return
    render.show_calibration(render.stdout_console(), report, profile, output)
