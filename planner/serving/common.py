"""Shared pieces of the serving models: deployments, metrics, lane profiles and percentile helpers.

A *lane* is one scheduler of an instance (``pp * dp`` lanes per instance, see
:mod:`planner.perf`). Every serving model reduces a deployment to lanes that each receive a
share of the traffic, then combines queueing results with step times.

All model functions take the per-lane arrival rate as a numpy array so that the optimizer can
evaluate many pool sizes at once; the result arrays have that shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast, overload

import numpy as np

from planner.perf import StepModel, build_step_model
from planner.serving import REGISTRY  # noqa: E402
from planner.types import PERCENTILES, Deployment, Metrics, Pool  # noqa: F401  (their home is planner.types)

if TYPE_CHECKING:
    from planner.perf.speculative import SpecStepModel

APPROACHES = tuple(REGISTRY)
# The worst inter-token gap (``itl_max``) is the largest expected over this many requests (a
# benchmark's length); Z_HORIZON is the standard normal quantile at 1 - 1/ITL_HORIZON.
ITL_HORIZON = 10_000
Z_HORIZON = 3.719


def shape_of(workload, tail: bool = True) -> LoadShape:
    """The load shape of a workload (with its prefix-cache state), with its longest prompt over
    the worst-gap horizon (``tail``; else the longest of the grid)."""
    isl, osl = workload.grid()
    cached, shared = workload.prefix_grid()
    isl_tail = tail_cached = None
    if tail:
        isl_tail = workload.isl_tail(ITL_HORIZON)
        if workload.trace is None:
            tail_cached = float(workload.prefix.cached([int(isl_tail)])[0])
    return LoadShape(isl, osl, isl_tail=isl_tail, cached=cached, shared=shared,
                     prefix_tokens=float(workload.prefix.tokens), tail_cached=tail_cached)
# Without an engine profile (StepModel.engine None): vLLM 0.11.0's defaults
# (hardware/engines/vllm.yaml has them with their sources): 1024 sequences on GPUs of at least
# 70 GiB other than the A100, else 256; paged KV in blocks of 16 tokens, allocated as tokens arrive.
MAX_NUM_SEQS_LARGE, MAX_NUM_SEQS_SMALL = 1024, 256
DEFAULT_KV_BLOCK = 16
DEFAULT_TOKEN_BUDGET = 8192
_ERFC = np.frompyfunc(math.erfc, 1, 1)


def max_num_seqs(sm: StepModel) -> int:
    """The engine's cap on running sequences of one lane (each data-parallel attention rank
    schedules its own, up to the engine's cap)."""
    if sm.engine is not None:
        return sm.engine.max_seqs(sm.gpu) * sm.dp
    per_rank = (MAX_NUM_SEQS_LARGE if sm.gpu.hbm_bytes >= 70 * 2**30 * 0.99 and "a100" not in sm.gpu.id
                else MAX_NUM_SEQS_SMALL)
    return per_rank * sm.dp


def token_budget(sm: StepModel) -> int:
    """The engine's default token budget per iteration of one lane (per rank times the ranks)."""
    return lane_budget(sm, sm.engine.token_budget(sm.gpu) if sm.engine is not None else DEFAULT_TOKEN_BUDGET)


@overload
def lane_budget(sm: StepModel, per_rank: int) -> int: ...
@overload
def lane_budget(sm: StepModel, per_rank: None) -> None: ...
@overload
def lane_budget(sm: StepModel, per_rank: int | None) -> int | None: ...
def lane_budget(sm: StepModel, per_rank: int | None) -> int | None:
    """A lane's token budget from the per-rank one users and engines give (``--chunk-size``,
    ``max_num_batched_tokens``): each of the ``dp`` attention ranks has its own."""
    return None if per_rank is None else int(per_rank) * sm.dp


def kv_tokens_per_sequence(sm: StepModel, shape: LoadShape) -> float:
    """KV-cache tokens a running sequence holds on average, by the engine's admission policy.

    * ``incremental`` (paged, vLLM and SGLang): blocks for what it has so far; over its decode
      lifetime that is ``E[(ISL + OSL/2) (OSL - 1)] / E[OSL - 1]`` tokens plus half a block.
    * ``reserve_full`` (TensorRT-LLM's GUARANTEED_NO_EVICT): blocks for ``ISL + OSL`` from
      admission on.

    With a shared prefix cached (:class:`planner.workload.PrefixCache`) its blocks are the
    instance's, held once (:func:`sequence_kv_capacity`); a sequence holds the rest."""
    eng = sm.engine
    block = DEFAULT_KV_BLOCK if eng is None else eng.kv_block_tokens
    if eng is not None and eng.kv_admission == "reserve_full":
        full = shape.isl + shape.osl - shape.shared
        return float(np.mean(np.ceil(full / block) * block))
    return shape.kv_context + block / 2.0


