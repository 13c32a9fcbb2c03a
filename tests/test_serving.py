"""Serving models: invariants of the analytic metrics (hypothesis) and hand-checked limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.api import default_inputs, estimate, evaluate
from planner.errors import InvalidRequestError
from planner.perf import kv_link_for, kv_transfer_time
from planner.serving.common import Deployment, Pool, transfer_of

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
        d = getattr(r, metric)
        stable = r.stable
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
            v = np.nan_to_num(np.asarray(getattr(r, metric)[p], dtype=float), posinf=1e300)
            assert np.all(np.diff(v) >= -1e-9 * np.maximum(v[:-1], 1)), (metric, p, v)


@pytest.mark.parametrize("approach", list(DEPS))
def test_overload_is_infinite_not_an_error(inp, approach):
    r = evaluate(inp, DEPS[approach], np.array([1e4]))
    assert not r.stable[0]
    assert math.isinf(r.ttft["p90"][0]) or math.isinf(r.tpot["p90"][0])
    assert str(r.saturated[0]) != ""


@settings(max_examples=25, deadline=None)
@given(qps=st.floats(0.05, 50.0), approach=st.sampled_from(list(DEPS)))
def test_finite_exactly_when_stable(qps, approach):
    inp = default_inputs(qps=qps)
    r = evaluate(inp, DEPS[approach], np.array([qps]))
    finite = all(np.isfinite(getattr(r, m)[p][0]) for m in ("ttft", "tpot") for p in ("p50", "p90", "p99"))
    assert finite == bool(r.stable[0])
    if finite:
        assert r.ttft["p50"][0] > 0 and r.tpot["p50"][0] > 0


def test_light_load_latency_is_the_bare_step_time(inp):
    from planner.api import step_model

    light = default_inputs(qps=1e-4)
    m = estimate(light, DEPS["disaggregated"], with_headroom=False).metrics
    dep = DEPS["disaggregated"]
    smp, smd = (step_model(light, dep.pool(r)) for r in ("prefill", "decode"))
    prefill = float(smp.prefill_time(2048))
    # Alone, the KV transfer exposes its fixed part (the transfer engine's setup and the link
    # latency) and whatever of its data the prefill does not hide.
    link, streams, _ = kv_link_for(light.catalog, smp.gpu, smd.gpu, dep.pool("prefill"),
                                   dep.pool("decode"), None)
    exposed = float(kv_transfer_time(2048 * light.model.kv_bytes_per_token("bf16"), link,
                                     streams=streams, prefill_time=prefill, layers=80, overlap=True,
                                     xfer=transfer_of(light)))
    assert exposed > transfer_of(light).setup_s
    assert m.ttft["p50"] == pytest.approx(prefill + exposed, rel=0.02)
    m = estimate(light, DEPS["unified"], with_headroom=False).metrics
    smu = step_model(light, DEPS["unified"].pool("unified"))
    assert m.ttft["p50"] == pytest.approx(float(smu.prefill_time(2048)), rel=0.05)
    assert m.tpot["p50"] == pytest.approx(float(smu.decode_time(1, 2048 + 128)), rel=0.05)


def test_unified_tpot_is_the_iteration_mix(inp):
    """Whole prompts ride in iterations with the decodes: TPOT = 1 / (u / T_c + (1 - u) / t_d),
    u = lam E[ISL] T_c / c the share of time in iterations that carry prompts (c prompt tokens
    each, T_c long), t_d the decode step a decoding request sees (itself plus Poisson(B) others)."""
    from planner.api import step_model
    from planner.serving import unified
    from planner.serving.common import LoadShape

    dep = Deployment("unified", (Pool("unified", "h100-sxm", 1, 8),))
    sm = step_model(inp, dep.pool("unified"))
    rate = (1 / 3) / float(sm.prefill_time(2048))
    r = evaluate(default_inputs(qps=rate), dep, np.array([rate]))
    b, tpot = r.batch[0], r.tpot["mean"][0]
    cv = unified.curves(sm, LoadShape(np.array([2048]), np.array([256])))
    td = float(cv.decode(b))
    t0, t1 = float(cv.empty(b)), float(cv.busy(b, 2048.0))
    n, _, _ = unified.whole_prompts(rate, t0, t1 - t0, float(cv.room(b)) / 2048, td)
    tc = float(cv.busy(b, 2048.0 * n))
    u = rate * 2048 * tc / (2048 * n)
    assert tpot == pytest.approx(1 / (u / tc + (1 - u) / td), rel=1e-3)
    assert b == pytest.approx(rate * 255 * tpot, rel=1e-3)  # Little: B = lam E[OSL - 1] TPOT
    assert td < tpot < t1  # slower than bare decodes, faster than prefill-alone stalls


def test_whole_prompts_by_hand():
    from planner.serving.lanes import whole_prompts

    # Light load: one prompt per busy iteration.
    assert float(whole_prompts(1e-9, 0.01, 0.1, 8, 0.01)[0]) == pytest.approx(1.0)
    # lam 5/s, T(n) = 0.02 + 0.1 n, decode step 0.02 s: n1 = 1 + 5 * 0.01 = 1.05 and the fixed
    # point n = m + n1 e^-m with m = 5 (0.02 + 0.1 n) = 0.1 + 0.5 n (root: n = 1.2282).
    n, n1, later = (float(x) for x in whole_prompts(5.0, 0.02, 0.1, 8, 0.02, iters=60))
    m = 5 * (0.02 + 0.1 * n)
    assert n1 == pytest.approx(1.05)
    assert n == pytest.approx(m + 1.05 * np.exp(-m), rel=1e-9)
    assert n == pytest.approx(1.2282, abs=1e-4)
    assert later == pytest.approx(m / (1 - np.exp(-m)), rel=1e-9)
    # The batch cap binds.
    assert float(whole_prompts(500.0, 0.02, 0.1, 3, 0.02)[0]) == 3.0


def test_chunked_bounds_the_worst_gap_below_unified():
    inp = default_inputs(qps=1.0, isl=8192)
    u = estimate(inp, DEPS["unified"], with_headroom=False).metrics
    c = estimate(inp, Deployment("chunked", DEPS["chunked"].pools, chunk_size=512), with_headroom=False).metrics
    assert c.itl_max_s < u.itl_max_s / 3


def test_kv_link_choice_follows_placement(inp):
    r = evaluate(inp, DEPS["disaggregated"], np.array([2.0]))
    assert r.link["where"] == "inter-node"  # tp4 + tp8 = 12 GPUs: not one node
    same = Deployment("disaggregated", (Pool("prefill", "h100-sxm", 1, 4), Pool("decode", "h100-sxm", 1, 4)))
    assert evaluate(inp, same, np.array([2.0])).link["where"] == "same-node"  # one node of 8
    two = Deployment("disaggregated", (Pool("prefill", "h100-sxm", 2, 4), Pool("decode", "h100-sxm", 1, 4)))
    assert evaluate(inp, two, np.array([2.0])).link["where"] == "inter-node"


def test_registry_holds_every_approach_and_returns_lane_results(inp):
    """One registry: every approach the CLI offers has a serving module whose ``evaluate``
    returns a typed LaneResult shaped like the rates asked."""
    from planner import cli, serving
    from planner.serving.common import APPROACHES, LaneResult

    assert tuple(serving.REGISTRY) == APPROACHES == cli.APPROACHES
    q = np.array([0.5, 1.0, 2.0])
    for approach, dep in DEPS.items():
        r = serving.model(approach).evaluate(inp, dep, q)
        assert isinstance(r, LaneResult)
        assert np.shape(r.stable) == q.shape and np.shape(r.ttft["p90"]) == q.shape
        assert set(r.utilization) == ({"prefill", "decode", "kv_link"} if approach == "disaggregated"
                                      else {"unified"})
    with pytest.raises(InvalidRequestError, match="--approach: unknown approach 'unifed'.*did you mean 'unified'"):
        serving.model("unifed")


def test_shares_node_mask_is_kv_link_for_per_size(inp):
    """The search's vectorised node test gives, size by size, the link kv_link_for picks."""
    from planner.perf import shares_node

    cat = inp.catalog
    for gp, gd in (("h100-sxm", "h100-sxm"), ("h100-sxm", "h200")):
        for tp_p, tp_d, nd in ((1, 1, 1), (2, 4, 1), (4, 4, 1), (1, 2, 3)):
            sizes = np.arange(1, 12)
            pd_ = Pool("decode", gd, nd, tp_d)
            mask = shares_node(cat.gpu(gp), cat.gpu(gd), sizes * tp_p, pd_.gpus)
            each = [kv_link_for(cat, cat.gpu(gp), cat.gpu(gd), Pool("prefill", gp, int(n), tp_p), pd_, None)[2]
                    for n in sizes]
            assert [("same-node" if m else "inter-node") for m in mask] == each


