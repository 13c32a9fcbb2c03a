"""The optimizer: acceptance scenarios and monotonicity properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.api import default_inputs
from planner.errors import NoFeasiblePlanError
from planner.optimize import recommend, search


def test_default_scenario_meets_the_slo():
    rec = recommend(default_inputs(qps=80, ttft_slo=0.2), ["h100-sxm"])
    p = rec.plan
    assert p.meets_slo
    assert p.metrics.ttft["p90"] <= 0.2 and p.metrics.tpot["p90"] <= 0.05
    assert p.max_qps >= 80 * 0.99
    assert p.reason and p.approach in p.reason
    assert {a.approach for a in rec.alternatives} | {p.approach} == {"unified", "chunked", "disaggregated"}


def test_low_load_does_not_disaggregate_needlessly():
    rec = recommend(default_inputs(qps=2, isl=512, ttft_slo=2.0), ["h100-sxm"])
    best_colocated = min(a.total_gpus for a in [rec.plan, *rec.alternatives]
                         if a.approach != "disaggregated" and a.meets_slo)
    if rec.plan.approach == "disaggregated":
        assert rec.plan.total_gpus < best_colocated
    assert rec.plan.total_gpus <= 8


def test_no_feasible_plan_names_the_nearest_misses():
    with pytest.raises(NoFeasiblePlanError) as exc:
        recommend(default_inputs(qps=80, ttft_slo=0.2), ["h100-sxm"], max_gpus=8)
    msg = str(exc.value)
    assert "nearest miss" in msg and "what would help" in msg
    assert exc.value.exit_code == 3


def _gpus(qps, ttft, tpot=0.05, max_gpus=1024, approaches=("unified", "chunked", "disaggregated")):
    inp = default_inputs(qps=qps, ttft_slo=ttft, tpot_slo=tpot)
    inp.objective = "gpus"
    sr = search(inp, ["h100-sxm"], approaches, max_gpus)
    feas = [c.gpus for c in sr.best.values() if c is not None]
    return min(feas) if feas else None


@settings(max_examples=6, deadline=None)
@given(q=st.floats(1.0, 60.0), factor=st.floats(1.1, 3.0))
def test_more_qps_never_needs_fewer_gpus(q, factor):
    a, b = _gpus(q, 1.0), _gpus(q * factor, 1.0)
    assert a is not None and b is not None
    assert b >= a


@settings(max_examples=6, deadline=None)
@given(q=st.floats(1.0, 60.0), ttft=st.floats(0.3, 2.0), looser=st.floats(1.1, 4.0))
def test_a_looser_slo_never_needs_more_gpus(q, ttft, looser):
    a, b = _gpus(q, ttft), _gpus(q, ttft * looser)
    if a is not None:
        assert b is not None and b <= a


@settings(max_examples=4, deadline=None)
@given(q=st.floats(1.0, 30.0))
def test_more_gpu_headroom_never_worsens_a_feasible_answer(q):
    small, big = _gpus(q, 1.0, max_gpus=128), _gpus(q, 1.0, max_gpus=1024)
    if small is not None:
        assert big == small
