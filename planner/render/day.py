"""Day plans for people: the per-period table, the day's totals against static peak
provisioning, the autoscaling policy, the load curve with GPUs per pool (text chart and
PNG/SVG), the simulated day beside the predicted one, and ``whatif --vary peak``.

Nothing here computes a model quantity; values come from :mod:`planner.day.schedule` and
:mod:`planner.day.simulate` in SI units and are only rounded and laid out. matplotlib is
imported inside :func:`day_plot` only (the optional ``plot`` extra), like planner.render.charts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from planner.day.document import day_document, simulation_document
from planner.day.profile import fmt_span
from planner.render.tables import _table

if TYPE_CHECKING:
    from planner.day.schedule import DayPlan

LETTER = {"unified": "U", "prefill": "P", "decode": "D"}
COLOUR = {"unified": "#1f77b4", "prefill": "#ff7f0e", "decode": "#2ca02c"}
CHART_HEIGHT = 10


def _pct(x, digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x * 100:.{digits}f}%"


def _ms(seconds, digits: int = 1) -> str:
    from planner.units import fmt_ms

    return fmt_ms(seconds if seconds is not None and math.isfinite(seconds) else None, digits)


def fmt_duration(seconds: float) -> str:
    """A length of time for people, rounded: ``45 s``, ``7.8 min``, ``2.5 h``."""
    s = float(seconds)
    if not math.isfinite(s):
        return "unbounded"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _load(x: float, closed: bool) -> str:
    return f"{x:,.0f}" if closed else (f"{x:,.1f}" if x < 1000 else f"{x:,.0f}")


def _shape_text(dep) -> str:
    """``prefill tp4@h100-sxm + decode tp4@h100-sxm`` (no counts)."""
    parts = [f"{p.role} {p.spec().split('x', 1)[1]}" for p in dep.pools]
    text = " + ".join(parts)
    if dep.approach == "chunked":
        text += f", chunk {dep.chunk_size}"
    return text


def _counts_text(dep) -> str:
    return " + ".join(str(p.instances) for p in dep.pools)


def _span(day) -> str:
    h = day.profile.span_s / 3600.0
    return "per day" if abs(h - 24.0) < 1e-9 else f"over the profile's {fmt_span(day.profile.span_s)}"


def one_shape(day: DayPlan) -> bool:
    from planner.day.schedule import shape_of

    return len({shape_of(p.deployment) for p in day.periods}) == 1


def show_day(console: Console, day: DayPlan, chart: bool = True) -> None:
    inp, prof, sc = day.inputs, day.profile, day.scaling
    slo = inp.slo
    pct = slo.percentile
    single = one_shape(day)
    peak = day.peak
    console.print(f"[bold]day plan[/]: {escape(inp.model.id)}, {escape(prof.describe())}")
    how = (f"{peak.deployment.approach} all day, pools resized ({escape(_shape_text(peak.deployment))})"
           if single else "the approach may change between periods (--allow-approach-change)")
    mins = ", ".join(f"{k} >= {v}" for k, v in sorted(sc.min_instances.items()))
    maxs = ", ".join(f"{k} <= {v}" for k, v in sorted(sc.max_instances.items()))
    limits = "; ".join(x for x in (mins and "min " + mins, maxs and "max " + maxs) if x)
    console.print(f"  {how}; {sc.mode} scaling, scale-up {fmt_span(sc.scale_up_s)}"
                  + (f"; {escape(limits)}" if limits else ""))
    closed = prof.closed
    pools_head = "+".join(LETTER.get(p.role, "?") for p in peak.deployment.pools) if single else "pools"
    wide = console.width >= 100
    cols = [("period", {"justify": "left", "no_wrap": True}), "clients" if closed else "QPS",
            (pools_head, {"justify": "right" if single else "left"}), "GPUs"]
    if wide:
        cols.append(("utilisation", {"justify": "left"}))
    cols += [f"TTFT P{pct}", f"TPOT P{pct}", "attainment", ("scale-up lag", {"justify": "left"})]
    t = _table(*cols)
    for p in day.periods:
        if p.plan is None:
            row = [p.label, _load(p.load, closed), _counts_text(p.deployment) if single else
                   escape(" + ".join(q.spec() for q in p.deployment.pools)), str(p.gpus)]
            t.add_row(*(row + (["idle"] if wide else []) + ["-", "-", "-", "idle"]))
            continue
        m, key = p.plan.metrics, slo.key
        util = " ".join(f"{LETTER.get(r, r[:1].upper())} {_pct(v, 0) if math.isfinite(v) else '>100%'}"
                        for r, v in m.utilization.items() if r in LETTER)
        att = _pct(p.attainment)
        if p.attainment < day.target - 1e-9:
            att = f"[yellow]{att}[/]"
        lag = ""
        if p.lag is not None:
            w = p.lag
            lag = (f"{fmt_span(w.seconds)} at {_pct(w.attainment, 0)}" if w.stable
                   else f"{fmt_span(w.seconds)} overloaded: {fmt_duration(w.late_s)} late")
        pools = _counts_text(p.deployment) if single else escape(" + ".join(q.spec() for q in p.deployment.pools))
        row = [p.label, _load(p.load, closed), pools, str(p.gpus)] + ([util] if wide else [])
        t.add_row(*(row + [_ms(m.ttft.get(key)), _ms(m.tpot.get(key), 2), att, lag]))
    console.print(t)
    for line in summary_lines(day):
        console.print(line)
    if chart:
        for line in chart_lines(day, min(console.width, 100)):
            console.print(line, markup=False, highlight=False)


def summary_lines(day: DayPlan) -> list[str]:
    """The day's totals, the static comparison, attainment and scaling, the approaches, the
    autoscaling policy (rich markup)."""
    out = []
    span = _span(day)
    st = day.static
    gh, cost = day.gpu_hours, day.cost
    out.append(f"[bold]GPU-hours {span}: {gh:,.0f}[/] (${cost:,.0f})")
    if st:
        d = st["deployment"]
        save, save_c = st["gpu_hours"] - gh, st["cost"] - cost
        share = save / st["gpu_hours"] if st["gpu_hours"] else 0.0
        out.append(f"static peak provisioning: {d.approach} {escape(' + '.join(p.spec() for p in d.pools))}, "
                   f"{st['gpus']} GPUs all day: {st['gpu_hours']:,.0f} GPU-hours (${st['cost']:,.0f}); "
                   f"[bold]the schedule saves {save:,.0f} GPU-hours ({share:.0%}), ${save_c:,.0f}[/]")
    att, target = day.attainment, day.target
    lag = day.lagging
    colour = "green" if att >= target - 1e-9 else "yellow"
    line = f"predicted attainment over the day: [{colour}]{_pct(att)}[/] (target {target:.0%})"
    if lag:
        labels = [p.label for p in lag]
        line += (f"; scaling lags the load at the start of {len(lag)} period{'s' if len(lag) > 1 else ''} "
                 f"({escape(_ranges(labels))})")
    out.append(line)
    top = day.max_scale_up_s()
    if day.scaling.mode == "reactive":
        if top is None:
            out.append("even instant scaling misses the target: the steady periods fall short")
        elif top >= float(min(day.profile.duration_s)) - 1e-9:
            out.append("the day holds its target with any scale-up time up to a whole period")
        else:
            out.append(f"scale-ups must finish within {fmt_duration(top)} for the day to hold "
                       f"P{day.inputs.slo.percentile} ({'it does' if top >= day.scaling.scale_up_s else 'it does not'} "
                       f"at {fmt_span(day.scaling.scale_up_s)}; --scaling scheduled starts instances ahead)")
    if len(day.approaches) > 1:
        parts = []
        for a, v in day.approaches.items():
            parts.append(f"{a} {v['gpu_hours']:,.0f} ({v['low_gpus']}-{v['peak_gpus']} GPUs)")
        out.append(f"best single-shape day per approach, GPU-hours: {', '.join(parts)}")
    for role, pol in day.autoscaling.items():
        fit = (f"reproduces all {pol['periods']} periods" if pol["exact"] else
               f"matches {pol['matched']} of {pol['periods']} periods, more instances in {pol['over']} "
               f"(at most {pol['extra']} more)")
        g = pol["guard"]
        out.append(f"autoscale {role}: {pol['min_instances']}-{pol['max_instances']} instances on "
                   f"{pol['signal'].replace('_', ' ')} per instance, target {_sig(pol['target'])} ({fit}); "
                   f"guard: P{g['percentile']} {g['latency'].upper()} over {_ms(g['slo_s'])}")
    for note in day.notes:
        out.append(f"[dim]{escape(note)}[/]")
    out.append(f"[dim]{day.searches} searches, {day.evaluated:,} candidates evaluated, {day.wall_s:.2f} s[/]")
    return out


def _sig(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def _ranges(labels: list) -> str:
    if len(labels) <= 4:
        return ", ".join(labels)
    return f"{labels[0]} ... {labels[-1]}"


# --------------------------------------------------------------------------------------------
# Text chart: the load as bars, GPUs per pool as letters
# --------------------------------------------------------------------------------------------


def chart_lines(day: DayPlan, width: int = 100) -> list[str]:
    """The load of each period as a bar (left scale) and each pool's GPUs as its letter (U, P,
    D; right scale), periods left to right, with the static peak's GPUs as a dotted line."""
    periods = day.periods
    K = len(periods)
    label_w = 9
    col = max(1, min(4, (width - 2 * label_w) // max(K, 1)))
    if col < 2 and K > (width - 2 * label_w):
        step = math.ceil(K / (width - 2 * label_w))
        periods = periods[::step]
        K = len(periods)
        col = 1
    loads = [p.load for p in periods]
    roles = [p.role for p in day.peak.deployment.pools]
    gpus = {r: [sum(q.gpus for q in p.deployment.pools if q.role == r) for p in periods] for r in roles}
    static = day.static.get("gpus") if day.static else None
    lmax = max(loads) or 1.0
    gmax = max([max(v) for v in gpus.values()] + ([static] if static else [])) or 1
    H = CHART_HEIGHT
    grid = [[" "] * (K * col) for _ in range(H)]
    for i, v in enumerate(loads):
        h = v / lmax * H
        for row in range(H):
            level = H - row  # the row's top, in rows from the bottom
            c = i * col + col // 2
            if h >= level:
                grid[row][c] = "\u2588"
            elif h > level - 0.5:
                grid[row][c] = "\u2584"
    if static:
        r0 = H - max(1, round(static / gmax * H))
        for c in range(K * col):
            if grid[r0][c] == " ":
                grid[r0][c] = "\u00b7"
    for j, r in enumerate(roles):
        for i, g in enumerate(gpus[r]):
            row = H - max(1, round(g / gmax * H))
            c = i * col + (0 if j == 0 else col - 1) if col > 1 else i * col
            grid[row][c] = LETTER.get(r, "?")
    what = "clients" if day.profile.closed else "QPS"
    out = [f"{what:>{label_w - 1}} " + " " * (K * col) + " GPUs"]
    for row in range(H):
        lv = lmax * (H - row) / H
        gv = gmax * (H - row) / H
        left = f"{lv:>{label_w - 2},.0f} |" if row in (0, H // 2, H - 1) else " " * (label_w - 1) + "|"
        right = f"| {gv:,.0f}" if row in (0, H // 2, H - 1) else "|"
        out.append(left + "".join(grid[row]) + right)
    axis = [" "] * (K * col)
    every = max(1, math.ceil(6 / col))
    for i in range(0, K, every):
        text = periods[i].label[:5]
        pos = i * col
        for n, ch in enumerate(text):
            if pos + n < len(axis):
                axis[pos + n] = ch
    out.append(" " * label_w + "".join(axis))
    import textwrap

    legend = ", ".join(f"{LETTER[r]} = {r} GPUs" for r in roles)
    text = f"bars: {what} per period; {legend}" + ("; \u00b7 static peak" if static else "")
    out += textwrap.wrap(text, width=max(width, 40), initial_indent=" " * label_w, subsequent_indent=" " * label_w)
    return out


# --------------------------------------------------------------------------------------------
# PNG / SVG
# --------------------------------------------------------------------------------------------


def day_plot(day: DayPlan, path: str, output=None, sim=None, force: bool | None = None) -> None:
    """The load curve (left axis) and the GPUs of each pool, stacked (right axis), over the
    profile, the static peak provisioning dashed, lagging scale-ups shaded; with a simulation,
    its attainment per period beside the prediction in a second panel."""
    from planner.render.charts import _figure, _format, _matplotlib, _save, plot_output

    fmt, out = plot_output(path, force) if output is None else (_format(path), output)
    _matplotlib()
    prof = day.profile
    hours = [p.start_s / 3600.0 for p in day.periods] + [prof.span_s / 3600.0]
    fig = _figure((10.5, 7.0 if sim is not None else 5.5))
    axes = fig.subplots(2 if sim is not None else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    loads = [p.load for p in day.periods]
    ax.step(hours, loads + loads[-1:], where="post", color="black", lw=1.6,
            label="clients" if prof.closed else "request rate (QPS)")
    ax.set_ylabel("concurrent clients" if prof.closed else "requests per second")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    roles = [p.role for p in day.peak.deployment.pools]
    base = [0.0] * len(day.periods)
    for r in roles:
        g = [float(sum(q.gpus for q in p.deployment.pools if q.role == r)) for p in day.periods]
        top = [b + x for b, x in zip(base, g)]
        ax2.fill_between(hours, base + base[-1:], top + top[-1:], step="post", alpha=0.35,
                         color=COLOUR.get(r, "grey"), label=f"{r} GPUs")
        base = top
    if day.static:
        ax2.axhline(day.static["gpus"], ls="--", color="#d62728", lw=1.2,
                    label=f"static peak: {day.static['gpus']} GPUs")
    for p in day.lagging:
        a = p.start_s / 3600.0
        ax.axvspan(a, a + p.lag.seconds / 3600.0, color="#d62728", alpha=0.18, lw=0)
    ax2.set_ylabel("GPUs")
    ax2.set_ylim(bottom=0)
    ax.set_zorder(ax2.get_zorder() + 1)  # the load curve over the GPU areas
    ax.patch.set_visible(False)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    ax.grid(True, alpha=0.3)
    st = day.static
    saving = (f"; static peak {st['gpu_hours']:,.0f} ({1 - day.gpu_hours / st['gpu_hours']:.0%} saved)"
              if st and st["gpu_hours"] else "")
    fig.suptitle(f"{day.inputs.model.id}: {day.gpu_hours:,.0f} GPU-hours {_span(day)}{saving}")
    ax.set_title(f"{prof.describe()}; {day.scaling.mode} scaling, scale-up {fmt_span(day.scaling.scale_up_s)}"
                 " (shaded: lag windows)", fontsize=9)
    if sim is not None:
        ax3 = axes[1]
        mid = [(p.start_s + p.duration_s / 2) / 3600.0 for p in day.periods]
        pred = [p.attainment * 100 if p.plan is not None else math.nan for p in day.periods]
        got = [s.attainment * 100 if s is not None else math.nan for s in sim.periods]
        ax3.plot(mid, pred, "o-", color="#1f77b4", label="predicted")
        ax3.plot(mid, got, "s--", color="#ff7f0e", label="simulated")
        ax3.axhline(day.target * 100, ls=":", color="#d62728", label=f"target {day.target:.0%}")
        ax3.set_ylabel("attainment (%)")
        ax3.legend(fontsize=8)
        ax3.grid(True, alpha=0.3)
        axes[-1].set_xlabel("hours from the profile's start")
    else:
        ax.set_xlabel("hours from the profile's start")
    _save(fig, out, fmt, commit=output is None)


# --------------------------------------------------------------------------------------------
# The simulated day
# --------------------------------------------------------------------------------------------


def show_day_simulation(console: Console, periods: list, sim, profile) -> None:
    """Predicted against simulated attainment per period, and the day's."""
    closed = profile.closed
    t = _table(("period", {"justify": "left", "no_wrap": True}), "clients" if closed else "QPS",
               ("pools", {"justify": "left"}), "predicted", "simulated", "diff", "requests",
               ("simulated parts", {"justify": "left"}))
    for p in periods:
        s = sim.periods[p.index]
        if s is None or p.plan is None:
            t.add_row(p.label, _load(p.load, closed), _counts_text(p.deployment), "-", "-", "-", "0", "idle")
            continue
        diff = (s.attainment - p.attainment) * 100 if math.isfinite(s.attainment) else math.nan
        parts = ", ".join(f"{x['part']} {_pct(x['attainment'], 0)}" for x in s.parts if x["requests"])
        if s.sampled:
            parts += " (sampled)"
        t.add_row(p.label, _load(p.load, closed), _counts_text(p.deployment), _pct(p.attainment),
                  _pct(s.attainment), f"{diff:+.1f}" if math.isfinite(diff) else "-", f"{s.requests:,}", parts)
    console.print(t)
    w = [p.requests for p in periods]
    pred = sum(wi * p.attainment for wi, p in zip(w, periods) if p.plan is not None) / max(sum(w), 1e-300)
    got = sim.attainment
    console.print(f"[bold]attainment over the day: predicted {_pct(pred)}, simulated {_pct(got)}[/] "
                  f"({(got - pred) * 100:+.1f} points; {sim.requests:,} requests counted, "
                  f"{sim.simulated:,} simulated with the warm-ups, seed {sim.seed}, {sim.wall_s:.1f} s)")


# --------------------------------------------------------------------------------------------
# whatif --vary peak
# --------------------------------------------------------------------------------------------


def show_whatif_day(console: Console, rows: list) -> None:
    t = _table(("peak", {"justify": "right", "style": "bold"}), ("approach", {"justify": "left", "no_wrap": True}),
               ("pools at peak", {"justify": "left"}), "GPUs", "GPU-h", "$", "static GPU-h", "saving", "attainment")
    misses = []
    for r in rows:
        v = str(r["values"]["peak"])
        day = r.get("day")
        if day is None:
            t.add_row(v, "[red]none[/]", "-", "-", "-", "-", "-", "-", "-")
            misses.append(f"peak {v}: {str(r.get('error') or 'no plan').splitlines()[0]}")
            continue
        pk = day.peak
        st = day.static
        lo = min(p.gpus for p in day.periods)
        save = f"{1 - day.gpu_hours / st['gpu_hours']:.0%}" if st and st["gpu_hours"] else "-"
        t.add_row(v, pk.deployment.approach if one_shape(day) else "mixed",
                  escape(" + ".join(q.spec() for q in pk.deployment.pools)), f"{lo}-{pk.gpus}",
                  f"{day.gpu_hours:,.0f}", f"{day.cost:,.0f}", f"{st['gpu_hours']:,.0f}" if st else "-", save,
                  _pct(day.attainment))
    console.print(t)
    for line in misses:
        console.print(f"[red]none[/] at {escape(line)}")


def whatif_day_document(rows: list) -> dict:
    from planner.day.document import day_document

    out = []
    for r in rows:
        d: dict[str, Any] = {"values": dict(r["values"])}
        if r.get("day") is not None:
            d["day"] = day_document(r["day"])
        else:
            d["day"] = None
            d["error"] = r.get("error")
        out.append(d)
    return {"axes": ["peak"], "rows": out}


__all__ = ["day_document", "simulation_document", "chart_lines", "day_plot", "show_day", "show_day_simulation", "show_whatif_day", "summary_lines",
           "whatif_day_document"]
