"""pdplan calibrate: the fit of the calibration constants, profiles, --profile everywhere."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from jsondoc import result_of

from planner.calibrate.fit import Setup, fit, observations, predict_result
from planner.calibrate.readers import BenchResult
from planner.catalog import load_catalog
from planner.cli import cli
from planner.perf import Calibration

DATA = Path(__file__).parent / "data" / "calibration"
SWEEP = sorted(str(p) for p in DATA.glob("vllm_bench_*.json"))


def result(qps=None, concurrency=None, isl=467, osl=256, metrics=None, row=1):
    return BenchResult(path="synthetic", row=row, format="csv", model=None, engine=None,
                       engine_version=None, gpu=None, tp=None, qps=qps, concurrency=concurrency,
                       isl=isl, osl=osl, completed=500, failed=0, duration_s=None,
                       metrics=metrics or {}, per_request=None, date=None, sha256="0" * 64)


def setup_8b(cat=None):
    cat = cat or load_catalog()
    return Setup(cat, cat.models["llama-3.1-8b"], "h100-sxm", tp=1, engine=cat.engines["vllm"])


def synthetic(setup, cal, loads):
    """Results the serving model itself gives under ``cal`` (what a stack with those constants
    would measure), mean TTFT and TPOT at each load."""
    out = []
    for i, (kind, x, isl) in enumerate(loads):
        r = result(qps=x if kind == "qps" else None, concurrency=x if kind == "c" else None, isl=isl, row=i + 1)
        p = predict_result(setup, r, cal)
        out.append(replace(r, metrics={"ttft_s": {"mean": p[("ttft_s", "mean")]},
                                       "tpot_s": {"mean": p[("tpot_s", "mean")]}}))
    return out


@pytest.mark.slow
def test_the_fit_recovers_constants_it_generated_the_data_with():
    """Measurements made by the model itself under known constants: the fit finds them again
    (within 3%), and the calibrated predictions match to a fraction of a percent."""
    s = setup_8b()
    truth = Calibration(compute=0.8, memory=0.85, request_s=0.006)
    data = synthetic(s, truth, [("c", 4, 467), ("qps", 1, 467), ("qps", 4, 1500), ("qps", 5, 3000)])
    rep = fit(data, s, constants=["compute", "memory", "request_ms"], loo=False)
    assert rep.values["compute"] == pytest.approx(0.8, rel=0.03)
    assert rep.values["memory"] == pytest.approx(0.85, rel=0.03)
    assert rep.values["request_ms"] == pytest.approx(6.0, rel=0.05)
    assert rep.in_sample["all"]["median_abs_error"] < 0.005
    assert rep.uncalibrated["all"]["median_abs_error"] > 0.1


@pytest.mark.slow
def test_a_constant_the_data_cannot_pin_is_refused_with_what_would_pin_it():
    s = setup_8b()
    data = synthetic(s, Calibration(compute=0.9), [("qps", 2, 467), ("qps", 4, 467), ("qps", 8, 467)])
    rep = fit(data, s, loo=False)
    names = {r["name"] for r in rep.refused}
    assert "comm" in names  # tp 1: no all-reduce
    comm = next(r for r in rep.refused if r["name"] == "comm")
    assert "tp > 1" in comm["hint"]
    assert rep.values["comm"] == 1.0
    # what is refused keeps its catalog value
    for r in rep.refused:
        assert rep.values[r["name"]] == pytest.approx({"overhead_ms": 0.5, "request_ms": 0.0}.get(r["name"], 1.0))


def test_overloaded_runs_are_left_out():
    s = setup_8b()
    good = synthetic(s, None, [("qps", 2, 467), ("qps", 4, 467), ("qps", 6, 467)])
    bad = result(qps=100.0, metrics={"ttft_s": {"mean": 5.0}, "request_s": 20.0}, row=9)
    rep = fit(good + [bad], s, constants=["compute"], loo=False)
    assert [r.row for r in rep.excluded] == [9]
    assert all(o.result.row != 9 for o in rep.observations)


def test_too_few_statistics_is_an_error():
    from planner.errors import InvalidRequestError

    s = setup_8b()
    one = synthetic(s, None, [("qps", 2, 467)])
    with pytest.raises(InvalidRequestError, match="at least 2 runs"):
        fit(one, s)
    two = synthetic(s, None, [("qps", 2, 467), ("qps", 4, 467)])
    with pytest.raises(InvalidRequestError, match="statistics"):
        fit(two, s, constants=["compute", "memory", "request_ms", "overhead_ms"])


@pytest.mark.slow
def test_calibrate_acceptance(tmp_path):
    """The issue's acceptance: the fit table, the profile file, estimate --profile using it and
    the plan's profile key naming it."""
    runner = CliRunner()
    out = tmp_path / "p.yaml"
    r = runner.invoke(cli, ["calibrate", *SWEEP, "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--tp", "1",
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "calibration constants" in r.output and "leave-one-out" in r.output and "wrote" in r.output
    prof = yaml.safe_load(out.read_text())
    assert prof["kind"] == "calibration_profile" and prof["model"] == "llama-3.1-8b"
    assert any(c["fitted"] for c in prof["constants"].values())
    assert {d["sha256"] for d in prof["data"]} and len(prof["data"]) == len(SWEEP)
    # uncalibrated vs calibrated on the profile's own runs
    assert prof["errors"]["in_sample"]["all"]["median_abs_error"] < 0.5 * prof["errors"]["uncalibrated"]["all"][
        "median_abs_error"]
    base = ["estimate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--approach", "chunked", "--replicas",
            "1xtp1", "--qps", "4", "--isl", "467", "--osl", "256", "--json"]

    plain = result_of(runner.invoke(cli, base).output)["plan"]
    cal = result_of(runner.invoke(cli, base + ["--profile", str(out)]).output)["plan"]
    assert "profile" not in plain
    assert cal["profile"]["path"] == str(out) and cal["profile"]["constants"]
    # the published mean TTFT at 4 QPS is 24 ms: calibrated within 10%, uncalibrated not
    assert abs(cal["metrics"]["ttft_ms"]["mean"] / 24.0 - 1) < 0.10
    assert abs(plain["metrics"]["ttft_ms"]["mean"] / 24.0 - 1) > 0.20
    # a second write needs --force
    r2 = runner.invoke(cli, ["calibrate", *SWEEP, "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "-o", str(out),
                             "--no-loo"])
    assert r2.exit_code == 2 and "--force" in r2.output


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("prof") / "p.yaml"
    r = CliRunner().invoke(cli, ["calibrate", *SWEEP, "--gpu", "h100-sxm", "--model", "llama-3.1-8b",
                                 "--no-loo", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_a_profile_for_another_model_or_gpu_needs_force(profile_file):
    runner = CliRunner()
    args = ["estimate", "--approach", "chunked", "--replicas", "1xtp4", "--qps", "2", "--profile", str(profile_file)]
    r = runner.invoke(cli, args + ["--model", "llama-3.1-70b", "--gpu", "h100-sxm"])
    assert r.exit_code == 2 and r.output.count("Error:") == 1 and "llama-3.1-8b" in r.output and "--force" in r.output
    r = runner.invoke(cli, ["estimate", "--approach", "chunked", "--replicas", "1xtp1", "--qps", "2", "--model",
                            "llama-3.1-8b", "--gpu", "h200", "--profile", str(profile_file)])
    assert r.exit_code == 2 and "h100-sxm" in r.output
    r = runner.invoke(cli, ["estimate", "--approach", "chunked", "--replicas", "1xtp1", "--qps", "2", "--model",
                            "llama-3.1-8b", "--gpu", "h200", "--profile", str(profile_file), "--force"])
    assert r.exit_code == 0, r.output


def test_plans_carry_the_profile_and_evaluate_applies_it(profile_file, tmp_path):

    runner = CliRunner()
    plan = tmp_path / "plan.yaml"
    r = runner.invoke(cli, ["recommend", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--qps", "20", "--isl",
                            "467", "--osl", "256", "--ttft-slo", "200ms", "--profile", str(profile_file), "-o",
                            str(plan)])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(plan.read_text())
    assert doc["profile"]["path"] == str(profile_file)
    ev = result_of(runner.invoke(cli, ["evaluate", str(plan), "--json"]).output)
    ev = ev.get("plan", ev)
    assert ev["profile"]["constants"] == doc["profile"]["constants"]
    assert ev["metrics"]["ttft_ms"]["p90"] == pytest.approx(doc["metrics"]["ttft_ms"]["p90"], rel=1e-6)


def test_validate_profile_shows_the_runs_with_and_without(profile_file):

    r = CliRunner().invoke(cli, ["validate", "--profile", str(profile_file), "--json"])
    assert r.exit_code == 0, r.output
    s = result_of(r.output)["summary"]
    assert s["by_source_kind"]["with profile"]["median_abs_error"] < s["by_source_kind"]["without profile"][
        "median_abs_error"]


@pytest.mark.parametrize("text,msg", [
    ("kind: plan\n", "not a calibration profile"),
    ("kind: calibration_profile\nschema_version: 1\nmodel: llama-3.1-8b\ngpu: h100-sxm\nengine: vllm\ntp: 1\n"
     "constants: {compute: {value: 9.0, fitted: true}}\n", "constants.compute.value"),
    ("kind: calibration_profile\nschema_version: 1\nmodel: llama-3.1-8b\ngpu: h100-sxm\nengine: vllm\ntp: 1\n"
     "constants: {speed: {value: 1.0}}\n", "constants.speed: unknown"),
    ("[1, 2", "--profile"),
])
def test_a_bad_profile_is_one_error_line(tmp_path, text, msg):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    r = CliRunner().invoke(cli, ["estimate", "--model", "llama-3.1-8b", "--approach", "chunked", "--replicas",
                                 "1xtp1", "--qps", "2", "--profile", str(p)])
    assert r.exit_code == 2 and r.output.count("Error:") == 1 and msg in r.output, r.output


def test_calibrate_bad_input(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["calibrate", *SWEEP, "--gpu", "h100-sxm", "--model", "llama-3.1-70b", "--tp", "4"])
    assert r.exit_code == 2 and "not --model llama-3.1-70b" in r.output
    r = runner.invoke(cli, ["calibrate", *SWEEP, "--gpu", "h100-sxm", "--fit", "speed"])
    assert r.exit_code == 2 and "--fit" in r.output and "compute" in r.output
    r = runner.invoke(cli, ["calibrate", SWEEP[0], "--gpu", "h100-sxm", "--model", "llama-3.1-8b"])
    assert r.exit_code == 2 and "at least 2 runs" in r.output
    r = runner.invoke(cli, ["calibrate", *SWEEP, "--model", "llama-3.1-8b"])
    assert r.exit_code == 2 and "--gpu" in r.output


def _sweep_results(points):
    out = []
    for i, e in enumerate(points):
        m, met = e["metrics"], {}
        if m.get("ttft_ms_mean"):
            met["ttft_s"] = {"mean": m["ttft_ms_mean"] / 1e3}
        if m.get("itl_ms_mean"):
            met["itl_s"] = {"mean": m["itl_ms_mean"] / 1e3}
        if m.get("req_s"):
            met["request_s"] = float(m["req_s"])
        out.append(result(qps=float(e["qps"]), isl=e["isl"], osl=e["osl"], metrics=met, row=i + 1))
    return out


@pytest.mark.slow
def test_calibrating_on_half_a_published_sweep_predicts_the_other_half():
    """The issue's target, on TensorRT-LLM 0.14's published online sweeps (tests/data/serving.yaml,
    TRTPO014: Llama-3.1-8B and 70B on H100 SXM and H200, three length mixes, QPS 2-32): fit on
    the 1st, 3rd and 5th rates, predict the 2nd and 4th. Measured: median over the 12 sweeps 29.6%
    uncalibrated, 6.9% calibrated (the 70B 467/256 sweeps get worse: the two low-rate runs left
    after the overloaded ones pin slower constants that call the 16-QPS run unstable)."""
    cat = load_catalog()
    data = yaml.safe_load((Path(__file__).parent / "data" / "serving.yaml").read_text())
    sweeps: dict = {}
    for e in data:
        if e["id"].startswith("TRTPO014") and e.get("qps"):
            sweeps.setdefault((e["model"], e["gpu"], e["tp"], e["isl"], e["osl"]), []).append(e)
    before, after = [], []
    for (model, gpu, tp, _, _), pts in sweeps.items():
        pts.sort(key=lambda e: e["qps"])
        rs = _sweep_results(pts)
        # (TensorRT engines on the C++ executor: no overlap scheduler, as the rows' settings say)
        s = Setup(cat, cat.models[model], gpu, tp=tp, dtype="bf16",
                  engine=replace(cat.engines["trtllm"], overlap_schedule=False))
        rep = fit(rs[0::2], s, loo=False)
        held = observations(rs[1::2])
        for cal, sink in ((None, before), (rep.values, after)):
            from planner.calibrate.fit import _residuals, calibration_of

            lr = _residuals(s, held, None if cal is None else calibration_of({k: v for k, v in cal.items()
                                                                                if k in rep.fitted}))
            sink.append(float(np.median(np.abs(np.expm1(lr)))))
    b, a = float(np.median(before)), float(np.median(after))
    assert a <= 0.10, (b, a)
    assert a <= 0.5 * b, (b, a)
    assert math.isfinite(b)
