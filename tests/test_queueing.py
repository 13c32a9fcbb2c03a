"""Tests for planner.queueing: hand-derived values, exact references, simulation.

Reference points:
* M/D/1 CDF against Erlang's alternating sum evaluated exactly in ``decimal``
  with 160 significant digits (enough for x/D = 200, where terms reach ~1e106).
* Quantiles against a vectorised Lindley recursion W_{n+1} = max(0, W_n + S_n - A_{n+1}),
  pooled over 40 independent seeded replications of 200k customers.  A single
  200k run has a standard error of ~2.8% (P50) to ~5.5% (P99) at rho = 0.9,
  larger than the 3% tolerance itself; pooling brings it to ~0.4-1%.
"""

from __future__ import annotations

import heapq
import math
from decimal import Decimal, localcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner import queueing as q

HYP = settings(max_examples=60, deadline=None, database=None)

_RNG = np.random.default_rng(20240601)
LOGNORMAL_05 = _RNG.lognormal(0.0, 0.5, 2000)
LOGNORMAL_10 = _RNG.lognormal(0.0, 1.0, 2000)
LOGNORMAL_025 = _RNG.lognormal(0.0, 0.25, 2000)
LOGNORMAL_SMALL = _RNG.lognormal(0.0, 0.7, 300)


# --------------------------------------------------------------------------- helpers


def _md1_cdf_exact(x: float, lam: float, d: float) -> float:
    """Erlang's M/D/1 CDF with exact inputs and 160-digit arithmetic."""
    with localcontext() as ctx:
        ctx.prec = 160
        X, L, D = Decimal(x), Decimal(lam), Decimal(d)
        total = Decimal(0)
        k = 0
        while k * D <= X:
            y = L * (X - k * D)
            power = (-y) ** k if k else Decimal(1)
            total += power / math.factorial(k) * y.exp()
            k += 1
        return float((1 - L * D) * total)


def _md1_cdf_naive(x: float, lam: float, d: float) -> float:
    """The textbook alternating sum in plain float64 (to show why it is not used)."""
    total = 0.0
    for k in range(int(math.floor(x / d)) + 1):
        y = lam * (x - k * d)
        total += (-y) ** k / math.factorial(k) * math.exp(y)
    return (1 - lam * d) * total


def _lindley(lam, draw_service, ps, seed, reps=40, n=200_000):
    """Pooled FCFS waiting-time quantiles of an M/G/1 queue by the Lindley recursion.

    Vectorised: with P_0 = 0 and P_n = sum_{i<n} (S_i - A_{i+1}),
    W_n = P_n - min_{j<=n} P_j.  Returns (quantiles, standard errors, all waits).
    """
    rng = np.random.default_rng(seed)
    waits, per_rep = [], []
    for _ in range(reps):
        s = draw_service(rng, n)
        a = rng.exponential(1.0 / lam, n)
        p = np.concatenate(([0.0], np.cumsum(s[:-1] - a[1:])))
        w = p - np.minimum.accumulate(p)
        waits.append(w)
        per_rep.append(np.quantile(w, ps))
    w = np.concatenate(waits)
    se = np.std(per_rep, axis=0, ddof=1) / np.sqrt(reps)
    return np.quantile(w, ps), se, w