def test_iteration_curve_lookup_is_the_interpolations():
    """IterationCurves.lookup (one gather for six curves) equals interp_curve (the first four,
    extended beyond the grid) and np.interp (the last two, held at its end)."""
    from planner.optimize import _configs, lane_budget
    from planner.serving import chunked
    from planner.serving.common import interp_curve, shape_of

    q = default_inputs(qps=10.0)
    shape = shape_of(q.workload, tail=False)
    for sm in _configs(q, ["h100-sxm"]):
        for budget in (512, 8192):
            cv = chunked.ChunkCurves(sm, shape, lane_budget(sm, budget))
            B = np.concatenate([cv.grid, np.linspace(0.0, 1.6 * cv.grid[-1], 301)])
            one = cv._one if cv._one is not None else cv._full
            want = [interp_curve(B, cv.grid, v) for v in (cv._empty, cv._full, cv.td, one)]
            want += [np.interp(B, cv.grid, v) for v in (cv.s, cv.alone)]
            for got, ref in zip(cv.lookup(B), want):
                np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)
            got2 = cv.lookup(B.reshape(-1, 1))  # candidates on leading axes keep their shape
            assert got2[0].shape == (B.size, 1)


def test_headroom_from_the_rate_asked_is_the_whole_grid_answer(inp):
    """headroom(at=q) skips the grid below q, where the answer cannot be: the same rate as
    the whole grid gives, and never below q."""
    from planner.api import headroom

    for dep in DEPS.values():
        full = headroom(inp, dep)
        assert full > 0
        for q in (0.3 * full, 0.9 * full):
            assert headroom(inp, dep, q) == full