def sequence_kv_capacity(sm: StepModel, shape_or_tokens) -> float:
    """KV tokens of one instance left to its sequences: the capacity less the shared prefix,
    whose cached blocks each KV cache holds once (every request uses them, so they stay): once
    per instance, once per attention rank under data-parallel attention (each rank its own
    cache)."""
    shared = getattr(shape_or_tokens, "prefix_tokens", shape_or_tokens)
    return max(sm.kv_capacity_tokens - float(shared) * getattr(sm, "dp", 1), 0.0)


def kv_in_use(batch, shape: LoadShape, sm: StepModel):
    """Mean KV tokens in use on an instance whose lanes each run ``batch`` sequences on time
    average: each holds :attr:`LoadShape.kv_context`, and a KV cache's shared-prefix blocks are
    in use (held once) while at least one of its sequences runs, with probability ``1 - e^-N``
    for a Poisson number ``N`` of them (mean ``batch * pp`` per cache; under data-parallel
    attention a lane's batch spreads over ``dp`` caches, ``batch * pp / dp`` each); at the batch
    cap that is 1, which is what :func:`sequence_kv_capacity` sets aside."""
    b = np.asarray(batch, dtype=float)
    dp = getattr(sm, "dp", 1)
    return b * shape.kv_context * sm.lanes + shape.prefix_tokens * dp * -np.expm1(-b * sm.pp / dp)


def batch_cap(sm: StepModel, shape: LoadShape) -> tuple[float, str]:
    """Most sequences one lane keeps decoding, and what binds: ``"kv-memory"`` (the KV cache at
    the steady mean occupancy per sequence) or ``"max-num-seqs"`` (the engine's cap)."""
    kv = sequence_kv_capacity(sm, shape) / sm.lanes / kv_tokens_per_sequence(sm, shape)
    seqs = float(max_num_seqs(sm))
    return (kv, "kv-memory") if kv < seqs else (seqs, "max-num-seqs")


def cap_label(by: str) -> str:
    """The saturated resource named in results when the batch a load needs exceeds the cap."""
    return {"kv-memory": "kv-memory", "max-num-seqs": "max-num-seqs"}.get(by, "token-budget")


@dataclass
class LaneResult:
    """What every approach's analytic model returns for a deployment at an array of request
    rates (each array has the shape of the rates; SI units; ``inf`` where overloaded).

    ``stable`` is true exactly where every metric is finite; ``saturated`` names the resource an
    unstable point runs out of (the approach's compute, ``kv-memory``, ``max-num-seqs``,
    ``kv-link``), ``""`` where stable."""

    ttft: dict  # 'mean', 'p50', ... -> array of seconds
    tpot: dict
    itl_max: np.ndarray  # largest gap between two tokens of a request
    stable: np.ndarray
    attain: np.ndarray | None  # share of requests within both SLOs (None: no SLO given)
    saturated: np.ndarray
    utilization: dict  # pool role -> array
    batch: np.ndarray  # decoding sequences per lane (decode or unified pool)
    kv_used: np.ndarray  # KV tokens in use per instance
    kv_capacity: float  # KV tokens an instance holds
    batch_cap: Any  # most sequences a lane keeps running (per candidate when the search stacks budgets)
    batch_cap_by: Any  # kv-memory | max-num-seqs (likewise)
    breakdown: dict  # ttft_queue_s, ttft_compute_s, ttft_transfer_s, tpot_step_s, tpot_interference_s
    admission_wait: np.ndarray | float = 0.0  # probability a prompt waits for a place in the batch
    link: dict | None = None  # the KV-transfer link (disaggregated)


def step_model(inp, pool: Pool) -> StepModel:
    """The step model of one pool's instances under the question ``inp`` (model, dtypes,
    engine, catalog)."""
    gpu = inp.catalog.gpu(pool.gpu)
    sm = build_step_model(inp.catalog, inp.model, gpu, pool.tp, pool.pp, dtype=inp.dtype,
                          kv_dtype=inp.kv_dtype, ep=pool.ep, dp=pool.dp, engine=inp.engine,
                          calibration=calibration_for(inp, gpu.id))
    return with_spec(inp, sm)


