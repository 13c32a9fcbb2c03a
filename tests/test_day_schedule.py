"""Plans for a day (issue 15, items 2 and 3): the schedule's invariants, its agreement with the
optimizer period by period, the scaling constraints, the lag windows' formulas by hand, the
autoscaling thresholds by hand, and the plan document read back."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from planner import api
from planner.day.autoscale import threshold
from planner.day.document import day_document, read_day
from planner.day.schedule import (
    LagWindow,
    PeriodPlan,
    Scaling,
    _late,
    _period_attainment,
    counts_of,
    parse_instances,
    shape_of,
)
from planner.errors import InvalidRequestError, NoFeasiblePlanError
from planner.optimize import recommend

DIURNAL = "diurnal:peak=120,trough=30,peak_hour=14"


@pytest.fixture(scope="module")
def inp70():
    return api.default_inputs(qps=120.0, ttft_slo=0.2)


@pytest.fixture(scope="module")
def day70(inp70):
    return api.plan_day(inp70, api.load_profile(DIURNAL), ["h100-sxm"])


def test_every_period_meets_the_slo_and_the_day_saves(day70):
    assert day70.profile.periods == 24 and len(day70.periods) == 24
    for p in day70.periods:
        assert p.plan is not None and p.plan.meets_slo
        assert p.attainment_steady >= day70.target - 1e-9
        assert p.attainment <= p.attainment_steady + 1e-12
    st = day70.static
    assert st["gpus"] == max(p.gpus for p in day70.periods) or st["gpu_hours"] >= day70.gpu_hours
    assert day70.gpu_hours < st["gpu_hours"]  # a day with a 4x swing saves on the peak
    assert day70.gpu_hours == pytest.approx(sum(p.gpus for p in day70.periods))  # 1 h periods
    assert day70.cost == pytest.approx(sum(p.cost_per_hour for p in day70.periods))


def test_one_shape_all_day_and_sizes_follow_the_load(day70):
    shapes = {shape_of(p.deployment) for p in day70.periods}
    assert len(shapes) == 1
    order = sorted(day70.periods, key=lambda p: p.load)
    for a, b in zip(order, order[1:]):
        ca, cb = counts_of(a.deployment), counts_of(b.deployment)
        if b.load > a.load * (1 + 1e-9):
            assert all(cb[r] >= ca[r] for r in ca), (a.label, b.label)


def test_lag_windows_are_where_a_pool_grows(day70):
    K = len(day70.periods)
    for k, p in enumerate(day70.periods):
        before = counts_of(day70.periods[k - 1].deployment)  # the day repeats: 00:00 follows 23:00
        grows = any(n > before[r] for r, n in counts_of(p.deployment).items())
        assert (p.lag is not None) == grows, p.label
    assert day70.lagging and K == 24


def test_periods_agree_with_recommend(inp70, day70):
    """A period's GPUs are the fewest any approach needs on the day's shape: never fewer than
    recommend's best plan at that rate, and equal where that plan is on the day's shape."""
    from dataclasses import replace

    shape = shape_of(day70.peak.deployment)
    for k in (2, 8, 13):
        p = day70.periods[k]
        rec = recommend(replace(inp70, workload=inp70.workload.with_qps(p.load)), ["h100-sxm"], headroom=False)
        assert p.gpus >= rec.plan.total_gpus
        if shape_of(rec.plan.deployment) == shape:
            assert p.gpus == rec.plan.total_gpus


def test_scheduled_scaling_has_no_lag_and_costs_the_early_starts(inp70, day70):
    sched = api.plan_day(inp70, api.load_profile(DIURNAL), ["h100-sxm"], scaling=Scaling(mode="scheduled"))
    assert not sched.lagging
    assert sched.attainment >= day70.attainment
    assert sched.gpu_hours > day70.gpu_hours
    # the early starts: every instance added runs a scale-up time (5 min) before its period
    added = 0
    for k, p in enumerate(sched.periods):
        a, b = counts_of(sched.periods[k - 1].deployment), counts_of(p.deployment)
        added += sum(max(b[r] - a[r], 0) * q.gpus_per_instance for r, q in ((q.role, q) for q in p.deployment.pools))
    assert sched.gpu_hours - sum(p.gpus for p in sched.periods) == pytest.approx(added * 300 / 3600)


def test_approach_changes_never_cost_more(inp70, day70):
    free = api.plan_day(inp70, api.load_profile(DIURNAL), ["h100-sxm"], scaling=Scaling(allow_approach_change=True))
    assert free.gpu_hours <= day70.gpu_hours + 1e-9


def test_min_and_max_instances(inp70):
    prof = api.load_profile("diurnal:peak=60,trough=15,peak_hour=14")
    day = api.plan_day(inp70, prof, ["h100-sxm"], approaches=("disaggregated",),
                       scaling=Scaling(min_instances={"decode": 3}))
    assert all(counts_of(p.deployment)["decode"] >= 3 for p in day.periods)
    assert counts_of(day.static["deployment"])["decode"] >= 3  # the static plan keeps the same limits
    assert day.gpu_hours <= day.static["gpu_hours"]
    with pytest.raises(NoFeasiblePlanError, match="no schedule serves every period"):
        api.plan_day(inp70, prof, ["h100-sxm"], approaches=("disaggregated",),
                     scaling=Scaling(max_instances={"prefill": 2}))


def test_constraint_errors(inp70):
    prof = api.load_profile("constant:qps=10,periods=4,period=10m")
    with pytest.raises(InvalidRequestError, match="--scale-up-time: 15m is longer than a period"):
        api.plan_day(inp70, prof, ["h100-sxm"], scaling=Scaling(scale_up_s=900))
    with pytest.raises(InvalidRequestError, match="--min-instances: decode=4 is above --max-instances decode=2"):
        api.plan_day(inp70, prof, ["h100-sxm"], scaling=Scaling(min_instances={"decode": 4},
                                                                max_instances={"decode": 2}))
    with pytest.raises(InvalidRequestError, match="--min-instances: 5 is above --max-instances 3"):
        api.plan_day(inp70, prof, ["h100-sxm"], scaling=Scaling(min_instances={"all": 5}, max_instances={"all": 3}))
    assert parse_instances("prefill=2, decode=1", "--min-instances") == {"prefill": 2, "decode": 1}
    assert parse_instances("3", "--max-instances") == {"all": 3}
    for bad, want in [("gpu=2", "unknown pool 'gpu'"), ("decode=0", "from 1"), ("decode=1,decode=2", "twice")]:
        with pytest.raises(InvalidRequestError, match=want):
            parse_instances(bad, "--min-instances")


def test_a_constant_day_is_recommend_held_all_day():
    inp = api.default_inputs(qps=20.0, ttft_slo=0.5, model="llama-3.1-8b")
    day = api.plan_day(inp, api.load_profile("constant:qps=20,periods=6,period=1h"), ["h100-sxm"])
    rec = recommend(inp, ["h100-sxm"], headroom=False)
    assert {p.gpus for p in day.periods} == {rec.plan.total_gpus}
    assert not day.lagging and day.gpu_hours == pytest.approx(6 * rec.plan.total_gpus)
    assert day.static["gpu_hours"] == pytest.approx(day.gpu_hours)


# ---- the lag window's formulas, by hand -------------------------------------------------------


def test_stable_lag_window_weighs_its_share():
    pp = PeriodPlan(0, "00:00", 0.0, 3600.0, 10.0, None, SimpleNamespace(inputs=None), 8, 24.0, 0.0, 0.95)
    pp.lag = LagWindow(300.0, None, 0.60, True)
    # 300 s of 3600 at 60%, the rest at 95%
    assert _period_attainment(pp, 300.0) == pytest.approx(0.95 * (1 - 1 / 12) + 0.60 / 12)
    assert _period_attainment(pp, 0.0) == pytest.approx(0.95)


def test_fluid_backlog_by_hand():
    # lam 10/s, the lag deployment serves 8/s, the period's 15/s; TTFT slack 0.5 s; lag 60 s.
    # A wait Q / mu passes 0.5 s at t1 = 8 * 0.5 / 2 = 2 s; Q(60) = 120, under 15 * 0.5 = 7.5
    # after (120 - 7.5) / 5 = 22.5 s: late from 2 s to 82.5 s.
    assert _late(60.0, 10.0, 8.0, 15.0, 0.5) == pytest.approx(58.0 + 22.5)
    assert _late(0.0, 10.0, 8.0, 15.0, 0.5) == pytest.approx(0.0)
    assert _late(1.0, 10.0, 8.0, 15.0, 0.5) == pytest.approx(0.0)  # over before any wait is too long
    assert math.isinf(_late(60.0, 10.0, 8.0, 9.0, 0.5))  # the new sizes cannot drain it


def test_max_scale_up_time_holds_the_target(inp70, day70):
    top = day70.max_scale_up_s()
    assert top is not None and 0 < top <= 3600
    from planner.day.schedule import _period_attainment as pa

    def day_at(lag):
        w = np.array([p.requests for p in day70.periods])
        a = np.array([pa(p, lag) if p.lag is not None else p.attainment_steady for p in day70.periods])
        return float(np.sum(w * a) / np.sum(w))

    assert day_at(top) >= day70.target - 1e-9
    if top < 3600:
        assert day_at(top + 5.0) < day70.target


# ---- autoscaling thresholds, by hand --------------------------------------------------------------


def test_threshold_reproduces_proportional_schedules():
    # per-instance 10 at 1, 2, 3 instances: totals 10, 20, 30; T in [10, 15): ceil(M / T) = n
    t = threshold(np.array([10.0, 10.0, 10.0]), np.array([1.0, 2.0, 3.0]), 1, math.inf)
    assert t["exact"] and t["matched"] == 3 and 10 <= t["target"] < 15


def test_threshold_never_under_provisions_when_it_cannot_match():
    # totals 10 at 1 instance and 15 at 3: no T gives both; the largest T that never asks for
    # fewer is just under 15 / 2 = 7.5, which asks 2 for the first period (1 more)
    t = threshold(np.array([10.0, 5.0]), np.array([1.0, 3.0]), 1, math.inf)
    assert not t["exact"] and t["matched"] == 1 and t["over"] == 1 and t["extra"] == 1
    assert t["target"] == pytest.approx(7.5, rel=1e-5)


def test_policy_targets_reproduce_the_periods_they_claim(day70):
    assert set(day70.autoscaling) == {p.role for p in day70.peak.deployment.pools}
    for role, pol in day70.autoscaling.items():
        assert pol["min_instances"] == min(counts_of(p.deployment)[role] for p in day70.periods)
        assert pol["max_instances"] == max(counts_of(p.deployment)[role] for p in day70.periods)
        assert 0 < pol["matched"] <= pol["periods"] == 24
        assert pol["matched"] + pol["over"] == 24  # never fewer instances than the schedule


# ---- the document, both ways ------------------------------------------------------------------


def test_day_document_reads_back(tmp_path, day70):
    from planner import render
    from planner.plans import load_plan

    doc = render.plan_document(day70.peak.plan)
    doc["day"] = day_document(day70)
    path = tmp_path / "plan.yaml"
    path.write_text(render.to_yaml(doc))
    inputs, dep, back = load_plan(str(path))
    prof, scaling, deps, specs = read_day(back["day"], str(path), inputs, dep)
    assert deps == [p.deployment for p in day70.periods]
    assert np.allclose(prof.rate, day70.profile.rate) and prof.cyclic
    assert scaling == day70.scaling
    d = back["day"]
    assert d["gpu_hours"] == pytest.approx(day70.gpu_hours) and len(d["schedule"]) == 24
    assert d["saving"]["gpu_hours"] == pytest.approx(day70.static["gpu_hours"] - day70.gpu_hours)
    bad = dict(d, schedule=d["schedule"][:3])
    with pytest.raises(InvalidRequestError, match=r"day.schedule: must be a list of 24 periods"):
        read_day(bad, str(path), inputs, dep)
