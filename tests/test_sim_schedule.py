"""The simulator with given arrivals and a scaling schedule (instances that come up and go down):
the gates by hand, the same requests giving the same results as ``simulate`` when every
instance is always up, and fewer instances serving worse while they are missing."""

from __future__ import annotations

import numpy as np
import pytest

from planner.api import default_inputs
from planner.errors import InvalidRequestError
from planner.serving.common import Deployment, Pool
from planner.sim import simulate, simulate_arrivals
from planner.sim.engine import LaneGate, up_at


def test_up_at_by_hand():
    spans = [(0.0, 10.0), (20.0, 30.0)]
    assert up_at(spans, 5.0) == 5.0
    assert up_at(spans, 10.0) == 20.0  # down at 10: back at 20
    assert up_at(spans, 15.0) == 20.0
    assert up_at(spans, 29.0) == 29.0
    assert up_at(spans, 30.0) is None
    assert up_at([(0.0, float("inf"))], 1e9) == 1e9


def test_gate_by_hand():
    g = LaneGate([[(0.0, 10.0)], [(5.0, 20.0)], [(10.0, 30.0)]])
    assert g.open_lanes(0.0) == [0]
    assert g.open_lanes(7.0) == [0, 1]
    assert g.open_lanes(10.0) == [1, 2]  # lane 0 down at 10, lane 2 up at 10
    assert g.open_lanes(25.0) == [2]
    with pytest.raises(InvalidRequestError, match="without instances"):
        g.open_lanes(31.0)


DEPLOYMENTS = {
    "unified": Deployment("unified", (Pool("unified", "h100-sxm", 2, 1),)),
    "chunked": Deployment("chunked", (Pool("unified", "h100-sxm", 2, 1),), chunk_size=2048),
    "disaggregated": Deployment("disaggregated", (Pool("prefill", "h100-sxm", 2, 1), Pool("decode", "h100-sxm", 2, 1))),
}


@pytest.mark.parametrize("approach", sorted(DEPLOYMENTS))
def test_given_arrivals_match_simulate(approach):
    inp = default_inputs(qps=12.0, ttft_slo=0.5, model="llama-3.1-8b")
    dep = DEPLOYMENTS[approach]
    ref = simulate(inp, dep, 3000, 4, keep_requests=True)
    pr = ref.per_request
    for avail in (None, {p.role: [[(0.0, float("inf"))]] * p.instances for p in dep.pools}):
        got = simulate_arrivals(inp, dep, pr["arrival"], pr["isl"], pr["osl"], avail=avail, seed=4)
        assert np.array_equal(np.nan_to_num(got.per_request["ttft"]), np.nan_to_num(pr["ttft"]))
        assert np.array_equal(np.nan_to_num(got.per_request["tpot"]), np.nan_to_num(pr["tpot"]))


@pytest.mark.parametrize("approach", ["unified", "disaggregated"])
def test_missing_instances_serve_worse_until_they_come_up(approach):
    inp = default_inputs(qps=16.0, ttft_slo=0.5, model="llama-3.1-8b")
    dep = DEPLOYMENTS[approach]
    rng = np.random.default_rng(0)
    arr = np.cumsum(rng.exponential(1 / 16.0, 4000))
    isl = np.full(arr.size, 2048)
    osl = np.full(arr.size, 256)
    full = simulate_arrivals(inp, dep, arr, isl, osl)
    # the second instance of every pool comes up at t = 60 s
    late = {p.role: [[(0.0, float("inf"))], [(60.0, float("inf"))]] for p in dep.pools}
    half = simulate_arrivals(inp, dep, arr, isl, osl, avail=late)
    t_full = np.asarray(full.per_request["ttft"])
    t_half = np.asarray(half.per_request["ttft"])
    early = arr < 60
    assert np.nanmean(t_half[early]) > np.nanmean(t_full[early])
    assert np.nanmean(t_half[arr > 200]) < 2 * np.nanmean(t_full[arr > 200])  # caught up
    # a pool whose second instance goes down at 60 s takes no new request on it after
    down = {p.role: [[(0.0, float("inf"))], [(0.0, 60.0)]] for p in dep.pools}
    gone = simulate_arrivals(inp, dep, arr, isl, osl, avail=down)
    assert np.nanmean(np.asarray(gone.per_request["ttft"])[arr > 200]) > np.nanmean(t_full[arr > 200])


def test_given_arrivals_refuse_closed_loops_and_unsorted():
    inp = default_inputs(qps=2.0, model="llama-3.1-8b")
    dep = DEPLOYMENTS["unified"]
    with pytest.raises(InvalidRequestError, match="sorted"):
        simulate_arrivals(inp, dep, [1.0, 0.5], [100, 100], [10, 10])
