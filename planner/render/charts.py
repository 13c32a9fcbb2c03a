"""Pictures of recommend and whatif results: a text chart for the terminal, PNG or SVG files.

The text chart needs nothing beyond the standard library. The image files need matplotlib (the
optional ``plot`` extra); it is imported inside the functions that draw them, never at module
level, so that ``pdplan --help`` and every other command stay as light as before. Figures are
drawn with the object-oriented API on an Agg canvas (no pyplot, no global backend state).

Files are never overwritten silently: an existing ``--plot-file`` is replaced only when the
command was given ``--force`` (``recommend`` has one; ``whatif`` has none, so it refuses), and
the image is written to a temporary file first and renamed into place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from planner.errors import InvalidRequestError

if TYPE_CHECKING:
    from rich.console import Console

APPROACH_ORDER = ("unified", "chunked", "disaggregated")
LETTER = {"unified": "U", "chunked": "C", "disaggregated": "D"}
COLOUR = {"unified": "#1f77b4", "chunked": "#ff7f0e", "disaggregated": "#2ca02c"}
FORMATS = {".png": "png", ".svg": "svg"}
MISSING_MATPLOTLIB = ("--plot-file: needs matplotlib; install it with: pip install 'pdplan[plot]' "
                      "(or pip install matplotlib)")
LOG_RANGE = 20.0  # a log axis once the largest value is this many times the smallest
WIDTH = 100  # the text chart fits this many columns


# --------------------------------------------------------------------------------------------
# The data of a whatif chart
# --------------------------------------------------------------------------------------------


@dataclass
class _Point:
    ttft_ms: float | None
    tpot_ms: float | None
    meets: bool
    winner: bool
    gpus: int


@dataclass
class _Chart:
    axis: str
    labels: list  # the axis value of every row, as given
    series: dict  # approach -> [ _Point | None per row ]
    slo: dict  # 'ttft' / 'tpot' -> [ms | None per row]
    winners: list  # approach (or None) per row
    percentile: int = 90
    model: str = ""


def _ms(seconds) -> float | None:
    try:
        v = float(seconds) * 1e3
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _chart(rows, axis: str) -> _Chart:
    n = len(rows)
    ch = _Chart(axis, [str(r["values"].get(axis, "")) for r in rows],
                {a: [None] * n for a in APPROACH_ORDER},
                {"ttft": [None] * n, "tpot": [None] * n}, [None] * n)
    models = []
    for i, r in enumerate(rows):
        rec = r.get("rec")
        if rec is None:
            continue
        slo = rec.plan.inputs.slo
        ch.percentile = int(slo.percentile)
        ch.slo["ttft"][i], ch.slo["tpot"][i] = _ms(slo.ttft_s), _ms(slo.tpot_s)
        ch.winners[i] = rec.plan.approach
        models.append(rec.plan.inputs.model.id)
        for plan in [rec.plan, *rec.alternatives]:
            key = plan.inputs.slo.key
            ch.series.setdefault(plan.approach, [None] * n)[i] = _Point(
                _ms(plan.metrics.ttft.get(key)), _ms(plan.metrics.tpot.get(key)),
                bool(plan.meets_slo), plan is rec.plan, int(plan.total_gpus))
    distinct = list(dict.fromkeys(models))
    ch.model = distinct[0] if len(distinct) == 1 else ", ".join(distinct[:3])
    return ch


def _fmt(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.2g}"


# --------------------------------------------------------------------------------------------
# Text chart
# --------------------------------------------------------------------------------------------

_LABEL = 8  # y labels
_RIGHT = 14  # room right of the plot for the SLO label
_HEIGHT = 12


def _x_positions(n: int, plot_w: int) -> list[int]:
    if n == 1:
        return [plot_w // 2]
    return [2 + int(round(i * (plot_w - 5) / (n - 1))) for i in range(n)]


def _panel(ch: _Chart, metric: str, plot_w: int) -> list[str]:
    n = len(ch.labels)
    name = {"ttft": "TTFT", "tpot": "TPOT"}[metric]
    field_ = f"{metric}_ms"
    slo = ch.slo[metric]
    values = [getattr(p, field_) for s in ch.series.values() for p in s if p is not None]
    everything = [v for v in values + slo if v is not None]
    head = f"{name} P{ch.percentile} (ms) against {ch.axis}"
    if not everything:
        return [head, "  (no plan to draw)"]
    lo, hi = min(everything), max(everything)
    log = hi / lo > LOG_RANGE
    if log:
        lo, hi = lo / 1.25, hi * 1.25
        fwd, back = math.log, math.exp
    else:
        pad = (hi - lo) * 0.08 or hi * 0.1
        lo, hi = max(lo - pad, 0.0), hi + pad
        fwd = back = float  # type: ignore[assignment]  # float(x) is the identity on these floats
    f_lo, span = fwd(lo), (fwd(hi) - fwd(lo)) or 1.0
    top = _HEIGHT - 1

    def row_t(u: float) -> int:  # grid row of a transformed value
        return max(0, min(top, top - int(round((u - f_lo) / span * top))))

    xs = _x_positions(n, plot_w)
    grid = [[" "] * plot_w for _ in range(_HEIGHT)]

    def put(r: int, c: int, mark: str, over: str = " ") -> None:
        if 0 <= c < plot_w and grid[r][c] in over:
            grid[r][c] = mark

    # An approach's consecutive points joined by dots.
    for points in ch.series.values():
        for i in range(n - 1):
            va = getattr(points[i], field_) if points[i] else None
            vb = getattr(points[i + 1], field_) if points[i + 1] else None
            if va is None or vb is None:
                continue
            ua, ub = fwd(va), fwd(vb)
            for c in range(xs[i] + 1, xs[i + 1]):
                put(row_t(ua + (c - xs[i]) / (xs[i + 1] - xs[i]) * (ub - ua)), c, ".")
    # The SLO, interpolated between the values it has (it moves when the axis is an SLO).
    known = [(xs[i], fwd(v)) for i, v in enumerate(slo) if v is not None]
    slo_row = None
    if known:
        for c in range(plot_w):
            if c <= known[0][0]:
                u = known[0][1]
            elif c >= known[-1][0]:
                u = known[-1][1]
            else:
                j = max(k for k in range(len(known)) if known[k][0] <= c)
                (c0, u0), (c1, u1) = known[j], known[j + 1]
                u = u0 + (c - c0) / (c1 - c0) * (u1 - u0)
            put(row_t(u), c, "=", " .")
        slo_row = row_t(known[-1][1])
    # Points: the winner in capitals first, then the other approaches in lower case (beside it
    # when they would cover it).
    for winners in (True, False):
        for approach, points in ch.series.items():
            for i, p in enumerate(points):
                v = getattr(p, field_) if p else None
                if v is None or p.winner != winners:
                    continue
                mark = LETTER.get(approach, "?")
                mark = mark if winners else mark.lower()
                r = row_t(fwd(v))
                # Side by side when another approach already sits there.
                for c in (xs[i], xs[i] + 1, xs[i] - 1, xs[i] + 2):
                    if 0 <= c < plot_w and grid[r][c] in " .=":
                        grid[r][c] = mark
                        break
                else:
                    put(r, xs[i], mark, " .=ucd")

    const = len({round(v, 9) for v in slo if v is not None}) == 1
    lines = [head + ("  [log scale]" if log else "")]
    for r in range(_HEIGHT):
        label = _fmt(back(f_lo + span * (top - r) / top)) if r in (0, top // 2, top) else ""
        body = "".join(grid[r]).rstrip()
        if r == slo_row:
            slo_v = next(v for v in reversed(slo) if v is not None)
            body = body.ljust(plot_w) + (f" SLO {_fmt(slo_v)} ms" if const else " SLO")
        lines.append(f"{label:>{_LABEL - 1}} |{body}")
    axis = ["-"] * plot_w
    for c in xs:
        axis[c] = "+"
    lines.append(" " * (_LABEL - 1) + " +" + "".join(axis))
    return lines


def _x_labels(ch: _Chart, plot_w: int) -> list[str]:
    xs = _x_positions(len(ch.labels), plot_w)
    out = []
    for texts in (ch.labels,
                  [(f"{LETTER[w]} {ch.series[w][i].gpus}" if w else "none")
                   for i, w in enumerate(ch.winners)]):
        line = [" "] * (plot_w + 12)
        for i, c in enumerate(xs):
            text = texts[i][:12]
            start = max(0, c - len(text) // 2)
            if all(ch_ == " " for ch_ in line[max(start - 1, 0):start + len(text) + 1]):
                line[start:start + len(text)] = list(text)
        out.append("".join(line).rstrip())
    return [" " * (_LABEL + 1) + out[0], "winner".rjust(_LABEL - 1) + "  " + out[1]]


def terminal_lines(rows, axis: str) -> list[str]:
    """TTFT and TPOT at the percentile against ``axis``, as lines of at most 100 characters:
    one letter per approach at every value (capitals: the winner, lower case: the best plan of
    the other approaches), dots joining an approach's points and ``=`` for the SLO."""
    ch = _chart(rows, axis)
    plot_w = WIDTH - _LABEL - 1 - _RIGHT
    lines: list[str] = []
    for metric in ("ttft", "tpot"):
        lines += _panel(ch, metric, plot_w)
        lines += _x_labels(ch, plot_w)
        lines.append("")
    lines.append("U unified, C chunked prefill, D disaggregated (capitals: the winner; lower case: "
                 "the best")
    lines.append("plan of each other approach); '.' joins an approach's points; '=' is the SLO.")
    missing = [ch.labels[i] for i, w in enumerate(ch.winners) if w is None]
    if missing:
        lines.append(f"no plan within the GPU limit at {axis} = {', '.join(missing)}")
    return [ln[:WIDTH] for ln in lines]


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _force_given(force: bool | None) -> tuple[bool, bool]:
    """(the command has --force, it was given). ``force=None`` asks the running pdplan
    command (its ``--force`` flag, if it has one); outside a command there is none."""
    if force is not None:
        return True, bool(force)
    try:
        import click
    except ImportError:  # pragma: no cover - click is a dependency
        return False, False
    ctx = click.get_current_context(silent=True)
    if ctx is None or not any(p.name == "force" for p in ctx.command.params):
        return False, False
    return True, bool(ctx.params.get("force"))


