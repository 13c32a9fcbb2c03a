"""Queueing numerics for the planner: waiting-time means, CDFs and quantiles.

Pure numerics (numpy + scipy).  This module knows nothing about GPUs, models or
serving policies; the serving models turn iteration times into service times and
call in here.  Formulas and their provenance are collected in
``/work/shared/research/modeling.md`` sections 2.1-2.4; each function names the
piece it implements.

Conventions
-----------
* SI units: times in seconds, rates in 1/s.
* An unstable queue (utilisation ``rho >= 1``) never raises: waits and quantiles
  are ``inf``, CDFs are ``0`` (the wait is infinite almost surely), the tail decay
  rate is ``0``, and Erlang C is ``1``.  The optimizer treats ``inf`` as
  infeasible.
* Invalid inputs (NaN, negative rates or times) give NaN rather than exceptions,
  so that a bad candidate in a grid does not abort the whole grid.
* Every public function broadcasts its numeric arguments with numpy rules and
  is vectorised over candidates: loops run only over a fixed number of
  bisection/Newton iterations, over Erlang-B recursion steps (servers), or over
  memory-bounded chunks of candidates.  0-d inputs give numpy float scalars.
* ``service_samples`` arguments are 1-D arrays of service times drawn from the
  workload (e.g. prefill time of each prompt in a trace); every sample has the
  same weight.

Waiting time ``W`` below always means the FCFS wait in queue (excluding the
customer's own service).  ``quantile_of_sum`` adds the service time back.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "md1_wait_cdf",
    "md1_wait_quantile",
    "mg1_mean_wait",
    "mg1_tail_rate",
    "mg1_wait_quantile",
    "mg1_wait_cdf",
    "erlang_c",
    "ps_slowdown",
    "mgc_mean_wait",
    "mgc_wait_quantile",
    "mgc_wait_cdf",
    "gg1_mean_wait",
    "quantile_of_sum",
]

# The M/D/1 Erlang alternating sum is used for x/D <= _MD1_SWITCH and the
# exponential tail asymptote beyond.  At the switch, over rho in (0, 1), the
# float64 sum has lost at most ~1e-11 to cancellation (largest term ~1e5) and
# the asymptote's neglected terms (complex poles, decay rate >= ~2.09/D) are
# below ~1e-11.  Measured worst case over the whole range: 3.7e-12.
_MD1_SWITCH = 10
_FACTORIALS = np.array([math.factorial(k) for k in range(_MD1_SWITCH + 1)], dtype=float)

# Bisection/Newton iteration counts (fixed, so cost is predictable on grids).
_MD1_BISECT_ITERS = 56  # halves [0, 10] down to ~1.4e-16 (in units of D)
_TAIL_BISECT_MAX = 64  # log-scale bisection of the M/G/1 decay rate ...
_TAIL_BRACKET = 1.25  # ... until hi/lo <= this, ...
_TAIL_NEWTON_MAX = 40  # ... then Newton from the upper end (monotone) to convergence
_SUM_BISECT_ITERS = 60  # quantile_of_sum
_CHUNK_ELEMS = 1 << 22  # candidate x sample elements per chunk (~32 MiB float64)


# --------------------------------------------------------------------------- helpers


def _f64(*args):
    """Broadcast inputs to float64 arrays of a common shape."""
    return np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in args))


def _out(a):
    """Return a numpy scalar for 0-d results, the array otherwise."""
    a = np.asarray(a, dtype=float)
    return a[()] if a.ndim == 0 else a


def _samples(service_samples):
    """Unique service times, their weights, and the first two moments."""
    s = np.asarray(service_samples, dtype=float).ravel()
    if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s < 0):
        return None
    vals, counts = np.unique(s, return_counts=True)
    w = counts / s.size
    es = float(np.dot(w, vals))
    es2 = float(np.dot(w, vals * vals))
    return vals, w, es, es2


def _md1_decay(rho):
    """Dimensionless M/D/1 tail decay ``u = theta*D`` for ``0 < rho < 1``.

    ``u`` is the positive root of ``rho*(exp(u) - 1) = u`` (modeling.md 2.2, the
    pole of the M/G/1 waiting-time transform with ``M_S(t) = exp(tD)``).
    Dividing by ``rho*u`` gives the well-conditioned form

        h(u) = (e^u - 1 - u) / u = sum_{k>=1} u^k/(k+1)! = (1 - rho)/rho,

    with ``h`` increasing and convex, so Newton from any point right of the root
    decreases monotonically to it.  Seeds: for ``rho <= 0.5`` the closed form
    ``u = -W_{-1}(-rho e^{-rho}) - rho`` (Lambert W, lower real branch; from
    ``v = u + rho``, ``v e^{-v} = rho e^{-rho}``); for ``rho > 0.5``, where
    ``lambertw`` loses digits near its branch point and can even return the
    trivial root, the heavy-traffic upper bound ``2(1-rho)/rho`` (``h(u) >= u/2``).
    Eight Newton steps reach ~1e-15 relative accuracy for all ``rho`` in (0, 1)
    (checked against 50-digit roots for 1-rho down to 1e-14).
    """
    r = np.asarray(rho, dtype=float)
    with np.errstate(all="ignore"):
        delta = (1.0 - r) / r
        # Seed from the right of the root: the heavy-traffic bound 2(1-rho)/rho, improved for
        # light loads by a few steps of u <- log(1 + u / rho) (a contraction there, since
        # rho + u > 1 at the root, that stays above the root when started above it).
        u = 2.0 * delta
        light = r <= 0.5
        if np.any(light):
            v = np.minimum(u, 60.0)
            for _ in range(12):
                v = np.log1p(v / np.where(light, r, 1.0))
            u = np.where(light, np.minimum(v, u), u)
        for _ in range(8):
            small = u < 1e-2
            us = np.where(small, u, 0.0)
            h_ser = us * (1 / 2 + us * (1 / 6 + us * (1 / 24 + us * (1 / 120 + us / 720))))
            dh_ser = 1 / 2 + us * (1 / 3 + us * (1 / 8 + us * (1 / 30 + us / 144)))
            ub = np.where(small, 1.0, u)
            h_dir = (np.expm1(ub) - ub) / ub
            dh_dir = ((ub - 1.0) * np.exp(ub) + 1.0) / (ub * ub)
            h = np.where(small, h_ser, h_dir)
            dh = np.where(small, dh_ser, dh_dir)
            step = np.where(dh > 0, (h - delta) / dh, 0.0)
            u = np.where(np.isfinite(step), u - step, u)
    return u


def _md1_cdf_sum(n, rho):
    """Erlang's alternating sum for P(W <= n*D), ``0 <= n <= _MD1_SWITCH``."""
    total = np.zeros_like(n)
    for k in range(_MD1_SWITCH + 1):
        y = rho * (n - k)
        term = (-y) ** k / _FACTORIALS[k] * np.exp(y)
        total = total + np.where(n >= k, term, 0.0)
    return (1.0 - rho) * total


