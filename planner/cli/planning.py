"""``pdplan estimate`` (one deployment's metrics), ``recommend`` (the search) and ``evaluate``
(a plan file re-evaluated)."""

from __future__ import annotations

import click

from planner import units
from planner.cli.day import day_options
from planner.cli.options import (
    FORMAT_KEY,
    PLAN_OUTPUT,
    QPS,
    Whole,
    catalog_dir_of,
    catalog_of,
    common_options,
    confidence_option,
    deployment_options,
    emit_error,
    emit_json,
    escape_markup,
    inputs_of,
    json_option,
    plan_output,
    search_options,
)


@click.command()
@common_options
@deployment_options
@PLAN_OUTPUT
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists; apply a --profile "
                                            "fitted on another model or GPU.")
@confidence_option
@click.pass_context
def estimate(ctx, as_json, output, **opts):
    """Metrics of one fixed deployment at a request rate, and the SLO check.

    \b
    Examples:
      pdplan estimate --approach unified --replicas 4xtp8 --qps 20
      pdplan estimate --approach chunked --replicas 4xtp8 --chunk-size 1024 --qps 20
      pdplan estimate --approach disaggregated --prefill 6xtp4 --decode 2xtp8 --qps 20
      pdplan estimate --approach unified --replicas 4xtp8 --qps 20 -o plan.yaml
    """
    from planner import api, render
    from planner.files import Outputs
    from planner.inputs import build_deployment, with_confidence

    outs = Outputs()  # checked now, before any work
    out_file, to_stdout = plan_output(output, bool(opts.get("force")), as_json, outs)
    inputs = with_confidence(inputs_of(ctx, opts), opts)
    plan = api.estimate(inputs, build_deployment(inputs, opts))
    if to_stdout:
        render.print_assumed(render.stderr_console(), inputs.assumed)
        click.echo(render.to_yaml(render.plan_document(plan)).rstrip("\n"))
        return
    if out_file is not None:
        try:
            out_file.stage(render.to_yaml(render.plan_document(plan)))
            outs.commit()
        finally:
            outs.discard()
    if as_json:
        emit_json({"plan": render.plan_document(plan)})
        return
    con = render.stdout_console()
    render.print_assumed(con, inputs.assumed)
    render.show_plan(con, plan)
    if output is not None:
        con.print(f"wrote {escape_markup(output)}")


@click.command()
@common_options
@search_options
@confidence_option
@PLAN_OUTPUT
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists; apply a --profile "
                                            "fitted on another model or GPU.")
@click.option("--verify", is_flag=True,
              help="Check the plan with the discrete-event simulator; where it falls short, add "
                   "instances until the simulator agrees (the plan says so).")
@click.option("--requests", type=Whole(100, units.MAX_SIM_REQUESTS), default=20000, show_default=True,
              help="Requests simulated by --verify.")
@click.option("--seed", type=Whole(0, units.MAX_SEED), default=0, show_default=True, help="Seed for --verify.")
@click.option("--plot-file", "plot_file", metavar="FILE.png|FILE.svg",
              help="Draw the Pareto front of GPUs against TPOT, or with --load-profile the load and GPUs "
                   "per pool over the day (needs pip install '.[plot]').")
