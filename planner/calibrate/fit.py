"""The fit of a calibration profile: a few step-model constants fitted to a user's own benchmark
results through the serving model at each result's load.

Each result (:class:`planner.calibrate.readers.BenchResult`) becomes one estimate of the user's
deployment (``replicas x tp`` of the GPU, the engine's default approach, lengths fixed at the
result's means, Poisson arrivals at its request rate or its closed-loop clients) and one residual
``log(predicted / measured)`` per statistic it states (TTFT and TPOT/ITL mean and percentiles,
output throughput). Up to four constants (:class:`planner.perf.Calibration`) are fitted by robust
least squares (soft-L1) on those residuals, within bounds:

* ``overhead_ms``: the engine's per-iteration host overhead (replaces the engine profile's);
* ``compute``: multiplies every kernel's compute efficiency (prefill, large batches);
* ``memory``: multiplies every kernel's HBM efficiency (small-batch decode streams the weights);
* ``comm``: the speed of all-reduces and all-to-alls (only at ``tp > 1``).

A constant the data cannot pin is refused and kept at its catalog value, with the measurement
that would pin it: no sensitivity at all (e.g. ``comm`` at ``tp 1``), an uncertainty of more than
``MAX_LOG_SD`` in log space from the fit's covariance, or a correlation above ``MAX_CORR`` with a
better-determined constant. Leave-one-out refits (each result left out in turn) give the
out-of-sample error per statistic and the residuals a profile's confidence ranges use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from planner.errors import InvalidRequestError

if TYPE_CHECKING:
    from planner.calibrate.readers import BenchResult
    from planner.catalog import Catalog, EngineSpec, ModelSpec

# (name, lower, upper, catalog value or None = the engine's, transform): scales are fitted in log.
CONSTANTS = (
    ("overhead_ms", 0.0, 5.0),
    ("request_ms", 0.0, 50.0),
    ("compute", 0.5, 2.0),
    ("memory", 0.5, 2.0),
    ("comm", 0.25, 4.0),
)
LOG_SCALED = {"compute", "memory", "comm"}
PRIORITY = ("compute", "memory", "request_ms", "overhead_ms", "comm")  # fitted first to last
MAX_LOG_SD = 0.25  # a constant known to worse than about +-28% is not identified
MAX_CORR = 0.95
CLIP = 3.0  # |log residual| cap: an operating point predicted unstable counts as e^3 off
HINTS = {
    "request_ms": "add runs at low load with different prompt lengths: the per-request latency outside "
                  "the engine's iterations shows as TTFT that no prefill explains",
    "overhead_ms": "add a run at concurrency 1 (or a low request rate) to separate the per-iteration "
                   "overhead from bandwidth",
    "memory": "add runs with small batches (concurrency 1-8): their decode steps stream the weights",
    "compute": "add runs with long prompts or at high load: prefill and large batches are compute-bound",
    "comm": "add runs at tp > 1 (at tp 1 there is no all-reduce)",
}
# Statistics read from a result, as (metric family, metric key, statistic)
STATS = [(fam, key, st) for fam, key in (("ttft", "ttft_s"), ("tpot", "tpot_s"), ("tpot", "itl_s"))
         for st in ("mean", "p50", "p90", "p99")] + [("throughput", "output_tok_s", "")]


@dataclass(frozen=True)
class Setup:
    """The deployment the results were measured on."""

    catalog: Catalog
    model: ModelSpec
    gpu: str
    tp: int = 1
    replicas: int = 1
    engine: EngineSpec | None = None
    dtype: str | None = None
    kv_dtype: str | None = None


@dataclass
class Observation:
    result: BenchResult
    family: str  # ttft | tpot | throughput
    key: str  # ttft_s, tpot_s, itl_s, output_tok_s
    stat: str  # mean p50 p90 p99 or "" (throughput)
    measured: float

    @property
    def name(self) -> str:
        return f"{self.key[:-2]}_{self.stat}" if self.stat else self.key


@dataclass
class FitReport:
    setup: Setup
    observations: list
    values: dict  # name -> fitted (or kept) value
    sd: dict  # name -> standard deviation (log units for scales, ms for the overhead); None if refused
    fitted: list  # names fitted
    refused: list  # [{"name", "why", "hint"}]
    in_sample: dict  # statistic name -> {"median_abs_error", "count", ...}
    uncalibrated: dict
    loo: dict
    loo_residuals: dict = field(default_factory=dict)  # family -> [log(measured / predicted)]
    excluded: list = field(default_factory=list)  # results left out (did not keep up with their rate)
    errors: dict = field(default_factory=dict)  # per observation: (uncalibrated, fitted, loo) errors


OVERLOAD = 0.7  # an open-loop run that completed under 70% of its request rate did not keep up (a
#                finite run completes below its rate by its last requests' latency, so the margin is wide)


def overloaded(result) -> bool:
    """An open-loop run whose completed request rate fell short of the rate it was sent at: the
    engine did not keep up, so its latencies grew with the run's length (no steady state)."""
    q = result.qps
    done = result.metrics.get("request_s")
    return (q is not None and math.isfinite(q) and result.concurrency is None and done is not None
            and float(done) < OVERLOAD * float(q))


