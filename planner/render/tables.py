"""Tables and text for people (rich): the ``show_*`` renderers of every command, the consoles
and the warning line on stderr.

Values come from result objects in SI units; they are only converted, rounded and laid out
(tables fold cells that do not fit rather than cut them short).
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from planner.render.documents import (
    CATALOG_TABLES,
    _get,
    _row_dict,
    _tl_value,
    finite,
    kernel_model_of,
    model_summary,
    to_yaml,
    verification_document,
)
from planner.units import fmt_seconds  # noqa: F401  (re-exported by planner.render)


def _fmt_ms(seconds, digits: int = 1) -> str:
    from planner.units import fmt_ms

    return fmt_ms(finite(seconds), digits)


def _num(x, fmt: str = ",.0f", none: str = "-") -> str:
    v = finite(x)
    return none if v is None else format(v, fmt)


def _sig(x) -> str:
    """A measured or predicted value with sensible precision (no exponents)."""
    v = finite(x)
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _pct(x, digits: int = 0) -> str:
    v = finite(x)
    return "n/a" if v is None else f"{v * 100:.{digits}f}%"


def _util(x) -> str:
    v = finite(x)
    return ">100%" if v is None and x is not None else _pct(v)


def _table(*columns, title: str | None = None) -> Table:
    """A table whose cells never end in rich's "…": a column that may wrap folds a word too long
    for it onto the next line; a ``no_wrap`` column (ids, approach names) keeps the ellipsis, so
    that a layout too wide for its terminal shows (tests render every table at 80 columns)."""
    t = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False,
              show_edge=False)
    for col in columns:
        name, kw = col if isinstance(col, tuple) else (col, {"justify": "right"})
        kw = dict(kw)
        kw.setdefault("overflow", "ellipsis" if kw.get("no_wrap") else "fold")
        t.add_column(name, **kw)
    return t


def narrow(console: Console) -> bool:
    """Under 100 columns (an 80-column terminal): tables drop their least needed columns."""
    return console.width < WIDTH


WIDTH = 100  # tables are laid out for 100 columns


def _width(stream) -> int | None:
    """Let rich measure a terminal (or honour COLUMNS); files and pipes get 100 columns."""
    if os.environ.get("COLUMNS"):
        return None
    try:
        return None if stream.isatty() else WIDTH
    except (AttributeError, ValueError):
        return WIDTH


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader went away: stop printing and let the CLI end quietly (exit 141)."""
        self.quiet = True
        raise BrokenPipeError


def stdout_console() -> Console:
    return _Console(highlight=False, width=_width(sys.stdout))