def _md1_tail_const(rho, u):
    """Residue constant ``C`` with ``P(W > x) ~ C exp(-u x / D)``.

    From ``C = (1-rho) / (lam*D*exp(theta*D) - 1)`` and ``rho*exp(u) = rho + u``
    at the root, ``C = (1-rho) / (u - (1-rho))``.
    """
    with np.errstate(all="ignore"):
        c = (1.0 - rho) / (u - (1.0 - rho))
    return np.where(np.isfinite(u), c, 0.0)


# --------------------------------------------------------------------------- M/D/1


def md1_wait_cdf(x, lam, D):
    """P(W <= x) for the M/D/1 FCFS waiting time (Poisson rate ``lam``, service ``D``).

    Exact distribution (Erlang; modeling.md 2.2, DistServe's prefill model):

        P(W <= x) = (1-rho) * sum_{k=0}^{floor(x/D)} [-lam(x-kD)]^k / k! * exp(lam(x-kD))

    The sum alternates and cancels catastrophically in float64 (all precision is
    gone near x/D ~ 25 at rho = 0.9), so a hybrid is used:

    * ``x/D <= 10``: the alternating sum (11 terms at most; largest term ~1e5,
      so the cancellation error is <= ~1e-11);
    * ``x/D > 10``: the exponential tail from the pole of the M/G/1 transform
      ``M_W(t) = (1-rho) t / (t - lam (M_S(t) - 1))``.  With ``M_S(t) = e^{tD}`` the
      real pole is ``theta = u/D``, ``rho (e^u - 1) = u``, and the residue gives
      ``P(W > x) ~ C e^{-theta x}``, ``C = (1-rho) / (lam D e^{theta D} - 1)
      = (1-rho) / (u - (1-rho))``.  The other poles are complex with real part
      ``>= ~2.09/D`` (the ``k != 0, -1`` Lambert branches), so the neglected terms
      are ``< ~1e-11`` at ``x/D = 10`` and shrink further with ``x``.

    Measured against 60-160-digit evaluations of the alternating sum (rho from
    0.001 to 0.999, x/D up to 200) the absolute error is at most 3.7e-12 (worst
    near x/D = 10, rho ~ 0.9); ``tests/test_queueing.py`` checks 1e-9 against an
    exact ``decimal`` reference.

    ``x``, ``lam``, ``D`` broadcast.  Returns 0 for ``x < 0`` and for unstable
    queues (``lam*D >= 1``), 1 for ``x >= 0`` when ``lam*D == 0``.
    """
    x, lam, D = _f64(x, lam, D)
    rho = lam * D
    out = np.zeros(x.shape)
    invalid = np.isnan(x) | np.isnan(rho) | (lam < 0) | (D < 0)
    active = ~invalid & (x >= 0) & (rho < 1)
    trivial = active & (rho == 0)
    out[trivial] = 1.0
    active &= rho > 0
    with np.errstate(all="ignore"):
        n = np.where(active, x / np.where(D > 0, D, 1.0), 0.0)
    near = active & (n <= _MD1_SWITCH)
    if np.any(near):
        out[near] = _md1_cdf_sum(n[near], rho[near])
    far = active & (n > _MD1_SWITCH)
    if np.any(far):
        r = rho[far]
        u = _md1_decay(r)
        c = _md1_tail_const(r, u)
        with np.errstate(all="ignore"):
            out[far] = 1.0 - c * np.exp(-u * n[far])
    np.clip(out, 0.0, 1.0, out=out)
    out[invalid] = np.nan
    return _out(out)