def observations(results) -> list:
    """Every statistic the results state, as observations (positive, finite). Runs that did not
    keep up with their request rate (:func:`overloaded`) give none."""
    out = []
    for r in results:
        if overloaded(r):
            continue
        for fam, key, st in STATS:
            v = r.metrics.get(key)
            if isinstance(v, dict):
                v = v.get(st)
            elif st:
                v = None
            if v is None:
                continue
            if key == "output_tok_s" and r.concurrency is None:
                continue  # open loop: throughput is the offered rate while stable; it pins nothing
            v = float(v)
            if not math.isfinite(v) or v <= 0:
                raise InvalidRequestError(f"{r.path}: row {r.row}: {key} {st or 'value'} must be a "
                                          f"positive number, got {v!r}")
            out.append(Observation(r, fam, key, st, v))
    return out


def _inputs(setup: Setup, result, calibration):
    from planner import api
    from planner.workload import Workload, fixed

    closed = result.concurrency is not None and (result.qps is None or not math.isfinite(result.qps))
    if not closed and (result.qps is None or not math.isfinite(result.qps)):
        raise InvalidRequestError(
            f"{result.path}: row {result.row}: the run sent every request at once (request rate inf) "
            "without a concurrency cap; pdplan calibrates on open-loop rates or closed-loop clients")
    qps = float(result.qps) if not closed else 1.0
    wl = Workload(qps, fixed(max(int(round(result.isl)), 1)), fixed(max(int(round(result.osl)), 1)),
                  concurrency=int(result.concurrency) if closed else None)
    model = setup.model
    dtype = setup.dtype or model.default_dtype
    kv = setup.kv_dtype or model.default_kv_dtype
    return api.Inputs(model, wl, api.SLO(1.0, 0.05), dtype, kv, setup.catalog, gpu=setup.gpu,
                      engine=setup.engine, calibration=calibration)


def predict_result(setup: Setup, result, calibration, percentiles=(50, 90, 99)) -> dict:
    """``{(key, stat): predicted}`` for one result under ``calibration`` (inf where the serving
    model calls the load unstable); ``percentiles``: the ones to compute besides the means."""
    from planner import api
    from planner.serving.common import Deployment, Pool

    inp = _inputs(setup, result, calibration)
    eng = inp.engine
    approach = "chunked" if eng is not None and eng.chunked_prefill else "unified"
    gpu = setup.catalog.gpus[setup.gpu]
    pool = Pool("unified", setup.gpu, setup.replicas, setup.tp, 1, 1, 1)
    dep = Deployment(approach, (pool,), chunk_size=eng.token_budget(gpu) if approach == "chunked" else None)
    # (the serving model alone: estimate()'s headroom, explanation and step report are not needed)
    if inp.workload.closed:
        lam, r = api.closed_loop(api.engine_side(inp), dep)
        inp = replace(inp, workload=inp.workload.with_qps(lam))
    else:
        r = api.evaluate(api.engine_side(inp), dep, [inp.workload.qps], percentiles=tuple(percentiles))
    m = api.metrics_at(r, inp.workload.qps, inp)
    req = calibration.request_s if calibration is not None else 0.0
    out = {}
    for _, key, st in STATS:
        if key == "output_tok_s":
            out[(key, st)] = float(m.throughput_out_tok_s) if m.stable else 0.0
        else:
            d = m.ttft if key == "ttft_s" else m.tpot
            if st not in d:
                continue
            out[(key, st)] = (float(d[st]) + (req if key == "ttft_s" else 0.0)) if m.stable else math.inf
    return out


def _residuals(setup, obs, calibration, cache=None):
    """log(predicted / measured) of every observation (clipped)."""
    preds = {}
    out = np.empty(len(obs))
    for i, o in enumerate(obs):
        rid = id(o.result)
        if rid not in preds:
            need = sorted({int(x.stat[1:]) for x in obs if x.result is o.result and x.stat.startswith("p")})
            preds[rid] = predict_result(setup, o.result, calibration, need)
        p = preds[rid][(o.key, o.stat)]
        if o.key == "output_tok_s":
            lr = math.log(p / o.measured) if p > 0 else -CLIP
        else:
            lr = math.log(p / o.measured) if math.isfinite(p) and p > 0 else CLIP
        out[i] = float(np.clip(lr, -CLIP, CLIP))
    return out


