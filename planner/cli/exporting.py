"""``pdplan export``: a plan file as engine configs and deployment manifests."""

from __future__ import annotations

import click

from planner.cli.options import (
    emit_json,
    json_option,
)

EXPORT_TARGETS = ("vllm", "sglang", "trtllm", "dynamo", "llm-d", "k8s")


@click.command()
@click.argument("plan_file", metavar="PLAN")
@click.option("--target", required=True, type=click.Choice(EXPORT_TARGETS),
              help="What to write: engine configs (vllm, sglang, trtllm; for a plan made for that "
                   "engine), a Dynamo graph, llm-d Helm values or Kubernetes manifests.")
@click.option("-o", "--output", "out_dir", metavar="DIR", default=".", show_default=True,
              help="Directory to write into (created if missing).")
@click.option("--force", is_flag=True, help="Replace files that exist.")
@json_option
@click.pass_context
def export(ctx, plan_file, target, out_dir, force, as_json):
    """Write a plan file as engine configs and deployment manifests: the parallelism, token
    budget, sequence cap, memory fraction, KV dtype, quantization and KV transfer the plan's
    numbers assume, for the engine version the plan names. Each file starts with what to check
    before deploying.

    \b
    Examples:
      pdplan recommend --qps 80 --ttft-slo 200ms -o plan.yaml && pdplan export plan.yaml --target vllm -o out/
      pdplan export plan.yaml --target k8s -o k8s/
    """
    from planner import api

    paths = api.export(plan_file, target, out_dir, force=force,
                       catalog_dir=(ctx.find_root().obj or {}).get("catalog_dir"))
    if as_json:
        emit_json({"target": target, "files": paths})
        return
    for p in paths:
        click.echo(p)
