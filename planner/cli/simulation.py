"""``pdplan simulate`` (the discrete-event check of a deployment) and ``pdplan timeline`` (the interference picture)."""

from __future__ import annotations

import click

from planner import units
from planner.cli.options import (
    APPROACHES,
    KV_DTYPES,
    PROFILE_FORCE,
    WEIGHT_DTYPES,
    Whole,
    _duration,
    _size,
    build_deployment,
    build_inputs,
    catalog_of,
    common_options,
    complete_ids,
    deployment_options,
    emit_json,
    fail,
    json_option,
    resolve_dtypes,
    resolve_gpu,
    resolve_model,
)
from planner.cli.planning import _load_plan_file


@click.command()
@click.argument("plan_file", metavar="[PLAN]", required=False)
@common_options
@deployment_options
@click.option("--requests", type=Whole(1, units.MAX_SIM_REQUESTS), default=20000, show_default=True,
              help="Requests to simulate.")
@click.option("--seed", type=Whole(0, units.MAX_SEED), default=0, show_default=True,
              help="Random seed of the arrivals and lengths.")
@PROFILE_FORCE
@click.pass_context
def simulate(ctx, plan_file, as_json, requests, seed, **opts):
    """Discrete-event check of a deployment (a plan file or estimate's options): analytic and
    simulated metrics side by side.

    \b
    Examples:
      pdplan simulate --approach unified --replicas 4xtp8 --qps 20
      pdplan simulate --prefill 6xtp4 --decode 2xtp8 --qps 20 --requests 5000
    """
    from planner import api, render

    if plan_file is not None:
        inputs, dep = _load_plan_file(plan_file, opts)
    else:
        inputs = build_inputs(ctx, opts)
        dep = build_deployment(ctx, inputs, opts)
    plan = api.estimate(inputs, dep)
    from planner.progress import Progress
    from planner.sim import simulate as run_simulation

    with Progress(f"simulating {requests:,} requests"):
        sim = run_simulation(inputs, dep, requests, seed)
    if as_json:
        emit_json({"plan": render.plan_document(plan),
                   "simulation": render.simulation_document(sim, seed, requests)})
        return
    con = render.stdout_console()
    render.print_assumed(con, inputs.assumed)
    render.show_plan(con, plan, title="simulate")
    render.show_simulation(con, plan, sim, requests)



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
    from planner import render
    from planner import timeline as tlm

    real = any(v is not None for v in (model, gpu, tp, dtype, kv_dtype))
    if tick is not None and not real:
        fail("--tick: only in real time (with --model, --gpu or --tp)")
    clock, info, assumed = tlm.TokenClock(), {}, []
    if real:
        from planner import api
        from planner.errors import DoesNotFitError
        from planner.perf import build_step_model
        from planner.serving.common import Pool

        cat = catalog_of(ctx)
        spec = resolve_model(cat, {"model": model}, assumed)
        g = cat.gpu(resolve_gpu(cat, {"gpu": gpu}, assumed), "--gpu")
        dtype, kv_dtype = resolve_dtypes(spec, {"dtype": dtype, "kv_dtype": kv_dtype}, assumed)
        if tp is None:
            tp = api.smallest_fitting_tp(cat, spec, g, dtype, kv_dtype)
            assumed.append(f"tp {tp}")
        sm = build_step_model(cat, spec, g, tp, 1, dtype=dtype, kv_dtype=kv_dtype)
        try:
            sm.require_fit()
        except DoesNotFitError as exc:
            raise DoesNotFitError(f"--tp: {exc}") from None
        link, streams = None, 1
        if approach == "disaggregated":
            link, streams, where = api.kv_link_for(cat, g, g, Pool("prefill", g.id, 1, tp),
                                                   Pool("decode", g.id, 1, tp), None)
            info["link"] = f"{link.id} ({where}, {streams} streams, overlapped with the prefill)"
        clock = tlm.StepClock(sm, link, streams, spec.kv_bytes_per_token(kv_dtype))
        info.update(model=spec.id, gpu=g.id, tp=tp, dtype=dtype, kv_dtype=kv_dtype)
    chunk = _size(chunk_size, "--chunk-size")
    if approach == "chunked" and chunk is None:
        chunk = tlm.DEFAULT_CHUNK_REAL if real else tlm.DEFAULT_CHUNK_ABSTRACT
        assumed.append(f"chunk {chunk}")
    reqs = None
    if requests:
        reqs = []
        for text in requests:
            prompt, out, arrival = tlm.parse_request(text, real)
            reqs.append(tlm.Request(prompt, out, arrival or 0.0))
    tl = tlm.build(approach, reqs, clock, chunk, tick=_duration(tick, "--tick"), info=info)
    if not requests:
        def at(a: float) -> str:
            return f"{a * 1e3:.1f}ms" if a and real else f"{a:g}"

        assumed.append("requests " + " and ".join(f"{r.prompt}:{r.output}@{at(r.arrival)}"
                                                  for r in tl.requests))
    if as_json:
        doc = render.timeline_document(tl)
        if assumed:
            doc["assumed"] = assumed
        emit_json(doc)
        return
    con = render.stdout_console()
    render.print_assumed(con, assumed)
    render.show_timeline(con, tl)
