"""The interference picture: a few requests scheduled iteration by iteration, drawn tick by tick.

The schedule is the token-by-token reference scheduler's (:mod:`planner.sim.reference`, the
rules the simulator is tested against) at the scale of a handful of requests on one lane (one
prefill lane and one decode lane when disaggregated), where every iteration is kept so that it
can be drawn:

* ``unified``: in-flight batching without splitting. Every iteration carries the running decodes
  plus whole waiting prompts, first come first served, while they fit in the token budget left
  by the decodes (the first always fits: the budget is raised to the longest prompt). A long
  prompt makes its iteration long, and every running sequence waits for it: the stall.
* ``chunked``: every iteration carries all running decodes plus prompt tokens taken first come,
  first served (the partly prefilled head first) up to ``chunk``, the token budget of the
  iteration, decodes included (one token each), as ``--chunk-size`` means everywhere.
* ``disaggregated``: a prefill lane takes whole prompts first come, first served; the KV cache
  then crosses the link (a FIFO server), and the decode lane admits the request at its next
  iteration boundary and runs decode-only iterations. Nothing ever stalls a decode.

A request's first token comes from its prefill (at the end of the iteration that finishes the
prompt, or when its KV cache has arrived on the decode lane); each decode iteration it takes part
in gives it one more. ``output`` counts all of them, as ``--osl`` does.

Two clocks give the iterations a duration:

* :class:`TokenClock` (abstract, no model): one tick per token processed. A prefill of ``L``
  tokens takes ``L`` ticks, a decode iteration of the whole batch one tick, an iteration with
  ``c`` prompt tokens next to decodes ``c + 1`` ticks; the KV transfer is free.
* :class:`StepClock` (real): the iteration times of :class:`planner.perf.StepModel` for a model on
  a GPU at a TP degree, and the KV transfer over the link the placement implies.

Cells. Each row is one request in one pool, each column one tick (abstract) or one slice of
wall-clock time (real). ``P`` prefill (or a prefill chunk), ``D`` decode (the request gets a
token), ``x`` stalled (the request is in the running batch but the tick goes to someone else's
prompt), ``-`` waiting (arrived, prefill not started or between chunks, or its KV cache in
flight), ``.`` not arrived or finished. Within a chunked iteration the prompt tokens are drawn
first and the decode tick last, which is when the new tokens appear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from planner.errors import InvalidRequestError
from planner.sim import reference
from planner.sim.reference import Iteration, Request, StepClock, TokenClock  # noqa: F401  (re-exported)
from planner.units import MAX_TIMELINE_COLUMNS, TICK_STEP_FRACTION

APPROACHES = tuple(reference.RULES)  # one rule per approach in the reference scheduler
PREFILL, DECODE, STALLED, WAITING, IDLE = "P", "D", "x", "-", "."
LEGEND = (("P", "prefill (or a prefill chunk)"), ("D", "decode: gets a token"),
          ("x", "stalled: decoding, but no token this tick"),
          ("-", "waiting: queued, between chunks or KV in flight"), (".", "not arrived / finished"))
# Ties between states sharing a column of real time go to the more telling one.
_PRIORITY = {STALLED: 4, DECODE: 3, PREFILL: 2, WAITING: 1, IDLE: 0}

# The default scenario: a short request already decoding when a long one arrives (the long one
# arrives after the short one's prefill and first decode iteration).
DEFAULT_ABSTRACT = ((2, 12), (8, 4))
DEFAULT_REAL = ((512, 32), (8192, 4))
DEFAULT_OUTPUT = 8
DEFAULT_CHUNK_ABSTRACT = 2
DEFAULT_CHUNK_REAL = 2048
MAX_REQUESTS = 20
MAX_TICKS = 2000  # abstract mode draws every tick
MAX_ITERATIONS = 200_000  # real mode
DEFAULT_COLUMNS = 80  # real mode: the timeline fits this many columns unless --tick says otherwise


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def parse_request(text: str, real: bool, flag: str = "--request") -> tuple[int, int, float | None]:
    """``LEN[:OUT[@ARRIVAL]]`` -> (prompt, output, arrival or None when not given).

    ARRIVAL is a whole number of ticks in abstract mode and a duration (``150ms``, ``0.2s``,
    ``150`` = ms) in real mode."""
    from planner.units import parse_count, parse_duration, parse_size, shown

    raw = str(text).strip()
    head, at, when = raw.partition("@")
    length, colon, out = head.partition(":")
    where = f"{flag} {shown(raw, 40)}"
    if not length.strip():
        raise InvalidRequestError(f"{where}: expected LEN[:OUT[@ARRIVAL]], e.g. 2048:64@100ms or 8")
    prompt = parse_size(length, f"{where}: LEN", maximum=1_000_000)
    output = parse_size(out, f"{where}: OUT", maximum=100_000) if colon else DEFAULT_OUTPUT
    if colon and not out.strip():
        raise InvalidRequestError(f"{where}: OUT is empty; expected LEN[:OUT[@ARRIVAL]]")
    arrival = None
    if at:
        w = when.strip()
        if not w:
            raise InvalidRequestError(f"{where}: ARRIVAL is empty; expected LEN[:OUT[@ARRIVAL]]")
        if real:
            zero = (w.isascii() and w.rstrip("msu ").strip("0.") == "" and "0" in w)
            arrival = 0.0 if zero else parse_duration(w, f"{where}: ARRIVAL")
        else:
            # ASCII digits only ('²'.isdigit() is true), bounded before int() (MAX_TICKS below).
            arrival = float(parse_count(w, f"{where}: ARRIVAL", 0, MAX_TICKS,
                                        "a whole number of ticks (without --model/--gpu)"))
    return prompt, output, arrival


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class RequestStats:
    request: int
    ttft: float
    stalled: float  # time in the running batch not spent on its own decode
    worst_gap: float | None  # largest gap between consecutive tokens (None with one token)
    finish: float
    token_times: list = field(default_factory=list)


@dataclass
class Row:
    pool: str
    request: int
    cells: str


@dataclass
class Timeline:
    approach: str
    requests: list  # Request
    iterations: list  # Iteration
    stats: list  # RequestStats
    rows: list  # Row
    ticks: list  # start of every column (ticks, or seconds in real mode)
    tick: float  # width of a column (1 tick, or seconds)
    clock: TokenClock | StepClock
    chunk_size: int | None = None
    decode_step: float = 1.0  # a decode iteration of the first request alone, for comparison
    transfer: dict = field(default_factory=dict)  # request -> exposed KV transfer (disaggregated)
    info: dict = field(default_factory=dict)  # real mode: model, gpu, tp, dtypes, link

    @property
    def real(self) -> bool:
        return bool(self.clock.real)

    @property
    def end(self) -> float:
        return max((s.finish for s in self.stats), default=0.0)


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


def _segments(its, rid, enter, join, leave, t_end) -> list:
    """Contiguous (start, end, state, tick) pieces covering [0, t_end) for one request in one
    pool; ``tick`` marks the decode slice of an iteration (when its new tokens appear)."""
    marks = sorted({x for x in (enter, join, leave) if 0.0 < x < t_end})

    def base(a, b, out, tick=False):
        cuts = [a] + [m for m in marks if a < m < b] + [b]
        for u, v in zip(cuts, cuts[1:]):
            mid = (u + v) / 2
            if mid < enter or mid >= leave:
                s = IDLE
            elif mid >= join:
                s = STALLED
            else:
                s = WAITING
            out.append((u, v, s, tick))

    out: list = []
    t = 0.0
    for it in its:
        if it.start > t:
            base(t, it.start, out)
        prompt_time = max(it.end - it.start - it.decode_share, 0.0)
        total = sum(c for _, c, _ in it.pieces)
        u = it.start
        for r, c, _ in it.pieces:
            v = u + prompt_time * c / total if total else u
            if r == rid:
                out.append((u, v, PREFILL, False))
            elif v > u:
                base(u, v, out)
            u = v
        if it.end > u:
            if rid in it.decodes:
                out.append((u, it.end, DECODE, True))
            else:
                base(u, it.end, out, tick=it.decode_share > 0)
        t = it.end
    if t < t_end:
        base(t, t_end, out)
    return out


def _columns(segs, width: float, n: int) -> str:
    """The state of each column. A column in which an iteration's decode slice ends shows the
    state during that slice (``D`` for the requests that get a token), so that decode steps
    shorter than a column stay visible and line up across rows. Any other column shows the
    state covering most of it outside decode slices (inside one when it holds nothing else);
    ties go to the more telling state."""
    cells = []
    ticks = [(v, s) for _, v, s, tick in segs if tick]
    e, j = 0, 0
    eps = width * 1e-9
    for k in range(n):
        a, b = k * width, (k + 1) * width
        while e < len(ticks) and ticks[e][0] <= a + eps:
            e += 1
        if e < len(ticks) and ticks[e][0] <= b + eps:
            while e + 1 < len(ticks) and ticks[e + 1][0] <= b + eps:
                e += 1
            cells.append(ticks[e][1])
            continue
        weight: dict = {}
        inside: dict = {}  # decode slices whose token comes in a later column
        while j < len(segs) and segs[j][1] <= a:
            j += 1
        i = j
        while i < len(segs) and segs[i][0] < b:
            u, v, s, tick = segs[i]
            w = min(v, b) - max(u, a)
            if w > 0:
                into = inside if tick else weight
                into[s] = into.get(s, 0.0) + w
            i += 1
        weight = weight or inside
        if not weight:
            cells.append(IDLE)
            continue
        top = max(weight.values())
        cells.append(max((s for s, w in weight.items() if w >= top * (1 - 1e-9)),
                         key=_PRIORITY.__getitem__))
    return "".join(cells)


def nice_tick(span: float, columns: int = DEFAULT_COLUMNS) -> float:
    """The smallest 1-2-5 step (seconds) that fits ``span`` into ``columns`` columns."""
    if span <= 0:
        return 1e-3
    raw = span / columns
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * mag >= raw * (1 - 1e-12):
            return m * mag
    return 10 * mag


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


def default_requests(clock) -> list:
    """The short request (already decoding) and the long one that arrives next to it."""
    (ls, os_), (ll, ol) = DEFAULT_REAL if clock.real else DEFAULT_ABSTRACT
    d_prefill, _ = clock.iteration(((ls, 0, True),), ())
    d_decode, _ = clock.iteration((), (ls,))
    return [Request(ls, os_, 0.0), Request(ll, ol, d_prefill + d_decode)]


def check_size(reqs, clock, approach: str, chunk: int | None) -> None:
    """Refuse pictures too large to draw (abstract) or to schedule quickly (real)."""
    if not reqs:
        raise InvalidRequestError("--request: no requests to draw")
    if len(reqs) > MAX_REQUESTS:
        raise InvalidRequestError(f"--request: at most {MAX_REQUESTS} requests, got {len(reqs)}")
    if not clock.real:
        ticks = max(r.arrival for r in reqs) + sum(r.prompt + r.output for r in reqs)
        if ticks > MAX_TICKS:
            raise InvalidRequestError(
                f"--request: about {ticks:,.0f} ticks to draw, more than {MAX_TICKS:,}; use "
                "shorter requests, or --model/--gpu to draw them in real time")
    else:
        pieces = sum(math.ceil(r.prompt / chunk) for r in reqs) if approach == "chunked" else len(reqs)
        iters = pieces + sum(r.output for r in reqs)
        if iters > MAX_ITERATIONS:
            raise InvalidRequestError(
                f"--request: about {iters:,} iterations, more than {MAX_ITERATIONS:,}; use fewer "
                "output tokens or a larger --chunk-size")


def build(approach: str, requests: list | None = None, clock=None, chunk_size: int | None = None,
          tick: float | None = None, columns: int = DEFAULT_COLUMNS, info: dict | None = None) -> Timeline:
    """Schedule ``requests`` (default: :func:`default_requests`) under ``approach`` and draw the
    cells. ``tick`` is the width of a column in real mode (seconds; default: the 1-2-5 step
    that fits the timeline into ``columns`` columns)."""
    if approach not in APPROACHES:
        raise InvalidRequestError(f"--approach: unknown {approach!r}; valid: {', '.join(APPROACHES)}")
    clock = clock or TokenClock()
    if approach == "chunked":
        if chunk_size is None:
            chunk_size = DEFAULT_CHUNK_REAL if clock.real else DEFAULT_CHUNK_ABSTRACT
        if int(chunk_size) < 1:
            raise InvalidRequestError(f"--chunk-size: must be at least 1, got {chunk_size}")
        chunk_size = int(chunk_size)
    elif chunk_size is not None:
        raise InvalidRequestError("--chunk-size: only for --approach chunked")
    reqs = list(requests) if requests else default_requests(clock)
    for r in reqs:
        if r.prompt < 1 or r.output < 1 or not math.isfinite(r.arrival) or r.arrival < 0:
            raise InvalidRequestError(f"--request: prompt and output must be at least 1 and the "
                                      f"arrival not negative, got {r}")
    check_size(reqs, clock, approach, chunk_size)

    prefill_end: dict[int, float] = {}
    exposed: dict[int, float] = {}
    if approach == "unified":
        # The engine's token budget (real time) raised to the longest prompt, as engines without
        # chunked prefill do; in abstract time just the longest prompt (one at a time unless
        # short ones fit together).
        longest = max(r.prompt for r in reqs)
        if clock.real:
            from planner.serving.common import token_budget

            budget = max(token_budget(clock.sm), longest)
        else:
            budget = longest
        its, tokens = reference.unified(reqs, clock, budget)
    elif approach == "chunked":
        assert chunk_size is not None  # set above for chunked
        its, tokens = reference.chunked(reqs, clock, chunk_size)
    else:
        its, tokens, prefill_end, exposed = reference.disaggregated(reqs, clock)

    stats = []
    for i, r in enumerate(reqs):
        times = tokens[i]
        gaps = [b - a for a, b in zip(times, times[1:])]
        stats.append(RequestStats(i, times[0] - r.arrival, 0.0, max(gaps) if gaps else None,
                                  times[-1], list(times)))
    for it in its:
        d = it.duration
        for r in it.stalled:
            stats[r].stalled += d
        extra = d - it.decode_share
        if extra > 1e-9 * d:  # a decode-only iteration has none (up to rounding of end - start)
            for r in it.decodes:
                stats[r].stalled += extra

    t_end = max(s.finish for s in stats)
    if clock.real:
        if tick:
            step, _ = clock.iteration((), (reqs[0].prompt,))
            if tick < step * TICK_STEP_FRACTION * (1 - 1e-9):
                raise InvalidRequestError(
                    f"--tick: {tick * 1e3:g} ms is finer than the decode step ({step * 1e3:.3g} ms) "
                    f"/ {1 / TICK_STEP_FRACTION:,.0f}; give at least {step * TICK_STEP_FRACTION * 1e6:.3g}us")
        width = float(tick) if tick else nice_tick(t_end, columns)
        n = max(1, math.ceil(t_end / width - 1e-9))
        if n > MAX_TIMELINE_COLUMNS:
            raise InvalidRequestError(
                f"--tick: {width * 1e3:g} ms makes {n:,} columns, more than {MAX_TIMELINE_COLUMNS:,}; "
                f"give --tick {nice_tick(t_end, MAX_TIMELINE_COLUMNS) * 1e3:g}ms or coarser")
    else:
        width, n = 1.0, max(1, int(round(t_end)))

    rows = []
    pools = ("prefill", "decode") if approach == "disaggregated" else ("unified",)
    for pool in pools:
        p_its = [it for it in its if it.pool == pool]
        for i, r in enumerate(reqs):
            first = stats[i].token_times[0]
            if pool == "unified":
                enter, join, leave = r.arrival, (first if r.output > 1 else math.inf), stats[i].finish
            elif pool == "prefill":
                enter, join, leave = r.arrival, math.inf, prefill_end[i]
            else:
                starts = [it.start for it in p_its if i in it.decodes]
                if not starts:
                    enter = join = leave = math.inf  # one token: never reaches the decode lane
                else:
                    enter, join, leave = prefill_end[i], starts[0], stats[i].finish
            segs = _segments(p_its, i, enter, join, leave, n * width)
            rows.append(Row(pool, i, _columns(segs, width, n)))
    step, _ = clock.iteration((), (reqs[0].prompt,))
    return Timeline(approach, reqs, its, stats, rows, [k * width for k in range(n)], width, clock,
                    chunk_size=chunk_size, decode_step=step, transfer=exposed, info=dict(info or {}))


__all__ = ["Request", "Timeline", "TokenClock", "StepClock", "build", "parse_request",
           "default_requests", "LEGEND", "APPROACHES"]