@day_options
@click.pass_context
def recommend(ctx, as_json, approach, max_gpus, objective, output, force, verify, requests, seed,
              plot_file, **opts):
    """The approach, pool sizes and parallelism that meet the SLO with the fewest GPUs (or
    dollars), with the best plan of every other approach beside it.

    \b
    Examples:
      pdplan recommend --qps 80 --ttft-slo 200ms
      pdplan recommend --qps 20 --gpu h100-sxm,h200 --objective cost -o plan.yaml
      pdplan recommend --qps 80 --ttft-slo 200ms --verify
      pdplan recommend --qps 80 --ttft-slo 200ms --confidence 0.9
      pdplan recommend --load-profile diurnal:peak=120,trough=30,peak_hour=14 --ttft-slo 200ms
    """
    from planner import api, render
    from planner.cli import day as day_cli

    if opts.get("load_profile") is not None:
        return day_cli.recommend(ctx, opts, as_json=as_json, approach=approach, max_gpus=max_gpus,
                                 objective=objective, output=output, force=force, verify=verify,
                                 plot_file=plot_file)
    day_cli.reject_without_profile(opts)
    from planner.errors import NoFeasiblePlanError
    from planner.files import Outputs
    from planner.inputs import approaches_of, gpu_list, with_confidence
    from planner.progress import Progress

    gpus = gpu_list(catalog_of(ctx), opts)
    outs = Outputs()  # checked now, before any work; written together at the end
    out_file, to_stdout = plan_output(output, force, as_json, outs)
    if plot_file:
        from planner.render.charts import plot_output

        plot_out = plot_output(plot_file, force, outs)[1]
    opts["force"] = force
    inputs = with_confidence(inputs_of(ctx, opts), opts)
    try:
        with Progress(f"verifying: simulating {requests:,} requests", quiet=None if verify else True):
            rec = api.recommend(inputs, gpus, approaches_of(approach), max_gpus, objective,
                                verify=verify, requests=requests, seed=seed)
    except NoFeasiblePlanError as exc:
        if as_json:
            emit_error(ctx.meta.get(FORMAT_KEY, "json"), str(exc), 3,
                       nearest=[render.candidate_document(c) for c in exc.nearest])
            click.echo(f"Error: {str(exc).splitlines()[0]}", err=True)  # the one line, as without --json
            ctx.exit(3)
        raise
    try:
        if plot_file:
            from planner.render.charts import pareto_plot

            pareto_plot(rec, plot_file, force=force, output=plot_out)
        if out_file is not None:
            out_file.stage(render.to_yaml(render.plan_document(rec.plan)))
        outs.commit()
    finally:
        outs.discard()
    if to_stdout:  # the plan's YAML is stdout's one document; what was assumed goes to stderr
        render.print_assumed(render.stderr_console(), inputs.assumed)
        click.echo(render.to_yaml(render.plan_document(rec.plan)).rstrip("\n"))
        if plot_file:
            click.echo(f"wrote {plot_file}", err=True)
        return
    if as_json:
        emit_json(render.recommend_document(rec))
        return
    con = render.stdout_console()
    render.print_assumed(con, inputs.assumed)
    render.show_recommendation(con, rec)
    if output is not None:
        con.print(f"wrote {escape_markup(output)}")
    if plot_file:
        con.print(f"wrote {plot_file}")


@click.command()
@click.argument("plan_file", metavar="PLAN")
@click.option("--qps", type=QPS, help="Re-evaluate at this request rate instead of the plan's.")
@click.option("--check", is_flag=True,
              help="Exit 3, with one Error: line saying which target, when the plan misses its "
                   "SLO at its rate (or --qps): for CI and scripts.")
@json_option
@click.pass_context
def evaluate(ctx, plan_file, qps, check, as_json):
    """Recompute a plan file's metrics from the file alone (the catalog entries it embeds), at
    its own rate or at --qps, and report the headroom.

    \b
    Examples:
      pdplan recommend --qps 80 --ttft-slo 200ms -o plan.yaml && pdplan evaluate plan.yaml
      pdplan evaluate plan.yaml --qps 120
      pdplan evaluate plan.yaml --qps 120 --check
    """
    from planner import api, render

    plan = api.evaluate_plan(plan_file, qps=qps, catalog_dir=catalog_dir_of(ctx))
    missed = None
    if check and not plan.meets_slo:
        wl = plan.inputs.workload
        load = (f"{wl.concurrency} concurrent clients" if wl.concurrency is not None
                else f"{wl.qps:g} QPS")
        missed = f"--check: {plan_file} misses its SLO at {load}: {str(plan.reason).splitlines()[0]}"
    if as_json:  # one document: the plan, and the error that the exit code reports
        emit_json({"plan": render.plan_document(plan)},
                  error={"message": missed, "exit_code": 3} if missed else None)
    else:
        con = render.stdout_console()
        render.show_plan(con, plan, title=f"evaluate {plan_file}")
    if missed:
        click.echo(f"Error: {missed}", err=True)
        ctx.exit(3)
