"""``pdplan kv`` (one sequence's KV cache and its transfer) and ``pdplan step`` (one forward pass)."""

from __future__ import annotations

import click

from planner.cli.options import (
    KV_DTYPES,
    PROFILE_FORCE,
    WEIGHT_DTYPES,
    Whole,
    catalog_of,
    complete_ids,
    emit_json,
    json_option,
    model_options,
)


@click.command()
@click.option("--model", metavar="NAME|config.json", shell_complete=complete_ids("models"),
              help="Model id or a Hugging Face config.json [default: llama-3.1-70b].")
@click.option("--seq-len", "seq_len", metavar="N", required=True,
              help="Tokens in the sequence (prompt plus output so far), e.g. 2048 or 8k.")
@click.option("--kv-dtype", "kv_dtype", type=click.Choice(KV_DTYPES),
              help="KV-cache dtype [default: the model's].")
@click.option("--gpu", metavar="NAME", shell_complete=complete_ids("gpus"),
              help="Compare with a decode step on this GPU.")
@click.option("--batch", type=Whole(1, 1_000_000), help="Decode batch (with --gpu) [default: 1].")
@click.option("--tp", type=Whole(1, 1024),
              help="Tensor parallelism of the decode instance (with --gpu) [default: the smallest that fits].")
@click.option("--dtype", type=click.Choice(WEIGHT_DTYPES),
              help="Weight dtype of the decode instance [default: the model's].")
@json_option
@click.pass_context
def kv(ctx, model, seq_len, kv_dtype, gpu, batch, tp, dtype, as_json):
    """KV-cache size of one sequence and its transfer time over every link.

    \b
    Examples:
      pdplan kv --model llama-3.1-70b --seq-len 2048
      pdplan kv --seq-len 8k --kv-dtype fp8 --gpu h100-sxm --batch 64
    """
    from planner import api, render

    rep = api.kv_report(catalog_of(ctx), model, seq_len, kv_dtype, gpu=gpu, batch=batch, tp=tp,
                        dtype=dtype)
    message = render.kv_warning(rep)
    if message:
        render.warn(message)
    if as_json:
        emit_json(render.kv_document(rep))
        return
    con = render.stdout_console()
    render.print_assumed(con, rep.assumed)
    render.show_kv(con, rep)


@click.command()
@model_options
@click.option("--tp", type=Whole(1, 1024),
              help="Tensor parallelism [default: the smallest that fits one node].")
@click.option("--pp", type=Whole(1, 1024), default=1, show_default=True,
              help="Pipeline parallelism.")
@click.option("--dp", type=Whole(1, 1024), default=1, show_default=True,
              help="Data-parallel attention ranks of --tp GPUs each (MoE models; the experts "
                   "spread over all tp x dp GPUs).")
@click.option("--ep", type=Whole(1, 4096),
              help="Expert parallelism (MoE models): tp, or tp x dp with --dp [default: 1, or "
                   "tp x dp with --dp].")
@click.option("--prefill", "prefill_tokens", metavar="N",
              help="Prefill of one N-token prompt (per attention rank with --dp).")
@click.option("--decode", "decode_batch", type=Whole(1, 1_000_000), metavar="B",
              help="One decode step of B sequences (per attention rank with --dp; needs --context).")
@click.option("--context", metavar="L", help="Mean context of the decoding sequences, e.g. 2176.")
@json_option
@PROFILE_FORCE
@click.pass_context
def step(ctx, tp, pp, dp, ep, prefill_tokens, decode_batch, context, as_json, **opts):
    """One static forward pass on one instance: time, FLOPs, bytes and what bounds it.

    \b
    Examples:
      pdplan step --model llama-3.1-70b --gpu h100-sxm --tp 8 --prefill 2048
      pdplan step --tp 8 --decode 64 --context 2176 --json
      pdplan step --model deepseek-v3 --gpu h200 --tp 1 --dp 8 --decode 32 --context 3000
    """
    from planner import api, render

    rep = api.step_report(catalog_of(ctx), tp=tp, pp=pp, dp=dp, ep=ep, prefill_tokens=prefill_tokens,
                          decode_batch=decode_batch, context=context, **opts)
    doc = render.step_document(rep)
    if as_json:
        emit_json(doc)
        return
    con = render.stdout_console()
    render.print_assumed(con, rep.assumed)
    render.show_step(con, doc)
