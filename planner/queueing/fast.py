"""The waiting-time distributions the serving models evaluate for many candidates at once.

Each returns a vectorised CDF ``x -> P(W <= x)`` (candidates on the leading axes of ``x``) built
once per call, with the per-candidate constants solved up front; the exact single-value forms
live in :mod:`planner.queueing.exact`, and ``tests/test_queueing.py`` holds each fast form to its
exact twin. Pure numerics: nothing here knows about GPUs or engines.
"""

from __future__ import annotations

import numpy as np

from planner.queueing import exact as q

PERCENTILES = (50, 90, 95, 99)


def is_deterministic(samples) -> bool:
    s = np.asarray(samples, dtype=float)
    return bool(s.size == 1 or np.ptp(s) <= 1e-9 * max(float(s.max()), 1e-30))


def _avg(values, weights):
    return np.mean(values, axis=-1) if weights is None else np.sum(values * weights, axis=-1)


def wait_plus_cdf(wait_cdf, samples, x, shape=(), weights=None):
    """P(W + Y <= x) for the mixture of :func:`quantiles_of_wait_plus`."""
    samples = np.broadcast_to(np.asarray(samples, dtype=float), tuple(shape) + (np.shape(samples)[-1],))
    xx = np.broadcast_to(np.asarray(x, dtype=float), tuple(shape))
    return _avg(wait_cdf(xx[..., None] - samples), weights)


def quantiles_of_wait_plus(wait_cdf, samples, percentiles=PERCENTILES, shape=(), iters=26,
                           weights=None):
    """Percentiles of ``W + Y`` where ``W`` has CDF ``wait_cdf(x)`` (``x`` of shape
    ``shape + (k,)``, returning the same shape; candidates on the leading axes) and ``Y`` takes
    the ``samples`` (``k`` values on the last axis, optionally per candidate), equally likely or
    with ``weights`` (same shape, summing to one on the last axis). Vectorised bisection on the
    mixture CDF."""
    samples = np.broadcast_to(np.asarray(samples, dtype=float),
                              tuple(shape) + (np.shape(samples)[-1],))
    if weights is not None:
        weights = np.broadcast_to(np.asarray(weights, dtype=float), samples.shape)
    out = {}
    y_max = samples.max(-1)
    for p in percentiles:
        target = p / 100.0
        lo = samples.min(-1).copy()
        # Rows whose wait never reaches the target (unstable queues) stay infinite.
        finite = _avg(wait_cdf(np.full(lo.shape, 1e9)[..., None] - samples), weights) >= target
        # Upper bracket: grow until the CDF passes the target.
        hi = y_max + np.maximum(y_max, 1e-3)
        for _ in range(60):
            c = _avg(wait_cdf(hi[..., None] - samples), weights)
            need = (c < target) & finite
            if not need.any():
                break
            hi = np.where(need, hi * 2.0, hi)
        for _ in range(iters):
            mid = (lo + hi) / 2
            c = _avg(wait_cdf(mid[..., None] - samples), weights)
            up = c >= target
            hi = np.where(up, mid, hi)
            lo = np.where(up, lo, mid)
        out[f"p{p}"] = np.where(finite, hi, np.inf)
    return out



# The smallest squared arrival CV the Gamma forms take: 1 / ca2 stays finite, and below it the
# answer no longer moves (arrivals as regular as a clock; see planner.units.MIN_BURSTINESS).
CA2_FLOOR = 1e-12


def gg1_scale(arrival_cv: float, samples) -> float:
    """Factor by which Gamma arrivals with this CV stretch the M/G/1 wait: the ratio of
    Kingman's G/G/1 mean ``(ca2 + cs2) / 2`` to the Poisson value ``(1 + cs2) / 2``."""
    s = np.asarray(samples, dtype=float)
    cs2 = float(s.var() / s.mean() ** 2) if s.mean() > 0 else 0.0
    return (arrival_cv**2 + cs2) / (1.0 + cs2)