def _calibration(names, x, base: dict):
    """(the Calibration, the constants' values) with ``names`` set from the solver's ``x``."""
    v = dict(base)
    for n, xi in zip(names, x):
        v[n] = math.exp(xi) if n in LOG_SCALED else xi
    return calibration_of(v), v


def _x0_bounds(names, base):
    x0, lo, hi = [], [], []
    for n in names:
        _, a, b = next(c for c in CONSTANTS if c[0] == n)
        v = base[n]
        f = math.log if n in LOG_SCALED else float
        x0.append(f(min(max(v, a), b)))
        lo.append(f(a))
        hi.append(f(b))
    return np.array(x0), np.array(lo), np.array(hi)


def _robust_cost(r, f=0.1):
    return float(np.sum(2.0 * f * f * (np.sqrt(1.0 + (r / f) ** 2) - 1.0)))


def _solve(setup, obs, names, base, max_nfev=60, coarse=False):
    from scipy.optimize import least_squares

    if not names:
        return np.array([]), None
    x0, lo, hi = _x0_bounds(names, base)
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)

    def fun(x):
        return _residuals(setup, obs, _calibration(names, x, base)[0])

    if coarse:
        # A load the model calls unstable gives a flat (clipped) residual, so a local solver can
        # sit next to a much better fit; start it from the best of a coarse grid of the scales.
        axes = [i for i, n in enumerate(names) if n in ("compute", "memory")]
        best = (_robust_cost(fun(x0)), x0)
        grid = np.log([0.55, 0.75, 1.0, 1.35])
        for combo in np.array(np.meshgrid(*[grid] * len(axes))).reshape(len(axes), -1).T:
            x = x0.copy()
            x[axes] = np.clip(combo, lo[axes] + 1e-9, hi[axes] - 1e-9)
            c = _robust_cost(fun(x))
            if c < best[0]:
                best = (c, x)
        x0 = best[1]

    # Finite differences of 5%: the serving model is piecewise smooth (integer batches, cached
    # tables), so smaller steps can read a zero slope.
    res = least_squares(fun, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.1, diff_step=0.05,
                        max_nfev=max_nfev)
    return res.x, res


def _stats(err) -> dict:
    e = np.abs(np.asarray(err, dtype=float))
    if not len(e):
        return {"count": 0}
    return {"count": int(len(e)), "median_abs_error": float(np.median(e)),
            "p90_abs_error": float(np.percentile(e, 90)),
            "median_signed_error": float(np.median(err))}


def _by_stat(obs, lr) -> dict:
    groups: dict = {}
    for o, r in zip(obs, lr):
        # error = predicted / measured - 1; for throughput the same sign convention
        groups.setdefault(o.name, []).append(math.expm1(r))
    out = {k: _stats(v) for k, v in sorted(groups.items())}
    out["all"] = _stats([math.expm1(r) for r in lr])
    return out


def base_values(setup: Setup) -> dict:
    """The catalog's values of the four constants for this setup (the engine's overhead)."""
    from planner.perf import build_step_model

    sm = build_step_model(setup.catalog, setup.model, setup.catalog.gpus[setup.gpu], setup.tp,
                          dtype=setup.dtype, kv_dtype=setup.kv_dtype, engine=setup.engine)
    return {"overhead_ms": sm.overhead_s * 1e3, "request_ms": 0.0, "compute": 1.0, "memory": 1.0, "comm": 1.0}


