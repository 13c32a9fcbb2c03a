"""The day through the discrete-event simulator: the profile's arrivals (non-stationary Poisson,
or gamma renewal at a period's measured burstiness, or the trace's own requests) on the
schedule's deployments, instances added and removed as the schedule says, with the scale-up
delay, and the attainment of every period.

A whole day is millions of requests, so each period is simulated in windows of real time that
stand for it (docs/day.md):

* a period that scaling lags: from its start, the whole lag window (previous sizes, new load)
  and after the scale-up as long again (or its budget of requests, if longer: a backlog drains
  in it); the rest of the period, when there is some, by a window at its end;
* any other period: a window from its start, its budget of requests.

A sample covers at least :data:`MIN_SAMPLE_S` of simulated time.

Every window starts with a warm-up on the real timeline before it (the previous period's load
and sizes when it starts a period), whose requests are not counted. A window's requests stand
for the part of the period it covers; the period's attainment weighs the parts by length (its
rate is constant). Where the shape changes (approach changes), the old deployment serves the
arrivals before the change and the new one, starting empty, those after. With ``requests``
at least the profile's arrivals outside the warm-ups, every part is simulated whole.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from planner.day.schedule import _lag_deployment, counts_of, period_inputs, shape_of
from planner.errors import InvalidRequestError

if TYPE_CHECKING:
    from planner.api import Inputs
    from planner.day.profile import LoadProfile
    from planner.day.schedule import Scaling

MAX_WINDOW_REQUESTS = 250_000  # a lag window longer than this is sampled from its start
MIN_WARMUP_S, MAX_WARMUP_S, WARMUP_REQUESTS = 20.0, 120.0, 300
MIN_SAMPLE_S = 60.0  # a window that stands for more than itself covers at least this much time


@dataclass
class PeriodSim:
    index: int
    label: str
    attainment: float  # simulated, the parts weighed by the time they stand for
    requests: int  # simulated and counted
    parts: list = field(default_factory=list)  # {"part", "from_s", "seconds", "stands_for_s", "requests", "attainment"}
    sampled: bool = False  # some part stands for more than it simulated


@dataclass
class DaySimulation:
    periods: list
    weights: np.ndarray  # expected requests per period
    requests: int  # counted, over the day
    simulated: int  # every simulated request, warm-ups included
    seed: int
    wall_s: float = 0.0

    @property
    def attainment(self) -> float:
        a = np.array([p.attainment if p is not None else np.nan for p in self.periods])
        ok = np.isfinite(a) & (self.weights > 0)
        return float(np.sum(self.weights[ok] * a[ok]) / np.sum(self.weights[ok])) if ok.any() else math.nan


# --------------------------------------------------------------------------------------------
# The schedule on the real timeline
# --------------------------------------------------------------------------------------------


class _Timeline:
    """What serves at each moment: per piece ``(start, end, deployment)`` in profile time."""

    def __init__(self, profile: LoadProfile, deps: list, scaling: Scaling):
        self.profile, self.deps = profile, deps
        K = profile.periods
        starts = profile.starts_s
        pieces = []
        for k in range(K):
            t0, T = float(starts[k]), float(profile.duration_s[k])
            prev = k - 1 if k > 0 else (K - 1 if profile.cyclic else None)
            lagdep = None
            if prev is not None and scaling.mode == "reactive" and scaling.scale_up_s > 0:
                lagdep = _lag_deployment(deps[prev], deps[k])
            if lagdep is not None:
                lag = min(float(scaling.scale_up_s), T)
                pieces.append((t0, t0 + lag, lagdep))
                if lag < T:
                    pieces.append((t0 + lag, t0 + T, deps[k]))
            else:
                pieces.append((t0, t0 + T, deps[k]))
        self.pieces = pieces
        self.lag: list[float | None] = [None] * K
        for k in range(K):
            p = [x for x in pieces if starts[k] <= x[0] < starts[k] + profile.duration_s[k]]
            if len(p) == 2:
                self.lag[k] = p[0][1] - p[0][0]

    def runs(self, a: float, b: float) -> list:
        """Contiguous spans of one shape within ``[a, b)``: ``(start, end, [(s, e, dep), ...])``."""
        out: list = []
        span = self.profile.span_s
        for s, e, dep in self._covering(a, b, span):
            if out and shape_of(out[-1][2][-1][2]) == shape_of(dep):
                out[-1][1] = e
                out[-1][2].append((s, e, dep))
            else:
                out.append([s, e, [(s, e, dep)]])
        return [(s, e, ps) for s, e, ps in out]

    def _covering(self, a: float, b: float, span: float):
        """Pieces clipped to ``[a, b)``; before the profile's start, a cyclic profile wraps (its
        last period precedes its first) and another one repeats its first piece."""
        res = []
        for s, e, dep in self.pieces:
            for shift in ((-span, 0.0) if self.profile.cyclic else (0.0,)):
                lo, hi = max(s + shift, a), min(e + shift, b)
                if hi > lo:
                    res.append((lo, hi, dep))
        if not self.profile.cyclic and a < 0:
            s0, e0, d0 = self.pieces[0]
            res.append((a, min(0.0, b), d0))
        return sorted(res, key=lambda x: x[0])


def _spans(pieces: list, role: str, t0: float) -> list:
    """Per instance of ``role`` its (up, down) spans within ``pieces`` (times less ``t0``); the
    instances up at the end stay up (work the run's arrivals leave, such as transfers into the
    decode pool, arrives after them)."""
    top = max(counts_of(d)[role] for _, _, d in pieces)
    end = pieces[-1][1]
    out = []
    for j in range(top):
        spans: list = []
        for s, e, d in pieces:
            if counts_of(d)[role] > j:
                stop = math.inf if e >= end else e - t0
                if spans and abs(spans[-1][1] - (s - t0)) < 1e-9:
                    spans[-1] = (spans[-1][0], stop)
                else:
                    spans.append((s - t0, stop))
        out.append(spans)
    return out


# --------------------------------------------------------------------------------------------
# Arrivals
# --------------------------------------------------------------------------------------------


def _arrivals(inp: Inputs, profile: LoadProfile, a: float, b: float, rng: np.random.Generator):
    """Requests arriving in ``[a, b)`` of profile time: (times, isl, osl, cached or None). A trace
    profile gives its own requests; otherwise each period's traffic is drawn (Poisson, or gamma
    renewal at its burstiness) with its lengths. Times before 0 (warm-ups of the first period)
    repeat the profile's end for a cyclic one and its first period otherwise."""
    K = profile.periods
    starts, dur = profile.starts_s, profile.duration_s
    span = profile.span_s
    chunks = []
    for shift in ((-span, 0.0) if profile.cyclic else (0.0,)):
        for k in range(K):
            close = 1e-6 if k == K - 1 and not profile.cyclic else 0.0  # (the last instant is the last period's)
            lo, hi = max(float(starts[k]) + shift, a), min(float(starts[k] + dur[k]) + shift + close, b)
            if hi > lo:
                chunks.append((lo, hi, k))
    if not profile.cyclic and a < 0:
        chunks.append((a, min(0.0, b), 0))
    chunks.sort()
    ts, isl, osl, cached = [], [], [], []
    any_cached = False
    for lo, hi, k in chunks:
        if profile.trace is not None:
            tr = profile.trace
            if lo < 0:  # a warm-up before the trace's start: its first requests, moved back
                sel = tr.arrival_s < (hi - lo)
                t = tr.arrival_s[sel] + lo
            else:
                sel = (tr.arrival_s >= lo) & (tr.arrival_s < hi)
                t = tr.arrival_s[sel]
            ts.append(t)
            isl.append(tr.isl[sel])
            osl.append(tr.osl[sel])
            cached.append(np.zeros(int(np.sum(sel)), dtype=np.int64))
            continue
        pi = period_inputs(inp, profile, k)
        if pi is None:
            continue
        wl = pi.workload
        want = float(wl.qps) * (hi - lo)
        n = int(want + 6.0 * math.sqrt(want) + 16)
        t, li, lo_, ca = wl.sample_requests(n, rng)
        while t[-1] < hi - lo:  # (rare) more draws, continuing the process
            t2, li2, lo2, ca2 = wl.sample_requests(n, rng)
            t, li, lo_, ca = (np.concatenate([t, t2 + t[-1]]), np.concatenate([li, li2]),
                              np.concatenate([lo_, lo2]), np.concatenate([ca, ca2]))
        keep = t < hi - lo
        ts.append(t[keep] + lo)
        isl.append(li[keep])
        osl.append(lo_[keep])
        cached.append(ca[keep])
        any_cached = any_cached or wl.prefix.on or wl.trace_cached
    if not ts:
        return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), None
    return (np.concatenate(ts), np.concatenate(isl).astype(np.int64), np.concatenate(osl).astype(np.int64),
            np.concatenate(cached).astype(np.int64) if any_cached else None)


