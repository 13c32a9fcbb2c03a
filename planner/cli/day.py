"""The day's part of the command line: the options ``recommend``, ``simulate`` and ``whatif``
take for a load profile, and the bodies of those commands when one is given. Each body makes
one call to :mod:`planner.api` and renders what it returns (:mod:`planner.render.day`);
:mod:`planner.cli` (planning, simulation, sweep) calls them. Only click is imported at module level (``pdplan --help`` stays
free of numpy).
"""

from __future__ import annotations

import click

from planner.cli.options import _stack

PROFILE_HELP = ("Plan for a day: a table of periods (CSV/JSONL: a time and qps or concurrency, optionally "
                "isl, osl, burstiness), a request trace with timestamps (e.g. the Azure LLM inference "
                "trace's TIMESTAMP,ContextTokens,GeneratedTokens) binned into periods, or a shape: "
                "diurnal:peak=120,trough=30,peak_hour=14 or constant:qps=50.")
SCALING_MODES = ("reactive", "scheduled")
# the options a day plan takes and the flags that name them
DAY_KEYS = {"scale_up_time": "--scale-up-time", "min_instances": "--min-instances",
            "max_instances": "--max-instances", "allow_approach_change": "--allow-approach-change",
            "scaling": "--scaling"}
PROFILE_KEYS = {"load_profile": "--load-profile", "profile_period": "--profile-period"}
DEFAULT_SCALE_UP = "5m"


def profile_options(f):
    """--load-profile and --profile-period (simulate takes these alone)."""
    return _stack(
        click.option("--load-profile", "load_profile", metavar="FILE|SHAPE", help=PROFILE_HELP),
        click.option("--profile-period", "profile_period", metavar="DURATION",
                     help="Period a request trace is binned into, e.g. 15m [default: 1h; 5m for a trace "
                          "shorter than 2 h]."),
    )(f)


def day_options(f):
    """The load profile and the scaling constraints (recommend and whatif)."""
    return _stack(
        profile_options,
        click.option("--scale-up-time", "scale_up_time", metavar="DURATION",
                     help="Time a new instance takes to serve (weights load, warm-up), e.g. 5m "
                          f"[default: {DEFAULT_SCALE_UP}]; with --load-profile."),
        click.option("--min-instances", "min_instances", metavar="N|ROLE=N,...",
                     help="Fewest instances of every pool, or per pool (prefill=2,decode=1) [default: 1]; "
                          "with --load-profile."),
        click.option("--max-instances", "max_instances", metavar="N|ROLE=N,...",
                     help="Most instances of every pool, or per pool; with --load-profile."),
        click.option("--allow-approach-change", "allow_approach_change", is_flag=True, default=None,
                     help="Let the approach (and the pools' layout) change between periods [default: "
                          "one approach for the day, pools resized]; with --load-profile."),
        click.option("--scaling", "scaling", type=click.Choice(SCALING_MODES),
                     help="reactive: instances added as the load rises serve a scale-up time later; "
                          "scheduled: started a scale-up time ahead of their period (the profile is "
                          "known) [default: reactive]; with --load-profile."),
    )(f)


def reject_without_profile(opts: dict) -> None:
    """A day option without --load-profile: one error naming it."""
    from planner.cli.options import fail

    for key, flag in {**DAY_KEYS, "profile_period": "--profile-period"}.items():
        if opts.get(key) is not None:
            fail(f"{flag}: only with --load-profile (a plan for a day)")


def _pop(opts: dict, keys) -> dict:
    return {k: opts.pop(k, None) for k in keys}