def test_stacked_budgets_answer_as_each_budget_alone():
    """The search evaluates every token budget of a step model in one call (StackedCurves): each
    stacked row's stability, utilisation and attainment are what its own budget gives alone."""
    from planner.optimize import CHUNK_CHOICES, _configs, lane_budget
    from planner.serving import chunked
    from planner.serving.common import shape_of
    from planner.serving.lanes import StackedCurves, lane_metrics

    q = default_inputs(qps=60.0, ttft_slo=0.2)
    shape = shape_of(q.workload, tail=False)
    sm = _configs(q, ["h100-sxm"])[0]
    n = np.arange(1, 65)
    curves = [chunked.ChunkCurves(sm, shape, lane_budget(sm, c)) for c in CHUNK_CHOICES]
    groups: dict = {}
    for c in curves:
        groups.setdefault(c.whole, []).append(c)
    assert len(groups) == 2  # (the default prompts split under small budgets, enter whole under large)
    for group in groups.values():
        stack = StackedCurves(group, [n.size] * len(group))
        lam, lanes = np.tile(60.0 / (n * sm.lanes), len(group)), np.tile(n * sm.lanes, len(group))
        r = lane_metrics(sm, shape, lam, 0, 1.0, stack, lanes=lanes, percentiles=(), slo=(0.2, 0.05))
        for i, c in enumerate(group):
            one = lane_metrics(sm, shape, 60.0 / (n * sm.lanes), c.chunk, 1.0, c, lanes=n * sm.lanes,
                               percentiles=(), slo=(0.2, 0.05))
            assert np.array_equal(stack.split_rows(np.asarray(r.stable))[i], one.stable)
            np.testing.assert_allclose(stack.split_rows(np.asarray(r.attain))[i], one.attain, rtol=0, atol=1e-12)
            np.testing.assert_allclose(stack.split_rows(r.utilization["unified"])[i], one.utilization["unified"],
                                       rtol=1e-13)
    with pytest.raises(ValueError, match="stacked"):
        lane_metrics(sm, shape, lam, 0, 1.0, stack, lanes=lanes, percentiles=(90,))


def test_a_candidate_near_its_batch_cap_answers_alone_as_in_a_batch(inp):
    """The admission wait enters a candidate's TTFT mixture where it may wait for a place, and
    not elsewhere, whatever the other rates evaluated with it: each rate's attainment is the
    same alone as among many."""
    from dataclasses import replace

    from planner.workload import fixed

    long = replace(inp, workload=replace(inp.workload, isl=fixed(8192), osl=fixed(1024)))
    dep = Deployment("chunked", (Pool("unified", "h100-sxm", 1, 4),), chunk_size=1024)
    rates = np.geomspace(0.05, 10.0, 40)
    r = evaluate(long, dep, rates, percentiles=(90,))
    assert np.any(np.asarray(r.admission_wait)[np.asarray(r.stable)] > 1e-4)  # (some wait for a place)
    for i, x in enumerate(rates):
        alone = evaluate(long, dep, [x], percentiles=(90,))
        assert float(np.asarray(alone.attain)[0]) == pytest.approx(float(np.asarray(r.attain)[i]), abs=1e-12)
        # (the percentile's bisection ends in a bracket of 2^-26 of its start: rounding-level
        # differences in the mixture may pick either end)
        assert float(np.asarray(alone.ttft["p90"])[0]) == pytest.approx(float(np.asarray(r.ttft["p90"])[i]),
                                                                      rel=1e-7)