def gamma_wait_probability(rho, ca2: float):
    """P(an arrival waits) for Gamma renewal arrivals (squared CV ``ca2``) at a single server
    of utilisation ``rho``: the root ``sigma`` of ``sigma = A*(mu (1 - sigma))`` with the Gamma
    transform ``A*(s) = (k lam / (k lam + s))^k``, ``k = 1 / ca2`` (exact for GI/M/1; used as the
    burstiness correction of the waiting probability). Poisson arrivals give ``rho``."""
    rho = np.clip(np.asarray(rho, dtype=float), 0.0, 1.0 - 1e-12)
    if ca2 == 1.0:
        return rho
    k = 1.0 / max(ca2, CA2_FLOOR)
    sig = np.where(ca2 > 1.0, np.sqrt(rho), rho ** 2)  # start on the side the root lies
    with np.errstate(divide="ignore"):
        for _ in range(200):
            # (k rho / (k rho + 1 - sig))^k in log form: for nearly regular arrivals (k huge)
            # the ratio rounds to 1 and the power to 1 (every arrival waits); log1p keeps the
            # limit exp(-(1 - sig) / rho) of deterministic arrivals.
            sig = np.exp(-k * np.log1p((1.0 - sig) / np.maximum(k * rho, 1e-300)))
    return np.clip(sig, 0.0, 1.0)


def gamma_tail_rate(lam, es, es2, ca2: float, servers=1.0):
    """Decay rate ``theta`` of the wait tail under Gamma renewal arrivals (squared CV ``ca2``):
    the root of ``E[exp(theta (S / c - A))] = 1`` (the Cramer-Lundberg rate of GI/G/1, with the
    ``c`` servers pooled into one of ``c`` times the speed, the heavy-traffic view of GI/G/c).
    ``log E[e^{theta S}]`` uses the first two moments of the service (exact when it is fixed)."""
    lam = np.asarray(lam, dtype=float)
    c = np.asarray(servers, dtype=float)
    k = 1.0 / max(ca2, CA2_FLOOR)
    m1, var = es / c, np.maximum(es2 - es * es, 0.0) / c**2

    def f(th):  # k log(k lam / (k lam + th)), in the form that stays exact for k huge
        return -k * np.log1p(th / (k * lam)) + th * m1 + 0.5 * th * th * var

    stable = lam * m1 < 1.0
    hi = np.where(stable, 1.0 / np.maximum(m1, 1e-30), 1.0)
    for _ in range(80):
        grow = stable & (f(hi) < 0)
        if not grow.any():
            break
        hi = np.where(grow, hi * 2.0, hi)
    lo = np.zeros_like(hi)
    for _ in range(60):
        mid = (lo + hi) / 2
        neg = f(mid) < 0
        lo = np.where(neg, mid, lo)
        hi = np.where(neg, hi, mid)
    return np.where(stable, hi, 0.0)


def mg1_wait_cdf_fn(lam, service, arrival_cv: float = 1.0):
    """A vectorised CDF ``x -> P(W <= x)`` of the FCFS wait of an M/G/1 queue with service
    times drawn from ``service``, for every rate in ``lam`` (leading axes of ``x``).

    Deterministic service uses the exact M/D/1 distribution; otherwise the mean-matched
    exponential tail (decay rate from ``lam (M_S(theta) - 1) = theta``). Bursty arrivals
    (Gamma, CV != 1): the waiting probability from the GI/M/1 root
    (:func:`gamma_wait_probability`) and the mean from Kingman's factor."""
    lam = np.asarray(lam, dtype=float)
    s = np.asarray(service, dtype=float)
    if is_deterministic(s):
        cdf = _md1_cdf_fast(lam, float(s.reshape(-1)[0]))
    else:
        # The tail of planner.queueing.exact.mg1_wait_cdf: P(W > x) = min(rho, C e^{-theta x})
        # with its mean-matched constant (refined where theta E[W] > rho), solved once per rate.
        rho, theta, c = q._mg1_tail_params(lam, q._samples(s.reshape(-1)))
        rho_b, c_b, th_b = rho[..., None], c[..., None], theta[..., None]
        live = (rho_b > 0) & (c_b > 0) & np.isfinite(th_b)

        def cdf(x):
            with np.errstate(all="ignore"):
                tail = np.minimum(rho_b, c_b * np.exp(-np.where(live, th_b, 0.0) * np.maximum(x, 0.0)))
            f = np.where(live, 1.0 - tail, 1.0)
            f = np.where(rho_b >= 1, 0.0, f)
            return np.where(x < 0, 0.0, np.clip(f, 0.0, 1.0))

    if arrival_cv == 1.0:
        return cdf
    return _gamma_wait_cdf(lam, float(s.mean()), float(np.mean(s * s)), arrival_cv**2, 1.0,
                           gamma_wait_probability(lam * float(s.mean()), arrival_cv**2))