def _ggc_mean_wait(lam, c, draw_service, n, seed):
    """Kiefer-Wolfowitz FCFS G/G/c simulation (Poisson arrivals), mean wait."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / lam, n)).tolist()
    service = draw_service(rng, n).tolist()
    free = [0.0] * c
    total = 0.0
    warm = n // 100
    for i in range(n):
        t = arrivals[i]
        f = free[0]
        w = f - t if f > t else 0.0
        if i >= warm:
            total += w
        heapq.heapreplace(free, t + w + service[i])
    return total / (n - warm)


def _erlang_c_direct(c: int, a: float) -> float:
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def _stratified_exponential(mu: float, n: int) -> np.ndarray:
    return -np.log1p(-(np.arange(n) + 0.5) / n) / mu


# --------------------------------------------------------------------------- M/D/1


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9, 0.97])
def test_md1_cdf_matches_exact_alternating_sum(rho):
    d = 0.37
    lam = rho / d
    ns = [0, 0.5, 1, 2.5, 5, 7.3, 9.99, 10, 10.01, 12, 15, 20, 25, 30, 40, 60, 80, 100, 150, 200]
    xs = [n * d for n in ns]
    got = q.md1_wait_cdf(np.array(xs), lam, d)
    ref = np.array([_md1_cdf_exact(x, lam, d) for x in xs])
    err = np.abs(got - ref)
    worst = int(np.argmax(err))
    # required 1e-6; measured worst is ~3e-12 (near x/D = 10, the method switch)
    assert err.max() < 1e-9, f"rho={rho}: max abs err {err.max():.3e} at x/D={ns[worst]}"


def test_naive_float_sum_really_fails():
    """Guards the premise: float64 Erlang sum is garbage at x/D = 30, rho = 0.9."""
    exact = _md1_cdf_exact(30.0, 0.9, 1.0)
    assert abs(_md1_cdf_naive(30.0, 0.9, 1.0) - exact) > 1e-3
    assert abs(q.md1_wait_cdf(30.0, 0.9, 1.0) - exact) < 1e-12


def test_md1_tail_constant_is_the_residue():
    """P(W > x) e^{theta x} -> C = (1-rho)/(lam D e^{theta D} - 1); rho = 0.9, D = 1."""
    rho = 0.9
    theta = q.mg1_tail_rate(rho, [1.0])
    assert abs(rho * math.expm1(theta) - theta) < 1e-15
    assert theta == pytest.approx(0.2071, abs=1e-4)
    c = (1 - rho) / (rho * math.exp(theta) - 1)
    assert c == pytest.approx(0.9333, abs=1e-4)
    for n in (15.0, 40.0):
        tail = 1 - _md1_cdf_exact(n, rho, 1.0)
        assert tail * math.exp(theta * n) == pytest.approx(c, rel=1e-9)


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_md1_mean_equals_integral_of_survival(rho):
    d = 2.0
    lam = rho / d
    # Gauss-Legendre on each [kD, (k+1)D] (the CDF has kinks at multiples of D)
    nodes, weights = np.polynomial.legendre.leggauss(24)
    k = np.arange(300)[:, None]
    x = d * (k + 0.5 * (nodes + 1.0))
    surv = 1.0 - q.md1_wait_cdf(x, lam, d)
    integral = float(np.sum(surv * weights) * d / 2)
    pk = lam * d**2 / (2 * (1 - rho))
    assert integral == pytest.approx(pk, rel=1e-9)
    assert q.mg1_mean_wait(lam, d, d * d) == pytest.approx(pk, rel=1e-15)


@pytest.mark.parametrize("rho", [0.3, 0.9, 0.99])
def test_md1_quantile_inverts_cdf(rho):
    ps = np.array([1 - rho + 1e-6, 0.5, 0.9, 0.99, 0.999, 1 - 1e-9])
    ps = ps[ps > 1 - rho]
    qs = q.md1_wait_quantile(ps, rho / 3.0, 3.0)
    np.testing.assert_allclose(q.md1_wait_cdf(qs, rho / 3.0, 3.0), ps, rtol=0, atol=1e-10)
    assert q.md1_wait_quantile(1 - rho, rho / 3.0, 3.0) == 0.0
    assert q.md1_wait_quantile(0.0, rho / 3.0, 3.0) == 0.0


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_md1_quantiles_vs_lindley_simulation(rho):
    ps = np.array([0.5, 0.9, 0.99])
    sim, se, w = _lindley(rho, lambda rng, n: np.ones(n), ps, seed=11 + int(rho * 10))
    ana = q.md1_wait_quantile(ps, rho, 1.0)
    p_zero = float(np.mean(w == 0.0))
    assert p_zero == pytest.approx(1 - rho, abs=0.005), f"P(W=0) sim {p_zero:.4f}"
    # measured gaps (analytic/sim - 1): rho 0.5: P90 -0.03%, P99 -0.15% (s.e. 0.1/0.2%);
    # rho 0.9: P50 +0.38%, P90 -0.06%, P99 +0.05% (sim s.e. 0.4/0.5/0.8%)
    for p, s, a, e in zip(ps, sim, ana, se):
        if a == 0.0:  # p <= 1 - rho: the atom; the simulated quantile is ~0
            assert p <= 1 - rho and s < 0.02, f"rho={rho} P{p * 100:g}: sim {s:.4f}"
            continue
        gap = a / s - 1
        assert abs(gap) < 0.03, (
            f"rho={rho} P{p * 100:g}: analytic {a:.4f} sim {s:.4f} gap {gap:+.2%} "
            f"(sim s.e. {e / s:.2%})"
        )


# --------------------------------------------------------------------------- M/G/1


def test_pollaczek_khinchine_mm1():
    lam, mu = 0.7, 1.3
    rho = lam / mu
    assert q.mg1_mean_wait(lam, 1 / mu, 2 / mu**2) == pytest.approx(rho / (mu - lam), rel=1e-14)
    lams = np.array([0.0, 0.2, 0.7, 1.2])
    np.testing.assert_allclose(
        q.mg1_mean_wait(lams, 1 / mu, 2 / mu**2), (lams / mu) / (mu - lams), rtol=1e-14
    )


def test_mg1_exponential_samples_reduce_to_mm1():
    mu, lam = 2.0, 1.0
    s = _stratified_exponential(mu, 20000)
    theta = q.mg1_tail_rate(lam, s)
    assert theta == pytest.approx(mu - lam, rel=0.01)
    ps = np.array([0.6, 0.9, 0.99])
    exact = np.log((lam / mu) / (1 - ps)) / (mu - lam)
    np.testing.assert_allclose(q.mg1_wait_quantile(ps, lam, s), exact, rtol=0.02)
    assert q.mg1_wait_quantile(0.5, lam, s) == 0.0


def test_mg1_tail_rate_solves_its_equation():
    lams = np.array([0.05, 0.3, 0.55, 0.8]) / LOGNORMAL_10.mean()
    theta = q.mg1_tail_rate(lams, LOGNORMAL_10)
    assert theta.shape == lams.shape and np.all(theta > 0)
    for la, th in zip(lams, theta):
        mgf = np.mean(np.exp(th * LOGNORMAL_10))
        assert la * (mgf - 1) == pytest.approx(th, rel=1e-11)
    # no overflow for long service times and small loads
    big = LOGNORMAL_10 * 1e4
    th = q.mg1_tail_rate(1e-6 / big.mean(), big)
    assert np.isfinite(th) and th > 0


def test_mg1_deterministic_samples_dispatch_to_md1():
    d, lam = 0.25, 3.2
    ps = np.array([0.1, 0.5, 0.9, 0.99])
    s = np.full(7, d)
    np.testing.assert_array_equal(q.mg1_wait_quantile(ps, lam, s), q.md1_wait_quantile(ps, lam, d))
    xs = np.linspace(0, 10, 11)
    np.testing.assert_array_equal(q.mg1_wait_cdf(xs, lam, s), q.md1_wait_cdf(xs, lam, d))


@pytest.mark.parametrize("samples", [LOGNORMAL_025, LOGNORMAL_05, LOGNORMAL_10])
def test_mg1_approximation_is_mean_matched(samples):
    es, es2 = samples.mean(), np.mean(samples**2)
    lam = 0.6 / es
    x = np.linspace(0, 400 * es, 400_001)
    surv = 1.0 - q.mg1_wait_cdf(x, lam, samples)
    mean = float(np.sum((surv[1:] + surv[:-1]) * np.diff(x)) / 2)
    assert mean == pytest.approx(q.mg1_mean_wait(lam, es, es2), rel=1e-6)
    # the atom at zero is never smaller than the exact 1 - rho
    assert 1.0 - surv[0] >= 1 - 0.6 - 1e-12


@pytest.mark.parametrize(
    "samples, name, p90_band",
    [
        # measured (analytic/sim - 1): P90 -0.7%, P99 -0.3% (sim s.e. ~0.2%); the
        # plain C = min(rho, theta E[W]) rule would give -8.7% / -4.0% here.
        (LOGNORMAL_025, "sigma=0.25", (-0.10, 0.10)),
        # measured: P90 +0.5%, P99 -0.0% (s.e. ~0.2%); plain rule -2.7% / -1.5%.
        # Over 6 other 2000-sample sets: P90 -0.6..+0.1%, P99 -0.5..+0.2%.
        (LOGNORMAL_05, "sigma=0.5", (-0.10, 0.10)),
        # measured: P90 +13.5%, P99 +1.8%.  With heavier tails the mass rho - C of
        # short waits is lumped at zero and the single exponential overestimates
        # mid quantiles (conservatively): over 6 other sample sets P90 +5..+15.5%,
        # P99 -1.7..+4.6%.  Hence the one-sided P90 band here.
        (LOGNORMAL_10, "sigma=1.0", (-0.05, 0.20)),
    ],
)
def test_mg1_quantiles_vs_lindley_lognormal(samples, name, p90_band):
    lam = 0.6 / samples.mean()
    ps = np.array([0.9, 0.99])
    sim, se, _ = _lindley(lam, lambda rng, n: rng.choice(samples, n), ps, seed=5)
    ana = q.mg1_wait_quantile(ps, lam, samples)
    bands = [p90_band, (-0.10, 0.10)]
    for p, s, a, e, (lo, hi) in zip(ps, sim, ana, se, bands):
        gap = a / s - 1
        assert lo < gap < hi, (
            f"lognormal {name} rho=0.6 P{p * 100:g}: analytic {a:.4f} sim {s:.4f} "
            f"gap {gap:+.2%} (sim s.e. {e / s:.2%})"
        )


# --------------------------------------------------------------------------- Erlang C, G/G/c


def test_erlang_c_hand_values():
    for a in (0.0, 0.1, 0.5, 0.9, 0.999):
        assert q.erlang_c(1, a) == pytest.approx(a, rel=1e-14, abs=1e-300)
    assert q.erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-14)
    for c in range(1, 12):
        for a in (0.3 * c, 0.8 * c, 0.99 * c):
            assert q.erlang_c(c, a) == pytest.approx(_erlang_c_direct(c, a), rel=1e-12)
    cs = np.array([1, 2, 5, 40, 200])
    a = 0.9 * cs
    got = q.erlang_c(cs, a)
    np.testing.assert_allclose(got, [q.erlang_c(int(c), x) for c, x in zip(cs, a)], rtol=1e-15)
    assert q.erlang_c(4, 4.0) == 1.0 and q.erlang_c(4, 9.0) == 1.0


def test_erlang_c_many_servers_matches_the_recursion():
    """Above 32 servers Erlang C comes from the Poisson pmf over its CDF (power series, Stirling
    log-gamma); the Erlang B recursion, stable in floating point at any size, is the reference."""
    def by_recursion(c, a):
        b = 1.0
        for i in range(1, c + 1):
            b = a * b / (i + a * b)
        return c * b / (c - a * (1.0 - b))

    for c in (33, 40, 100, 500, 2000):
        for a in (0.3 * c, 0.8 * c, 0.95 * c, 0.999 * c):
            assert q.erlang_c(c, a) == pytest.approx(by_recursion(c, a), rel=1e-10)


def test_log_gamma_matches_math_lgamma():
    from planner.queueing.exact import _lgamma

    x = np.concatenate([np.linspace(0.05, 12.0, 400), np.geomspace(10.0, 1e7, 400)])
    np.testing.assert_allclose(_lgamma(x), [math.lgamma(v) for v in x], rtol=1e-13, atol=1e-13)


def test_mgc_mean_wait_mmc_and_mg1_reductions():
    lam, es, c = 3.0, 1.0, 4
    mmc = q.erlang_c(c, lam * es) / (c / es - lam)
    for whitt in (True, False):
        assert q.mgc_mean_wait(lam, c, es, 2 * es**2, whitt=whitt) == pytest.approx(mmc, rel=1e-12)
    # c = 1, Poisson arrivals: Pollaczek-Khinchine exactly (no Whitt factor at c = 1)
    for es2 in (1.0, 1.3, 2.0, 5.0):
        for whitt in (True, False):
            assert q.mgc_mean_wait(0.7, 1, 1.0, es2, whitt=whitt) == pytest.approx(
                q.mg1_mean_wait(0.7, 1.0, es2), rel=1e-12
            )
    # M/D/c with Whitt: phi = 1 + gamma (Cosmetatos-type correction)
    rho = lam * es / c
    gamma = min(0.24, (1 - rho) * (c - 1) * (math.sqrt(4 + 5 * c) - 2) / (16 * c * rho))
    assert q.mgc_mean_wait(lam, c, es, es**2) == pytest.approx(0.5 * (1 + gamma) * mmc, rel=1e-12)
    assert q.mgc_mean_wait(lam, c, es, es**2, whitt=False) == pytest.approx(0.5 * mmc, rel=1e-12)


def test_mgc_mean_wait_vs_simulation_mdc():
    lam, c = 2.8, 4  # M/D/4 at rho = 0.7
    sim = _ggc_mean_wait(lam, c, lambda rng, n: np.ones(n), 300_000, seed=3)
    whitt = q.mgc_mean_wait(lam, c, 1.0, 1.0)
    ac = q.mgc_mean_wait(lam, c, 1.0, 1.0, whitt=False)
    # measured: Whitt -0.5%, plain Allen-Cunneen -6.0% (sim noise ~1-2%)
    assert abs(whitt / sim - 1) < 0.05, f"Whitt {whitt:.4f} sim {sim:.4f} AC {ac:.4f}"


def test_mgc_wait_quantile_exact_for_mmc():
    lam, es, c = 3.0, 1.0, 4
    pw = q.erlang_c(c, lam * es)
    ps = np.array([0.9, 0.99])
    exact = np.log(pw / (1 - ps)) / (c / es - lam)
    np.testing.assert_allclose(q.mgc_wait_quantile(ps, lam, c, es, 2 * es**2), exact, rtol=1e-12)
    assert q.mgc_wait_quantile(1 - pw - 1e-9, lam, c, es, 2 * es**2) == 0.0
    # its CDF is consistent and mean-matched
    t = np.linspace(0, 200, 200_001)
    surv = 1 - q.mgc_wait_cdf(t, lam, c, es, 1.7)
    mean = float(np.sum((surv[1:] + surv[:-1]) * np.diff(t)) / 2)
    assert mean == pytest.approx(q.mgc_mean_wait(lam, c, es, 1.7), rel=1e-6)
    qs = q.mgc_wait_quantile(ps, lam, c, es, 1.7)
    np.testing.assert_allclose(q.mgc_wait_cdf(qs, lam, c, es, 1.7), ps, rtol=1e-12)


def test_gg1_kingman():
    # (ca2 + cs2)/2 * rho/(1-rho) * E[S] with lam 0.5, E[S] 1, cs2 0.5, ca2 2
    assert q.gg1_mean_wait(0.5, 1.0, 1.5, 2.0) == pytest.approx(1.25, rel=1e-14)
    assert q.gg1_mean_wait(0.5, 1.0, 1.0, 0.0) == 0.0  # D/D/1
    assert q.gg1_mean_wait(0.5, 1.0, 1.5, 1.0, klb=True) == q.mg1_mean_wait(0.5, 1.0, 1.5)
    assert q.gg1_mean_wait(0.5, 1.0, 1.5, 3.0, klb=True) < q.gg1_mean_wait(0.5, 1.0, 1.5, 3.0)


# --------------------------------------------------------------------------- quantile_of_sum


def test_quantile_of_sum_mm1_sojourn_is_exponential():
    """M/M/1: wait + own service is Exp(mu - lam)."""
    lam, mu = 1.0, 2.0
    s = _stratified_exponential(mu, 4000)

    def wait_cdf(x):
        return 1 - (lam / mu) * np.exp(-(mu - lam) * x)

    ps = np.array([0.5, 0.9, 0.99])
    got = q.quantile_of_sum(ps, wait_cdf, s, 0.0, 50.0)
    np.testing.assert_allclose(got, -np.log1p(-ps) / (mu - lam), rtol=2e-3)


def test_quantile_of_sum_deterministic_and_vectorised():
    d = 0.5
    lams = np.array([0.4, 1.2, 1.8])
    qw = q.md1_wait_quantile(0.9, lams, d)
    got = q.quantile_of_sum(
        0.9, lambda x: q.md1_wait_cdf(x, lams[:, None], d), [d], 0.0, qw + d + 1.0
    )
    np.testing.assert_allclose(got, qw + d, rtol=1e-9)
    for la, g in zip(lams, got):
        one = q.quantile_of_sum(0.9, lambda x, la=la: q.md1_wait_cdf(x, la, d), [d], 0.0, 50.0)
        assert one == pytest.approx(g, rel=1e-9)
    # below lo -> lo; unstable (CDF 0) -> inf; bracket too small -> inf
    assert q.quantile_of_sum(0.01, lambda x: q.md1_wait_cdf(x, 1.0, d), [d], 0.3, 9.0) == 0.5
    assert q.quantile_of_sum(0.01, lambda x: q.md1_wait_cdf(x, 1.0, d), [d], 0.6, 9.0) == 0.6
    assert q.quantile_of_sum(0.5, lambda x: q.md1_wait_cdf(x, 3.0, d), [d], 0.0, 9.0) == np.inf
    assert q.quantile_of_sum(0.99, lambda x: q.md1_wait_cdf(x, 1.8, d), [d], 0.0, 1.0) == np.inf


# --------------------------------------------------------------------------- unstable


def test_unstable_gives_inf_everywhere():
    s = LOGNORMAL_05
    lam = 1.0001 / s.mean()  # rho > 1
    assert q.md1_wait_quantile(0.5, 2.0, 0.5) == np.inf  # rho = 1 exactly
    assert q.mg1_wait_quantile(0.5, 2.0, [0.5, 0.5]) == np.inf
    assert q.md1_wait_quantile(0.01, 3.0, 0.5) == np.inf
    assert q.md1_wait_cdf(1e9, 2.0, 0.5) == 0.0
    assert q.mg1_mean_wait(2.0, 0.5, 0.3) == np.inf
    assert q.mg1_tail_rate(lam, s) == 0.0
    assert q.mg1_wait_quantile(0.5, lam, s) == np.inf
    assert q.mg1_wait_cdf(1e9, lam * 1.5, s) == 0.0
    assert q.erlang_c(3, 3.0) == 1.0
    assert q.mgc_mean_wait(3.0, 3, 1.0, 1.0) == np.inf
    assert q.mgc_wait_quantile(0.1, 3.5, 3, 1.0, 1.0) == np.inf
    assert q.mgc_wait_cdf(1e9, 3.5, 3, 1.0, 1.0) == 0.0
    assert q.gg1_mean_wait(1.0, 1.0, 1.0, 2.0) == np.inf
    # mixed grid: only the unstable entries are inf
    lams = np.array([0.5, 1.0001, 1.5, 3.0])
    out = q.md1_wait_quantile(0.9, lams, 1.0)
    assert np.all(np.isfinite(out[:1])) and np.all(np.isinf(out[1:]))
    out = q.mg1_wait_quantile(0.9, lams / s.mean(), s)
    assert np.all(np.isfinite(out[:1])) and np.all(np.isinf(out[1:]))


def test_zero_load_and_invalid_inputs_do_not_raise():
    assert q.md1_wait_cdf(0.0, 0.0, 1.0) == 1.0
    assert q.md1_wait_quantile(0.99, 0.0, 1.0) == 0.0
    assert q.mg1_wait_quantile(0.99, 0.0, LOGNORMAL_05) == 0.0
    assert q.mg1_tail_rate(0.0, LOGNORMAL_05) == np.inf
    assert q.mgc_wait_quantile(0.99, 0.0, 2, 1.0, 1.0) == 0.0
    assert np.isnan(q.md1_wait_cdf(np.nan, 0.5, 1.0))
    assert np.isnan(q.mg1_mean_wait(-1.0, 1.0, 1.0))
    assert np.isnan(q.erlang_c(2, np.nan))
    assert q.md1_wait_cdf(-1.0, 0.5, 1.0) == 0.0


# --------------------------------------------------------------------------- invariants

rhos = st.floats(0.01, 0.99)
dees = st.floats(1e-3, 10.0)


@HYP
@given(rho=rhos, d=dees, ns=st.lists(st.floats(-1.0, 300.0), min_size=2, max_size=40))
def test_md1_cdf_monotone_and_bounded(rho, d, ns):
    xs = np.sort(np.array(ns)) * d
    f = q.md1_wait_cdf(xs, rho / d, d)
    assert np.all((f >= 0) & (f <= 1))
    assert np.all(np.diff(f) >= -1e-11)  # the method switch at x/D = 10 is ~1e-12 smooth


@HYP
@given(rho=rhos, xs=st.lists(st.floats(-1.0, 100.0), min_size=2, max_size=30))
def test_mg1_cdf_monotone_and_bounded(rho, xs):
    x = np.sort(np.array(xs))
    for s in (LOGNORMAL_025, LOGNORMAL_10):
        f = q.mg1_wait_cdf(x, rho / s.mean(), s)
        assert np.all((f >= 0) & (f <= 1)) and np.all(np.diff(f) >= 0)


@HYP
@given(rho=rhos, d=dees, ps=st.lists(st.floats(0.0, 0.9999), min_size=2, max_size=30))
def test_quantiles_monotone_in_p(rho, d, ps):
    p = np.sort(np.array(ps))
    for qs in (
        q.md1_wait_quantile(p, rho / d, d),
        q.mg1_wait_quantile(p, rho / LOGNORMAL_05.mean(), LOGNORMAL_05),
        q.mgc_wait_quantile(p, 3 * rho / d, 3, d, 1.5 * d * d),
    ):
        assert np.all(np.diff(qs) >= -1e-12 * np.maximum(qs[1:], 1.0))


@HYP
@given(
    r1=st.floats(0.0, 0.995),
    r2=st.floats(0.0, 0.995),
    p=st.floats(0.01, 0.999),
    cs2=st.floats(0.0, 4.0),
    c=st.integers(1, 16),
)
def test_waiting_grows_with_load(r1, r2, p, cs2, c):
    lo, hi = sorted((r1, r2))
    es, es2 = 0.3, 0.09 * (1 + cs2)
    pairs = [
        (q.mg1_mean_wait(lo / es, es, es2), q.mg1_mean_wait(hi / es, es, es2)),
        (q.gg1_mean_wait(lo / es, es, es2, 2.0), q.gg1_mean_wait(hi / es, es, es2, 2.0)),
        (q.md1_wait_quantile(p, lo / es, es), q.md1_wait_quantile(p, hi / es, es)),
        (q.mgc_mean_wait(c * lo / es, c, es, es2), q.mgc_mean_wait(c * hi / es, c, es, es2)),
        (q.erlang_c(c, c * lo), q.erlang_c(c, c * hi)),
    ]
    for s in (LOGNORMAL_05, LOGNORMAL_10):
        m = s.mean()
        pairs.append((q.mg1_wait_quantile(p, lo / m, s), q.mg1_wait_quantile(p, hi / m, s)))
    for a, b in pairs:
        assert b >= a * (1 - 1e-9) - 1e-12, (a, b)


@settings(max_examples=40, deadline=None, database=None)
@given(
    rho=st.lists(st.floats(0.0, 1.3), min_size=1, max_size=8),
    p=st.floats(0.0, 0.999),
    x=st.floats(0.0, 50.0),
)
def test_vectorised_equals_elementwise(rho, p, x):
    r = np.array(rho)
    d = 0.7
    s = LOGNORMAL_SMALL
    m = s.mean()
    cases = [
        (lambda rr: q.md1_wait_cdf(x, rr / d, d)),
        (lambda rr: q.md1_wait_quantile(p, rr / d, d)),
        (lambda rr: q.mg1_tail_rate(rr / m, s)),
        (lambda rr: q.mg1_wait_quantile(p, rr / m, s)),
        (lambda rr: q.mg1_wait_cdf(x, rr / m, s)),
        (lambda rr: q.mgc_wait_quantile(p, 4 * rr / d, 4, d, 2.2 * d * d)),
        (lambda rr: q.erlang_c(np.where(rr > 0.5, 3, 7), 3 * rr)),
    ]
    for f in cases:
        vec = np.asarray(f(r))
        one = np.array([f(v) for v in r])
        # BLAS may sum a matrix row and a vector in different orders; near rho = 1
        # the decay rate is O(1 - rho) with relative conditioning eps/(1 - rho), so the
        # tolerance follows that bound (rho = 0.99999 once gave a 1e-10 difference)
        gap = max(float(np.min(np.abs(1.0 - r))), 1e-12)
        np.testing.assert_allclose(vec, one, rtol=max(1e-10, 1e-13 / gap), atol=1e-13)


@HYP
@given(lam=st.floats(0.0, 3.0), es=st.floats(0.01, 0.3), cs2=st.floats(0.0, 5.0))
def test_gg1_with_poisson_arrivals_is_pollaczek_khinchine(lam, es, cs2):
    es2 = es * es * (1 + cs2)
    assert q.gg1_mean_wait(lam, es, es2, 1.0) == q.mg1_mean_wait(lam, es, es2)


# ---- the fast forms the serving models run, against their exact twins ------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from planner.queueing import fast  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(rho=st.floats(0.02, 0.97), sigma=st.floats(0.05, 1.2), x=st.floats(0.0, 30.0))
def test_fast_mg1_cdf_is_the_exact_one(rho, sigma, x):
    """structure-review 3.2.1: the planner's M/G/1 CDF used a plainer tail constant (P90 8% low at
    rho 0.6, 26% at 0.3); it now evaluates the exact form's mean-matched constant."""
    s = np.exp(np.random.default_rng(1).normal(0.0, sigma, 64))
    s = s / s.mean()
    lam = np.array([rho])
    got = float(fast.mg1_wait_cdf_fn(lam, s)(np.array([[x]]))[0, 0])
    want = float(q.mg1_wait_cdf(x, rho, s))
    assert got == pytest.approx(want, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(rho=st.floats(0.02, 0.97), x=st.floats(0.0, 12.0))
def test_fast_md1_cdf_is_the_exact_one(rho, x):
    got = float(fast.mg1_wait_cdf_fn(np.array([rho]), np.array([1.0]))(np.array([[x]]))[0, 0])
    assert got == pytest.approx(float(q.md1_wait_cdf(x, rho, 1.0)), abs=2e-4)


@settings(max_examples=30, deadline=None)
@given(c=st.integers(2, 16), rho=st.floats(0.05, 0.95), x=st.floats(0.0, 10.0))
def test_fast_mgc_cdf_is_the_exact_one(c, rho, x):
    es, es2 = 1.0, 1.5
    lam = np.array([rho * c])
    cdf, _ = fast.mgc_wait_cdf_fn(lam, np.array([c]), es, es2)
    got = float(cdf(np.array([[x]]))[0, 0])
    want = float(q.mgc_wait_cdf(x, rho * c, c, es, es2))
    assert got == pytest.approx(want, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), m=st.floats(1e-3, 80.0))
def test_poisson_tail_matches_the_exact_cdf(n, m):
    """The fast Poisson tail the worst-gap model uses equals one minus the exact CDF."""
    from planner.queueing.exact import _poisson_cdf
    from planner.queueing.fast import poisson_at_least

    fast = float(poisson_at_least(n, np.array([m]))[0])
    exact = 1.0 - float(np.asarray(_poisson_cdf(n - 1, m)).reshape(-1)[0]) if m < n else None
    if exact is None:  # (the exact series form is for m < n; check the complement by direct sum)
        j = np.arange(n)
        exact = 1.0 - float(np.sum(np.exp(-m + j * np.log(m) - np.array([math.lgamma(k + 1) for k in j]))))
    assert fast == pytest.approx(exact, abs=1e-12)