def _profile_inputs(ctx, opts: dict, profile):
    """Inputs for a day: the command's model, GPU, engine, lengths and SLO; the rate is each
    period's (the busiest one's stands in the plan)."""
    from planner.cli.options import fail, inputs_of

    for key, flag in (("qps", "--qps"), ("concurrency", "--concurrency"), ("think_time", "--think-time")):
        if opts.get(key) is not None:
            fail(f"{flag}: not with --load-profile; the profile gives each period's "
                 + ("clients" if profile.closed else "rate"))
    if profile.trace is not None and opts.get("trace") is not None:
        fail("--trace: not with a trace profile, whose periods carry their own requests' lengths")
    if profile.closed:
        opts = dict(opts, concurrency=int(max(profile.load)))
        return inputs_of(ctx, opts, require_qps=False)
    return inputs_of(ctx, opts, require_qps=False, default_qps=float(max(profile.load)))


def plan_document_of(day) -> dict:
    """The busiest period's plan document with the day beside it (what -o writes)."""
    from planner import render
    from planner.render import day as day_render

    doc = render.plan_document(day.peak.plan)
    doc["day"] = day_render.day_document(day)
    return doc


def recommend(ctx, opts: dict, *, as_json: bool, approach: str, max_gpus: int, objective: str,
              output, force: bool, verify: bool, plot_file) -> None:
    """``pdplan recommend --load-profile ...``: the day's schedule."""
    from planner import api, render
    from planner.cli.options import catalog_of, emit_json, escape_markup, fail, plan_output
    from planner.files import Outputs
    from planner.inputs import approaches_of, day_scaling, gpu_list, with_confidence
    from planner.progress import Progress
    from planner.render import day as day_render

    if verify:
        fail("--verify: not with --load-profile; simulate the day with pdplan simulate PLAN --load-profile ...")
    day_opts = _pop(opts, list(DAY_KEYS) + list(PROFILE_KEYS))
    gpus = gpu_list(catalog_of(ctx), opts)
    outs = Outputs()
    out_file, to_stdout = plan_output(output, force, as_json, outs)
    plot_out = None
    if plot_file:
        from planner.render.charts import plot_output

        plot_out = plot_output(plot_file, force, outs)[1]
    profile = api.load_profile(day_opts["load_profile"], day_opts.get("profile_period"))
    opts["force"] = force
    inputs = with_confidence(_profile_inputs(ctx, opts, profile), opts)
    scaling = day_scaling(day_opts, inputs.assumed)
    with Progress("planning the day: searches", total=None) as progress:
        day = api.plan_day(inputs, profile, gpus or [inputs.gpu], approaches_of(approach), max_gpus, objective,
                           scaling, on_search=progress.update)
    try:
        if plot_out is not None:
            day_render.day_plot(day, plot_file, output=plot_out)
        if out_file is not None:
            out_file.stage(render.to_yaml(plan_document_of(day)))
        outs.commit()
    finally:
        outs.discard()
    if to_stdout:
        render.print_assumed(render.stderr_console(), inputs.assumed)
        click.echo(render.to_yaml(plan_document_of(day)).rstrip("\n"))
        return
    if as_json:
        emit_json({"plan": plan_document_of(day)})
        return
    con = render.stdout_console()
    render.print_assumed(con, inputs.assumed)
    day_render.show_day(con, day)
    if output is not None:
        con.print(f"wrote {escape_markup(output)}")
    if plot_file:
        con.print(f"wrote {escape_markup(plot_file)}")