def busy_probability(lanes, share, arrival_cv: float = 1.0, erlang=None):
    """Probability that an arrival finds every one of ``lanes`` servers busy, each busy a
    ``share`` of the time: Erlang C (the share itself for one lane); for Gamma arrivals, Erlang
    C's exponent applied to the GI/M/1 root (see :func:`mgc_wait_cdf_fn`)."""
    lanes = np.asarray(lanes, dtype=float)
    u = np.clip(np.asarray(share, dtype=float), 1e-12, 1.0 - 1e-9)
    if erlang is None:
        erlang = q.erlang_c(np.maximum(lanes, 1).astype(int), lanes * u) if np.any(lanes > 1) else u
    pw = np.where(lanes > 1, np.asarray(erlang, dtype=float), u)
    if arrival_cv == 1.0:
        return pw
    sig = gamma_wait_probability(u, arrival_cv**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        expo = np.where((pw > 0) & (pw < 1), np.log(np.maximum(pw, 1e-300)) / np.log(u), 1.0)
    return np.where(pw >= 1, 1.0, np.clip(sig**expo, 0.0, 1.0))


def _gamma_wait_cdf(lam, es, es2, ca2, servers, pwait):
    """Wait under Gamma arrivals: an atom ``1 - pwait`` at zero and the exponential tail with the
    Cramer-Lundberg rate of :func:`gamma_tail_rate`."""
    theta = gamma_tail_rate(lam, es, es2, ca2, servers)
    pw_b, th_b = np.asarray(pwait, dtype=float)[..., None], theta[..., None]
    ok = th_b > 0

    def cdf(x):
        with np.errstate(all="ignore"):
            tail = pw_b * np.exp(-np.where(ok, th_b, 0.0) * np.maximum(x, 0.0))
        return np.where((x < 0) | ~ok, 0.0, 1.0 - tail)

    return cdf


_MD1_TERMS = 5  # exact alternating-sum terms (x < 5 D); the Cramer-Lundberg tail beyond


def _md1_cdf_fast(lam, D: float, scale: float = 1.0):
    """M/D/1 wait CDF for an array of rates, with the per-rate constants computed once.

    Below ``5 D`` the exact Erlang sum (at most five terms, no cancellation trouble); beyond,
    the exponential tail ``C e^{-theta x}`` whose neglected terms decay like ``e^{-2.09 x / D}``
    (see :func:`planner.queueing.md1_wait_cdf`, which this matches to ~1e-4)."""
    lam = np.asarray(lam, dtype=float)
    rho = np.clip(lam * D, 0.0, 1.0)
    stable = rho < 1
    with np.errstate(all="ignore"):
        u = np.where(stable & (rho > 0), q._md1_decay(np.where(stable & (rho > 0), rho, 0.5)), np.inf)
        c = np.where(stable & (rho > 0), q._md1_tail_const(rho, u), 0.0)
    rho_b, u_b, c_b, st_b = rho[..., None], u[..., None], c[..., None], stable[..., None]
    fact = [1.0, 1.0, 2.0, 6.0, 24.0]
    decay = [np.exp(-rho_b * k) for k in range(1, _MD1_TERMS)]

    def cdf(x):
        n = np.maximum(x, 0.0) / (scale * D)
        nn = np.minimum(n, _MD1_TERMS)
        # Erlang's sum, sum_k (-rho (n - k))^k / k! * e^{rho (n - k)}, with one exponential.
        base = np.exp(rho_b * nn)
        total = base.copy()
        for k in range(1, _MD1_TERMS):
            y = rho_b * (nn - k)
            total = total + np.where(nn >= k, (-y) ** k / fact[k] * base * decay[k - 1], 0.0)
        near = (1.0 - rho_b) * total
        with np.errstate(all="ignore"):
            far = 1.0 - c_b * np.exp(-u_b * n)
        out = np.where(n < _MD1_TERMS, near, far)
        return np.where((x < 0) | ~st_b, 0.0, np.clip(out, 0.0, 1.0))

    return cdf


def mgc_wait_cdf_fn(lam, servers, es, es2, arrival_cv: float = 1.0, pwait=None):
    """CDF of the wait in an M/G/c queue (Erlang C with the Allen-Cunneen mean): an atom at 0
    of mass ``1 - P_wait`` and an exponential tail with the matching mean."""
    lam = np.asarray(lam, dtype=float)
    c = np.asarray(servers)
    pw = q.erlang_c(c, lam * es) if pwait is None else np.asarray(pwait, dtype=float)
    ew = q.mgc_mean_wait(lam, c, es, es2, ca2=arrival_cv**2, pwait=pw)
    if arrival_cv != 1.0:
        # Bursty arrivals find the servers busy more often (the GI/M/1 root scales Erlang C) and
        # wait with the Cramer-Lundberg decay of the pooled server.
        # Erlang C written as rho**e(c, rho); the same exponent applied to the GI/M/1 root sigma
        # (which replaces rho for bursty arrivals) gives the bursty waiting probability.
        rho = np.clip(lam * es / np.maximum(c, 1), 1e-12, 1.0 - 1e-12)
        sig = gamma_wait_probability(rho, arrival_cv**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            expo = np.where((pw > 0) & (pw < 1), np.log(np.maximum(pw, 1e-300)) / np.log(rho), 1.0)
        pw = np.where(pw >= 1, 1.0, np.clip(sig**expo, 0.0, 1.0))
        theta = gamma_tail_rate(lam, es, es2, arrival_cv**2, np.maximum(c, 1))
        ew = np.where((theta > 0) & np.isfinite(ew), pw / np.where(theta > 0, theta, 1.0), np.inf)
        return _gamma_wait_cdf(lam, es, es2, arrival_cv**2, np.maximum(c, 1), pw), ew
    stable = np.isfinite(ew)
    pw = np.where(stable, np.clip(pw, 0.0, 1.0), 1.0)
    with np.errstate(all="ignore"):
        rate = np.where(stable & (ew > 0), pw / np.where(ew > 0, ew, 1.0), np.inf)
    # No waiting at all (ew == 0) is an infinite rate: the CDF is 1 from x = 0 on (no tail).
    none = np.isinf(rate)
    pw_b, r_b = np.where(none, 0.0, pw)[..., None], np.where(none, 0.0, rate)[..., None]
    st_b = stable[..., None]

    def cdf(x):
        # (x held below 1e300: a zero rate times an infinite x would be nan)
        with np.errstate(all="ignore"):
            tail = pw_b * np.exp(-r_b * np.minimum(np.maximum(x, 0.0), 1e300))
        return np.where((x < 0) | ~st_b, 0.0, 1.0 - tail)

    return cdf, np.where(np.isfinite(ew), ew, np.inf)


def poisson_at_least(n: int, m):
    """``P(Poisson(m) >= n)`` for a whole ``n`` (small: the sum runs over ``j < n``) and an array
    ``m``, as one minus the probabilities of ``0 .. n - 1`` (accurate down to about 1e-15,
    plenty for the rare-event thresholds it serves)."""
    m = np.asarray(m, dtype=float)
    if n <= 0:
        return np.ones_like(m)
    j = np.arange(int(n), dtype=float)
    lgam = np.cumsum(np.concatenate([[0.0], np.log(np.arange(1, int(n), dtype=float))]))  # log j!
    with np.errstate(divide="ignore"):
        logm = np.log(np.maximum(m, 1e-300))[..., None]
    below = np.exp(-m[..., None] + j * logm - lgam).sum(axis=-1)
    return np.clip(1.0 - below, 0.0, 1.0)
