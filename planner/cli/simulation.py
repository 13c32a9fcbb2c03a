"""``pdplan simulate`` (the discrete-event check of a deployment) and ``pdplan timeline`` (the
interference picture)."""

from __future__ import annotations

import click

from planner import units
from planner.cli.day import profile_options
from planner.cli.options import (
    APPROACHES,
    KV_DTYPES,
    PROFILE_FORCE,
    WEIGHT_DTYPES,
    Whole,
    catalog_dir_of,
    catalog_of,
    common_options,
    complete_ids,
    deployment_options,
    emit_json,
    inputs_of,
    json_option,
)


@click.command()
@click.argument("plan_file", metavar="[PLAN]", required=False)
@common_options
@deployment_options
@click.option("--requests", type=Whole(1, units.MAX_SIM_REQUESTS), default=20000, show_default=True,
              help="Requests to simulate (with --load-profile: counted over the day; lag windows whole).")
@click.option("--seed", type=Whole(0, units.MAX_SEED), default=0, show_default=True,
              help="Random seed of the arrivals and lengths.")
@PROFILE_FORCE
@profile_options
@click.pass_context
def simulate(ctx, plan_file, as_json, requests, seed, **opts):
    """Discrete-event check of a deployment (a plan file or estimate's options): analytic and
    simulated metrics side by side.

    \b
    Examples:
      pdplan simulate --approach unified --replicas 4xtp8 --qps 20
      pdplan simulate --prefill 6xtp4 --decode 2xtp8 --qps 20 --requests 5000
      pdplan simulate plan.yaml --load-profile diurnal:peak=120,trough=30,peak_hour=14
    """
    from planner import api, render
    from planner.cli import day as day_cli
    from planner.inputs import build_deployment, load_plan_file
    from planner.progress import Progress

    if opts.get("load_profile") is not None:
        return day_cli.simulate(ctx, plan_file, opts, as_json=as_json, requests=requests, seed=seed)
    day_cli.reject_without_profile(opts)

    if plan_file is not None:
        inputs, dep = load_plan_file(plan_file, opts, catalog_dir_of(ctx))
    else:
        inputs = inputs_of(ctx, opts)
        dep = build_deployment(inputs, opts)
    with Progress(f"simulating {requests:,} requests"):
        run = api.simulate(inputs, dep, requests, seed)
    if as_json:
        emit_json({"plan": render.plan_document(run.plan),
                   "simulation": render.simulation_document(run.result, seed, requests)})
        return
    con = render.stdout_console()
    render.print_assumed(con, inputs.assumed)
    render.show_plan(con, run.plan, title="simulate")
    render.show_simulation(con, run.plan, run.result, requests)


@click.command()
@click.option("--approach", type=click.Choice(APPROACHES), default="unified", show_default=True,
              help="Serving policy to draw.")
@click.option("--chunk-size", "chunk_size", metavar="N",
              help="Chunked: prompt tokens per iteration (the running decodes ride along) "
                   "[default: 2; 2048 in real time].")
@click.option("--request", "requests", multiple=True, metavar="LEN[:OUT[@ARRIVAL]]",
              help="A request: prompt tokens, output tokens [default: 8] and arrival (ticks; a "
                   "duration such as 150ms in real time) [default: 0]. Repeat it, e.g. --request 2 "
                   "--request 6. Default: a short request (2:12, real time 512:32) already decoding "
                   "when a long one (8:4, real time 8192:4) arrives.")
@click.option("--model", metavar="NAME|config.json", shell_complete=complete_ids("models"),
              help="Draw in real time (ms) for this model; with --gpu/--tp "
                   "[default: abstract ticks; llama-3.1-70b once --gpu or --tp is given].")
@click.option("--gpu", metavar="NAME", shell_complete=complete_ids("gpus"),
              help="GPU of the real-time picture [default: h100-sxm].")
@click.option("--tp", type=Whole(1, 1024),
              help="Tensor parallelism of the real-time picture [default: the smallest that fits].")
@click.option("--dtype", type=click.Choice(WEIGHT_DTYPES),
              help="Weight dtype of the real-time picture [default: the model's].")
@click.option("--kv-dtype", "kv_dtype", type=click.Choice(KV_DTYPES),
              help="KV-cache dtype of the real-time picture [default: the model's].")
@click.option("--tick", metavar="DURATION",
              help="Real time: what one column stands for, e.g. 5ms [default: the timeline fits "
                   "80 columns].")
@json_option
@click.pass_context
def timeline(ctx, approach, chunk_size, requests, model, gpu, tp, dtype, kv_dtype, tick, as_json):
    """The interference picture: a few requests scheduled iteration by iteration, drawn tick by
    tick (rows = requests, columns = ticks): P prefill, D decode, x stalled (decoding but no
    token this tick), - waiting, . not arrived or finished.

    Without a model one tick is one token processed (a prefill of L tokens takes L ticks, a
    decode iteration of the batch one tick, a chunked iteration of c prompt tokens c + 1 ticks).
    With --model/--gpu/--tp the same schedule runs on the roofline step times and columns are
    milliseconds.

    \b
    Examples:
      pdplan timeline --approach unified
      pdplan timeline --approach chunked --chunk-size 2
      pdplan timeline --approach disaggregated --request 2:12 --request 8:4@3
      pdplan timeline --approach chunked --model llama-3.1-70b --gpu h100-sxm --tp 8
    """
    from planner import api, render

    tl, assumed = api.timeline(catalog_of(ctx), approach, chunk_size=chunk_size, requests=requests,
                               model=model, gpu=gpu, tp=tp, dtype=dtype, kv_dtype=kv_dtype, tick=tick)
    if as_json:
        doc = render.timeline_document(tl)
        if assumed:
            doc["assumed"] = assumed
        emit_json(doc)
        return
    con = render.stdout_console()
    render.print_assumed(con, assumed)
    render.show_timeline(con, tl)