def stderr_console() -> Console:
    return _Console(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """One warning line on stderr (never on stdout, which may carry a JSON document)."""
    stderr_console().print(f"[yellow]warning:[/] {escape(message)}")


def print_assumed(console: Console, assumed) -> None:
    if assumed:
        console.print(f"[dim]assumed: {escape(', '.join(assumed))}[/]")


def margin_line(mg: dict) -> str:
    """'the 90% margin costs 8 GPUs (76 with it, 68 without)'."""
    extra = int(mg["gpus"] - mg["gpus_without"])
    cost = (f", ${mg['cost_per_hour'] - mg['cost_per_hour_without']:,.2f}/h"
            if extra else "")
    return (f"the {mg['confidence']:.0%} margin costs {extra} GPU{'' if extra == 1 else 's'}{cost} "
            f"({mg['gpus']} with it, {mg['gpus_without']} without: {mg['approach_without']} "
            f"{mg['plan_without']}); sized to P{{pct}} TTFT {_fmt_ms(mg['ttft_slo_sized_s'])} and TPOT "
            f"{_fmt_ms(mg['tpot_slo_sized_s'], 2)}, the SLOs over the ranges' upper factors "
            f"{mg['ttft_factor']:.2f}x and {mg['tpot_factor']:.2f}x")


def _range_ms(r: dict | None, family: str, key: str, digits: int) -> str:
    """'178-221 ms': a metric's likely range for tables ('' without one)."""
    v = (r or {}).get(f"{family}_s", {}).get(key)
    if not v or finite(v[0]) is None or finite(v[1]) is None:
        return "" if not v else "overloaded"
    lo, hi = _fmt_ms(v[0], digits), _fmt_ms(v[1], digits)
    if lo.endswith(" ms") and hi.endswith(" ms"):
        lo = lo[:-3]
    return f"{lo}-{hi}"


# --------------------------------------------------------------------------------------------
# Plan for people
# --------------------------------------------------------------------------------------------


def _pools_line(dep) -> str:
    return ", ".join(f"{p.role} {p.spec()} ({p.gpus} GPUs)" for p in dep.pools)


def show_plan(console: Console, plan, title: str | None = None) -> None:
    """Deployment line, metrics table, breakdown and the SLO verdict."""
    inp, dep, m = plan.inputs, plan.deployment, plan.metrics
    slo = inp.slo
    head = title or "estimate"
    load = (f"{inp.workload.concurrency} concurrent clients ({inp.workload.qps:.3g} QPS)"
            if inp.workload.concurrency is not None else f"{inp.workload.qps:g} QPS")
    console.print(f"[bold]{escape(head)}[/]: {escape(inp.model.id)} at {load}, "
                  f"{escape(dep.approach)}, {dep.total_gpus} GPUs, ${plan.cost_per_hour:,.2f}/h")
    pools = _pools_line(dep)
    if dep.approach == "chunked":
        pools += f", chunk {dep.chunk_size} tokens"
    console.print(f"  {escape(pools)}")
    if getattr(inp, "spec", None) is not None:
        console.print(f"  speculative decoding: {escape(inp.spec.describe())}")
    if plan.link:
        lk = plan.link
        per_request = finite(lk.get("bytes_per_request") or 0)  # None when not finite
        console.print(
            f"  KV over {escape(str(lk.get('id')))}"
            + (f" by {escape(str(lk.get('transfer')))}" if lk.get("transfer") else "")
            + f" ({lk.get('where')}, {lk.get('streams')} streams, "
            f"{lk.get('dtype')}, overlap {'on' if lk.get('overlap') else 'off'}): "
            f"{_num(None if per_request is None else per_request / 1e6, ',.1f')} MB per request, "
            f"{_fmt_ms(lk.get('exposed_s'), 2)} exposed")

    rg = getattr(plan, "ranges", None)
    cols = [("", {"justify": "left", "style": "bold"}), "mean", "P50", "P90", "P99"]
    if rg:  # the likely range of the SLO percentile
        cols.append(f"P{slo.percentile} {rg['confidence']:.0%} range")
    t = _table(*cols, ("SLO", {"justify": "right", "style": "dim"}))
    t.add_row("TTFT", *[_fmt_ms(m.ttft.get(k)) for k in ("mean", "p50", "p90", "p99")],
              *([_range_ms(rg, "ttft", slo.key, 0)] if rg else []),
              f"P{slo.percentile} {_fmt_ms(slo.ttft_s, 0)}")
    t.add_row("TPOT", *[_fmt_ms(m.tpot.get(k), 2) for k in ("mean", "p50", "p90", "p99")],
              *([_range_ms(rg, "tpot", slo.key, 1)] if rg else []),
              f"P{slo.percentile} {_fmt_ms(slo.tpot_s, 0)}")
    console.print(t)

    s = _table(("", {"justify": "left", "style": "bold"}), ("", {"justify": "left"}))
    s.show_header = False
    s.add_row("ITL max", _fmt_ms(m.itl_max_s))
    out_range = ""
    if rg and finite(rg["throughput_out_tok_s"][0]) and m.throughput_out_tok_s > 0:
        lo, hi = rg["throughput_out_tok_s"]
        out_range = f" (out {rg['confidence']:.0%} range {_num(lo)}-{_num(hi)})"
    s.add_row("throughput", f"{_num(m.throughput_in_tok_s)} in + {_num(m.throughput_out_tok_s)} "
                            f"out tokens/s{out_range}")
    s.add_row("utilisation", ", ".join(f"{k} {_util(v)}" for k, v in m.utilization.items()))
    ranks = (getattr(plan, "layout", None) or {}).get("attention_ranks", 1)
    s.add_row("decode batch", _num(m.decode_batch, ",.1f", "n/a") + " per lane"
              + (f" ({_num(m.decode_batch / ranks, ',.1f', 'n/a')} per attention rank)" if ranks > 1 else ""))
    lay = getattr(plan, "layout", None) or {}
    per_rank = (f" ({_num(lay['kv_capacity_tokens_per_rank'])} per attention rank, not replicated)"
                if lay.get("attention_ranks", 1) > 1 and "kv_capacity_tokens_per_rank" in lay
                and plan.deployment.pool(lay["pool"]).dp > 1 else "")
    s.add_row("KV cache", f"{_num(m.kv_used_tokens, ',.0f', 'n/a')} of "
                          f"{_num(m.kv_capacity_tokens)} tokens per instance{per_rank}")
    step = getattr(plan, "decode_step", None) or {}
    comm = {k: v for k, v in step.items() if k in ("tp_allreduce", "ep_alltoall", "pp_sendrecv") and v > 0}
    if comm and sum(step.values()) > 0:
        total = sum(step.values())
        s.add_row("decode step", f"{_fmt_ms(total, 2)}: " + ", ".join(
            f"{k.replace('_', ' ')} {_fmt_ms(v, 2)}" for k, v in comm.items()))
    mq = finite(plan.max_qps)
    if mq is not None:
        s.add_row("max QPS in SLO", f"{mq:,.1f}")
    console.print(s)

    b = m.breakdown
    console.print(
        "  TTFT = queueing {} + compute {} + transfer {}".format(
            _fmt_ms(b.get("ttft_queue_s"), 2), _fmt_ms(b.get("ttft_compute_s"), 2),
            _fmt_ms(b.get("ttft_transfer_s"), 2)))
    if b.get("decode_iteration_s") is not None and getattr(inp, "spec", None) is not None:
        console.print(
            "  TPOT = iteration {} / {:.2f} tokens + interference {}".format(
                _fmt_ms(b.get("decode_iteration_s"), 2), inp.spec.tokens_per_step,
                _fmt_ms(b.get("tpot_interference_s"), 2)))
    else:
        console.print(
            "  TPOT = step {} + interference {}".format(
                _fmt_ms(b.get("tpot_step_s"), 2), _fmt_ms(b.get("tpot_interference_s"), 2)))
    if not m.stable:
        console.print(f"[bold red]overloaded[/]: saturates first: {escape(str(m.saturated or 'deployment'))}")
    if plan.meets_slo:
        console.print(f"[bold green]meets SLO[/]: {escape(plan.reason)}")
    else:
        console.print(f"[bold red]misses SLO[/]: {escape(plan.reason)}")
    for note in plan.notes or ():
        console.print(f"[dim]note: {escape(str(note))}[/]")


def show_simulation(console: Console, plan, sim, requested: int | None = None) -> None:
    """Analytic and simulated metrics side by side."""
    m = plan.metrics
    ttft, tpot = _get(sim, "ttft", {}) or {}, _get(sim, "tpot", {}) or {}
    t = _table(("metric", {"justify": "left", "style": "bold"}), "analytic", "simulated",
               title=f"analytic vs simulated ({requested or _get(sim, 'requests')} requests, "
                     f"{_get(sim, 'requests')} counted)")
    for k in ("mean", "p50", "p90", "p99"):
        t.add_row(f"TTFT {k}", _fmt_ms(m.ttft.get(k)), _fmt_ms(ttft.get(k)))
    for k in ("mean", "p50", "p90", "p99"):
        t.add_row(f"TPOT {k}", _fmt_ms(m.tpot.get(k), 2), _fmt_ms(tpot.get(k), 2))
    t.add_row("ITL max", _fmt_ms(m.itl_max_s), _fmt_ms(_get(sim, "itl_max_s")))
    t.add_row("output tok/s", _num(m.throughput_out_tok_s), _num(_get(sim, "throughput_out_tok_s")))
    t.add_row("stable", "yes" if m.stable else "no", "yes" if _get(sim, "stable") else "no")
    t.add_row("SLO attainment", "meets" if plan.meets_slo else "misses",
              _pct(_get(sim, "attainment"), 1))
    console.print(t)
    if _get(sim, "preemptions", 0):
        console.print(f"[dim]KV cache outgrown: {_get(sim, 'preemptions'):,} recompute preemptions; "
                      f"{_pct(_get(sim, 'preempted_share'), 1)} of counted requests preempted[/]")
    console.print(f"[dim]simulated {_num(_get(sim, 'duration_s'), ',.1f')} s of traffic in "
                  f"{_num(_get(sim, 'wall_s'), ',.2f')} s[/]")


def show_catalog(console: Console, cat, tables=CATALOG_TABLES) -> None:
    if "models" in tables:
        t = _table(("id", {"justify": "left", "style": "bold", "no_wrap": True}), "params B",
                   "active B", "layers", "KV KB/tok", ("kind", {"justify": "left"}),
                   ("dtype", {"justify": "left"}), title="models")
        for _, m in sorted(cat.models.items()):
            kind = "+".join(k for k, on in (("MoE", m.is_moe), ("MLA", m.is_mla)) if on) or "dense"
            t.add_row(escape(m.id), f"{m.total_params / 1e9:,.1f}", f"{m.active_params / 1e9:,.1f}",
                      str(m.num_layers), f"{m.kv_bytes_per_token('bf16') / 1e3:,.1f}", kind,
                      f"{m.default_dtype}/{m.default_kv_dtype}")
        console.print(t)
    if "gpus" in tables:
        t = _table(("id", {"justify": "left", "style": "bold", "no_wrap": True}), "BF16 TF",
                   "FP8 TF", "FP4 TF", "HBM GB", "TB/s", "per node", "$/h", title="gpus")
        for _, g in sorted(cat.gpus.items()):
            pf = g.peak_flops
            t.add_row(escape(g.id), _num(pf.get("bf16", 0) / 1e12, ",.0f"),
                      _num(pf["fp8"] / 1e12 if "fp8" in pf else None, ",.0f"),
                      _num(pf["fp4"] / 1e12 if "fp4" in pf else None, ",.0f"),
                      f"{g.hbm_bytes / 1e9:,.0f}", f"{g.hbm_bytes_per_s / 1e12:.2f}",
                      str(g.gpus_per_node), f"{g.price_per_hour:.2f}")
        console.print(t)
    if "links" in tables:
        t = _table(("id", {"justify": "left", "style": "bold", "no_wrap": True}),
                   ("name", {"justify": "left", "max_width": 50}), "GB/s", "latency us",
                   title="links")
        for _, lk in sorted(cat.links.items()):
            t.add_row(escape(lk.id), escape(lk.name), f"{lk.bytes_per_s / 1e9:,.0f}",
                      f"{lk.latency_s * 1e6:g}")
        console.print(t)


def show_entry(console: Console, kind: str, entry) -> None:
    """The entry as YAML that parses whatever the terminal's width: what is not the entry
    (which file, which kernel model) is a ``#`` comment, and no line is wrapped (soft_wrap)."""
    console.print(f"[bold]# {kind} {escape(entry.id)}[/] [dim]({escape(str(entry.path))})[/]",
                  soft_wrap=True)
    km = kernel_model_of(entry)
    if km:
        console.print(f"[dim]# kernel model: {escape(km)}[/]", soft_wrap=True)
    if kind == "model":  # what the import found, as comments (the output stays the entry's YAML)
        for line in to_yaml({"summary": model_summary(entry)}).rstrip().splitlines():
            console.print(f"# {line}", soft_wrap=True, markup=False, highlight=False)
    console.print(to_yaml(dict(entry.raw)).rstrip(), soft_wrap=True, markup=False, highlight=False)


def show_kv(console: Console, rep) -> None:
    """The KV size, then one row per link with its transfer time drawn as a bar; with --gpu the
    decode step is marked ``|`` on every bar and the links slower than it are red."""
    console.print(
        f"[bold]{escape(rep.model.id)}[/], {rep.seq_len:,} tokens, KV {rep.kv_dtype}: "
        f"{rep.bytes_per_token / 1e3:,.1f} KB per token, {rep.bytes / 1e6:,.1f} MB per sequence")
    step = rep.decode_step_s
    times = sorted(rep.transfer_s.items(), key=lambda kv: kv[1])
    scale = kv_bar_scale([t for _, t in times] + ([step] if step is not None else []), KV_BAR_WIDTH)
    wide = not narrow(console)  # the link's long name only where there is room for it
    cols = [("link", {"justify": "left", "style": "bold", "no_wrap": True}),
            *([("name", {"justify": "left", "max_width": 26})] if wide else []),
            "GB/s", ("transfer", {"justify": "right", "no_wrap": True}),
            ("", {"justify": "left", "no_wrap": True, "min_width": KV_BAR_WIDTH})]
    if step is not None:
        cols.append(("vs step", {"justify": "left", "no_wrap": True}))
    t = _table(*cols)
    slow = set(rep.slower_than_decode)
    for lid, secs in times:
        lk = rep.links[lid]
        colour = "cyan" if step is None else ("red" if lid in slow else "green")
        link = f"[red]{escape(lid)}[/]" if lid in slow else escape(lid)
        row = [link, *([escape(lk.name)] if wide else []), f"{lk.bytes_per_s / 1e9:,.0f}", _fmt_ms(secs, 2),
               kv_bar(scale, secs, step, colour)]
        if step is not None:
            row.append("[red]slower[/]" if lid in slow else "[green]faster[/]")
        t.add_row(*row)
    console.print(t)
    lo, hi, log = scale
    what = "log scale" if log else "linear scale"
    console.print(f"[dim]bars: transfer time ({what}, full width {_fmt_ms(hi, 2)})"
                  + ("; | marks the decode step" if step is not None else "") + "[/]")
    if step is not None:
        console.print(f"decode step on {escape(str(rep.gpu))} at batch {rep.batch}, context "
                      f"{rep.seq_len:,}: {_fmt_ms(step, 2)}")


def kv_warning(rep) -> str | None:
    if rep.decode_step_s is None or not rep.slower_than_decode:
        return None
    links = ", ".join(f"{lid} ({_fmt_ms(rep.transfer_s[lid], 1)})" for lid in sorted(rep.slower_than_decode))
    return (f"moving one {rep.seq_len:,}-token KV cache takes longer than a decode step "
            f"({_fmt_ms(rep.decode_step_s, 1)}) over: {links}")


def show_step(console: Console, doc: dict) -> None:
    what = (f"prefill of {doc['tokens']:,} tokens" if doc["phase"] == "prefill"
            else f"decode step, batch {doc['batch']:,} at context {doc['context_tokens']:,}")
    par = (f"tp{doc['tp']}" + (f"dp{doc['dp']}" if doc.get("dp", 1) > 1 else "")
           + (f"pp{doc['pp']}" if doc["pp"] > 1 else "") + (f"ep{doc['ep']}" if doc.get("ep", 1) > 1 else ""))
    console.print(f"[bold]{escape(doc['model'])}[/] on {escape(doc['gpu'])} {par} "
                  f"({doc['dtype']}, KV {doc['kv_dtype']}): {what}")
    console.print(f"  time {doc['time_ms']:,.3f} ms, {doc['bound']}-bound; "
                  f"{doc['flops'] / 1e12:,.2f} TFLOP, {doc['bytes'] / 1e9:,.2f} GB moved")
    t = _table(("op group", {"justify": "left", "style": "bold"}), "ms", "share")
    total = doc["time_ms"] or 0.0
    for k, v in doc["breakdown_ms"].items():
        t.add_row(escape(k), _num(v, ",.3f"), _pct((v or 0.0) / total if total else None))
    console.print(t)


def show_overhead_fit(console: Console, res: dict) -> None:
    """``pdplan validate --fit``: the refitted per-iteration overhead, its bounds and the loss."""
    lo, hi = res["bounds_s"]
    console.print(f"per-iteration overhead fitted on {res['rows']} rows: {res['overhead_s'] * 1e3:.3f} ms "
                  f"(bounds {lo * 1e3:g}-{hi * 1e3:g} ms; loss {res['loss_at_catalog']:.4f} at the "
                  f"catalog's {res['catalog_overhead_s'] * 1e3:.3f} ms -> {res['loss']:.4f}, group-balanced "
                  "mean |log(predicted/measured)|)")


_UNIT = {"ms": "ms", "tok_s": "tok/s", "tok_s_per_gpu": "tok/s/GPU"}


def show_validate(console: Console, report) -> None:
    """One table per kind of measurement, then the error summary."""
    rows = [_row_dict(r) for r in _get(report, "rows", [])]
    kinds = list(dict.fromkeys((str(r.get("kind")), str(r.get("unit"))) for r in rows))
    wide = not narrow(console)  # batch and isl/osl from 100 columns up (and in --json)
    for kind, unit in kinds:
        t = _table(("id", {"justify": "left"}),  # ids run to 94 characters: they fold
                   ("model", {"justify": "left", "no_wrap": True}),
                   ("gpu", {"justify": "left", "no_wrap": True}), "tp",
                   *(("batch", "isl/osl") if wide else ()),
                   "measured", "predicted", "error", title=f"{kind} ({_UNIT.get(unit, unit)})")
        for r in rows:
            if (str(r.get("kind")), str(r.get("unit"))) != (kind, unit):
                continue
            err = finite(r.get("error"))
            err_s = "-" if err is None else f"{err * 100:+.0f}%"
            if not r.get("included", True):
                err_s = "[dim]excluded[/]"
            elif err is not None and abs(err) > 0.5:
                err_s = f"[red]{err_s}[/]"
            t.add_row(escape(str(r.get("id"))), escape(str(r.get("model"))),
                      escape(str(r.get("gpu"))), str(r.get("tp")),
                      *((str(r.get("batch")), f"{r.get('isl')}/{r.get('osl')}") if wide else ()),
                      _sig(r.get("measured")),
                      _sig(r.get("predicted")), err_s)
        console.print(t)
        console.print()
    summary = _get(report, "summary", {}) or {}
    groups: list[tuple[str, Any]] = [("all", summary)]
    groups += [(f"kind {k}", v) for k, v in (summary.get("by_kind") or {}).items()]
    groups += [(f"gpu {k}", v) for k, v in (summary.get("by_gpu") or {}).items()]
    groups += [(k, v) for k, v in (summary.get("by_kind_gpu") or {}).items()]
    groups += [(f"source {k}", v) for k, v in (summary.get("by_source_kind") or {}).items()]
    s = _table(("", {"justify": "left", "style": "bold"}), "rows", "median |err|", "p90 |err|",
               "median err", title="summary (error = predicted / measured - 1)")
    for name, st in groups:
        s.add_row(escape(name), str(st.get("count", 0)), _pct(st.get("median_abs_error"), 1),
                  _pct(st.get("p90_abs_error"), 1), _pct(st.get("median_signed_error"), 1))
    console.print(s)
    if summary.get("excluded"):
        console.print(f"[dim]{summary['excluded']} row(s) excluded (not predicted)[/]")
    if not wide:
        console.print("[dim]batch and isl/osl columns from 100 columns up, or with --json[/]")
    if "points" in summary:  # the serving set
        from collections import Counter

        why = Counter(s["why"] for s in summary.get("skipped", []))
        console.print(f"operating points: {summary['points']} published, {summary['points_predicted']} "
                      f"predicted; not predicted: " + (", ".join(f"{n} ({w})" for w, n in why.items()) or "none"))
        un, sus = summary.get("called_unstable", []), summary.get("called_unstable_sustained", [])
        console.print(f"called unstable: {len(un)}, of which the engine sustained {len(sus)}"
                      + (f": {', '.join(sus)}" if sus else ""))


def _alt_row(plan, key: str) -> list:
    m = plan.metrics
    ps = plan.deployment.pools
    if len({p.gpu for p in ps}) == 1:  # one GPU type: name it once
        pools = " + ".join(p.spec().rsplit("@", 1)[0] for p in ps) + f" @{ps[0].gpu}"
    else:
        pools = " + ".join(p.spec() for p in ps)
    if plan.deployment.approach == "chunked":
        pools += f" c{plan.deployment.chunk_size}"
    if getattr(plan.inputs, "spec", None) is not None:
        pools += f" spec{plan.inputs.spec.tokens}"  # speculative decoding, K draft tokens
    return [plan.approach, str(plan.total_gpus), pools, f"${plan.cost_per_hour:,.0f}",
            _fmt_ms(m.ttft.get(key)), _fmt_ms(m.tpot.get(key), 1),
            _num(finite(plan.max_qps), ",.1f"), "yes" if plan.meets_slo else "no"]


def show_recommendation(console: Console, rec) -> None:
    plan = rec.plan
    show_plan(console, plan, title="recommendation")
    if getattr(plan, "speculation", None):
        console.print(f"{escape(plan.speculation['why'])}")
    if getattr(plan, "margin", None):
        console.print(f"[bold]{escape(margin_line(plan.margin).format(pct=plan.inputs.slo.percentile))}[/]")
    key = plan.inputs.slo.key
    pct = plan.inputs.slo.percentile
    t = _table(("approach", {"justify": "left", "style": "bold", "no_wrap": True}), "GPUs",
               ("pools", {"justify": "left"}),
               "$/h", f"TTFT P{pct}", f"TPOT P{pct}", "max QPS", "meets", title="best plan of each approach")
    for p in [plan, *rec.alternatives]:
        t.add_row(*_alt_row(p, key))
    console.print(t)
    if plan.verification:
        v = verification_document(plan.verification)  # the figures the plan file has
        ok = "[bold green]meets[/]" if v.get("meets_slo") else "[bold red]misses[/]"
        console.print(f"verified by simulation ({v['requests']:,} requests): {ok} the SLO, "
                      f"attainment {v['attainment'] * 100:.1f}% (needs {pct}%), "
                      f"P{pct} TTFT {_fmt_ms((v['ttft_ms'].get(key) or 0) / 1e3)}, "
                      f"TPOT {_fmt_ms((v['tpot_ms'].get(key) or 0) / 1e3, 2)}")
    console.print(f"[dim]{rec.evaluated:,} candidates evaluated[/]")


def show_whatif(console: Console, rows, axes) -> None:
    if len(axes) == 1:
        first = next((r["rec"].plan for r in rows if r["rec"] is not None), None)
        pct = first.inputs.slo.percentile if first else 90
        key = f"p{pct}"
        misses = []
        t = _table((axes[0], {"justify": "right", "style": "bold"}),
                   ("approach", {"justify": "left", "no_wrap": True}),
                   "GPUs", ("pools", {"justify": "left"}), "$/h", f"TTFT P{pct}", f"TPOT P{pct}",
                   ("runner-up", {"justify": "left"}))
        for r in rows:
            v = str(r["values"][axes[0]])
            if r["rec"] is None:
                t.add_row(v, "[red]none[/]", "-", "-", "-", "-", "-", "-")
                misses.append(f"{axes[0]} {v}: {str(r['error'] or 'no plan').splitlines()[0]}")
                continue
            p = r["rec"].plan
            alts = sorted((a for a in r["rec"].alternatives if a.meets_slo), key=lambda a: a.total_gpus)
            runner = f"{alts[0].approach} {alts[0].total_gpus}" if alts else "-"
            row = _alt_row(p, key)
            t.add_row(v, row[0], row[1], row[2], row[3], row[4], row[5], runner)
        console.print(t)
        for line in misses:  # below the table, whole, rather than squeezed into a cell
            console.print(f"[red]none[/] at {escape(line)}")
        return
    a0, a1 = axes
    v0 = list(dict.fromkeys(str(r["values"][a0]) for r in rows))
    v1 = list(dict.fromkeys(str(r["values"][a1]) for r in rows))
    t = _table((f"{a0} \\ {a1}", {"justify": "right", "style": "bold"}), *v1,
               title="winning approach and its GPU count")
    cells = {(str(r["values"][a0]), str(r["values"][a1])): r for r in rows}
    short = {"unified": "U", "chunked": "C", "disaggregated": "D"}
    for x in v0:
        marks = []
        for y in v1:
            r = cells[(x, y)]
            if r["rec"] is None:
                marks.append("[red]none[/]")
            else:
                p = r["rec"].plan
                marks.append(f"{short[p.approach]} {p.total_gpus}")
        t.add_row(x, *marks)
    console.print(t)
    console.print("[dim]U = unified, C = chunked prefill, D = disaggregated; none = no plan within "
                  "the GPU limit[/]")


TIMELINE_STYLE = {"P": "bold cyan", "D": "green", "x": "bold red", "-": "yellow", ".": "dim"}
_TIMELINE_LABEL = 8  # characters left of the grid
_TIMELINE_COLUMNS = 80  # grid columns per block before wrapping


def _tl_amount(tl, x, plural: bool = True) -> str:
    if tl.real:
        return _fmt_ms(x, 1)
    v = _tl_value(tl, x)
    return f"{v:g} tick" + ("" if v == 1 or not plural else "s")


def _tl_at(tl, x) -> str:
    return _fmt_ms(x, 1) if tl.real else f"{_tl_value(tl, x):g}"


def _tl_ruler(tl, k0: int, k1: int) -> str:
    """Labels every 5 ticks (abstract) or every 10 columns (real) above columns k0..k1-1."""
    step = 10 if tl.real else 5
    line = [" "] * (k1 - k0)
    k = ((k0 + step - 1) // step) * step
    while k < k1:
        t = tl.ticks[k]
        text = (f"{t * 1e3:g}" if tl.real else f"{int(round(t))}")
        if tl.real and k == 0:
            text += " ms"
        pos = k - k0
        if pos + len(text) > len(line):
            line += [" "] * (pos + len(text) - len(line))
        if all(c == " " for c in line[max(pos - 1, 0):pos + len(text)]):
            line[pos:pos + len(text)] = list(text)
        k += step
    return "".join(line).rstrip()


def _tl_cells(cells: str) -> str:
    """Rich markup for a run of cells (one style per run of equal states)."""
    out, i = [], 0
    while i < len(cells):
        j = i
        while j < len(cells) and cells[j] == cells[i]:
            j += 1
        out.append(f"[{TIMELINE_STYLE.get(cells[i], '')}]{escape(cells[i:j])}[/]")
        i = j
    return "".join(out)


_TL_POLICY = {
    "unified": "in-flight batching, whole prompts: an iteration with a prompt lasts as long as the "
               "prompt, and every running decode waits for it",
    "chunked": "each iteration carries the running decodes and prompt tokens up to a budget of "
               "{chunk} tokens (decodes included)",
    "disaggregated": "prompts run on the prefill pool; the decode pool only decodes, so no decode "
                     "ever waits for a prefill",
}


def show_timeline(console: Console, tl) -> None:
    """The grid (wrapped in blocks of 80 columns), a legend and a table of the requests."""
    from planner.timeline import LEGEND

    policy = _TL_POLICY[tl.approach].format(chunk=tl.chunk_size)
    if tl.real:
        info = tl.info
        console.print(f"[bold]timeline[/]: {escape(tl.approach)} on {escape(str(info.get('model')))}, "
                      f"{escape(str(info.get('gpu')))} tp{info.get('tp')} ({info.get('dtype')}, KV "
                      f"{info.get('kv_dtype')}); one column = {_fmt_ms(tl.tick, 3 if tl.tick < 1e-3 else 1)}")
        console.print(f"[dim]{escape(policy)}[/]")
        console.print(f"[dim]a decode step of r0 alone takes {_fmt_ms(tl.decode_step, 1)}[/]")
        if tl.info.get("link"):
            console.print(f"[dim]KV cache over {escape(str(tl.info['link']))}[/]")
    else:
        console.print(f"[bold]timeline[/]: {escape(tl.approach)}; one column = one tick: one prompt "
                      "token, or one decode iteration of the batch")
        console.print(f"[dim]{escape(policy)}[/]")
    pools = list(dict.fromkeys(row.pool for row in tl.rows))
    n = len(tl.ticks)
    for k0 in range(0, n, _TIMELINE_COLUMNS):
        k1 = min(k0 + _TIMELINE_COLUMNS, n)
        console.print()
        console.print(" " * _TIMELINE_LABEL + escape(_tl_ruler(tl, k0, k1)), style="dim")
        for pool in pools:
            if len(pools) > 1:
                console.print(f"[bold]{pool} pool[/]")
            for row in tl.rows:
                if row.pool != pool:
                    continue
                label = f"r{row.request}".ljust(_TIMELINE_LABEL)
                console.print(escape(label) + _tl_cells(row.cells[k0:k1]))
    console.print()
    console.print("  ".join(f"[{TIMELINE_STYLE[c]}]{escape(c)}[/] {escape(text)}" for c, text in LEGEND[:3]))
    console.print("  ".join(f"[{TIMELINE_STYLE[c]}]{escape(c)}[/] {escape(text)}" for c, text in LEGEND[3:]))
    cols = [("request", {"justify": "left", "style": "bold"}), "prompt", "output", "arrives",
            "TTFT", "stalled", "worst gap", "done at"]
    kv = tl.real and bool(tl.transfer)
    if kv:
        cols.append("KV transfer")
    t = _table(*cols)
    for st in tl.stats:
        r = tl.requests[st.request]
        stalled = "-" if st.stalled <= 1e-12 else f"[bold red]{_tl_amount(tl, st.stalled)}[/]"
        gap = "-" if st.worst_gap is None else _tl_amount(tl, st.worst_gap)
        row = [f"r{st.request}", f"{r.prompt:,}", f"{r.output:,}", _tl_at(tl, r.arrival),
               _tl_amount(tl, st.ttft), stalled, gap, _tl_at(tl, st.finish)]
        if kv:
            row.append(_fmt_ms(tl.transfer.get(st.request), 2))
        t.add_row(*row)
    console.print()
    console.print(t)


# --------------------------------------------------------------------------------------------
# Bars of the KV report
# --------------------------------------------------------------------------------------------

KV_BAR_WIDTH = 30
KV_LOG_RANGE = 10.0  # a log scale once the longest bar is this many times the shortest


def kv_bar_scale(values, width: int = KV_BAR_WIDTH) -> tuple[float, float, bool]:
    """(floor, top, log): bars run from ``floor`` (length 0) to ``top`` (full width). A wide
    range gets a log scale whose floor is half the shortest value, so that every bar shows."""
    vals = [v for v in (finite(x) for x in values) if v is not None and v > 0]
    if not vals:
        return 0.0, 1.0, False
    lo, hi = min(vals), max(vals)
    if hi / lo > KV_LOG_RANGE:
        return lo / 2.0, hi, True
    return 0.0, hi, False


def _kv_pos(scale, x: float, width: int) -> float:
    floor, top, log = scale
    if log:
        return width * (math.log(x / floor) / math.log(top / floor))
    return width * (x / top) if top > 0 else 0.0


def kv_bar(scale, seconds: float, mark: float | None = None, colour: str = "cyan",
           width: int = KV_BAR_WIDTH) -> str:
    """Rich markup of one bar of ``width`` cells, with ``|`` at ``mark`` (the decode step)."""
    n = max(1, min(width, int(round(_kv_pos(scale, seconds, width)))))
    cells = ["█"] * n + [" "] * (width - n)
    m = None
    if mark is not None and finite(mark):
        m = max(0, min(width - 1, int(round(_kv_pos(scale, mark, width))) - 1))
        cells[m] = "|"
    out = []
    for i, c in enumerate(cells):
        style = "bold yellow" if i == m else (colour if c == "█" else "")
        out.append(f"[{style}]{c}[/]" if style else c)
    return "".join(out).rstrip()


def _median_pct(st: dict | None) -> str:
    if not st or not st.get("count"):
        return "-"
    return f"{st['median_abs_error']:.1%}"


def show_calibration(console: Console, report, profile, output: str | None) -> None:
    """The fitted constants with their uncertainty and why the others were kept, and the error
    per statistic before, after and out of sample (leave one out)."""
    from planner.calibrate.fit import CONSTANTS, LOG_SCALED

    s = report.setup
    console.print(f"{len(report.observations)} statistics from {len({id(o.result) for o in report.observations})} "
                  f"runs: {s.model.id} on {s.replicas}x tp{s.tp} {s.gpu}, engine {profile.engine}")
    t = _table(("constant", {"justify": "left", "style": "bold"}), "value", "±", "bounds",
               ("", {"justify": "left"}), title="calibration constants")
    refused = {r["name"]: r for r in report.refused}
    for name, lo, hi in CONSTANTS:
        v = report.values[name]
        sd = report.sd.get(name)
        if name in LOG_SCALED:
            val, pm = f"{v:.3f}", (f"{math.expm1(sd):.0%}" if sd is not None else "")
        else:
            val, pm = f"{v:.2f} ms", (f"{sd:.2f} ms" if sd is not None else "")
        note = "fitted" if name in report.fitted else f"kept: {refused[name]['why']}" if name in refused else "kept"
        t.add_row(name, val, pm, f"{lo:g}-{hi:g}", note)
    console.print(t)
    e = _table(("statistic", {"justify": "left", "style": "bold"}), "rows", "uncalibrated", "calibrated",
               "leave-one-out", title="median |error| (predicted / measured - 1)")
    for k, st in report.uncalibrated.items():
        e.add_row(k, str(st.get("count", 0)), _median_pct(st), _median_pct(report.in_sample.get(k)),
                  _median_pct(report.loo.get(k)))
    console.print(e)
    for r in report.excluded:
        console.print(f"left out: {r.path} row {r.row}: completed under 70% of its request rate "
                      "(the engine did not keep up; no steady state to fit)")
    for r in report.refused:
        console.print(f"to pin {r['name']}: {r['hint']}")
    if output:
        console.print(f"wrote {output}")