def longest_prompt(wl) -> int:
    """The longest prompt the serving model plans for under workload ``wl``: a fixed length, a
    uniform distribution's maximum, a trace's longest row, else the longest of the load shape
    (the distribution's tail over the worst-gap horizon)."""
    import math

    if wl.trace is not None:
        return int(max(wl.trace.isl))
    if wl.isl.kind == "fixed":
        return int(wl.isl.mean)
    if wl.isl.kind == "uniform":
        return int(math.ceil(wl.isl.high))
    return int(math.ceil(shape_of(wl).longest))


def request_latency(inp) -> float:
    """Seconds of per-request latency outside the engine's iterations that a calibration profile
    adds to every TTFT (0 without one)."""
    cal = getattr(inp, "calibration", None)
    return float(cal.request_s) if cal is not None else 0.0


def engine_side(inp):
    """``inp`` with the TTFT SLO the engine itself must meet: the SLO less the calibration's
    per-request latency, and that latency taken out of the calibration (unchanged without one)."""
    from dataclasses import replace

    req = request_latency(inp)
    if req <= 0:
        return inp
    return replace(inp, slo=replace(inp.slo, ttft_s=max(inp.slo.ttft_s - req, 1e-6)),
                   calibration=replace(inp.calibration, request_s=0.0))


def calibration_for(inp, gpu_id: str):
    """The calibration (:class:`planner.perf.Calibration`) that applies to ``gpu_id``'s step
    models under ``inp``: the profile's, when the question has one fitted on that GPU (or one
    applied to every GPU with ``--force``), else none."""
    cal = getattr(inp, "calibration", None)
    if cal is None:
        return None
    gpus = getattr(inp, "calibration_gpus", None)
    return cal if gpus is None or gpu_id in gpus else None


def with_spec(inp, sm: StepModel) -> StepModel:
    """``sm`` decoding speculatively when the question says so (``inp.spec``), else ``sm``."""
    spec = getattr(inp, "spec", None)
    if spec is None:
        return sm
    from planner.perf.speculative import speculative_step_model

    return speculative_step_model(inp.catalog, sm, spec)


def per_output_token(sm: StepModel, shape: LoadShape, td, td_sd):
    """A decode iteration ``td`` (its spread ``td_sd`` over the batch) as time per output token:
    ``td / g`` with ``g`` the tokens a sequence gains per iteration (1, or ``1 + E[a]`` under
    speculative decoding). Speculation adds the spread of the accepted counts: a request of
    ``n`` decode tokens takes ``N`` iterations, ``Var N ~ n Var(a) / g^3`` (renewal theory), so
    its TPOT ``td N / n`` varies by ``td^2 Var(a) / g^3 E[1/n]`` more."""
    g = float(sm.tokens_per_step)
    td = np.asarray(td, dtype=float)
    if g == 1.0:
        return td, td_sd
    var_a = float(cast("SpecStepModel", sm).spec.variance)  # g > 1: a speculative instance
    inv_n = float(np.mean(1.0 / np.maximum(shape.decode_tokens, 1.0)))
    sd = np.sqrt((np.asarray(td_sd, dtype=float) / g) ** 2 + td**2 * var_a / g**3 * inv_n)
    return td / g, sd


def transfer_of(inp):
    """The KV-transfer engine of the question ``inp``: the one asked for (``--kv-transfer``),
    else the default of its serving engine (:func:`planner.catalog.default_transfer`); None
    (the link alone, no setup) without a catalog."""
    given = getattr(inp, "kv_transfer", None)
    if given is not None or inp.catalog is None:
        return given
    from planner.catalog import default_transfer

    return default_transfer(inp.catalog, inp.engine)


# --------------------------------------------------------------------------------------------
# Workload summaries on the lanes
# --------------------------------------------------------------------------------------------