def simulate(ctx, plan_file, opts: dict, *, as_json: bool, requests: int, seed: int) -> None:
    """``pdplan simulate [PLAN] --load-profile ...``: the day through the simulator, with the
    plan's schedule (or its one deployment, or the options' deployment, held all day)."""
    from rich.markup import escape

    from planner import api, render
    from planner.cli.options import catalog_dir_of, emit_json
    from planner.inputs import build_deployment, day_schedule_of_plan, held_all_day
    from planner.progress import Progress
    from planner.render import day as day_render

    prof_opts = _pop(opts, list(PROFILE_KEYS))
    profile = api.load_profile(prof_opts["load_profile"], prof_opts.get("profile_period"))
    if plan_file is not None:
        _no_options_beside(opts)
        inputs, scaling, deps, specs = day_schedule_of_plan(plan_file, profile, catalog_dir_of(ctx))
    else:
        inputs = _profile_inputs(ctx, opts, profile)
        dep = build_deployment(inputs, opts)
        scaling, deps, specs = held_all_day(dep, profile)
    periods = api.evaluate_day(inputs, profile, deps, scaling, specs)
    with Progress("simulating the day: periods", total=profile.periods) as progress:
        sim = api.simulate_day(inputs, profile, deps, scaling, requests, seed, specs,
                               on_period=lambda k: progress.update(k + 1))
    if as_json:
        emit_json({"day_simulation": day_render.simulation_document(periods, sim)})
        return
    con = render.stdout_console()
    render.print_assumed(con, inputs.assumed)
    con.print(f"[bold]simulate[/]: {escape(inputs.model.id)} over {escape(profile.describe())}; "
              f"{scaling.mode} scaling, scale-up {scaling.scale_up_s:g} s")
    day_render.show_day_simulation(con, periods, sim, profile)


def _no_options_beside(opts: dict) -> None:
    """Only the day's options apply beside a PLAN file."""
    from planner.cli.options import fail

    extra = sorted(k for k, v in opts.items() if v is not None and v is not False)
    if extra:
        flag = "--" + extra[0].replace("_spec", "").replace("_", "-")
        fail(f"{flag}: not with a PLAN file; the plan fixes the deployment and inputs (with --load-profile "
             "only --requests, --seed and --json apply)")


def whatif(ctx, axes, opts: dict, *, as_json: bool, approach: str, max_gpus: int, objective: str,
           plot: bool = False, force: bool = False) -> None:
    """``pdplan whatif --vary peak=... --load-profile ...``: a day plan per peak."""
    from rich.markup import escape

    from planner import api, render
    from planner.cli.options import catalog_of, emit_json, fail
    from planner.inputs import approaches_of, day_scaling, gpu_list
    from planner.progress import Progress
    from planner.render import day as day_render
    from planner.units import MAX_QPS, MIN_QPS, parse_number

    if len(axes) != 1 or axes[0][0] != "peak":
        fail("--vary: with --load-profile, vary peak=... alone (one axis): e.g. --vary peak=60,120,240")
    if plot:
        fail("--plot/--plot-file: not with --vary peak (draw one day with recommend --load-profile --plot-file)")
    opts["force"] = force
    day_opts = _pop(opts, list(DAY_KEYS) + list(PROFILE_KEYS))
    if day_opts.get("load_profile") is None:
        fail("--vary: peak: needs --load-profile (the profile whose busiest period is set to each peak)")
    profile = api.load_profile(day_opts["load_profile"], day_opts.get("profile_period"))
    hi = 1_000_000 if profile.closed else MAX_QPS
    peaks = [(v, parse_number(v, "--vary: peak", MIN_QPS, hi, lo_open=False)) for v in axes[0][1]]
    gpus = gpu_list(catalog_of(ctx), opts)
    inputs = _profile_inputs(ctx, opts, profile)
    scaling = day_scaling(day_opts, inputs.assumed)
    assumed = [a for a in inputs.assumed if not a.startswith("qps")]
    with Progress("what-if: day plans", total=len(peaks)) as progress:
        rows = api.whatif_day(inputs, profile, peaks, gpus or [inputs.gpu], approaches_of(approach), max_gpus,
                              objective, scaling, on_cell=progress.update)
    if as_json:
        emit_json(day_render.whatif_day_document(rows))
        return
    con = render.stdout_console()
    render.print_assumed(con, assumed)
    con.print(f"[bold]whatif[/]: {escape(inputs.model.id)}, {escape(profile.describe())} with its "
              "busiest period at each peak")
    day_render.show_whatif_day(con, rows)


__all__ = ["day_options", "profile_options", "recommend", "reject_without_profile", "simulate", "whatif"]
