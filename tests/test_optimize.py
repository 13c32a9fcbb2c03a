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


@pytest.mark.slow
def test_what_would_help_only_offers_what_gives_a_plan():
    """Each suggestion of an exit-3 message, applied alone, gives a plan (issue 14: "what would
    help" only suggests values that make a plan feasible)."""
    import re

    from click.testing import CliRunner

    from planner.cli import cli

    runner = CliRunner()
    for base in (["recommend", "--qps", "80", "--ttft-slo", "200ms", "--max-gpus", "32"],
                 ["recommend", "--qps", "80", "--ttft-slo", "60ms", "--tpot-slo", "20ms", "--max-gpus", "64"]):
        r = runner.invoke(cli, base)
        assert r.exit_code == 3
        help_line = next(line for line in r.output.splitlines() if line.startswith("what would help"))
        tried = 0
        m = re.search(r"--max-gpus (\d+)", help_line)
        if m:
            args = base[:-1] + [m.group(1)]
            assert runner.invoke(cli, args).exit_code == 0, args
            tried += 1
        m = re.search(r"a TTFT SLO of (\d+) ms(?: and a TPOT SLO of (\d+) ms)?", help_line)
        if m:
            args = [a for a in base]
            args[args.index("--ttft-slo") + 1] = f"{m.group(1)}ms"
            if m.group(2):
                args += ["--tpot-slo", f"{m.group(2)}ms"] if "--tpot-slo" not in args else []
                if "--tpot-slo" in base:
                    args[args.index("--tpot-slo") + 1] = f"{m.group(2)}ms"
            assert runner.invoke(cli, args).exit_code == 0, args
            tried += 1
        m = re.search(r"--gpu ([\w,.-]+)\)", help_line)
        if m:
            for g in m.group(1).split(","):
                assert runner.invoke(cli, base + ["--gpu", g]).exit_code == 0, g
            tried += 1
        assert tried, help_line