@dataclass
class LoadShape:
    """Deterministic summaries of the request mix used by every analytic model. ``isl_tail``:
    the longest prompt over the worst-gap horizon (:data:`ITL_HORIZON` requests; default the
    longest of ``isl``)."""

    isl: np.ndarray
    osl: np.ndarray
    isl_tail: float | None = None
    # Prefix caching (planner.workload.PrefixCache), per request of the mix: prompt tokens found
    # in the cache (``cached``) and, of those, the shared prefix's (``shared``, held once per
    # instance); the shared prefix's length; the cached tokens of the longest prompt.
    # (None = none cached: __post_init__ fills zeros, so neither is None after it.)
    cached: np.ndarray = None  # type: ignore[assignment]
    shared: np.ndarray = None  # type: ignore[assignment]
    prefix_tokens: float = 0.0
    tail_cached: float | None = None

    def __post_init__(self):
        if self.cached is None:
            self.cached = np.zeros(np.shape(self.isl), dtype=np.int64)
        if self.shared is None:
            self.shared = np.zeros(np.shape(self.isl), dtype=np.int64)
        if self.tail_cached is None:
            self.tail_cached = float(self.cached[int(np.argmax(self.isl))]) if np.size(self.isl) else 0.0

    @property
    def longest(self) -> float:
        return float(self.isl_tail if self.isl_tail is not None else np.max(self.isl))

    @property
    def longest_computed(self) -> float:
        """Prompt tokens the longest prompt's prefill computes (its uncached ones)."""
        return max(self.longest - float(self.tail_cached or 0.0), 1.0)  # (set by __post_init__)

    @property
    def computed(self) -> np.ndarray:
        """Prompt tokens each prefill computes: those not found in the prefix cache."""
        return (self.isl - self.cached).astype(float)

    @property
    def mean_computed(self) -> float:
        return float(self.computed.mean())

    @property
    def prefill_pairs(self) -> np.ndarray:
        """Causal query-key pairs of each prefill, ``n (c + n / 2)`` for ``n`` computed tokens
        after ``c`` cached ones (attention still reads the cached keys)."""
        n = self.computed
        return n * (self.cached + n / 2.0)

    @property
    def kv_context(self) -> float:
        """Mean KV a sequence in the decode batch holds itself: :attr:`decode_context` less its
        shared-prefix tokens (the instance holds those once)."""
        w = self.decode_tokens
        if w.sum() == 0:
            return float((self.isl - self.shared).mean())
        return float(np.sum((self.isl - self.shared + w / 2.0) * w) / w.sum())

    @property
    def mean_isl(self) -> float:
        return float(self.isl.mean())

    @property
    def mean_osl(self) -> float:
        return float(self.osl.mean())

    @property
    def decode_tokens(self) -> np.ndarray:
        """Tokens produced by decode steps (the first token comes from the prefill)."""
        return np.maximum(self.osl - 1, 0).astype(float)

    @property
    def mean_decode_tokens(self) -> float:
        return float(self.decode_tokens.mean())

    @property
    def decode_context(self) -> float:
        """Mean context of a sequence in the decode batch: time-weighted by decode length,
        ``E[(ISL + OSL/2) * OSL] / E[OSL]``."""
        w = self.decode_tokens
        if w.sum() == 0:
            return float(self.isl.mean())
        return float(np.sum((self.isl + w / 2.0) * w) / w.sum())

    @property
    def reserved_tokens(self) -> float:
        """KV tokens a request reserves at admission (prompt plus output)."""
        return float(np.mean(self.isl + self.osl))


def decode_curve(sm: StepModel, ctx: float, bmax: float):
    """The decode step a decoding request sees when the lane holds ``B`` decoding sequences on
    time average, on a grid of ``B`` for fast interpolation.

    A request that is decoding sees itself plus the others, whose number is Poisson with mean
    ``B`` (the Palm view of an M/G/infinity population), so the step it waits for is
    ``E[t_d(1 + N)]``, not ``t_d(B)``. This matters at small batches and for MoE models, whose
    step time rises steeply with the first few sequences (each brings new experts)."""
    key = (id(sm), float(ctx), float(bmax))
    hit = _DECODE_CURVES.get(key)
    if hit is not None and hit[0] is sm:
        return hit[1], hit[2]
    grid = np.unique(np.concatenate([[0.0, 1.0], np.geomspace(1.0, max(bmax, 2.0), 40)]))
    kmax = int(min(grid[-1], 400) + 8 * math.sqrt(min(grid[-1], 400)) + 12)
    ks = np.arange(kmax + 1, dtype=float)
    step = np.asarray(sm.decode_time(ks + 1.0, ctx), dtype=float)
    b = np.maximum(grid, 1e-12)[:, None]
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, kmax + 1, dtype=float)))])
    logw = ks[None, :] * np.log(b) - b - log_fact[None, :]
    w = np.exp(logw)
    seen = (w * step[None, :]).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-300)
    big = grid > 400
    if big.any():
        seen[big] = np.asarray(sm.decode_time(grid[big] + 1.0, ctx), dtype=float)
    if len(_DECODE_CURVES) > 256:
        _DECODE_CURVES.clear()
    _DECODE_CURVES[key] = (sm, grid, seen)
    return grid, seen


