"""Serving models: invariants of the analytic metrics (hypothesis) and hand-checked limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.api import default_inputs, estimate, evaluate
from planner.serving.common import Deployment, Pool

DEPS = {
    "unified": Deployment("unified", (Pool("unified", "h100-sxm", 2, 8),)),
    "chunked": Deployment("chunked", (Pool("unified", "h100-sxm", 2, 8),), chunk_size=1024),
    "disaggregated": Deployment("disaggregated", (Pool("prefill", "h100-sxm", 2, 4),
                                                  Pool("decode", "h100-sxm", 1, 8))),
}


@pytest.fixture(scope="module")
def inp():
    return default_inputs(qps=4.0)


@pytest.mark.parametrize("approach", list(DEPS))
def test_percentiles_are_ordered_and_finite_when_stable(inp, approach):
    r = evaluate(inp, DEPS[approach], np.array([0.5, 2.0, 4.0, 6.0]))
    for metric in ("ttft", "tpot"):
        d = r[metric]
        stable = r["stable"]
        assert np.all(d["p50"][stable] <= d["p90"][stable] + 1e-12)
        assert np.all(d["p90"][stable] <= d["p99"][stable] + 1e-12)
        assert np.all(np.isfinite(d["p99"][stable]))
        assert np.all(d["p50"][stable] > 0)


@pytest.mark.parametrize("approach", list(DEPS))
def test_more_load_never_lowers_latency(inp, approach):
    q = np.linspace(0.2, 12.0, 25)
    r = evaluate(inp, DEPS[approach], q)
    for metric in ("ttft", "tpot"):
        for p in ("mean", "p90"):
            v = np.nan_to_num(np.asarray(r[metric][p], dtype=float), posinf=1e300)
            assert np.all(np.diff(v) >= -1e-9 * np.maximum(v[:-1], 1)), (metric, p, v)


@pytest.mark.parametrize("approach", list(DEPS))
def test_overload_is_infinite_not_an_error(inp, approach):
    r = evaluate(inp, DEPS[approach], np.array([1e4]))
    assert not r["stable"][0]
    assert math.isinf(r["ttft"]["p90"][0]) or math.isinf(r["tpot"]["p90"][0])
    assert str(r["saturated"][0]) != ""


@settings(max_examples=25, deadline=None)
@given(qps=st.floats(0.05, 50.0), approach=st.sampled_from(list(DEPS)))
def test_finite_exactly_when_stable(qps, approach):
    inp = default_inputs(qps=qps)
    r = evaluate(inp, DEPS[approach], np.array([qps]))
    finite = all(np.isfinite(r[m][p][0]) for m in ("ttft", "tpot") for p in ("p50", "p90", "p99"))
    assert finite == bool(r["stable"][0])
    if finite:
        assert r["ttft"]["p50"][0] > 0 and r["tpot"]["p50"][0] > 0


def test_light_load_latency_is_the_bare_step_time(inp):
    from planner.api import step_model

    light = default_inputs(qps=1e-4)
    m = estimate(light, DEPS["disaggregated"], with_headroom=False).metrics
    smp = step_model(light, DEPS["disaggregated"].pool("prefill"))
    prefill = float(smp.prefill_time(2048))
    assert m.ttft["p50"] == pytest.approx(prefill, rel=0.05)
    m = estimate(light, DEPS["unified"], with_headroom=False).metrics
    smu = step_model(light, DEPS["unified"].pool("unified"))
    assert m.ttft["p50"] == pytest.approx(float(smu.prefill_time(2048)), rel=0.05)
    assert m.tpot["p50"] == pytest.approx(float(smu.decode_time(1, 2048 + 128)), rel=0.05)


def test_unified_tpot_is_inflated_by_prefill_share(inp):
    """TPOT = t_d / (1 - rho_p): at a load where prefills take a third of the time the mean TPOT
    exceeds the bare step by half."""
    from planner.api import step_model

    dep = Deployment("unified", (Pool("unified", "h100-sxm", 1, 8),))
    sm = step_model(inp, dep.pool("unified"))
    s = float(sm.prefill_time(2048))
    rate = (1 / 3) / s
    r = evaluate(default_inputs(qps=rate), dep, np.array([rate]))
    b = r["batch"][0]
    # The step a decoding request sees: itself plus a Poisson(b) number of others (Palm view).
    from scipy.stats import poisson

    k = np.arange(0, int(b + 12 * np.sqrt(b) + 30))
    td = float(np.sum(poisson.pmf(k, b) * sm.decode_time(k + 1.0, 2048 + 127.5)))
    assert r["tpot"]["mean"][0] == pytest.approx(td / (1 - 1 / 3), rel=0.01)


def test_chunked_bounds_the_worst_gap_below_unified():
    inp = default_inputs(qps=1.0, isl=8192)
    u = estimate(inp, DEPS["unified"], with_headroom=False).metrics
    c = estimate(inp, Deployment("chunked", DEPS["chunked"].pools, chunk_size=512), with_headroom=False).metrics
    assert c.itl_max_s < u.itl_max_s / 3


def test_kv_link_choice_follows_placement(inp):
    r = evaluate(inp, DEPS["disaggregated"], np.array([2.0]))
    assert r["link"]["where"] == "inter-node"  # tp4 + tp8 = 12 GPUs: not one node
    same = Deployment("disaggregated", (Pool("prefill", "h100-sxm", 1, 4), Pool("decode", "h100-sxm", 1, 4)))
    assert evaluate(inp, same, np.array([2.0]))["link"]["where"] == "same-node"  # one node of 8
    two = Deployment("disaggregated", (Pool("prefill", "h100-sxm", 2, 4), Pool("decode", "h100-sxm", 1, 4)))
    assert evaluate(inp, two, np.array([2.0]))["link"]["where"] == "inter-node"
