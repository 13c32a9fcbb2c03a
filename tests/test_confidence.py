"""Likely ranges (planner.confidence): honest coverage, the hand-derived arithmetic, invariants,
the CLI's --confidence and recommend's margin.

The coverage tests read the shipped residuals (tests/data/confidence_residuals.yaml, written by
``python benchmarks/derive_confidence.py --write``); only the slow test reruns validation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from jsondoc import result_of

from planner import confidence as conf
from planner.cli import cli
from planner.errors import CatalogError, InvalidRequestError

HONEST = (0.70, 0.90)  # the target for the share inside the 80% range


def share(pairs) -> float:
    return sum(ok for _, ok in pairs) / len(pairs)


@pytest.fixture(scope="module")
def records():
    return conf.load_residuals()


# --------------------------------------------------------------------------------------------
# Honesty: the share of measured values inside their 80% range
# --------------------------------------------------------------------------------------------


def test_cross_validated_coverage_is_honest(records):
    """Cells derived on four folds of operating points, the fifth judged: the share of measured
    values inside their 80% range on the serving set, overall and per metric family, and per
    family over all three out-of-sample sets."""
    cv = conf.cross_validated(records, folds=5, confidence=0.8)
    serving = [(r, ok) for r, ok in cv if r["set"] == "serving"]
    assert len(serving) > 500
    assert HONEST[0] <= share(serving) <= HONEST[1], share(serving)
    for fam in conf.FAMILIES:
        sel = [(r, ok) for r, ok in serving if r["family"] == fam]
        assert len(sel) >= 50, fam
        assert HONEST[0] <= share(sel) <= HONEST[1], (fam, share(sel))
        every = [(r, ok) for r, ok in cv if r["family"] == fam]
        assert HONEST[0] <= share(every) <= HONEST[1], (fam, share(every))


def test_in_sample_coverage_is_near_the_confidence(records):
    table = conf.load_table()
    inside = [conf.inside(r, table, 0.8) for r in records]
    assert 0.75 <= sum(inside) / len(inside) <= 0.85


def test_folds_keep_an_operating_point_together(records):
    by_point: dict = {}
    for r in records:
        by_point.setdefault(r["point"], set()).add(conf.fold_of(r["point"], 5))
    assert all(len(f) == 1 for f in by_point.values())
    assert len({conf.fold_of(p, 5) for p in by_point}) == 5


def test_shipped_table_is_the_residuals_table(records):
    """tests/data/confidence.yaml is build_table of the shipped residuals (regenerated together)."""
    built, shipped = conf.build_table(records), conf.load_table()
    assert built.keys() == shipped.keys()
    for k in built:
        assert built[k]["count"] == shipped[k]["count"]
        assert built[k]["q"] == pytest.approx(shipped[k]["q"], abs=1e-5)


def test_residual_sets_are_out_of_sample(records):
    assert {r["set"] for r in records} == set(conf.RESIDUAL_SETS)
    assert "measurements" not in {r["set"] for r in records}
    assert {r["family"] for r in records} == set(conf.FAMILIES)


@pytest.mark.slow
def test_shipped_ranges_stay_honest_against_a_fresh_validation_run():
    """Rerun the validation sets: the shipped cells still cover 70-90% of today's residuals (else
    rerun python benchmarks/derive_confidence.py --write)."""
    fresh = conf.residual_records()
    table = conf.load_table()
    inside = [conf.inside(r, table, 0.8) for r in fresh]
    assert HONEST[0] <= sum(inside) / len(inside) <= HONEST[1]
    assert len(fresh) == len(conf.load_residuals())


# --------------------------------------------------------------------------------------------
# The arithmetic, by hand
# --------------------------------------------------------------------------------------------


def _records(values, family="ttft", gpu="h100-sxm", regime="low"):
    return [{"family": family, "gpu": gpu, "regime": regime, "log_residual": v} for v in values]


def test_hand_derived_range():
    """Residuals -0.5, -0.4, ..., 0.5 (11): at 80% the 10% and 90% quantiles sit on order
    statistics 1 and 9 (positions 0.1 x 10 and 0.9 x 10): -0.4 and 0.4, so a 100 ms prediction
    ranges over 100 e^-0.4 = 67.032 to 100 e^0.4 = 149.182 ms. At 50% the quartiles are at
    positions 2.5 and 7.5: -0.25 and 0.25 (77.880 to 128.403 ms)."""
    vals = [round(-0.5 + 0.1 * i, 10) for i in range(11)]
    table = conf.build_table(_records(vals), min_count=11)
    assert set(table) == {"ttft/h100-sxm/low", "ttft/h100-sxm/any", "ttft/any/low", "ttft/any/any"}
    lo, hi, basis = conf.factors("ttft", "h100-sxm", "low", 0.8, table)
    assert (100 * lo, 100 * hi) == (pytest.approx(67.032, abs=1e-3), pytest.approx(149.182, abs=1e-3))
    assert basis == {"from": "validation", "gpu": "h100-sxm", "regime": "low", "count": 11}
    lo, hi, _ = conf.factors("ttft", "h100-sxm", "low", 0.5, table)
    assert (100 * lo, 100 * hi) == (pytest.approx(77.880, abs=1e-3), pytest.approx(128.403, abs=1e-3))
    # 85%: levels 0.075 and 0.925, between the stored 0.07/0.08 and 0.92/0.93; the quantile
    # function is linear there (positions 0.75 and 9.25): -0.425 and 0.425
    lo, hi, _ = conf.factors("ttft", "h100-sxm", "low", 0.85, table)
    assert math.log(lo) == pytest.approx(-0.425, abs=1e-6) and math.log(hi) == pytest.approx(0.425, abs=1e-6)


def test_range_always_holds_the_prediction():
    """Residuals 0.1..0.5 (all measured above predicted): the lower end is the prediction."""
    table = conf.build_table(_records([0.1, 0.2, 0.3, 0.4, 0.5]), min_count=5)
    lo, hi, _ = conf.factors("ttft", "h100-sxm", "low", 0.8, table)
    assert lo == 1.0 and math.log(hi) == pytest.approx(0.46)  # position 3.6: 0.4 + 0.6 x 0.1


def test_fallback_to_coarser_cells():
    table = conf.build_table(_records([0.0] * 5 + [0.2] * 5, gpu="h200", regime="mid")
                             + _records([0.1] * 20, gpu="b200", regime="low"), min_count=10)
    assert "ttft/h200/mid" in table and "ttft/b200/low" in table
    _, _, b = conf.factors("ttft", "h200", "high", 0.8, table)  # no h200/high: h200/any
    assert (b["gpu"], b["regime"]) == ("h200", "any")
    _, _, b = conf.factors("ttft", "a100-80g", "low", 0.8, table)  # no a100 cell: any/low
    assert (b["gpu"], b["regime"]) == ("any", "low")
    with pytest.raises(CatalogError):
        conf.factors("tpot", "h200", "low", 0.8, table)


def test_profile_residuals_replace_the_table():
    """Five residuals -0.2..0.2: the 10% quantile at position 0.4 is -0.2 + 0.4 x 0.1 = -0.16."""
    m = SimpleNamespace(ttft={"p90": 0.2}, tpot={"p90": 0.02}, throughput_out_tok_s=1000.0,
                        utilization={"unified": 0.3})
    own = {"ttft": [-0.2, -0.1, 0.0, 0.1, 0.2], "tpot": [0.1, 0.2]}  # tpot: too few, the table's
    r = conf.ranges(m, {"unified": "h100-sxm"}, 0.8, profile_residuals=own)
    assert r["ttft_s"]["p90"] == [pytest.approx(0.2 * math.exp(-0.16)), pytest.approx(0.2 * math.exp(0.16))]
    assert r["basis"]["ttft"] == {"from": "profile", "count": 5, "regime_of_prediction": "low"}
    assert r["basis"]["tpot"]["from"] == "validation"
    assert r["basis"]["throughput"]["regime_of_prediction"] == "open"


def test_overloaded_prediction_has_a_degenerate_range():
    m = SimpleNamespace(ttft={"p90": math.inf}, tpot={"p90": math.inf}, throughput_out_tok_s=0.0,
                        utilization={"unified": math.inf})
    r = conf.ranges(m, {"unified": "h100-sxm"})
    assert r["ttft_s"]["p90"] == [math.inf, math.inf] and r["throughput_out_tok_s"] == [0.0, 0.0]


@pytest.mark.parametrize("bad", [1.5, 1.0, 0.49, -1, "x", "0.9\u0661", math.nan, None])
def test_confidence_outside_its_bounds_is_refused(bad):
    with pytest.raises(InvalidRequestError, match="--confidence"):
        conf.check_confidence(bad)


def test_regimes():
    assert [conf.regime_of(u) for u in (0.0, 0.49, 0.5, 0.79, 0.8, 2.0, math.inf)] == [
        "low", "low", "mid", "mid", "high", "high", "high"]


def test_broken_table_is_a_catalog_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"schema_version": 99, "levels": list(conf.LEVELS), "cells": {}}))
    with pytest.raises(CatalogError, match="schema_version"):
        conf.load_table(str(p))
    p.write_text(yaml.safe_dump({"schema_version": 1, "levels": list(conf.LEVELS),
                                 "cells": {"ttft/any/any": {"count": 3, "q": [0.0]}}}))
    with pytest.raises(CatalogError, match="ttft/any/any"):
        conf.load_table(str(p))


# --------------------------------------------------------------------------------------------
# Invariants of the shipped table
# --------------------------------------------------------------------------------------------

GPUS = ("h100-sxm", "h200", "b200", "a100-80g", "l40s", "mi300x", "no-such-gpu")


@settings(max_examples=200, deadline=None)
@given(fam=st.sampled_from(conf.FAMILIES), gpu=st.sampled_from(GPUS),
       util=st.floats(0.0, 1.5), closed=st.booleans(),
       c1=st.floats(0.5, 0.99), c2=st.floats(0.5, 0.99), pred=st.floats(1e-4, 1e5))
def test_ranges_hold_the_prediction_and_widen_with_confidence(fam, gpu, util, closed, c1, c2, pred):
    c1, c2 = sorted((c1, c2))
    m = SimpleNamespace(ttft={"p90": pred}, tpot={"p90": pred}, throughput_out_tok_s=pred,
                        utilization={"unified": util})
    a = conf.ranges(m, {"unified": gpu}, c1, closed_loop=closed)
    b = conf.ranges(m, {"unified": gpu}, c2, closed_loop=closed)
    for key in ("ttft_s", "tpot_s"):
        (lo1, hi1), (lo2, hi2) = a[key]["p90"], b[key]["p90"]
        assert lo2 <= lo1 * (1 + 1e-12) and lo1 <= pred * (1 + 1e-12)
        assert pred <= hi1 * (1 + 1e-12) and hi1 <= hi2 * (1 + 1e-12)
    (lo1, hi1), (lo2, hi2) = a["throughput_out_tok_s"], b["throughput_out_tok_s"]
    assert lo2 <= lo1 * (1 + 1e-12) <= pred * (1 + 1e-9) <= hi1 * (1 + 1e-9) <= hi2 * (1 + 1e-9)


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


def run(args):
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize("value", ["1.5", "0.3", "abc", "1"])
@pytest.mark.parametrize("command", [["estimate", "--replicas", "4xtp8", "--qps", "20"],
                                     ["recommend", "--qps", "20"]])
def test_bad_confidence_is_one_error_line(command, value):
    r = run(command + ["--confidence", value])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "--confidence" in lines[0], r.output
    assert "Traceback" not in r.output


def test_estimate_json_carries_ranges_at_the_confidence_asked():
    plain = result_of(run(["estimate", "--replicas", "4xtp8", "--qps", "20", "--json"]).stdout)
    r = run(["estimate", "--replicas", "4xtp8", "--qps", "20", "--confidence", "0.95", "--json"])
    assert r.exit_code == 0, r.output
    doc = result_of(r.stdout)["plan"]
    m, m0 = doc["metrics"], plain["plan"]["metrics"]
    assert m0["range"]["confidence"] == 0.8 and m["range"]["confidence"] == 0.95
    assert doc["inputs"]["confidence"] == 0.95 and "confidence" not in plain["plan"]["inputs"]
    for fam in ("ttft_ms", "tpot_ms"):
        for k, v in m[fam].items():
            lo, hi = m["range"][fam][k]
            assert lo <= v <= hi
            assert m["range"][fam][k][1] >= m0["range"][fam][k][1]  # wider at 95% than at 80%
    lo, hi = m["range"]["throughput_tokens_per_s"]["output"]
    assert lo <= m["throughput_tokens_per_s"]["output"] <= hi


def test_estimate_table_shows_the_range():
    r = run(["estimate", "--replicas", "4xtp8", "--qps", "20"])
    assert r.exit_code == 0 and "P90 80% range" in r.output and "out 80% range" in r.output


@pytest.mark.slow
def test_recommend_margin_costs_gpus(tmp_path):
    """The acceptance call: the output says what the 90% margin costs in GPUs, the plan has at
    least the GPUs of the plain call, and its P90 range's upper ends are within the SLOs."""
    plain = result_of(run(["recommend", "--qps", "80", "--ttft-slo", "200ms", "--json"]).stdout)["plan"]
    r = run(["recommend", "--qps", "80", "--ttft-slo", "200ms", "--confidence", "0.9"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "the 90% margin costs" in text and "GPUs" in text and "without" in text
    r = run(["recommend", "--qps", "80", "--ttft-slo", "200ms", "--confidence", "0.9", "--json",
             "-o", str(tmp_path / "plan.yaml")])
    doc = result_of(r.stdout)["plan"]
    mg = doc["margin"]
    assert mg["gpus"] == doc["total_gpus"] >= mg["gpus_without"] == plain["total_gpus"]
    assert mg["extra_gpus"] == mg["gpus"] - mg["gpus_without"]
    assert f"the 90% margin costs {mg['extra_gpus']} GPU" in text
    rg = doc["metrics"]["range"]
    assert rg["confidence"] == 0.9 and doc["meets_slo"]
    assert rg["ttft_ms"]["p90"][1] <= 200 * (1 + 1e-6) and rg["tpot_ms"]["p90"][1] <= 50 * (1 + 1e-6)
    # the plan file keeps the confidence and its ranges; evaluate reads them back
    saved = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    assert saved["inputs"]["confidence"] == 0.9 and saved["margin"] == mg
    ev = run(["evaluate", str(tmp_path / "plan.yaml"), "--json"])
    assert ev.exit_code == 0, ev.output
    assert result_of(ev.stdout)["plan"]["metrics"]["range"] == rg


def test_margin_is_free_where_the_plain_plan_already_holds():
    """A loose SLO: the plain plan's upper ends are within it, so the margin costs nothing."""
    from planner import api
    from planner.optimize import recommend

    inp = api.default_inputs(qps=2, ttft_slo=30.0, tpot_slo=1.0)
    inp.confidence = 0.9
    rec = recommend(inp, ["h100-sxm"], headroom=False)
    assert rec.plan.margin["gpus"] == rec.plan.margin["gpus_without"]


def test_plan_file_with_a_bad_confidence_names_the_key(tmp_path):
    out = tmp_path / "plan.yaml"
    assert run(["recommend", "--qps", "20", "-o", str(out)]).exit_code == 0
    doc = yaml.safe_load(out.read_text())
    doc["inputs"]["confidence"] = 2
    out.write_text(yaml.safe_dump(doc))
    r = run(["evaluate", str(out)])
    assert r.exit_code == 2
    (line,) = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert str(out) in line and "inputs.confidence" in line
