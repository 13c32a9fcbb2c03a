"""A plan for a day: per period the deployment that meets the SLO, a schedule of pool sizes
that respects the scaling constraints, GPU-hours and cost against static peak provisioning,
and the attainment each period is predicted to reach, the periods where scaling lags the load
included.

How it is built (docs/day.md):

1. **One search per distinct period.** Periods with the same traffic (rate or concurrency,
   lengths, burstiness) share one run of the optimizer's search
   (:func:`planner.optimize.search_speculation` on :func:`planner.optimize.sizing_inputs`),
   vectorised over pool sizes as for ``recommend``. Its cloud holds, for every configuration
   (approach, GPU, parallelism, chunk size: a *shape*), the fewest instances per pool that
   meet the SLO in that period.
2. **The schedule.** Counts are raised to ``--min-instances`` and a shape whose needs exceed
   ``--max-instances`` (or ``--max-gpus``) in some period cannot serve it. By default one shape
   serves the whole day, its pools resized period by period: the shape with the fewest
   GPU-hours (or dollars) over the day. With ``--allow-approach-change`` the shape may change
   between periods: a shortest path over (period, shape) where a change keeps the old
   deployment serving (and billed) while the new one comes up.
3. **Scaling lag.** ``reactive`` scaling (the default: an autoscaler that sees the load rise)
   adds instances when a period starts; they serve ``--scale-up-time`` later, so the first
   ``scale-up time`` of the period runs on the previous period's pool sizes at the new load. That
   window's attainment is the analytic model's at those sizes; if they are overloaded there, a
   fluid backlog builds at ``lambda - mu`` and drains at ``mu' - lambda`` after the scale-up, and
   every request arriving before the backlog is gone counts as late. ``scheduled`` scaling
   starts instances ``scale-up time`` ahead of the period (the profile is known: a cron
   schedule), so nothing lags, at the GPU-hours of the early start. Scale-downs happen at the
   period boundary; instances removed finish what they hold.
4. **Static peak provisioning**: the cheapest single deployment that meets every period (each
   pool at its largest count over the day), held all day.

The day's attainment is the request-weighted mean of the periods'; the longest scale-up time
that keeps it at the percentile is solved from the same terms (they are linear in the lag).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.day.profile import LoadProfile, fmt_span
from planner.errors import InvalidRequestError, NoFeasiblePlanError
from planner.serving.common import APPROACHES, Deployment

if TYPE_CHECKING:
    from planner.api import Inputs, Plan

ROLES = ("unified", "prefill", "decode")
MODES = ("reactive", "scheduled")
DEFAULT_SCALE_UP_S = 300.0


# --------------------------------------------------------------------------------------------
# Scaling constraints
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scaling:
    """What the schedule must respect. ``min_instances`` / ``max_instances``: pool role (or
    ``"all"``) -> instances; ``mode``: ``reactive`` (instances added when the load rises serve
    ``scale_up_s`` later) or ``scheduled`` (started ``scale_up_s`` ahead of the period)."""

    scale_up_s: float = DEFAULT_SCALE_UP_S
    min_instances: dict = field(default_factory=dict)
    max_instances: dict = field(default_factory=dict)
    allow_approach_change: bool = False
    mode: str = "reactive"

    def low(self, role: str) -> int:
        return int(self.min_instances.get(role, self.min_instances.get("all", 1)))

    def high(self, role: str) -> float:
        v = self.max_instances.get(role, self.max_instances.get("all"))
        return math.inf if v is None else float(v)

    def check(self, profile: LoadProfile) -> None:
        """Bad constraints: one error naming the flag (a scale-up longer than a period, minimums
        above maximums, an unknown mode)."""
        if self.mode not in MODES:
            raise InvalidRequestError(f"--scaling: unknown {self.mode!r}; valid: {', '.join(MODES)}")
        shortest = float(np.min(profile.duration_s))
        if self.scale_up_s > shortest * (1 + 1e-9):
            raise InvalidRequestError(
                f"--scale-up-time: {fmt_span(self.scale_up_s)} is longer than a period of the profile "
                f"({fmt_span(shortest)}); scaling could not follow it: give a shorter scale-up time or "
                "longer periods")
        for role in ROLES:
            if self.low(role) > self.high(role):
                lo = next(f"{k}={v}" if k != "all" else str(v) for k, v in self.min_instances.items()
                          if k in (role, "all"))
                hi = next(f"{k}={v}" if k != "all" else str(v) for k, v in self.max_instances.items()
                          if k in (role, "all"))
                raise InvalidRequestError(f"--min-instances: {lo} is above --max-instances {hi} "
                                          f"(for the {role} pool)")

    def document(self) -> dict:
        return {"mode": self.mode, "scale_up_s": float(self.scale_up_s),
                "min_instances": {k: int(v) for k, v in sorted(self.min_instances.items())},
                "max_instances": {k: int(v) for k, v in sorted(self.max_instances.items())},
                "allow_approach_change": bool(self.allow_approach_change)}


def parse_instances(text: str | None, flag: str) -> dict:
    """``N`` (every pool) or ``ROLE=N[,ROLE=N]`` (roles unified, prefill, decode) -> dict."""
    from planner.errors import did_you_mean
    from planner.units import parse_count

    if text is None:
        return {}
    out: dict[str, int] = {}
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise InvalidRequestError(f"{flag}: empty; give N or ROLE=N (roles: {', '.join(ROLES)})")
    for part in parts:
        role, eq, val = part.partition("=")
        if not eq:
            role, val = "all", part
        role = role.strip().lower()
        if role not in ROLES + ("all",):
            raise InvalidRequestError(f"{flag}: unknown pool {role!r}{did_you_mean(role, ROLES)}; valid: "
                                      f"{', '.join(ROLES)} (or N for every pool)")
        if role in out:
            raise InvalidRequestError(f"{flag}: {role} given twice")
        lo = 1
        out[role] = parse_count(val.strip(), f"{flag}: {role}", lo, 100_000, "a whole number of instances")
    return out


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class LagWindow:
    """The start of a period that scaling lags: ``seconds`` on ``deployment`` (the previous
    period's sizes, or its shape when the shape changes) at the period's load."""

    seconds: float
    deployment: Deployment
    attainment: float  # of the requests that arrive in it (0 where the backlog makes them late)
    stable: bool
    late_s: float = 0.0  # overloaded: how long arriving requests meet a backlog too long for the TTFT
    # the fluid backlog's terms: the lag deployment's and the period's largest stable rates, and
    # the TTFT slack (the SLO less the unqueued TTFT) a request's wait may take
    capacity_qps: float = math.nan
    capacity_after_qps: float = math.nan
    slack_s: float = 0.0


@dataclass
class PeriodPlan:
    index: int
    label: str
    start_s: float
    duration_s: float
    load: float  # requests/s, or clients
    deployment: Deployment  # (an idle period: its pools at their minimums)
    plan: Plan | None  # the deployment's metrics at the period's traffic; None for an idle period
    gpus: int
    cost_per_hour: float
    attainment: float  # predicted for the period, the lag window included
    attainment_steady: float
    lag: LagWindow | None = None
    requests: float = 0.0  # expected arrivals in the period
    # GPU-hours and dollars beyond the period's own instances: scheduled scaling's early starts,
    # or the old shape serving a reactive change's lag window
    extra_gpu_hours: float = 0.0
    extra_cost: float = 0.0

    @property
    def qps(self) -> float:
        return float(self.plan.inputs.workload.qps) if self.plan is not None else 0.0

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.duration_s / 3600.0


@dataclass
class DayPlan:
    inputs: Inputs
    profile: LoadProfile
    scaling: Scaling
    objective: str
    periods: list
    static: dict  # the static peak-provisioned plan: deployment, plan, gpus, gpu_hours, cost
    approaches: dict  # approach -> best single-shape day: deployment at peak, gpu_hours, cost
    evaluated: int = 0
    searches: int = 0
    wall_s: float = 0.0
    autoscaling: dict = field(default_factory=dict)  # filled by planner.day.autoscale
    notes: list = field(default_factory=list)

    @property
    def target(self) -> float:
        return self.inputs.slo.percentile / 100.0

    @property
    def gpu_hours(self) -> float:
        return float(sum(p.gpu_hours + p.extra_gpu_hours for p in self.periods))

    @property
    def cost(self) -> float:
        return float(sum(p.cost_per_hour * p.duration_s / 3600.0 + p.extra_cost for p in self.periods))

    @property
    def attainment(self) -> float:
        w = np.array([p.requests for p in self.periods])
        a = np.array([p.attainment for p in self.periods])
        return float(np.sum(w * a) / np.sum(w)) if np.sum(w) > 0 else math.nan

    @property
    def peak(self) -> PeriodPlan:
        """The period with the most GPUs (the deployment a plan file and the exports carry)."""
        return max(self.periods, key=lambda p: (p.gpus, p.load))

    @property
    def lagging(self) -> list:
        return [p for p in self.periods if p.lag is not None]

    def max_scale_up_s(self) -> float | None:
        """The longest scale-up time (up to a period) that keeps the day's attainment at the
        percentile with this schedule, or None when even instant scaling does not."""
        return max_lag(self)


# --------------------------------------------------------------------------------------------
# Period traffic
# --------------------------------------------------------------------------------------------


def _with_mean(dist, mean: float):
    """``dist`` with its mean moved to ``mean`` (its shape kept: CV, or the uniform's spread)."""
    from planner.workload import LengthDist, fixed

    if dist.kind == "fixed" or dist.is_fixed and dist.kind != "uniform":
        return fixed(max(int(round(mean)), 1))
    if dist.kind == "uniform":
        f = mean / dist.mean
        return LengthDist("uniform", mean, low=dist.low * f, high=dist.high * f)
    return replace(dist, mean=float(mean))


def period_inputs(inp: Inputs, profile: LoadProfile, k: int) -> Inputs | None:
    """The question of period ``k``: the base inputs with the period's rate (or clients), its
    lengths and burstiness; None for an idle period."""
    from planner.units import MIN_BURSTINESS, MIN_QPS
    from planner.workload import Trace

    wl = inp.workload
    load = float(profile.load[k])
    if load <= 0:
        return None
    if profile.closed:
        wl = replace(wl, concurrency=int(load), qps=max(wl.qps, MIN_QPS))
    else:
        wl = replace(wl, qps=max(load, MIN_QPS), concurrency=None, think_s=0.0)
    if profile.trace is not None:
        sl = profile.trace.period(k)
        if sl.stop > sl.start:
            wl = replace(wl, trace=Trace(f"{profile.source}[{profile.label(k)}]", profile.trace.isl[sl],
                                         profile.trace.osl[sl]))
    else:
        if profile.isl is not None and math.isfinite(float(profile.isl[k])):
            wl = replace(wl, isl=_with_mean(wl.isl, float(profile.isl[k])))
        if profile.osl is not None and math.isfinite(float(profile.osl[k])):
            wl = replace(wl, osl=_with_mean(wl.osl, float(profile.osl[k])))
    if profile.cv is not None and math.isfinite(float(profile.cv[k])):
        wl = replace(wl, arrival_cv=max(float(profile.cv[k]), MIN_BURSTINESS))
    return replace(inp, workload=wl)


def _traffic_key(inp: Inputs) -> tuple:
    """What makes two periods' traffic the same: (rate, clients, lengths, burstiness, trace)."""
    wl = inp.workload
    return (wl.qps if wl.concurrency is None else None, wl.concurrency, wl.isl, wl.osl, wl.arrival_cv,
            wl.trace.sha256 if wl.trace is not None else None)


# --------------------------------------------------------------------------------------------
# Shapes: a deployment less its instance counts
# --------------------------------------------------------------------------------------------


def shape_of(dep: Deployment, spec: bool = False) -> tuple:
    return (dep.approach, dep.chunk_size, tuple((p.role, p.gpu, p.tp, p.pp, p.ep, p.dp) for p in dep.pools),
            bool(spec))


def with_counts(dep: Deployment, counts: dict) -> Deployment:
    return replace(dep, pools=tuple(replace(p, instances=int(counts[p.role])) for p in dep.pools))


def counts_of(dep: Deployment) -> dict:
    return {p.role: int(p.instances) for p in dep.pools}


@dataclass
class _Shape:
    key: tuple
    template: Deployment  # any sized deployment of the shape
    spec: bool
    gpus_per_instance: dict  # role -> GPUs
    price_per_instance: dict  # role -> $/h
    need: list  # per period: role -> fewest instances meeting the SLO (None: cannot)


# --------------------------------------------------------------------------------------------
# plan_day
# --------------------------------------------------------------------------------------------


def plan_day(inp: Inputs, profile: LoadProfile, gpu_ids, approaches=APPROACHES, max_gpus: int = 1024,
             objective: str = "gpus", scaling: Scaling | None = None, on_search=None) -> DayPlan:
    """Pool sizes per period that meet the SLO, under ``scaling``, with the fewest GPU-hours
    (``objective="gpus"``) or dollars over the profile (module docstring). ``on_search(i, n)``
    is called after each of the ``n`` searches (progress)."""
    wall0 = time.perf_counter()
    scaling = scaling or Scaling()
    scaling.check(profile)
    if objective not in ("gpus", "cost"):
        raise InvalidRequestError(f"--objective: unknown {objective!r}; valid: gpus, cost")
    if getattr(inp, "confidence", None) is not None:
        raise InvalidRequestError("--confidence: not with --load-profile yet; plan the day without it, "
                                  "then check the busiest period with recommend --qps ... --confidence")
    K = profile.periods
    per = [period_inputs(inp, profile, k) for k in range(K)]
    groups: dict[tuple, list[int]] = {}
    for k, pi in enumerate(per):
        if pi is not None:
            groups.setdefault(_traffic_key(pi), []).append(k)
    shapes: dict[tuple, _Shape] = {}
    evaluated = 0
    # The busiest period first. When periods differ only in their rate, no shape needs more
    # GPUs at a lower rate than the largest plan that meets the busiest (more load never lowers
    # latency), so the other searches stop there.
    items = sorted(groups.items(), key=lambda kv: -float(profile.load[kv[1][0]]))
    rate_only = objective == "gpus" and len({key[2:] for key in groups}) == 1
    questions = [per[ks[0]] for _, ks in items]
    first, n_first = _search_group((questions[0], gpu_ids, approaches, max_gpus, objective))
    limit = max_gpus
    if rate_only:
        limit = min(max_gpus, max((d.total_gpus for d, _ in first), default=max_gpus))
    found = [(first, n_first)] + _search_groups(questions[1:], gpu_ids, approaches, limit, objective,
                                                on_search, len(items))
    for (cands, n_eval), (_, ks) in zip(found, items):
        evaluated += n_eval
        for dep, spec in cands:
            key = shape_of(dep, spec)
            sh = shapes.get(key)
            if sh is None:
                cat = inp.catalog
                sh = _Shape(key, dep, spec, {p.role: p.gpus_per_instance for p in dep.pools},
                            {p.role: p.gpus_per_instance * cat.gpu(p.gpu).price_per_hour for p in dep.pools},
                            [None] * K)
                shapes[key] = sh
            cur = sh.need[ks[0]]
            mine = counts_of(dep)
            if cur is None or _gpus(sh, mine) < _gpus(sh, cur):
                for k in ks:
                    sh.need[k] = mine
    if not shapes:
        raise NoFeasiblePlanError(_no_day_plan(inp, profile, per, gpu_ids, approaches, max_gpus))
    order = sorted(shapes.values(), key=lambda s: s.key[:3])
    S = len(order)
    dur_h = profile.duration_s / 3600.0
    # N[r][k, s]: instances of role r; G, P: GPUs and $/h per (period, shape); inf where it cannot
    G = np.full((K, S), np.inf)
    P = np.full((K, S), np.inf)
    counts: list[list[dict | None]] = [[None] * S for _ in range(K)]
    for j, sh in enumerate(order):
        for k in range(K):
            c = _clamped(sh, sh.need[k], scaling, idle=per[k] is None)
            if c is None:
                continue
            g = _gpus(sh, c)
            if g > max_gpus:
                continue
            G[k, j], P[k, j] = g, _price(sh, c)
            counts[k][j] = c
    lag_h = scaling.scale_up_s / 3600.0
    base = (G if objective == "gpus" else P) * dur_h[:, None]
    path = _choose(order, counts, base, objective, lag_h, scaling, profile.cyclic)
    if path is None:
        raise NoFeasiblePlanError(_no_schedule(inp, profile, order, counts, scaling, max_gpus))
    deps = [with_counts(order[path[k]].template, counts[k][path[k]]) for k in range(K)]
    specs = [order[path[k]].spec for k in range(K)]
    periods = evaluate_day(inp, profile, deps, scaling, specs=specs)
    static = _static(inp, profile, order, per, max_gpus, objective, scaling)
    best_each = _best_per_approach(inp, profile, order, counts, G, P, dur_h, objective, lag_h, scaling)
    day = DayPlan(inp, profile, scaling, objective, periods, static, best_each, evaluated, len(groups),
                  time.perf_counter() - wall0)
    from planner.day.autoscale import policy

    day.autoscaling = policy(day)
    day.wall_s = time.perf_counter() - wall0
    return day


# Searches of a day's periods are independent: with this many or more, they run on several
# processes (forked, so the catalog and the step models are shared), as whatif's cells do;
# PDPLAN_WORKERS=1 keeps them in this process.
PARALLEL_SEARCHES = 4
_DAY_JOB: tuple | None = None


def _search_group(job) -> tuple[list, int]:
    """One period's search: its feasible sized deployments (with speculation on or off) and
    how many candidates it evaluated."""
    from planner.optimize import search_speculation, sizing_inputs

    pi, gpu_ids, approaches, limit, objective = job
    sr, _ = search_speculation(sizing_inputs(pi, objective), gpu_ids, approaches, limit)
    return [(c.deployment, bool(c.spec)) for c in sr.cloud if c.feasible], int(sr.evaluated)


def _search_at(i: int) -> tuple[list, int]:
    assert _DAY_JOB is not None  # set by _search_groups before any worker runs
    questions, gpu_ids, approaches, limit, objective = _DAY_JOB
    return _search_group((questions[i], gpu_ids, approaches, limit, objective))


def _search_groups(questions, gpu_ids, approaches, limit, objective, on_search, total) -> list:
    global _DAY_JOB
    from planner.api import _quiet_worker, _workers

    n = len(questions)
    workers = _workers(n) if n >= PARALLEL_SEARCHES else 1
    if on_search:
        on_search(1, total)
    _DAY_JOB = (questions, tuple(gpu_ids), tuple(approaches), limit, objective)
    try:
        if workers <= 1:
            out = []
            for i in range(n):
                out.append(_search_at(i))
                if on_search:
                    on_search(i + 2, total)
            return out
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(workers, initializer=_quiet_worker)
        try:
            out = []
            for res in pool.imap(_search_at, range(n)):
                out.append(res)
                if on_search:
                    on_search(len(out) + 1, total)
            pool.close()
            return out
        finally:
            pool.terminate()
            pool.join()
    finally:
        _DAY_JOB = None


def _gpus(sh: _Shape, c: dict) -> int:
    return int(sum(sh.gpus_per_instance[r] * n for r, n in c.items()))


def _price(sh: _Shape, c: dict) -> float:
    return float(sum(sh.price_per_instance[r] * n for r, n in c.items()))


def _clamped(sh: _Shape, need: dict | None, scaling: Scaling, idle: bool) -> dict | None:
    """The period's counts: the search's, raised to the minimums; None beyond a maximum (or
    when the shape cannot serve the period at all)."""
    if idle:
        return {r: scaling.low(r) for r in sh.gpus_per_instance}
    if need is None:
        return None
    out = {}
    for r, n in need.items():
        v = max(int(n), scaling.low(r))
        if v > scaling.high(r):
            return None
        out[r] = v
    return out


def _switch_cost(order, counts, per_hour, k: int, prev: int, cur: int, lag_h: float, mode: str) -> float:
    """What going from shape ``prev`` (period ``k - 1``) to ``cur`` (period ``k``) adds: reactive,
    a new shape's instances come up while the old ones serve (the old billed for the lag);
    scheduled, every instance added starts a lag early (billed for it)."""
    if lag_h <= 0:
        return 0.0
    a, b = counts[k - 1][prev], counts[k][cur]
    if a is None or b is None:
        return math.inf
    sh_a, sh_b = order[prev], order[cur]
    unit = (lambda sh, r: sh.gpus_per_instance[r]) if per_hour == "gpus" else (lambda sh, r: sh.price_per_instance[r])
    if prev != cur:
        return lag_h * (sum(unit(sh_a, r) * n for r, n in a.items()) if mode == "reactive"
                        else sum(unit(sh_b, r) * n for r, n in b.items()))
    if mode == "reactive":
        return 0.0
    return lag_h * sum(unit(sh_b, r) * max(b[r] - a.get(r, 0), 0) for r in b)


def _choose(order, counts, base, unit: str, lag_h, scaling: Scaling, cyclic: bool):
    """The shape per period: one shape for the day (the fewest GPU-hours, or dollars with
    ``unit="cost"``, its scaling terms included) or, with approach changes allowed, a shortest
    path over (period, shape). Returns the shape index per period, or None when none fits."""
    K, S = base.shape
    total = np.sum(base, axis=0)  # inf where some period cannot be served
    first = 0 if cyclic else 1
    if not scaling.allow_approach_change:
        best, best_j = math.inf, None
        for j in range(S):
            if not math.isfinite(total[j]):
                continue
            v = total[j] + sum(_switch_cost(order, counts, unit, k, j, j, lag_h, scaling.mode)
                               for k in range(first, K))
            if v < best - 1e-9:
                best, best_j = v, j
        return None if best_j is None else [best_j] * K
    # shortest path (the wrap from the last period to the first of a cyclic day is not part of it)
    V = base[0].copy()
    back = np.zeros((K, S), dtype=int)
    for k in range(1, K):
        trans = np.full((S, S), np.inf)
        for a in np.nonzero(np.isfinite(V))[0]:
            for b in np.nonzero(np.isfinite(base[k]))[0]:
                trans[a, b] = V[a] + _switch_cost(order, counts, unit, k, int(a), int(b), lag_h, scaling.mode)
        back[k] = np.argmin(trans, axis=0)
        V = trans[back[k], np.arange(S)] + base[k]
    if not np.isfinite(V).any():
        return None
    j = int(np.argmin(V))
    path = [j]
    for k in range(K - 1, 0, -1):
        j = int(back[k, j])
        path.append(j)
    return path[::-1]


# --------------------------------------------------------------------------------------------
# The analytic day: attainment per period with the lag windows
# --------------------------------------------------------------------------------------------


def _capacity(inp: Inputs, dep: Deployment, below: bool, near: float) -> float:
    """The largest stable request rate of ``dep`` (bracketed around ``near``: under it when
    ``below``, else over it), to 0.1%."""
    from planner.api import evaluate

    grid = near * (np.geomspace(1e-2, 1.0, 33) if below else np.geomspace(1.0, 1e2, 33))
    st = np.asarray(evaluate(inp, dep, grid, percentiles=()).stable).reshape(-1)
    if not st.any():
        return 0.0
    i = len(st) - 1 - int(np.argmax(st[::-1]))
    if i == len(st) - 1:
        return float(grid[-1])
    fine = np.linspace(grid[i], grid[i + 1], 33)
    sf = np.asarray(evaluate(inp, dep, fine, percentiles=()).stable).reshape(-1)
    return float(fine[sf][-1]) if sf.any() else float(grid[i])


class _Estimates:
    """Plans by (period traffic, deployment), computed once."""

    def __init__(self):
        self.cache: dict = {}

    def __call__(self, inp: Inputs, dep: Deployment, spec: bool) -> Plan:
        from planner.api import estimate
        from planner.optimize import _without_spec

        key = (_traffic_key(inp), dep, spec)
        if key not in self.cache:
            self.cache[key] = estimate(inp if spec else _without_spec(inp), dep, with_headroom=False)
        return self.cache[key]


def evaluate_day(inp: Inputs, profile: LoadProfile, deps: list, scaling: Scaling, specs=None) -> list:
    """The analytic day of a schedule: per period its deployment's metrics at the period's
    traffic, its lag window (reactive scaling) and its attainment. ``deps[k]``: period ``k``'s
    deployment (its sizes at the minimums for an idle period)."""
    K = profile.periods
    if len(deps) != K:
        raise InvalidRequestError(f"--load-profile: {K} periods; the schedule has {len(deps)}")
    specs = specs or [inp.spec is not None] * K
    est = _Estimates()
    starts = profile.starts_s
    out = []
    for k in range(K):
        pi = period_inputs(inp, profile, k)
        dep = deps[k]
        cost = sum(p.gpus * inp.catalog.gpu(p.gpu).price_per_hour for p in dep.pools)
        T = float(profile.duration_s[k])
        if pi is None:
            out.append(PeriodPlan(k, profile.label(k), float(starts[k]), T, 0.0, dep, None, dep.total_gpus,
                                  cost, math.nan, math.nan))
            continue
        plan = est(pi, dep, specs[k])
        steady = _attainment(plan)
        requests = float(plan.inputs.workload.qps) * T
        pp = PeriodPlan(k, profile.label(k), float(starts[k]), T, float(profile.load[k]), dep, plan,
                        dep.total_gpus, cost, steady, steady, requests=requests)
        prev = k - 1 if k > 0 else (K - 1 if profile.cyclic else None)
        if prev is not None:
            before = deps[prev]
            lagdep = _lag_deployment(before, dep)
            h = scaling.scale_up_s / 3600.0
            if scaling.mode == "scheduled":
                g, c = _prewarm(inp, before, dep)
                pp.extra_gpu_hours, pp.extra_cost = g * h, c * h
            elif lagdep is not None and scaling.scale_up_s > 0:
                changed = shape_of(before) != shape_of(dep)
                if changed:  # the old shape keeps serving (and is billed) while the new comes up
                    pp.extra_gpu_hours = before.total_gpus * h
                    pp.extra_cost = sum(p.gpus * inp.catalog.gpu(p.gpu).price_per_hour for p in before.pools) * h
                pp.lag = _lag_window(pi, lagdep, dep, plan, specs[prev] if changed else specs[k],
                                     scaling.scale_up_s, est)
                pp.attainment = _period_attainment(pp, scaling.scale_up_s)
        out.append(pp)
    return out


def _attainment(plan: Plan) -> float:
    return float(plan.metrics.attainment) if plan.metrics.stable else 0.0


def _lag_deployment(before: Deployment, after: Deployment) -> Deployment | None:
    """What serves the start of a period while instances come up: the old shape whole when the
    shape changes; else each pool at the smaller of its two sizes where some pool grows (a pool
    that shrinks does so at once); None when nothing grows."""
    if shape_of(before) != shape_of(after):
        return before
    a, b = counts_of(before), counts_of(after)
    if not any(b[r] > a[r] for r in b):
        return None
    return with_counts(after, {r: min(a[r], b[r]) for r in b})


def _prewarm(inp: Inputs, before: Deployment, after: Deployment) -> tuple[int, float]:
    """GPUs (and their $/h) started ahead of a period under scheduled scaling: the new shape
    whole, or the instances each pool adds."""
    a = counts_of(before) if shape_of(before) == shape_of(after) else {}
    added = [(max(p.instances - a.get(p.role, 0), 0) * p.gpus_per_instance, p.gpu) for p in after.pools]
    return sum(g for g, _ in added), sum(g * inp.catalog.gpu(gid).price_per_hour for g, gid in added)


def _lag_window(pi: Inputs, lagdep: Deployment, dep: Deployment, plan: Plan, spec: bool, lag_s: float,
                est: _Estimates) -> LagWindow:
    lp = est(pi, lagdep, spec)
    if lp.metrics.stable or pi.workload.closed:
        return LagWindow(lag_s, lagdep, _attainment(lp), True, 0.0)
    lam = float(pi.workload.qps)
    mu = _capacity(pi, lagdep, True, lam)
    mu2 = _capacity(pi, dep, False, lam)
    b = plan.metrics.breakdown
    slack = max(pi.slo.ttft_s - float(b.get("ttft_compute_s", 0.0)) - float(b.get("ttft_transfer_s", 0.0)), 0.0)
    w = LagWindow(lag_s, lagdep, 0.0, False, 0.0, mu, mu2, slack)
    w.late_s = float(_late(lag_s, lam, mu, mu2, slack))
    return w


def _late(lag_s, lam: float, mu: float, mu2: float, slack: float):
    """How long arriving requests meet a backlog they cannot wait through (a fluid model). The
    backlog grows at ``lam - mu`` during the lag ``L`` and drains at ``mu2 - lam`` after it; a
    request waits about ``Q / mu`` (``Q / mu2`` after the scale-up), over its TTFT ``slack`` from
    ``t1 = mu slack / (lam - mu)`` into the lag until the backlog ``Q(L) = (lam - mu) L`` has
    drained under ``mu2 slack``. (A decode pool short of KV memory first fills the cache the
    period before left free, which this does not count: there it is pessimistic.)"""
    L = np.asarray(lag_s, dtype=float)
    if not mu2 > lam:
        return np.where(L > 0, np.inf, 0.0)
    grow = max(lam - mu, 1e-12)
    t1 = np.minimum(L, mu * slack / grow)
    drain = np.maximum(grow * L - mu2 * slack, 0.0) / (mu2 - lam)
    return np.maximum(L - t1, 0.0) + drain


def _period_attainment(pp: PeriodPlan, lag_s) -> Any:
    """Period attainment with a lag of ``lag_s`` (array or scalar): the lag window's share of
    the period at its attainment, the rest at the steady one; overloaded, the late share at 0."""
    T = pp.duration_s
    w = pp.lag
    if w is None:
        return pp.attainment_steady
    lag = np.minimum(np.asarray(lag_s, dtype=float), T)
    if w.stable:
        share = lag / T
        v = share * w.attainment + (1.0 - share) * pp.attainment_steady
    else:
        late = np.minimum(_late(lag, pp.qps, w.capacity_qps, w.capacity_after_qps, w.slack_s), T)
        v = (1.0 - late / T) * pp.attainment_steady
    return float(v) if np.ndim(v) == 0 else v


def max_lag(day: DayPlan) -> float | None:
    """The longest scale-up time up to the shortest period at which the day's attainment still
    reaches the percentile (the lag windows' terms are linear in the lag, the backlog's too, until
    a window fills its period; a fine grid finds it), or None when instant scaling does not."""
    periods = [p for p in day.periods if p.plan is not None]
    w = np.array([p.requests for p in periods])
    if not periods or np.sum(w) <= 0:
        return None
    top = float(np.min(day.profile.duration_s))
    lags = np.linspace(0.0, top, 2001)
    att = np.zeros_like(lags)
    for p, wk in zip(periods, w):
        if p.lag is None:
            att += wk * p.attainment_steady
        else:
            att += wk * np.asarray(_period_attainment(p, lags))
    att /= np.sum(w)
    ok = att >= day.target - 1e-9
    if not ok[0]:
        return None
    if ok.all():
        return top
    return float(lags[int(np.argmin(ok)) - 1])


# --------------------------------------------------------------------------------------------
# Static peak provisioning and the best day of each approach
# --------------------------------------------------------------------------------------------


def _static(inp: Inputs, profile: LoadProfile, order: list, per: list, max_gpus: int, objective: str,
            scaling: Scaling) -> dict:
    """The cheapest single deployment that meets every period within the same limits (each pool
    at its largest need, at least its minimum, at most its maximum)."""
    K = profile.periods
    best: tuple | None = None
    for sh in order:
        if any(sh.need[k] is None for k in range(K) if per[k] is not None):
            continue
        c = {r: max([int(sh.need[k][r]) for k in range(K) if per[k] is not None] + [scaling.low(r)])
             for r in sh.gpus_per_instance}
        g, pr = _gpus(sh, c), _price(sh, c)
        if g > max_gpus or any(n > scaling.high(r) for r, n in c.items()):
            continue
        key = (g, pr) if objective == "gpus" else (pr, g)
        if best is None or key < best[0]:
            best = (key, sh, c)
    if best is None:
        return {}
    _, sh, c = best
    dep = with_counts(sh.template, c)
    k = int(profile.peak_period)
    pi = per[k]
    plan = _Estimates()(pi, dep, sh.spec) if pi is not None else None
    span_h = profile.span_s / 3600.0
    return {"deployment": dep, "plan": plan, "gpus": dep.total_gpus,
            "gpu_hours": dep.total_gpus * span_h, "cost": _price(sh, c) * span_h}


def _best_per_approach(inp, profile, order, counts, G, P, dur_h, objective, lag_h, scaling) -> dict:
    """Per approach, its best single-shape day (the shape's GPU-hours and dollars): what the
    day costs on each approach, beside the one chosen."""
    out: dict[str, dict] = {}
    for j, sh in enumerate(order):
        if not np.all(np.isfinite(G[:, j])):
            continue
        gh = float(np.sum(G[:, j] * dur_h))
        cost = float(np.sum(P[:, j] * dur_h))
        a = sh.key[0]
        key = (gh, cost) if objective == "gpus" else (cost, gh)
        cur = out.get(a)
        if cur is None or key < cur["_key"]:
            peak_k = int(np.argmax(G[:, j]))
            out[a] = {"_key": key, "deployment": with_counts(sh.template, counts[peak_k][j]),
                      "gpu_hours": gh, "cost": cost, "peak_gpus": int(G[peak_k, j]),
                      "low_gpus": int(np.min(G[:, j]))}
    for v in out.values():
        v.pop("_key")
    return dict(sorted(out.items(), key=lambda kv: APPROACHES.index(kv[0])))


# --------------------------------------------------------------------------------------------
# No plan: which period, which constraint
# --------------------------------------------------------------------------------------------


def _no_day_plan(inp, profile, per, gpu_ids, approaches, max_gpus) -> str:
    k = profile.peak_period
    load = profile.load[k]
    what = f"{load:g} clients" if profile.closed else f"{load:g} QPS"
    return (f"no deployment meets P{inp.slo.percentile} TTFT <= {inp.slo.ttft_s * 1e3:g} ms and TPOT <= "
            f"{inp.slo.tpot_s * 1e3:g} ms in any period of the profile within {max_gpus} GPUs (the busiest, "
            f"{profile.label(k)}, has {what})\nwhat would help: pdplan recommend at the busiest period's "
            f"rate says why (e.g. --qps {load:g})")


def _no_schedule(inp, profile, order, counts, scaling: Scaling, max_gpus) -> str:
    K = profile.periods
    served = [sum(1 for j in range(len(order)) if counts[k][j] is not None) for k in range(K)]
    worst = int(np.argmin(served))
    lines = [f"no schedule serves every period of the profile: no deployment meets the SLO at "
             f"{profile.label(worst)} ({profile.load[worst]:g} {'clients' if profile.closed else 'QPS'})"
             + (" within --max-instances" if scaling.max_instances else f" within {max_gpus} GPUs")]
    if not scaling.allow_approach_change:
        lines.append("what would help: --allow-approach-change (a different approach in some periods), "
                     "a larger --max-instances or --max-gpus")
    else:
        lines.append("what would help: a larger --max-instances or --max-gpus, or a looser SLO")
    return "\n".join(lines)


__all__ = ["DayPlan", "LagWindow", "PeriodPlan", "Scaling", "evaluate_day", "parse_instances",
           "period_inputs", "plan_day", "shape_of", "with_counts", "counts_of", "max_lag", "MODES", "ROLES"]