# --------------------------------------------------------------------------------------------
# simulate_day
# --------------------------------------------------------------------------------------------


def _window(inp: Inputs, profile: LoadProfile, tl: _Timeline, a: float, b: float, warm: float, seed: int,
            specs: dict) -> tuple:
    """Simulate ``[a - warm, b)`` of the timeline; returns (arrival times in profile time,
    per-request SLO met, simulated count). Requests before ``a`` are the warm-up."""
    from planner.optimize import _without_spec
    from planner.sim import simulate_arrivals

    rng = np.random.default_rng(seed)
    arr, isl, osl, cached = _arrivals(inp, profile, a - warm, b, rng)
    if arr.size == 0:
        return np.zeros(0), np.zeros(0, bool), 0
    slo = inp.slo
    met = np.zeros(arr.size, dtype=bool)
    simulated = 0
    for s, e, pieces in tl.runs(a - warm, b):
        sel = (arr >= s) & (arr < e)
        if not sel.any():
            continue
        idx = np.nonzero(sel)[0]
        if arr[idx[-1]] < a:  # only warm-up requests on this shape: not counted, not needed
            continue
        dep = pieces[-1][2]
        shape = shape_of(dep)
        top = {r: max(counts_of(d)[r] for _, _, d in pieces) for r in counts_of(dep)}
        big = replace(dep, pools=tuple(replace(p, instances=top[p.role]) for p in dep.pools))
        avail = {r: _spans(pieces, r, s) for r in top}
        pk = period_inputs(inp, profile, _period_at(profile, max(a, s)))
        if pk is None:
            continue
        q = pk if specs.get(shape, inp.spec is not None) else _without_spec(pk)
        res = simulate_arrivals(q, big, arr[idx] - s, isl[idx], osl[idx], None if cached is None else cached[idx],
                                avail=avail, seed=seed)
        per = res.per_request
        assert per is not None  # simulate_arrivals keeps them
        ttft, tpot = np.asarray(per["ttft"]), np.asarray(per["tpot"])
        with np.errstate(invalid="ignore"):
            ok = (ttft <= slo.ttft_s) & ((osl[idx] <= 1) | (tpot <= slo.tpot_s))
        met[idx] = ok
        simulated += int(idx.size)
    return arr, met, simulated