def fit(results, setup: Setup, constants=None, loo: bool = True) -> FitReport:
    """Fit the identifiable constants to ``results`` (see the module docstring)."""
    obs = observations(results)
    excluded = [r for r in results if overloaded(r)]
    results = [r for r in results if not overloaded(r)]
    names = [c[0] for c in CONSTANTS] if constants is None else list(constants)
    if setup.tp <= 1 and setup.replicas >= 1 and "comm" in names:
        names.remove("comm")
        refused = [{"name": "comm", "why": "no collective at tp 1: the data carry no communication time",
                    "hint": HINTS["comm"]}]
    else:
        refused = []
    if constants is not None and len(obs) < len(names) + 1:
        raise InvalidRequestError(
            f"{len(results)} result(s) with {len(obs)} statistics for {len(names)} constants "
            f"({', '.join(names)}): give at least {len(names) + 1} statistics, or fewer constants")
    if len(results) < 2 or len(obs) < 3:
        raise InvalidRequestError(
            f"{len(results)} usable result(s) with {len(obs)} statistics: give at least 2 runs with 3 "
            "statistics between them" + (f" ({len(excluded)} run(s) did not keep up with their request "
                                          "rate and were left out)" if excluded else ""))
    # Fewer statistics than constants + 1: fit the most telling ones first.
    while len(names) >= len(obs):
        drop = next(n for n in reversed(PRIORITY) if n in names)
        names.remove(drop)
        refused.append({"name": drop, "why": f"{len(obs)} statistics cannot pin more constants",
                        "hint": HINTS[drop]})
    base = base_values(setup)
    start = dict(base)
    first = True
    lr0 = _residuals(setup, obs, None)
    # Fit, then refuse what the data cannot pin and refit without it.
    while True:
        x, res = _solve(setup, obs, names, start, coarse=first)
        first = False
        if not names:
            break
        J = res.jac
        dof = max(len(obs) - len(names), 1)
        s2 = float(np.sum(res.fun ** 2) / dof)
        sens = np.sqrt(np.sum(J ** 2, axis=0))
        bad = None
        if np.any(sens < 1e-6):
            i = int(np.argmin(sens))
            bad = (names[i], "the results do not depend on it")
        else:
            cov = np.linalg.pinv(J.T @ J) * max(s2, 1e-4)
            sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
            # relative uncertainty: log units for the scales, sd / max(value, 1 ms) for the times
            scale_sd = np.array([sd[i] if n in LOG_SCALED else sd[i] / max(abs(x[i]), 1.0) for i, n in enumerate(names)])
            corr = cov / np.outer(sd, sd).clip(1e-30)
            np.fill_diagonal(corr, 0.0)
            if len(names) > 1 and np.max(np.abs(corr)) > MAX_CORR:
                i, j = (int(v) for v in np.unravel_index(int(np.argmax(np.abs(corr))), corr.shape))
                k = i if scale_sd[i] > scale_sd[j] else j
                other = names[j if k == i else i]
                bad = (names[k], f"the results cannot tell it from {other} (correlation "
                                 f"{corr[i, j]:+.2f})")
            elif np.max(scale_sd) > MAX_LOG_SD:
                i = int(np.argmax(scale_sd))
                unc = (f"+-{math.expm1(min(scale_sd[i], 5.0)):.0%}" if names[i] in LOG_SCALED
                       else f"+-{sd[i]:.2g} ms around {x[i]:.2g} ms")
                bad = (names[i], f"the results leave it uncertain to about {unc}")
        if bad is None:
            break
        # warm start from this fit; the refused constant goes back to its catalog value
        start = dict(start, **{n: (math.exp(xi) if n in LOG_SCALED else float(xi)) for n, xi in zip(names, x)})
        start[bad[0]] = base[bad[0]]
        names.remove(bad[0])
        refused.append({"name": bad[0], "why": bad[1], "hint": HINTS[bad[0]]})
    cal, values = _calibration(names, x, {k: (base[k] if k not in names else v) for k, v in start.items()})
    values = {k: float(v) for k, v in values.items()}
    lr1 = _residuals(setup, obs, cal)
    sd_out: dict = {c[0]: None for c in CONSTANTS}
    if names:
        J = res.jac
        s2 = float(np.sum(res.fun ** 2) / max(len(obs) - len(names), 1))
        cov = np.linalg.pinv(J.T @ J) * max(s2, 1e-4)
        for i, n in enumerate(names):
            sd_out[n] = float(math.sqrt(max(cov[i, i], 0.0)))
    # Leave one result out: refit on the others, predict it.
    lr_loo = np.full(len(obs), np.nan)
    if loo and len(results) >= 3 and names:
        for r in results:
            keep = [o for o in obs if o.result is not r]
            held = [i for i, o in enumerate(obs) if o.result is r]
            xr, _ = _solve(setup, keep, names, values, max_nfev=25)
            cr, _ = _calibration(names, xr, base)
            lr_loo[held] = _residuals(setup, [obs[i] for i in held], cr)
    loo_ok = np.isfinite(lr_loo)
    fam_res: dict = {}
    for o, r in zip(obs, lr_loo):
        if math.isfinite(r):
            fam_res.setdefault(o.family, []).append(float(-r))  # log(measured / predicted)
    return FitReport(
        setup=setup, observations=obs, values=values, sd=sd_out, fitted=list(names), refused=refused,
        in_sample=_by_stat(obs, lr1), uncalibrated=_by_stat(obs, lr0),
        loo=_by_stat([o for o, k in zip(obs, loo_ok) if k], lr_loo[loo_ok]) if loo_ok.any() else {},
        loo_residuals=fam_res, excluded=excluded,
        errors={i: (math.expm1(lr0[i]), math.expm1(lr1[i]),
                    math.expm1(lr_loo[i]) if math.isfinite(lr_loo[i]) else None) for i in range(len(obs))})


def calibration_of(values: dict):
    """The :class:`planner.perf.Calibration` of a profile's constant values."""
    from planner.perf import Calibration

    oh = values.get("overhead_ms")
    return Calibration(overhead_s=None if oh is None else float(oh) * 1e-3,
                       request_s=float(values.get("request_ms", 0.0)) * 1e-3,
                       compute=float(values.get("compute", 1.0)), memory=float(values.get("memory", 1.0)),
                       comm=float(values.get("comm", 1.0)))