_DECODE_CURVES: dict = {}  # (step model, context, bmax) -> curve; the search asks repeatedly


def interp_curve(x, grid, values):
    """Piecewise-linear interpolation, extrapolated linearly beyond the last grid point."""
    x = np.asarray(x, dtype=float)
    y = np.interp(x, grid, values)
    slope = (values[-1] - values[-2]) / (grid[-1] - grid[-2])
    return np.where(x > grid[-1], values[-1] + slope * (x - grid[-1]), y)


def solve_fixed_point(f, lo, hi, iters: int = 10, scan: int = 5):
    """Smallest T in [lo, hi] with ``f(T) <= 0`` for a residual that is positive below its first
    crossing: a coarse scan of ``scan`` points (log-spaced) finds the first bracket, vectorised
    bisection in log space narrows it (``iters`` halvings: to 0.2% of T from the widest bracket)
    and one false-position step on the last bracket places the crossing (for a smooth residual
    its error is of the order of the bracket squared). Entries with no crossing come back as inf
    (a residual may turn positive again at large T, e.g. when decodes starve, so ``f(hi)`` alone
    cannot decide)."""
    lo = np.asarray(lo, dtype=float)
    hi = np.broadcast_to(np.asarray(hi, dtype=float), lo.shape).copy()
    la, lb = np.log(lo), np.log(hi)
    a, b = la.copy(), lb.copy()
    fa = np.full(lo.shape, np.nan)
    fb = np.full(lo.shape, np.nan)
    found = np.zeros(lo.shape, dtype=bool)
    prev, fprev = la, np.asarray(f(np.exp(la)), dtype=float) * np.ones(lo.shape)
    for k in range(1, scan + 1):
        x = la + (lb - la) * k / scan
        fx = np.asarray(f(np.exp(x)), dtype=float) * np.ones(lo.shape)
        neg = (fx <= 0) & ~found
        a, fa = np.where(neg, prev, a), np.where(neg, fprev, fa)
        b, fb = np.where(neg, x, b), np.where(neg, fx, fb)
        found |= neg
        prev, fprev = x, fx
    for _ in range(iters):
        mid = (a + b) / 2
        fm = np.asarray(f(np.exp(mid)), dtype=float) * np.ones(lo.shape)
        neg = fm <= 0
        b, fb = np.where(neg, mid, b), np.where(neg, fm, fb)
        a, fa = np.where(neg, a, mid), np.where(neg, fa, fm)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(np.isfinite(fa) & np.isfinite(fb) & (fa > fb), fa / (fa - fb), 1.0)
    x = a + (b - a) * np.clip(w, 0.0, 1.0)
    return np.where(found, np.exp(x), np.inf)


# --------------------------------------------------------------------------------------------
# Percentiles
# --------------------------------------------------------------------------------------------


def _z(p):
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def cornish_fisher(mean, var, skew, p):
    """Quantile from the first three moments (Cornish-Fisher, skewness term only)."""
    z = _z(p)
    sd = np.sqrt(np.maximum(var, 0.0))
    return mean + sd * (z + (z * z - 1.0) * skew / 6.0)


def _tpot_moments(td, td_sd, jumps_mean, jumps_m2, jumps_m3, rate, decode_tokens, tpot_mean,
                  clump=1.0):
    rate = np.asarray(rate, dtype=float)[..., None]
    n = np.maximum(np.asarray(decode_tokens, dtype=float), 1.0)
    tm = np.asarray(tpot_mean, dtype=float)[..., None]
    finite = np.isfinite(tm)
    tm = np.where(finite, tm, 0.0)
    m = rate * n * tm  # expected stalls per request
    # Conditional moments of X_i / n_i (compound Poisson cumulants: m * E[J^k]).
    k1 = m * jumps_mean / n
    # ``clump`` scales the variance of the stall count. Stalls clump: each lengthens the
    # request's life and lets more prompts in (variance / mean ~ 1 / (1 - rho)^2 in the
    # simulator), while routing over several lanes smooths each lane's arrivals (a squared
    # coefficient of variation of about 1 / lanes). Callers pass the product.
    c = np.asarray(clump, dtype=float)[..., None]
    k2 = m * jumps_m2 / n**2 * c
    k3 = m * jumps_m3 / n**3 * c**1.5
    base = np.asarray(td, dtype=float)[..., None]
    mu_i = base + k1
    # Mixture moments over the request mix.
    mean = mu_i.mean(-1)
    var_i = k2 + np.asarray(td_sd, dtype=float)[..., None] ** 2
    ex2 = (var_i + mu_i**2).mean(-1)
    ex3 = (k3 + 3 * mu_i * var_i + mu_i**3).mean(-1)
    var = np.maximum(ex2 - mean**2, 0.0)
    third = ex3 - 3 * mean * var - mean**3
    with np.errstate(all="ignore"):
        skew = np.where(var > 0, third / np.maximum(var, 1e-300) ** 1.5, 0.0)
    skew = np.clip(np.nan_to_num(skew), -2.0, 4.0)
    return mean, var, skew, base.min(-1), ~finite[..., 0]