def _period_at(profile: LoadProfile, t: float) -> int:
    t = t % profile.span_s if profile.cyclic else min(max(t, 0.0), profile.span_s - 1e-9)
    return int(min(np.searchsorted(profile.starts_s, t, side="right") - 1, profile.periods - 1))


def simulate_day(inp: Inputs, profile: LoadProfile, deps: list, scaling: Scaling, requests: int = 20000,
                 seed: int = 0, specs: list | None = None, on_period=None) -> DaySimulation:
    """Simulated attainment per period of the schedule ``deps`` (one deployment per period)
    under ``scaling`` (module docstring). ``requests``: the counted requests of the whole day,
    spread over its busy periods (lag windows are simulated whole on top of them, up to
    :data:`MAX_WINDOW_REQUESTS`). ``on_period(k)``: progress."""
    wall0 = time.perf_counter()
    if profile.closed:
        raise InvalidRequestError("--load-profile: the simulator replays open-loop traffic (a rate per period); "
                                  "a concurrency profile is planned analytically only (pdplan recommend)")
    K = profile.periods
    if len(deps) != K:
        raise InvalidRequestError(f"--load-profile: {K} periods, the schedule has {len(deps)}; give the "
                                  "profile the plan was made for (or one with as many periods)")
    tl = _Timeline(profile, deps, scaling)
    shape_spec = {shape_of(d): (bool(sp) if specs else inp.spec is not None)
                  for d, sp in zip(deps, specs or [None] * K)}
    busy = [k for k in range(K) if profile.load[k] > 0]
    budget = max(int(requests) // max(len(busy), 1), 1)
    starts, dur = profile.starts_s, profile.duration_s
    weights = np.array([float(profile.load[k]) * float(dur[k]) for k in range(K)])
    periods: list = [None] * K
    counted = simulated = 0
    for k in busy:
        t0, T = float(starts[k]), float(dur[k])
        rate = float(profile.load[k])
        pi = period_inputs(inp, profile, k)
        assert pi is not None  # busy
        life = inp.slo.ttft_s + float(pi.workload.mean_osl) * inp.slo.tpot_s
        warm = float(min(max(MIN_WARMUP_S, 3.0 * life, WARMUP_REQUESTS / max(rate, 1e-9)), MAX_WARMUP_S))
        length = max(budget / max(rate, 1e-9), MIN_SAMPLE_S)  # seconds of the period a sample covers
        lag = tl.lag[k]
        windows = []  # (a, b, [(part, from, to, stands for)])
        if lag is not None:
            full = min(lag, MAX_WINDOW_REQUESTS / max(rate, 1e-9))
            head = min(T - lag, max(length, lag))  # after the scale-up: long enough for a backlog to drain
            parts = [("lag", t0, t0 + full, lag)]
            if full < lag:
                windows.append((t0, t0 + full, parts))
                parts = []
                head_a = t0 + lag
                windows.append((head_a, head_a + head, [("after", head_a, head_a + head, head)]))
            else:
                parts.append(("after", t0 + lag, t0 + lag + head, head))
                windows.append((t0, t0 + lag + head, parts))
            rest = T - lag - head
            if rest > 1e-9:
                w = min(rest, length)
                windows.append((t0 + T - w, t0 + T, [("rest", t0 + T - w, t0 + T, rest)]))
        else:
            w = min(T, length)
            windows.append((t0, t0 + w, [("period", t0, t0 + w, T)]))
        end = profile.span_s
        if not profile.cyclic:  # the profile's last instant belongs to its last period (a trace's last request)
            windows = [(a, b + 1e-6 if b >= end - 1e-9 else b,
                        [(n, u, v + 1e-6 if v >= end - 1e-9 else v, st) for n, u, v, st in parts])
                       for a, b, parts in windows]
        ps = PeriodSim(k, profile.label(k), math.nan, 0)
        total_w = 0.0
        acc = 0.0
        for wi, (a, b, parts) in enumerate(windows):
            wseed = int(np.random.SeedSequence([int(seed), k, wi]).generate_state(1)[0])
            arr, met, nsim = _window(inp, profile, tl, a, b, warm, wseed, shape_spec)
            simulated += nsim
            for name, u, v, stands in parts:
                sel = (arr >= u) & (arr < v)
                n = int(np.sum(sel))
                att = float(np.mean(met[sel])) if n else math.nan
                ps.parts.append({"part": name, "from_s": u - t0, "seconds": v - u, "stands_for_s": stands,
                                 "requests": n, "attainment": att})
                ps.requests += n
                if n:
                    acc += stands * att
                    total_w += stands
                if stands > (v - u) * (1 + 1e-9):
                    ps.sampled = True
        ps.attainment = acc / total_w if total_w > 0 else math.nan
        counted += ps.requests
        periods[k] = ps
        if on_period:
            on_period(k)
    return DaySimulation(periods, weights, counted, simulated, int(seed), time.perf_counter() - wall0)


__all__ = ["DaySimulation", "PeriodSim", "simulate_day"]