def plot_output(path: str, force: bool | None = None, outputs=None):
    """(the format, the checked :class:`planner.files.Output`) of ``path``; added to
    ``outputs`` (a :class:`planner.files.Outputs`) when given."""
    from planner.files import Output

    p = Path(str(path)).expanduser()
    ext = p.suffix.lower()
    if ext not in FORMATS:
        got = f"{ext!r}" if ext else "no extension"
        raise InvalidRequestError(f"--plot-file: {path}: unknown image format ({got}); valid: "
                                  f"{', '.join(FORMATS)}")
    has_force, forced = _force_given(force)
    hint = "pass --force to overwrite it" if has_force else "remove it or choose another name"
    if outputs is not None:
        return FORMATS[ext], outputs.add(path, "--plot-file", forced, hint)
    return FORMATS[ext], Output(path, "--plot-file", forced, hint)


def _format(path: str) -> str:
    return FORMATS[Path(str(path)).suffix.lower()]


def check_plot_file(path: str, force: bool | None = None, outputs=None) -> str:
    """The format ('png' or 'svg') of ``path``, after checking that it may be written (and
    adding it to ``outputs``, a :class:`planner.files.Outputs`, when given)."""
    return plot_output(path, force, outputs)[0]


def _matplotlib():
    """(Figure, FigureCanvasAgg), or the install hint when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InvalidRequestError(MISSING_MATPLOTLIB) from None
    return Figure, FigureCanvasAgg


def _figure(size):
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out, fmt: str, commit: bool) -> None:
    """Render ``fig`` into the staged output ``out`` (a temporary file next to it), and move it
    into place when ``commit`` (else the caller's :class:`planner.files.Outputs` does)."""
    meta = {"Software": "pdplan"} if fmt == "png" else {"Creator": "pdplan"}
    out.stage(lambda fh: fig.savefig(fh, format=fmt, dpi=120, metadata=meta))
    if commit:
        out.commit()


def _numeric_axis(axis: str, labels: list) -> list | None:
    """The axis values as numbers when they all read as one (qps, lengths, SLOs in ms)."""
    from planner.units import parse_duration, parse_size

    out = []
    for text in labels:
        try:
            if axis in ("isl", "osl"):
                out.append(float(parse_size(text, axis)))
            elif axis in ("ttft-slo", "tpot-slo"):
                out.append(parse_duration(text, axis) * 1e3)
            else:
                out.append(float(text))
        except (InvalidRequestError, ValueError):
            return None
        if not math.isfinite(out[-1]) or out[-1] <= 0:
            return None
    return out


def _wide(values) -> bool:
    v = [x for x in values if x is not None and x > 0]
    return bool(v) and max(v) / min(v) > LOG_RANGE


AXIS_TITLE = {"qps": "request rate (QPS)", "isl": "prompt length (tokens)",
              "osl": "output length (tokens)", "ttft-slo": "TTFT SLO (ms)",
              "tpot-slo": "TPOT SLO (ms)", "gpu": "GPU", "model": "model"}


def whatif_plot(rows, axis: str, path: str, force: bool | None = None, output=None) -> None:
    """Two panels (TTFT, TPOT at the percentile) against ``axis``: one line per approach, the
    winner at each value ringed, plans that miss the SLO hollow, the SLO dashed. PNG or SVG by
    the extension of ``path``."""
    fmt, out = plot_output(path, force) if output is None else (_format(path), output)
    _matplotlib()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    ch = _chart(rows, axis)
    nums = _numeric_axis(axis, ch.labels)
    xs = nums if nums is not None else list(range(len(ch.labels)))
    fig = _figure((11.5, 4.8))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("ttft", "tpot")):
        name = metric.upper()
        shown = []
        for approach in APPROACH_ORDER:
            points = ch.series.get(approach, [])
            ys = [getattr(p, f"{metric}_ms") if p else None for p in points]
            if not any(y is not None for y in ys):
                continue
            line_y = [y if y is not None else math.nan for y in ys]
            colour = COLOUR[approach]
            ax.plot(xs, line_y, "-", color=colour, lw=1.8, zorder=2)
            shown += [y for y in ys if y is not None]
            for i, p in enumerate(points):
                if p is None or ys[i] is None:
                    continue
                ax.scatter([xs[i]], [ys[i]], s=42, zorder=3, color=colour,
                           facecolors=colour if p.meets else "white", linewidths=1.5)
                if p.winner:
                    ax.scatter([xs[i]], [ys[i]], s=190, zorder=4, facecolors="none",
                               edgecolors="black", linewidths=1.3)
                    ax.annotate(f"{p.gpus} GPUs", (xs[i], ys[i]), xytext=(0, 10),
                                textcoords="offset points", ha="center", fontsize=8, zorder=5)
        slo = ch.slo[metric]
        if any(v is not None for v in slo):
            if len({v for v in slo if v is not None}) == 1:
                ax.axhline(next(v for v in slo if v is not None), ls="--", color="#d62728", lw=1.3,
                           zorder=1)
            else:
                ax.plot(xs, [v if v is not None else math.nan for v in slo], "--", color="#d62728",
                        lw=1.3, zorder=1)
            shown += [v for v in slo if v is not None]
        if _wide(shown):
            ax.set_yscale("log")
        if nums is not None:
            if max(nums) / min(nums) >= 4:
                ax.set_xscale("log")
                ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticks(xs, ch.labels)
        else:
            ax.set_xticks(xs, ch.labels, rotation=20 if max(map(len, ch.labels)) > 8 else 0)
        for i, w in enumerate(ch.winners):
            if w is None:
                ax.annotate("no plan", (xs[i], 0.02), xycoords=("data", "axes fraction"),
                            ha="center", fontsize=8, color="#d62728")
        ax.set_xlabel(AXIS_TITLE.get(axis, axis))
        ax.set_ylabel(f"{name} P{ch.percentile} (ms)")
        ax.set_title(f"{name} at P{ch.percentile}")
        ax.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], color=COLOUR[a], marker="o", lw=1.8, label=a)
               for a in APPROACH_ORDER if any(p is not None for p in ch.series.get(a, []))]
    handles += [
        Line2D([], [], ls="none", marker="o", markersize=12, markerfacecolor="none",
               markeredgecolor="black", label="winner at that value"),
        Line2D([], [], ls="none", marker="o", markerfacecolor="white", markeredgecolor="grey",
               label="misses the SLO"),
        Line2D([], [], ls="--", color="#d62728", label="SLO"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    title = f"{ch.model}: P{ch.percentile} TTFT and TPOT of the best plan of each approach"
    fig.suptitle(f"{title}, against {AXIS_TITLE.get(axis, axis)}")
    _save(fig, out, fmt, commit=output is None)


def _pareto_front(points):
    """The (x, y) points no other point beats on both (smaller x, smaller y), sorted by x."""
    front, best = [], math.inf
    for x, y in sorted(points):
        if y < best:
            front.append((x, y))
            best = y
    return front


def pareto_plot(rec, path: str, force: bool | None = None, output=None) -> None:
    """Every candidate of the search (GPUs, or dollars per hour with ``--objective cost``,
    against TPOT at the percentile), coloured by approach, hollow where it misses the SLO; the
    Pareto front of those that meet it as a step line; the chosen plan starred and labelled."""
    fmt, out = plot_output(path, force) if output is None else (_format(path), output)
    _matplotlib()

    plan = rec.plan
    inp = plan.inputs
    slo = inp.slo
    key = slo.key
    by_cost = getattr(inp, "objective", "gpus") == "cost"
    xof = (lambda c: float(c.cost)) if by_cost else (lambda c: float(c.gpus))
    fig = _figure((9.5, 6.0))
    ax = fig.subplots()
    hidden = 0
    feasible, xs_all, ys_all = [], [], []
    for approach in APPROACH_ORDER:
        cands = [c for c in rec.cloud if c.approach == approach]
        pts = [(xof(c), _ms(c.tpot), c.feasible) for c in cands]
        hidden += sum(1 for p in pts if p[1] is None)
        pts = [p for p in pts if p[1] is not None]
        if not pts:
            continue
        colour = COLOUR[approach]
        ok = [p for p in pts if p[2]]
        miss = [p for p in pts if not p[2]]
        if ok:
            ax.scatter([p[0] for p in ok], [p[1] for p in ok], s=34, color=colour, alpha=0.85,
                       label=f"{approach} (meets the SLO)", zorder=3)
        if miss:
            ax.scatter([p[0] for p in miss], [p[1] for p in miss], s=34, facecolors="none",
                       edgecolors=colour, alpha=0.85, label=f"{approach} (misses)", zorder=3)
        feasible += [(p[0], p[1]) for p in ok]
        xs_all += [p[0] for p in pts]
        ys_all += [p[1] for p in pts]
    front = _pareto_front(feasible)
    if front:
        fx = [p[0] for p in front]
        fy = [p[1] for p in front]
        ax.step(fx, fy, where="post", color="black", lw=1.4, zorder=2,
                label="Pareto front of the plans that meet the SLO")
    px = float(plan.cost_per_hour) if by_cost else float(plan.total_gpus)
    py = _ms(plan.metrics.tpot.get(key))
    if py is not None:
        ax.scatter([px], [py], marker="*", s=420, color=COLOUR.get(plan.approach, "black"),
                   edgecolors="black", linewidths=1.2, zorder=5, label="chosen plan")
        pools = " + ".join(p.spec() for p in plan.deployment.pools)
        if plan.deployment.approach == "chunked":
            pools += f", chunk {plan.deployment.chunk_size}"
        text = (f"chosen: {plan.approach}\n{pools}\n{plan.total_gpus} GPUs, "
                f"${plan.cost_per_hour:,.0f}/h, TPOT {py:.1f} ms")
        ax.annotate(text, (px, py), xytext=(18, 26), textcoords="offset points", fontsize=9,
                    arrowprops={"arrowstyle": "->", "color": "black"},
                    bbox={"boxstyle": "round", "fc": "white", "ec": "grey", "alpha": 0.9}, zorder=6)
        xs_all.append(px)
        ys_all.append(py)
    tpot_slo = _ms(slo.tpot_s)
    if tpot_slo is not None:
        ax.axhline(tpot_slo, ls="--", color="#d62728", lw=1.3, label=f"TPOT SLO {tpot_slo:g} ms",
                   zorder=1)
        ys_all.append(tpot_slo)
    if _wide(ys_all):
        ax.set_yscale("log")
    if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) > 16:
        ax.set_xscale("log")
    ax.set_xlabel("cost ($/hour)" if by_cost else "GPUs")
    ax.set_ylabel(f"TPOT P{slo.percentile} (ms)")
    note = f"; {hidden} overloaded candidates not shown" if hidden else ""
    fig.suptitle(f"{inp.model.id} at {inp.workload.qps:g} QPS: the smallest deployment of each of "
                 f"{len(rec.cloud)} configurations")
    ax.set_title(f"P{slo.percentile} SLOs: TTFT {slo.ttft_s * 1e3:g} ms, TPOT {slo.tpot_s * 1e3:g} ms"
                 f"{note}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _save(fig, out, fmt, commit=output is None)


__all__ = ["terminal_lines", "whatif_plot", "pareto_plot", "check_plot_file", "plot_output", "MISSING_MATPLOTLIB"]


def show_whatif_plot(console: Console, rows, axis: str) -> None:
    """TTFT and TPOT at the percentile against the axis, one mark per approach, as text bars."""
    for line in terminal_lines(rows, axis):
        console.print(line, highlight=False, markup=False)