def md1_wait_quantile(p, lam, D):
    """The ``p``-quantile of the M/D/1 FCFS wait (same method as :func:`md1_wait_cdf`).

    * ``0`` where ``p <= P(W = 0) = 1 - rho``;
    * in the asymptotic region (``x/D > 10``) the tail is inverted in closed form,
      ``x = D * log(C / (1-p)) / u``;
    * otherwise a fixed 56-step vectorised bisection of the alternating sum on
      ``[0, 10D]`` (resolution ~1e-16 D).

    ``inf`` if unstable (``lam*D >= 1``) or ``p >= 1``.  Broadcasts ``p``, ``lam``, ``D``.
    """
    p, lam, D = _f64(p, lam, D)
    rho = lam * D
    out = np.zeros(p.shape)
    invalid = np.isnan(p) | np.isnan(rho) | (lam < 0) | (D < 0)
    unstable = ~invalid & (rho >= 1)
    out[unstable] = np.inf
    ok = ~invalid & ~unstable
    out[ok & (p >= 1)] = np.inf
    pos = ok & (p < 1) & (p > 1.0 - rho) & (rho > 0)
    if np.any(pos):
        pp, r, d = p[pos], rho[pos], D[pos]
        u = _md1_decay(r)
        c = _md1_tail_const(r, u)
        with np.errstate(all="ignore"):
            n_tail = np.log(c / (1.0 - pp)) / u
        in_tail = n_tail > _MD1_SWITCH
        n = np.where(in_tail, n_tail, 0.0)
        body = ~in_tail
        if np.any(body):
            pb, rb = pp[body], r[body]
            lo = np.zeros(pb.shape)
            hi = np.full(pb.shape, float(_MD1_SWITCH))
            for _ in range(_MD1_BISECT_ITERS):
                mid = 0.5 * (lo + hi)
                below = _md1_cdf_sum(mid, rb) < pb
                lo = np.where(below, mid, lo)
                hi = np.where(below, hi, mid)
            n[body] = 0.5 * (lo + hi)
        out[pos] = n * d
    out[invalid] = np.nan
    return _out(out)


# --------------------------------------------------------------------------- M/G/1


def mg1_mean_wait(lam, es, es2):
    """Pollaczek-Khinchine mean wait ``lam E[S^2] / (2 (1 - rho))``, ``rho = lam E[S]``.

    modeling.md 2.3.  Broadcasts; ``inf`` when ``rho >= 1``; ``0`` when ``lam == 0``.
    """
    lam, es, es2 = _f64(lam, es, es2)
    rho = lam * es
    with np.errstate(all="ignore"):
        w = lam * es2 / (2.0 * (1.0 - rho))
    w = np.where(rho >= 1, np.inf, w)
    w = np.where(lam == 0, 0.0, w)
    bad = np.isnan(lam) | np.isnan(es) | np.isnan(es2) | (lam < 0) | (es < 0) | (es2 < 0)
    return _out(np.where(bad, np.nan, w))


def _log_mgf(theta, vals, w):
    """``log E[exp(theta S)]`` and its derivative, rows = theta, overflow-safe.

    Small exponents use ``log1p(E[expm1(theta S)])`` (accurate as theta -> 0, where
    the root equation is a difference of two nearly equal quantities); large
    ones use the max-shifted log-sum-exp.
    """
    tmax = theta * vals[-1]
    small = tmax < 1.0
    lm = np.empty(theta.shape)
    dlm = np.empty(theta.shape)
    ws = w * vals

    def wsum(rows, weights):
        # per-row sums by numpy's pairwise reduction, the same for a row alone as among many
        # (a BLAS product may order them differently, and near rho = 1 the root amplifies that)
        return (rows * weights).sum(axis=1)

    if np.any(small):
        t = theta[small, None] * vals
        e = np.exp(t)
        lm[small] = np.log1p(wsum(np.expm1(t, out=t), w))
        dlm[small] = wsum(e, ws) / wsum(e, w)
    big = ~small
    if np.any(big):
        e = theta[big, None] * vals
        e -= tmax[big, None]
        np.exp(e, out=e)
        m = wsum(e, w)
        lm[big] = tmax[big] + np.log(m)
        dlm[big] = wsum(e, ws) / m
    return lm, dlm


def _log1p_ratio(theta, lam):
    """``log(1 + theta/lam)`` without overflow when ``theta/lam`` exceeds float range."""
    with np.errstate(all="ignore"):
        r = theta / lam
        return np.where(np.isfinite(r), np.log1p(r), np.log(theta) - np.log(lam))


def _tail_rate_active(lam, rho, vals, w, es2):
    """Decay rate for stable, positive-load candidates (1-D ``lam``)."""
    smax = vals[-1]
    # Bracket.  Upper: e^x >= 1 + x + x^2/2 for x >= 0 gives
    #   theta* <= 2 (1 - rho) / (lam E[S^2])            (heavy-traffic rate).
    # Lower: e^{theta s} is convex in s, so on [0, smax]
    #   M_S(theta) <= 1 + (E[S]/smax)(e^{theta smax} - 1), whose root is the M/D/1
    #   rate with D = smax at the same rho:  theta* >= u(rho) / smax.
    with np.errstate(all="ignore"):
        hi = np.minimum(2.0 * (1.0 - rho) / (lam * es2), np.finfo(float).max)
    lo = _md1_decay(rho) / smax
    lo = np.minimum(lo, hi)
    hi = np.maximum(hi, lo)
    # Log-scale bisection until hi/lo <= 1.25 (a few steps usually; ~10 when the
    # bracket spans hundreds of decades, e.g. lam -> 0), so that Newton starts
    # within 25% of the root and its first step cannot lose all digits.
    idx = np.arange(lam.size)
    for _ in range(_TAIL_BISECT_MAX):
        idx = idx[hi[idx] > _TAIL_BRACKET * lo[idx]]
        if idx.size == 0:
            break
        mid = np.sqrt(lo[idx]) * np.sqrt(hi[idx])
        lm, _ = _log_mgf(mid, vals, w)
        neg = lm - _log1p_ratio(mid, lam[idx]) < 0
        lo[idx] = np.where(neg, mid, lo[idx])
        hi[idx] = np.where(neg, hi[idx], mid)
    # f(theta) = log M_S(theta) - log(1 + theta/lam) is convex with f(0) = 0 and
    # f'(0) < 0, so Newton started right of the root (at hi) decreases
    # monotonically to it; iterate only the candidates not yet converged.
    th = hi.copy()
    idx = np.arange(th.size)
    for _ in range(_TAIL_NEWTON_MAX):
        t, la = th[idx], lam[idx]
        lm, dlm = _log_mgf(t, vals, w)
        f = lm - _log1p_ratio(t, la)
        fp = dlm - 1.0 / (la + t)
        with np.errstate(all="ignore"):
            nxt = t - f / fp
        nxt = np.where(np.isfinite(nxt) & (fp > 0), np.clip(nxt, lo[idx], t), t)
        done = ~((t - nxt) > 4e-16 * t)
        th[idx] = nxt
        idx = idx[~done]
        if idx.size == 0:
            break
    return th