def tpot_quantiles(td, td_sd, jumps_mean, jumps_m2, jumps_m3, rate, decode_tokens, tpot_mean,
                   cap=None, percentiles=PERCENTILES, clump=1.0):
    """Per-request TPOT percentiles for ``TPOT_i = td + eps + X_i / n_i``.

    ``n_i`` decode tokens (array over the request mix), ``X_i`` a compound Poisson sum of the
    stall ``jumps`` that arrive during the request's decode lifetime (count Poisson with mean
    ``rate * n_i * tpot_mean``), ``eps`` the normal fluctuation of the step time with the batch
    (sd ``td_sd``). The mixture over the request mix is summarised by its first three moments
    and inverted with Cornish-Fisher. Arrays over candidates broadcast against the mix (last
    axis)."""
    mean, var, skew, lo, bad = _tpot_moments(td, td_sd, jumps_mean, jumps_m2, jumps_m3, rate,
                                             decode_tokens, tpot_mean, clump)
    out = {"mean": mean}
    for p in percentiles:
        q = np.maximum(cornish_fisher(mean, var, skew, p / 100.0), lo)
        if cap is not None:
            q = np.minimum(q, cap)
        out[f"p{p}"] = q
    return {k: np.where(bad, np.inf, v) for k, v in out.items()}


def tpot_cdf(x, td, td_sd, jumps_mean, jumps_m2, jumps_m3, rate, decode_tokens, tpot_mean, cap=None,
             clump=1.0):
    """P(TPOT <= x) under the model of :func:`tpot_quantiles` (Cornish-Fisher inverted)."""
    mean, var, skew, lo, bad = _tpot_moments(td, td_sd, jumps_mean, jumps_m2, jumps_m3, rate,
                                             decode_tokens, tpot_mean, clump)
    sd = np.sqrt(var)
    with np.errstate(all="ignore"):
        y = np.where(sd > 0, (x - mean) / np.where(sd > 0, sd, 1.0), np.where(x >= mean, np.inf, -np.inf))
        a = skew / 6.0
        disc = 1.0 + 4.0 * a * (a + y)
        z_quad = (-1.0 + np.sqrt(np.maximum(disc, 0.0))) / (2.0 * np.where(a != 0, a, 1.0))
        z = np.where(np.abs(a) < 1e-9, y, np.where(disc < 0, np.where(a < 0, np.inf, -np.inf), z_quad))
    z = np.nan_to_num(z, nan=0.0, posinf=40.0, neginf=-40.0)
    f = 0.5 * _ERFC(-np.asarray(z, dtype=float) / math.sqrt(2.0)).astype(float)
    f = np.where(x < lo, 0.0, f)
    if cap is not None:
        f = np.where(x >= cap, 1.0, f)
    return np.where(bad, 0.0, f)


def compress(samples, k: int = 32) -> np.ndarray:
    """At most ``k`` quantile mid-points of ``samples`` (keeps percentile maths cheap)."""
    s = np.sort(np.asarray(samples, dtype=float).ravel())
    if s.size <= k:
        return s
    idx = ((np.arange(k) + 0.5) / k * s.size).astype(int)
    return s[idx]


def uniform_points(width, k: int = 8):
    """``k`` mid-points of Uniform(0, width) (the residual of a step in progress)."""
    return (np.arange(k) + 0.5) / k * np.asarray(width, dtype=float)[..., None]


# --------------------------------------------------------------------------------------------
# Waiting-time distributions on candidate arrays
# --------------------------------------------------------------------------------------------
