"""The day on the command line (issue 15's acceptance): recommend --load-profile prints the
per-hour table, GPU-hours per day and the saving against static peak provisioning; simulate
PLAN --load-profile reports attainment per period; whatif --vary peak; exit codes and one
Error: line for bad input; the CLI and the API give the same plan."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from jsondoc import result_of

from planner import api
from planner.cli import cli

DIURNAL = "diurnal:peak=120,trough=30,peak_hour=14"
SHORT = "diurnal:peak=40,trough=10,peak_hour=12,periods=24,period=2m"
SMALL = ["--model", "llama-3.1-8b", "--ttft-slo", "500ms"]


def run(args):
    return CliRunner().invoke(cli, args)


def one_error(r, code=2) -> str:
    assert r.exit_code == code, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("Error: ") and "Traceback" not in r.output, r.output
    if code == 2:
        assert len(lines) == 1, r.output
    return lines[0]


def test_acceptance_recommend_prints_the_day():
    r = run(["recommend", "--load-profile", DIURNAL, "--ttft-slo", "200ms"])
    assert r.exit_code == 0, r.output
    out = r.output
    for h in range(24):
        assert f"{h:02d}:00" in out
    assert "GPU-hours per day" in out and "static peak provisioning" in out and "saves" in out
    assert "predicted attainment over the day" in out and "scale-up time 5m" in out  # assumed


def test_json_is_one_document_and_the_api_agrees():
    r = run(["recommend", "--load-profile", DIURNAL, "--ttft-slo", "200ms", "--json"])
    assert r.exit_code == 0, r.output
    doc = result_of(r.stdout)
    day = doc["plan"]["day"]
    assert len(day["schedule"]) == 24 and day["saving"]["gpu_hours"] > 0
    inp = api.default_inputs(qps=120.0, ttft_slo=0.2)
    ref = api.plan_day(inp, api.load_profile(DIURNAL), ["h100-sxm"])
    assert day["gpu_hours"] == pytest.approx(ref.gpu_hours)
    assert [p["gpus"] for p in day["schedule"]] == [p.gpus for p in ref.periods]
    assert doc["plan"]["total_gpus"] == ref.peak.gpus


@pytest.mark.slow
def test_plan_file_then_simulate_reports_every_period(tmp_path):
    plan = tmp_path / "day.yaml"
    r = run(["recommend", *SMALL, "--load-profile", SHORT, "--scale-up-time", "30s", "-o", str(plan)])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(plan.read_text())
    assert doc["day"]["scaling"]["scale_up_s"] == 30 and len(doc["day"]["schedule"]) == 24
    r = run(["simulate", str(plan), "--load-profile", SHORT, "--requests", "2000"])
    assert r.exit_code == 0, r.output
    assert "predicted" in r.output and "simulated" in r.output and "attainment over the day" in r.output
    assert all(f"00:{m:02d}" in r.output for m in range(0, 48, 2))
    r = run(["simulate", str(plan), "--load-profile", SHORT, "--requests", "2000", "--json"])
    sim = result_of(r.stdout)["day_simulation"]
    assert len(sim["periods"]) == 24 and 0 <= sim["attainment"]["simulated"] <= 1
    # a profile with other periods than the plan's schedule
    one_error(run(["simulate", str(plan), "--load-profile", "constant:qps=5,periods=4,period=2m"]))
    # the export carries the schedule's autoscaling
    out = tmp_path / "k8s"
    r = run(["export", str(plan), "--target", "k8s", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "kind: ScaledObject" in "".join(p.read_text() for p in out.iterdir())


def test_simulate_a_deployment_over_a_profile():
    r = run(["simulate", "--approach", "unified", "--replicas", "2xtp1", *SMALL[:2],
             "--load-profile", "constant:qps=5,periods=2,period=2m", "--requests", "500"])
    assert r.exit_code == 0, r.output
    assert "00:00" in r.output and "00:02" in r.output


@pytest.mark.slow
def test_whatif_vary_peak():
    r = run(["whatif", *SMALL, "--vary", "peak=20,40", "--load-profile", "diurnal:peak=40,trough=10"])
    assert r.exit_code == 0, r.output
    assert "GPU-h" in r.output and "saving" in r.output
    rows = [ln for ln in r.output.splitlines() if ln.strip().startswith(("20 ", "40 "))]
    assert len(rows) == 2
    one_error(run(["whatif", "--vary", "peak=20,40", "--vary", "qps=1,2", "--load-profile", "constant:qps=5"]))
    one_error(run(["whatif", "--vary", "peak=20,40", "--qps", "3"]))


@pytest.mark.parametrize("args,want", [
    (["--qps", "10"], "--qps: not with --load-profile"),
    (["--verify"], "--verify: not with --load-profile"),
    (["--scale-up-time", "2h"], "--scale-up-time: 2h is longer than a period"),
    (["--scale-up-time", "300"], "--scale-up-time: cannot read '300' as a span of time"),
    (["--min-instances", "decode=3", "--max-instances", "decode=2"], "--min-instances: decode=3 is above"),
    (["--min-instances", "gpu=3"], "--min-instances: unknown pool 'gpu'"),
    (["--profile-period", "5m"], "--profile-period: only for a trace file"),
    (["--confidence", "0.9"], "--confidence: not with --load-profile yet"),
])
def test_bad_day_options_exit_2(args, want):
    r = run(["recommend", "--load-profile", "constant:qps=5,periods=2", *SMALL, *args])
    assert want in one_error(r)


def test_day_options_need_a_profile():
    for args in (["--scale-up-time", "5m"], ["--min-instances", "2"], ["--scaling", "scheduled"],
                 ["--allow-approach-change"]):
        assert "only with --load-profile" in one_error(run(["recommend", "--qps", "5", *SMALL, *args]))
    assert "only with --load-profile" in one_error(run(["simulate", "--approach", "unified", "--replicas",
                                                        "1xtp1", "--qps", "1", "--profile-period", "5m"]))


def test_no_schedule_is_exit_3():
    r = run(["recommend", "--load-profile", "constant:qps=300,periods=2", *SMALL, "--max-instances", "1",
             "--approach", "unified"])
    assert "no schedule serves every period" in one_error(r, 3)


def test_plot_file(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "day.png"
    r = run(["recommend", "--load-profile", "constant:qps=5,periods=3", *SMALL, "--plot-file", str(png)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    r = run(["recommend", "--load-profile", "constant:qps=5,periods=3", *SMALL, "--plot-file", str(png)])
    assert "--plot-file" in one_error(r)  # not replaced without --force