def _tail_rate(lam, smp):
    """:func:`mg1_tail_rate` on pre-processed samples (see :func:`_samples`)."""
    lam = np.asarray(lam, dtype=float)
    out = np.full(lam.shape, np.nan)
    vals, w, es, es2 = smp
    rho = lam * es
    valid = ~np.isnan(lam) & (lam >= 0)
    out[valid & (rho >= 1)] = 0.0
    out[valid & (rho == 0)] = np.inf
    act = valid & (rho > 0) & (rho < 1)
    # rho so small (subnormal) that u(rho) overflows: no queue to speak of
    tiny = act & ~np.isfinite(_md1_decay(np.where(act, rho, 0.5)))
    out[tiny] = np.inf
    act &= ~tiny
    if np.any(act):
        la = lam[act]
        ra = rho[act]
        res = np.empty(la.shape)
        step = max(1, _CHUNK_ELEMS // vals.size)
        for i in range(0, la.size, step):
            sl = slice(i, i + step)
            res[sl] = _tail_rate_active(la[sl], ra[sl], vals, w, es2)
        out[act] = res
    return out


def mg1_tail_rate(lam, service_samples):
    """Exponential decay rate ``theta`` of the M/G/1 FCFS wait tail.

    ``theta > 0`` solves ``lam (M_S(theta) - 1) = theta`` with the empirical MGF
    ``M_S(theta) = mean_i exp(theta S_i)`` (modeling.md 2.3: the real pole of
    ``M_W(t) = (1-rho) t / (t - lam (M_S(t) - 1))``).  Solved as
    ``log M_S(theta) = log1p(theta/lam)`` in log-sum-exp form (no overflow), by a
    vectorised log-scale bisection on a guaranteed bracket
    ``[u(rho)/max S, 2(1-rho)/(lam E[S^2])]`` followed by monotone Newton steps.
    Relative accuracy is ~1e-14.  Candidates are processed in chunks so that the
    candidate x sample work array stays below ~32 MiB.

    ``lam`` may be an array (result has its shape); ``service_samples`` is 1-D.
    Returns ``0`` when unstable (``lam E[S] >= 1``), ``inf`` when the load is zero
    (no queue), NaN for invalid input.
    """
    smp = _samples(service_samples)
    if smp is None:
        return _out(np.full(np.shape(lam), np.nan))
    return _out(_tail_rate(lam, smp))


def _mg1_tail_params(lam, smp):
    """``rho``, ``theta`` and the mean-matched constant ``C`` of the M/G/1 tail."""
    _, _, es, es2 = smp
    lam = np.asarray(lam, dtype=float)
    rho = lam * es
    theta = _tail_rate(lam, smp)
    ew = np.asarray(mg1_mean_wait(lam, es, es2))
    with np.errstate(all="ignore"):
        k = theta * ew
        c = np.where(k <= rho, k, rho * np.exp(k / rho - 1.0))
    c = np.where(np.isinf(theta), 0.0, c)  # zero (or vanishing) load: no waiting
    return rho, theta, c


def _mg1_dispatch(service_samples):
    smp = _samples(service_samples)
    if smp is None:
        return None, None
    vals = smp[0]
    det = vals.size == 1 or (vals[-1] - vals[0]) <= 1e-12 * vals[-1]
    return smp, (float(smp[2]) if det else None)


def _invalid(*vals):
    """Where any input is NaN or negative (the functions answer NaN there)."""
    bad = np.zeros(np.broadcast_shapes(*(np.shape(v) for v in vals)), dtype=bool)
    for v in vals:
        bad = bad | np.isnan(v) | (v < 0)
    return bad


def _mg1_setup(a, lam, service_samples, exact):
    """Shared start of the M/G/1 quantile and CDF: (result, None) when the answer is already
    known (invalid samples -> NaN; equal samples -> the exact M/D/1 function ``exact``), else
    (None, (a, lam, rho, theta, C) as broadcast float arrays). The tail parameters are solved on
    ``lam``'s own shape, then broadcast against ``a``."""
    smp, det = _mg1_dispatch(service_samples)
    if smp is None:
        return _out(np.full(np.broadcast_shapes(np.shape(a), np.shape(lam)), np.nan)), None
    if det is not None:
        return exact(a, lam, det), None
    rho, theta, c = _mg1_tail_params(lam, smp)
    return None, _f64(a, lam, rho, theta, c)


def mg1_wait_quantile(p, lam, service_samples):
    """``p``-quantile of the M/G/1 FCFS wait by a mean-matched exponential tail.

    Approximation (modeling.md 2.3, [DER]; the "mean-matched exponential tail"):

        P(W > x) ~= min(rho, C exp(-theta x)),   x >= 0,
        theta = mg1_tail_rate(lam, samples)      (exact asymptotic decay rate),

    with ``C`` chosen so that the mean of the approximation equals the
    Pollaczek-Khinchine ``E[W]``.  Writing ``k = theta E[W]``:

    * ``k <= rho`` (high-variability service; M/M/1 has ``k = rho``): ``C = k``
      and the cap never binds, so the approximation is ``C e^{-theta x}`` with
      mean ``C/theta = E[W]``.  This is the plain rule ``C = min(rho, theta E[W])``
      and is exact for M/M/1 (``theta = mu - lam``, ``C = rho``).  When ``C < rho``
      the mass ``rho - C`` of very short waits is lumped into the atom at zero,
      so ``P(W = 0)`` is approximated by ``1 - C`` (>= the exact ``1 - rho``).
    * ``k > rho`` (low-variability service; e.g. M/D/1 has a true tail constant
      0.933 > rho = 0.9): the plain rule's ``C = rho`` would undershoot the mean
      (P90 8.8% low at lognormal sigma = 0.25, rho = 0.6).  Instead the cap stays at
      ``rho`` (so ``P(W = 0) = 1 - rho`` exactly) and
      ``C = rho exp(k/rho - 1)``, the unique constant for which
      ``integral_0^inf min(rho, C e^{-theta x}) dx = rho (1 + log(C/rho)) / theta``
      equals ``E[W]``.  (P90 gap at sigma = 0.25 drops to about -0.7%.)

    Quantile: ``0`` for ``p <= 1 - min(rho, C)``, else ``log(C/(1-p)) / theta``.

    Deterministic samples (all equal) dispatch to the exact
    :func:`md1_wait_quantile`.  ``p`` and ``lam`` broadcast (``theta`` is solved once
    per ``lam``); ``inf`` if unstable or ``p >= 1``; ``0`` at zero load.
    """
    done, args = _mg1_setup(p, lam, service_samples, md1_wait_quantile)
    if args is None:
        return done
    p, lam, rho, theta, c = args
    with np.errstate(all="ignore"):
        q = np.log(c / (1.0 - p)) / theta
    tail = (p > 1.0 - np.minimum(rho, c)) & (rho > 0)
    out = np.where(tail, q, 0.0)
    out = np.where(p >= 1, np.inf, out)
    out = np.where(rho >= 1, np.inf, out)
    bad = np.isnan(p) | np.isnan(lam) | (lam < 0)
    return _out(np.where(bad, np.nan, out))


def mg1_wait_cdf(x, lam, service_samples):
    """P(W <= x) under the approximation of :func:`mg1_wait_quantile`.

    ``1 - min(rho, C exp(-theta x))`` for ``x >= 0`` and ``0`` for ``x < 0``; exact
    M/D/1 (:func:`md1_wait_cdf`) for deterministic samples; ``0`` everywhere when
    unstable; ``1`` for ``x >= 0`` at zero load.  ``x`` and ``lam`` broadcast.
    """
    done, args = _mg1_setup(x, lam, service_samples, md1_wait_cdf)
    if args is None:
        return done
    x, lam, rho, theta, c = args
    with np.errstate(all="ignore"):
        f = 1.0 - np.minimum(rho, c * np.exp(-theta * x))
    f = np.where((rho == 0) | (c == 0), 1.0, f)
    f = np.where(x < 0, 0.0, f)
    f = np.where(rho >= 1, 0.0, f)
    bad = np.isnan(x) | np.isnan(lam) | (lam < 0)
    return _out(np.where(bad, np.nan, np.clip(f, 0.0, 1.0)))


# --------------------------------------------------------------------------- M/M/c, G/G/c


_ERLANG_RECURSION_MAX = 32
_SERIES_BLOCK = 16  # power-series terms summed per vectorised step
_LGAMMA = np.frompyfunc(math.lgamma, 1, 1)


_STIRLING = (1.0 / 12.0, -1.0 / 360.0, 1.0 / 1260.0, -1.0 / 1680.0)  # Bernoulli-number terms


def _lgamma(x):
    """``log Gamma(x)`` elementwise: Stirling's series (four correction terms; the first one
    left out is below 1e-12 for ``x >= 10``) where ``x >= 10``, :func:`math.lgamma` elsewhere."""
    x = np.asarray(x, dtype=float)
    big = x >= 10.0
    if not big.all():
        out = np.asarray(_LGAMMA(x), dtype=float)
        if big.any():
            out[big] = _lgamma(x[big])
        return out
    inv = 1.0 / x
    inv2 = inv * inv
    corr = inv * (_STIRLING[0] + inv2 * (_STIRLING[1] + inv2 * (_STIRLING[2] + inv2 * _STIRLING[3])))
    return (x - 0.5) * np.log(x) - x + 0.5 * math.log(2.0 * math.pi) + corr


def _poisson_cdf(c, a, max_terms: int = 2000):
    """P(Poisson(a) <= c) for whole ``c`` and ``a < c + 1``: one minus the regularised lower
    incomplete gamma ``P(c + 1, a)``, summed by its power series (every term positive; the
    ratio ``a / (c + 1 + n)`` is below one, so the loop ends once terms stop counting)."""
    s = np.asarray(c, dtype=float) + 1.0
    x = np.asarray(a, dtype=float)
    # Far below c the lower tail P(c + 1, a) is below 1e-30 (a Chernoff bound): the CDF is 1.
    with np.errstate(divide="ignore", invalid="ignore"):
        log_chernoff = s - x + s * np.log(np.maximum(x, 1e-300) / s)
    far = (x < s) & (log_chernoff < -70.0)
    if np.any(far):
        out = np.ones(np.broadcast(s, x).shape)
        near = ~far
        if np.any(near):
            out[near] = _poisson_cdf(np.broadcast_to(c, out.shape)[near],
                                     np.broadcast_to(a, out.shape)[near], max_terms)
        return out
    # The terms 1/s, x/(s(s+1)), ... in blocks of _SERIES_BLOCK (one cumulative product each).
    term = 1.0 / s
    total = term.copy()
    steps = np.arange(1.0, _SERIES_BLOCK + 1.0)
    for start in range(0, max_terms, _SERIES_BLOCK):
        ratios = x[..., None] / (s[..., None] + start + steps)
        terms = term[..., None] * np.cumprod(ratios, axis=-1)
        total = total + terms.sum(axis=-1)
        term = terms[..., -1]
        if np.all(term <= total * 1e-16):
            break
    log_p = np.log(total) - x + s * np.log(x) - _lgamma(s)
    return np.clip(1.0 - np.exp(log_p), 0.0, 1.0)


def erlang_c(c, a):
    """Erlang C: probability that an arrival waits in M/M/c with offered load ``a = lam/mu``.

    Stable recursion (modeling.md 2.4): Erlang B by ``b <- a b / (i + a b)`` for
    ``i = 1..c``, then ``C = c B / (c - a (1 - B))``.  ``c`` and ``a`` broadcast;
    the recursion loops over servers ``1..max(c)``, not over candidates.
    Non-integer ``c`` is truncated.  Returns ``1`` when ``a >= c`` (unstable;
    callers then report infinite waits) or ``c < 1``, ``0`` when ``a == 0``.
    """
    c, a = _f64(c, a)
    bad = np.isnan(c) | np.isnan(a) | (a < 0)
    ci = np.where(bad | ~np.isfinite(c), 0.0, np.floor(c))
    out = np.ones(a.shape)
    act = ~bad & (ci >= 1) & (a < ci)
    out[act & (a == 0)] = 0.0
    act &= a > 0
    if np.any(act):
        ca, aa = ci[act], a[act]
        b = np.ones(aa.shape)
        small = ca <= _ERLANG_RECURSION_MAX
        if np.any(small):
            cs, as_ = ca[small], aa[small]
            bs = np.ones(as_.shape)
            for i in range(1, int(cs.max()) + 1):
                ab = as_ * bs
                bs = np.where(i <= cs, ab / (i + ab), bs)
            b[small] = bs
        if np.any(~small):
            # Many servers: Erlang B = Poisson pmf(c; a) / cdf(c; a), in log space (the
            # recursion would loop over every server for every candidate).
            cl, al = ca[~small], aa[~small]
            log_pmf = cl * np.log(al) - al - _lgamma(cl + 1.0)
            b[~small] = np.exp(log_pmf) / np.maximum(_poisson_cdf(cl, al), 1e-300)
        out[act] = ca * b / (ca - aa * (1.0 - b))
    out[bad] = np.nan
    return _out(out)


def ps_slowdown(a, k):
    """Mean slowdown ``E[T | x] / x`` of a job in an M/G/k processor-sharing server (``k``
    lanes of unit rate; ``n`` jobs in service each get ``min(1, k / n)``): the queue is
    symmetric, so the slowdown is the same for every job size and equals that of M/M/k,
    ``1 + C(k, a) / (k - a)`` (Erlang C, offered load ``a = lam E[x]``); ``1 / (1 - rho)`` for
    ``k = 1``. ``inf`` when ``a >= k``."""
    a, k = _f64(a, k)
    kf = np.maximum(np.floor(k), 1.0)
    ok = (a >= 0) & (a < kf)
    c = erlang_c(kf, np.where(ok, a, 0.0))
    out = np.where(ok, 1.0 + c / np.maximum(kf - a, 1e-300), np.inf)
    return _out(out)


def _whitt_phi(rho, ca2, cs2, c):
    """Whitt's (1993) G/G/c correction factor ``phi(rho, ca2, cs2, c)``.

    W. Whitt, "Approximations for the GI/G/m queue", Production and Operations
    Management 2(2), 1993, eqs. (2.22)-(2.27); as summarised in modeling.md 2.4:

        gamma = min(0.24, (1-rho)(c-1)(sqrt(4+5c) - 2) / (16 c rho))
        phi1 = 1 + gamma,  phi2 = 1 - 4 gamma,  phi3 = phi2 exp(-2(1-rho)/(3 rho)),
        phi4 = min(1, (phi1 + phi3)/2),  psi(s) = 1 if s >= 1 else phi4^(2(1-s))
        ca2 >= cs2: phi = 4(ca2-cs2)/(4ca2-3cs2) phi1 + cs2/(4ca2-3cs2) psi((ca2+cs2)/2)
        ca2 <  cs2: phi = (cs2-ca2)/(2ca2+2cs2) phi3 + (cs2+3ca2)/(2ca2+2cs2) psi(..)

    ``phi = 1`` for M/M/c and ``phi = 1 + gamma`` for M/D/c (Cosmetatos-type).
    """
    with np.errstate(all="ignore"):
        gamma = np.minimum(
            0.24, (1.0 - rho) * (c - 1.0) * (np.sqrt(4.0 + 5.0 * c) - 2.0) / (16.0 * c * rho)
        )
        phi1 = 1.0 + gamma
        phi3 = (1.0 - 4.0 * gamma) * np.exp(-2.0 * (1.0 - rho) / (3.0 * rho))
        phi4 = np.minimum(1.0, 0.5 * (phi1 + phi3))
        s = 0.5 * (ca2 + cs2)
        psi = np.where(s >= 1.0, 1.0, phi4 ** (2.0 * (1.0 - s)))
        d1 = 4.0 * ca2 - 3.0 * cs2
        hi_a = 4.0 * (ca2 - cs2) / d1 * phi1 + cs2 / d1 * psi
        d2 = 2.0 * (ca2 + cs2)
        lo_a = (cs2 - ca2) / d2 * phi3 + (cs2 + 3.0 * ca2) / d2 * psi
        phi = np.where(ca2 >= cs2, hi_a, lo_a)
        phi = np.where((ca2 == 0) & (cs2 == 0), 1.0, phi)
    return phi


def mgc_mean_wait(lam, c, es, es2, ca2=1.0, whitt=True, pwait=None):
    """Mean wait in G/G/c (``c`` servers, arrival SCV ``ca2``), Allen-Cunneen/Whitt.

        E[Wq] ~= phi * ((ca2 + cs2)/2) * E[Wq(M/M/c)],
        E[Wq(M/M/c)] = C(c, a) / (c mu - lam),  a = lam E[S],  cs2 = E[S^2]/E[S]^2 - 1

    (modeling.md 2.4).  ``whitt=True`` (default) applies Whitt's 1993 correction
    factor ``phi`` (see :func:`_whitt_phi`) for ``c >= 2``: ``phi = 1`` for M/M/c
    (exact) and ``1 + gamma`` (up to +24%) for M/D/c, which plain Allen-Cunneen
    (``whitt=False``, ``phi = 1``) underestimates (M/D/4 at rho 0.7 against
    simulation: Whitt within 0.5%, Allen-Cunneen 5-6% low).  At ``c = 1`` no
    correction is applied, because Whitt's ``phi`` is not 1 for M/G/1 (it would be
    1-8% below Pollaczek-Khinchine for cs2 in 0.25..2, rho in 0.5..0.9); so with
    Poisson arrivals ``c = 1`` reproduces P-K exactly.

    Broadcasts; ``inf`` when ``lam E[S] >= c``; ``0`` at zero load. ``pwait`` may pass
    ``erlang_c(c, lam E[S])`` when the caller has it already.
    """
    lam, c, es, es2, ca2 = _f64(lam, c, es, es2, ca2)
    a = lam * es
    ci = np.where(np.isfinite(c), np.floor(c), np.nan)
    pw = np.asarray(erlang_c(ci, a) if pwait is None else pwait, dtype=float)
    with np.errstate(all="ignore"):
        cs2 = np.maximum(es2 / (es * es) - 1.0, 0.0)
        wq_mmc = pw * es / (ci - a)
        w = 0.5 * (ca2 + cs2) * wq_mmc
        if whitt:
            # c = 1: no correction, so Poisson arrivals give P-K exactly
            w = w * np.where(ci == 1, 1.0, _whitt_phi(a / ci, ca2, cs2, ci))
    w = np.where(a == 0, 0.0, w)
    w = np.where(a >= ci, np.inf, w)
    return _out(np.where(_invalid(lam, c, es, es2, ca2), np.nan, w))


def _mgc_tail(lam, c, es, es2, ca2, whitt):
    """Atom-complement ``P_wait`` and the exponential rate of the G/G/c tail."""
    lam, c, es, es2, ca2 = _f64(lam, c, es, es2, ca2)
    a = lam * es
    pw = np.asarray(erlang_c(np.where(np.isfinite(c), np.floor(c), np.nan), a))
    ew = np.asarray(mgc_mean_wait(lam, c, es, es2, ca2, whitt=whitt))
    with np.errstate(all="ignore"):
        rate = pw / ew
    return a, np.floor(c), pw, ew, rate


def mgc_wait_quantile(p, lam, c, es, es2, ca2=1.0, whitt=True):
    """``p``-quantile of the G/G/c wait with a mean-matched exponential tail.

        P(W > t) ~= P_wait exp(-t P_wait / E[Wq])

    ``P_wait`` = Erlang C (:func:`erlang_c`), ``E[Wq]`` from :func:`mgc_mean_wait`;
    the rate ``P_wait/E[Wq]`` makes the mean equal ``E[Wq]``.  For M/M/c (``cs2 = ca2
    = 1``) this is exact: ``P(W > t) = C(c,a) exp(-(c mu - lam) t)`` (modeling.md
    2.4).  Quantile ``0`` if ``p <= 1 - P_wait``, else
    ``(E[Wq]/P_wait) log(P_wait/(1-p))``; ``inf`` if unstable or ``p >= 1``.
    Broadcasts all arguments.
    """
    p, lam, c, es, es2, ca2 = _f64(p, lam, c, es, es2, ca2)
    a, ci, pw, ew, rate = _mgc_tail(lam, c, es, es2, ca2, whitt)
    with np.errstate(all="ignore"):
        q = np.log(pw / (1.0 - p)) / rate
    out = np.where(p > 1.0 - pw, q, 0.0)
    out = np.where(p >= 1, np.inf, out)
    out = np.where(a >= ci, np.inf, out)
    bad = np.isnan(p) | np.isnan(pw) | np.isnan(ew)
    return _out(np.where(bad, np.nan, out))


def mgc_wait_cdf(x, lam, c, es, es2, ca2=1.0, whitt=True):
    """P(W <= x) matching :func:`mgc_wait_quantile`: ``1 - P_wait exp(-x P_wait/E[Wq])``.

    ``0`` for ``x < 0`` and when unstable.  Broadcasts all arguments.
    """
    x, lam, c, es, es2, ca2 = _f64(x, lam, c, es, es2, ca2)
    a, ci, pw, ew, rate = _mgc_tail(lam, c, es, es2, ca2, whitt)
    with np.errstate(all="ignore"):
        f = 1.0 - pw * np.exp(-x * rate)
    f = np.where((pw == 0) | (ew == 0), 1.0, f)
    f = np.where(x < 0, 0.0, f)
    f = np.where(a >= ci, 0.0, f)
    bad = np.isnan(x) | np.isnan(pw) | np.isnan(ew)
    return _out(np.where(bad, np.nan, np.clip(f, 0.0, 1.0)))


def gg1_mean_wait(lam, es, es2, ca2, klb=False):
    """G/G/1 mean wait, Kingman / Allen-Cunneen, arrival SCV ``ca2`` (modeling.md 2.4).

        E[Wq] ~= ((ca2 + cs2)/2) (rho/(1-rho)) E[S] = lam (E[S^2] + (ca2-1) E[S]^2) / (2 (1-rho))

    The second form is algebraically identical and reduces bit-for-bit to
    Pollaczek-Khinchine (:func:`mg1_mean_wait`) at ``ca2 = 1`` (Poisson).  For bursty
    (e.g. Gamma) arrivals ``ca2 > 1``.  ``klb=True`` multiplies by the
    Kraemer-Langenbach-Belz (1976) factor ``g`` (also 1 at ``ca2 = 1``):

        ca2 <= 1: g = exp(-2 (1-rho) (1-ca2)^2 / (3 rho (ca2 + cs2)))
        ca2 >  1: g = exp(-(1-rho) (ca2-1) / (ca2 + 4 cs2))

    Broadcasts; ``inf`` when ``rho >= 1``; ``0`` at zero load.
    """
    lam, es, es2, ca2 = _f64(lam, es, es2, ca2)
    rho = lam * es
    with np.errstate(all="ignore"):
        w = lam * (es2 + (ca2 - 1.0) * es * es) / (2.0 * (1.0 - rho))
        if klb:
            cs2 = np.maximum(es2 / (es * es) - 1.0, 0.0)
            g_lo = np.exp(-2.0 * (1.0 - rho) * (1.0 - ca2) ** 2 / (3.0 * rho * (ca2 + cs2)))
            g_hi = np.exp(-(1.0 - rho) * (ca2 - 1.0) / (ca2 + 4.0 * cs2))
            g = np.where(ca2 <= 1.0, g_lo, g_hi)
            w = w * np.where(np.isnan(g), 1.0, g)
    w = np.maximum(w, 0.0)
    w = np.where(rho >= 1, np.inf, w)
    w = np.where(lam == 0, 0.0, w)
    return _out(np.where(_invalid(lam, es, es2, ca2), np.nan, w))


# --------------------------------------------------------------------------- sums


def quantile_of_sum(
    p,
    wait_cdf: Callable[[np.ndarray], np.ndarray],
    samples,
    lo,
    hi,
):
    """``p``-quantile of ``W + S``, ``W ~ wait_cdf`` independent of ``S ~ Uniform(samples)``.

    Solves ``mean_i F_W(t - S_i) = p`` by a fixed 60-step vectorised bisection on
    ``[lo, hi]`` (used for TTFT = queueing wait + own prefill time).  ``W >= 0``,
    so ``F_W`` is taken as 0 for negative arguments (``wait_cdf`` is only called on
    ``max(t - S_i, 0)``).

    ``p``, ``lo``, ``hi`` broadcast to a candidate shape ``K``; ``wait_cdf`` is
    called with arrays of shape ``K + (m,)`` where the last axis runs over the
    ``m`` distinct sample values, so per-candidate parameters must be given a
    trailing axis, e.g.::

        quantile_of_sum(0.9, lambda x: md1_wait_cdf(x, lam[:, None], D[:, None]),
                        prefill_times, lo, hi)

    Valid brackets: ``lo = min(S)`` (or 0) and ``hi = q_W(p) + max(S)``, because
    ``P(W + S <= q_W(p) + max S) >= p``.  Returns ``lo`` if the quantile is at or
    below ``lo`` and ``inf`` if the sum's CDF at ``hi`` is still below ``p``
    (e.g. an unstable queue whose CDF is 0) or if ``hi`` is not finite.
    """
    smp = _samples(samples)
    p, lo, hi = _f64(p, lo, hi)
    if smp is None:
        return _out(np.full(p.shape, np.nan))
    vals, w, _, _ = smp

    def mix_cdf(t):
        x = t[..., None] - vals
        f = np.asarray(wait_cdf(np.maximum(x, 0.0)), dtype=float)
        f = np.where(x < 0, 0.0, np.broadcast_to(f, x.shape))
        return f @ w

    out = np.full(p.shape, np.nan)
    ok = ~(np.isnan(p) | np.isnan(lo) | np.isnan(hi))
    out[ok & (p >= 1)] = np.inf
    fin = ok & (p < 1) & np.isfinite(lo) & np.isfinite(hi)
    out[ok & (p < 1) & ~fin] = np.inf
    if not np.any(fin):
        return _out(out)
    # Work on the full candidate shape so wait_cdf's trailing-axis parameters
    # keep broadcasting; finished/invalid entries are simply carried along.
    a = np.where(fin, lo, 0.0)
    b = np.where(fin, np.maximum(hi, lo), 0.0)
    pp = np.where(fin, p, 0.0)
    at_lo = mix_cdf(a) >= pp
    beyond = mix_cdf(b) < pp
    for _ in range(_SUM_BISECT_ITERS):
        mid = 0.5 * (a + b)
        below = mix_cdf(mid) < pp
        a = np.where(below, mid, a)
        b = np.where(below, b, mid)
    res = np.where(at_lo, np.where(fin, lo, 0.0), b)
    res = np.where(beyond & ~at_lo, np.inf, res)
    out[fin] = res[fin]
    return _out(out)
