"""The command line: help, JSON documents, acceptance numbers, exit codes and error lines."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from jsondoc import envelope_of, result_of

from planner import cli as cli_mod
from planner.cli import cli

REPO = Path(__file__).resolve().parent.parent
GPU_IDS = {"a100-80g", "h100-sxm", "h100-pcie", "h200", "b200", "l40s", "mi300x"}
LINK_IDS = {"pcie4", "pcie5", "ib-hdr", "ib-ndr", "roce-400g", "nvlink3", "nvlink4", "nvlink5", "xgmi"}
MODEL_IDS = {"llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "qwen3-32b", "qwen3-30b-a3b",
             "mixtral-8x7b", "deepseek-v3"}
DISAGG = ["estimate", "--approach", "disaggregated", "--prefill", "6xtp4", "--decode", "2xtp8",
          "--qps", "20"]
UNIFIED = ["estimate", "--approach", "unified", "--replicas", "4xtp8", "--qps", "20"]
CHUNKED = ["estimate", "--approach", "chunked", "--replicas", "4xtp8", "--qps", "20"]


def run(args, **kw):
    return CliRunner().invoke(cli, args, catch_exceptions=kw.pop("catch_exceptions", True), **kw)


def run_json(args):
    r = run(args)
    assert r.exit_code == 0, r.output
    return result_of(r.stdout)  # exactly one JSON document, nothing else on stdout


def error_lines(result) -> list[str]:
    return [ln for ln in result.output.splitlines() if ln.startswith("Error:")]


# ---- help ----------------------------------------------------------------------------------

HELP_OPTIONS = {
    None: ["--version", "--debug", "--catalog"],
    "estimate": ["--model", "--gpu", "--qps", "--isl", "--osl", "--isl-dist", "--osl-dist", "--trace",
                 "--burstiness", "--ttft-slo", "--tpot-slo", "--percentile", "--dtype", "--kv-dtype",
                 "--json", "--approach", "--replicas", "--chunk-size", "--prefill", "--decode",
                 "--link", "--kv-overlap", "--kv-transfer-dtype"],
    "simulate": ["--qps", "--approach", "--replicas", "--prefill", "--decode", "--requests",
                 "--seed", "--json", "[PLAN]"],
    "catalog": ["--json", "models|gpus|links|show"],
    "kv": ["--model", "--seq-len", "--kv-dtype", "--gpu", "--batch", "--tp", "--json"],
    "step": ["--model", "--gpu", "--tp", "--pp", "--dtype", "--kv-dtype", "--prefill", "--decode",
             "--context", "--json"],
    "validate": ["--json"],
}


@pytest.mark.parametrize("command", list(HELP_OPTIONS))
def test_help_lists_options(command):
    args = ([command] if command else []) + ["--help"]
    r = run(args)
    assert r.exit_code == 0, r.output
    assert "Usage: pdplan" in r.output
    for opt in HELP_OPTIONS[command]:
        assert opt in r.output, (command, opt)


def test_help_of_group_lists_commands():
    r = run(["--help"])
    for name in ("estimate", "simulate", "catalog", "kv", "step", "validate"):
        assert name in r.output


def test_version():
    from planner import __version__

    r = run(["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_help_imports_nothing_heavy(help_imports):
    loaded, _ = help_imports([["--help"]], ("scipy", "numpy", "rich", "yaml"))
    assert not loaded, loaded


def test_python_dash_m_planner_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "planner", "--help"], capture_output=True, text=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert out.returncode == 0 and "Usage: pdplan" in out.stdout


def test_cli_constants_match_the_library():
    """The CLI's choices come from planner.types (numpy-free, so --help stays light): the same
    names as the catalog, the serving registry, the simulator and the reference scheduler."""
    from planner import api, catalog
    from planner.serving.common import APPROACHES

    assert cli_mod.WEIGHT_DTYPES == catalog.WEIGHT_DTYPES
    assert cli_mod.KV_DTYPES == catalog.KV_DTYPES
    assert cli_mod.KV_TRANSFER_DTYPES == catalog.KV_TRANSFER_DTYPES
    assert cli_mod.APPROACHES == APPROACHES
    from planner import timeline
    from planner.sim import POLICIES

    assert timeline.APPROACHES == tuple(POLICIES) == APPROACHES  # serving, simulator, reference
    help_text = " ".join(run(["estimate", "--help"]).output.split())
    for key in ("model", "gpu", "isl", "osl"):
        assert f"[default: {api.DEFAULTS[key]}]" in help_text, key
    assert f"[default: {cli_mod.DEFAULT_CHUNK}]" in help_text


# ---- catalog -------------------------------------------------------------------------------


def test_catalog_json_lists_exactly_the_builtins():
    doc = run_json(["catalog", "--json"])
    assert list(doc) == ["models", "gpus", "links"]
    assert {m["id"] for m in doc["models"]} == MODEL_IDS
    assert {g["id"] for g in doc["gpus"]} == GPU_IDS
    assert {lk["id"] for lk in doc["links"]} == LINK_IDS
    m70 = next(m for m in doc["models"] if m["id"] == "llama-3.1-70b")
    assert m70["kv_bytes_per_token_bf16"] == 327680
    assert m70["moe"] is False and m70["mla"] is False
    assert 69e9 < m70["num_params"] < 72e9
    ds = next(m for m in doc["models"] if m["id"] == "deepseek-v3")
    assert ds["moe"] is True and ds["mla"] is True and ds["active_params"] < ds["num_params"]
    h100 = next(g for g in doc["gpus"] if g["id"] == "h100-sxm")
    for key in ("bf16_flops_per_s", "fp8_flops_per_s", "hbm_bytes", "hbm_bytes_per_s", "price_per_hour"):
        assert h100[key] > 0
    pcie4 = next(lk for lk in doc["links"] if lk["id"] == "pcie4")
    assert pcie4["bytes_per_s"] == 32e9 and pcie4["latency_s"] > 0


@pytest.mark.parametrize("table,ids", [("models", MODEL_IDS), ("gpus", GPU_IDS), ("links", LINK_IDS)])
def test_catalog_one_table(table, ids):
    doc = run_json(["catalog", table, "--json"])
    assert list(doc) == [table]
    assert {e["id"] for e in doc[table]} == ids
    text = run(["catalog", table])
    assert text.exit_code == 0
    for i in ids:
        assert i in text.output


def test_catalog_show_has_raw_fields_and_sources():
    doc = run_json(["catalog", "show", "h100-sxm", "--json"])
    assert doc["kind"] == "gpu" and doc["id"] == "h100-sxm"
    assert doc["entry"]["hbm_gb"] == 80
    assert "peak_tflops" in doc["entry"]["sources"]
    text = run(["catalog", "show", "pcie4"])
    assert text.exit_code == 0 and "sources:" in text.output and "gb_per_s: 32" in text.output


def test_catalog_show_says_which_kernel_model_a_gpu_uses():
    measured = run_json(["catalog", "show", "h200", "--json"])
    assert measured["kernel_model"].startswith("measured all-reduce tables")
    analytic = run_json(["catalog", "show", "mi300x", "--json"])
    assert analytic["kernel_model"].startswith("analytic model")
    text = run(["catalog", "show", "h100-pcie"])
    assert text.exit_code == 0 and "kernel model: analytic model" in text.output
    # A GPU without tables still plans (analytic all-reduce, borrowed constants).
    res = run(["estimate", "--model", "llama-3.1-70b", "--gpu", "mi300x", "--replicas", "2xtp4",
               "--qps", "2", "--json"])
    assert res.exit_code == 0, res.output


def test_user_catalog_overrides_builtin(tmp_path):
    data = yaml.safe_load((REPO / "hardware" / "gpus" / "h100-sxm.yaml").read_text())
    data["price_per_hour_usd"] = 9.99
    (tmp_path / "gpus").mkdir()
    (tmp_path / "gpus" / "h100-sxm.yaml").write_text(yaml.safe_dump(data))
    doc = run_json(["--catalog", str(tmp_path), "catalog", "gpus", "--json"])
    assert next(g for g in doc["gpus"] if g["id"] == "h100-sxm")["price_per_hour"] == 9.99
    r = CliRunner().invoke(cli, ["catalog", "gpus", "--json"], env={"PDPLAN_CATALOG": str(tmp_path)})
    assert next(g for g in result_of(r.stdout)["gpus"] if g["id"] == "h100-sxm")["price_per_hour"] == 9.99


# ---- kv ------------------------------------------------------------------------------------


def test_kv_acceptance():
    doc = run_json(["kv", "--model", "llama-3.1-70b", "--seq-len", "2048", "--json"])
    assert doc["bytes"] == 671088640
    assert doc["bytes_per_token"] == 327680
    assert set(doc["transfer_ms"]) == LINK_IDS
    assert 20 <= doc["transfer_ms"]["pcie4"] <= 22
    assert "decode_step_ms" not in doc


def test_kv_with_gpu_compares_with_a_decode_step():
    r = run(["kv", "--seq-len", "2k", "--gpu", "h100-sxm", "--batch", "64", "--json"])
    assert r.exit_code == 0, r.output
    doc = result_of(r.stdout)
    assert doc["decode_step_ms"] > 0
    slow = [lid for lid, t in doc["transfer_ms"].items() if t > doc["decode_step_ms"]]
    assert sorted(doc["slower_than_decode"]) == sorted(slow)
    if slow:
        assert "warning:" in r.stderr and "warning:" not in r.stdout
    text = run(["kv", "--seq-len", "2048", "--gpu", "h100-sxm", "--tp", "8"])
    assert text.exit_code == 0 and "decode step" in text.output and "pcie4" in text.output


def test_kv_fp8_halves_the_bytes():
    doc = run_json(["kv", "--seq-len", "2048", "--kv-dtype", "fp8", "--json"])
    assert doc["bytes"] == 671088640 // 2


def test_kv_reads_a_hugging_face_config(tmp_path):
    cfg = {"_name_or_path": "tiny", "hidden_size": 512, "num_attention_heads": 8,
           "num_key_value_heads": 2, "num_hidden_layers": 4, "intermediate_size": 1024,
           "vocab_size": 1000}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    doc = run_json(["kv", "--model", str(path), "--seq-len", "100", "--json"])
    assert doc["bytes_per_token"] == 2 * 4 * 2 * 64 * 2  # K and V, layers, KV heads, head dim, bf16
    assert doc["bytes"] == 100 * doc["bytes_per_token"]


# ---- step ----------------------------------------------------------------------------------


def test_step_prefill():
    doc = run_json(["step", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--tp", "8",
                    "--prefill", "2048", "--json"])
    for key in ("time_ms", "flops", "bytes", "bound", "breakdown_ms"):
        assert key in doc
    assert 50 <= doc["time_ms"] <= 400
    assert doc["bound"] in ("compute", "memory", "communication")
    assert doc["flops"] > 2 * 70e9 * 2048 * 0.9  # at least the weight GEMMs
    assert doc["breakdown_ms"] and all(v >= 0 for v in doc["breakdown_ms"].values())
    assert math.isclose(sum(doc["breakdown_ms"].values()), doc["time_ms"], rel_tol=1e-3)


def test_step_decode():
    doc = run_json(["step", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--tp", "8",
                    "--decode", "64", "--context", "2176", "--json"])
    assert 5 <= doc["time_ms"] <= 60
    assert doc["bound"] in ("compute", "memory", "communication")
    text = run(["step", "--tp", "8", "--decode", "64", "--context", "2176"])
    assert text.exit_code == 0 and "decode step" in text.output and "assumed:" in text.output


# ---- estimate ------------------------------------------------------------------------------


@pytest.mark.parametrize("args,approach", [(DISAGG, "disaggregated"), (UNIFIED, "unified"),
                                           (CHUNKED, "chunked")])
def test_estimate_json_is_one_plan_document(args, approach):
    doc = run_json(args + ["--json"])
    assert list(doc) == ["plan"]
    plan = doc["plan"]
    assert plan["approach"] == approach
    assert isinstance(plan["meets_slo"], bool)
    assert plan["metrics"]["ttft_ms"]["p90"] > 0
    for key in ("schema_version", "inputs", "approach", "total_gpus", "pools", "metrics",
                "meets_slo", "reason", "engine_hints", "catalog"):
        assert key in plan
    for key in ("mean", "p50", "p90", "p95", "p99"):
        assert key in plan["metrics"]["ttft_ms"] and key in plan["metrics"]["tpot_ms"]
    assert plan["total_gpus"] == sum(p["gpus"] for p in plan["pools"])
    assert ("chunk_size" in plan) == (approach == "chunked")
    assert ("kv_transfer" in plan) == (approach == "disaggregated")
    assert plan["inputs"]["model"] == "llama-3.1-70b" and plan["inputs"]["qps"] == 20
    assert "llama-3.1-70b" in plan["catalog"]["models"]
    assert "h100-sxm" in plan["catalog"]["gpus"]


def test_estimate_disaggregated_details():
    plan = run_json(DISAGG + ["--json"])["plan"]
    assert [p["role"] for p in plan["pools"]] == ["prefill", "decode"]
    assert plan["pools"][0] == {"role": "prefill", "gpu": "h100-sxm", "instances": 6, "tp": 4,
                                "pp": 1, "gpus": 24, "nodes": 3, "gpus_per_node": 8}
    assert plan["total_gpus"] == 40
    assert plan["engine_hints"]["prefill"]["kv_role"] == "kv_producer"
    assert plan["engine_hints"]["decode"]["kv_role"] == "kv_consumer"
    assert "--tensor-parallel-size 8" in plan["engine_hints"]["decode"]["flags"]
    kt = plan["kv_transfer"]
    assert kt["bytes_per_request"] == 671088640 and kt["overlap"] is True
    assert kt["link"] in plan["catalog"]["links"]
    over = run_json(DISAGG + ["--link", "pcie4", "--no-kv-overlap", "--kv-transfer-dtype", "fp8",
                              "--json"])["plan"]
    assert over["kv_transfer"]["link"] == "pcie4" and over["kv_transfer"]["override"] == "pcie4"
    assert over["kv_transfer"]["overlap"] is False and over["kv_transfer"]["dtype"] == "fp8"
    assert over["kv_transfer"]["bytes_per_request"] == 671088640 // 2


def test_estimate_chunked_hints():
    plan = run_json(CHUNKED + ["--chunk-size", "1k", "--json"])["plan"]
    assert plan["chunk_size"] == 1024
    flags = plan["engine_hints"]["unified"]["flags"]
    assert "--enable-chunked-prefill" in flags and "--max-num-batched-tokens 1024" in flags


def test_estimate_text_states_assumed_defaults():
    r = run(DISAGG + ["--gpu", "h100-sxm", "--tpot-slo", "40ms"])
    assert r.exit_code == 0, r.output
    assumed = next(ln for ln in r.output.splitlines() if ln.startswith("assumed:"))
    for part in ("model llama-3.1-70b", "isl 2048", "osl 256", "P90"):
        assert part in assumed
    assert "gpu" not in assumed and "TPOT" not in assumed
    for word in ("TTFT", "TPOT", "ITL max", "throughput", "utilisation", "decode batch", "KV cache",
                 "queueing", "interference", "SLO"):
        assert word in r.output


def test_overloaded_is_not_an_error():
    args = ["estimate", "--approach", "unified", "--replicas", "1xtp8", "--qps", "1000"]
    r = run(args + ["--json"])
    assert r.exit_code == 0, r.output
    plan = result_of(r.stdout)["plan"]
    assert plan["meets_slo"] is False
    assert plan["metrics"]["ttft_ms"]["p90"] is None
    assert plan["metrics"]["saturated"]
    text = run(args)
    assert text.exit_code == 0
    assert "overloaded" in text.output and plan["metrics"]["saturated"] in text.output


def test_cli_and_api_give_the_same_plan():
    from planner import api, render
    from planner.serving.common import Deployment, Pool

    inp = api.default_inputs(qps=20)
    dep = Deployment("disaggregated", (Pool("prefill", "h100-sxm", 6, 4), Pool("decode", "h100-sxm", 2, 8)))
    lib = render.plan_document(api.estimate(inp, dep))
    cli_doc = run_json(DISAGG + ["--json"])["plan"]
    cli_doc["inputs"].pop("assumed")
    assert cli_doc == lib


def test_workload_options_reach_the_plan(tmp_path):
    plan = run_json(UNIFIED + ["--isl-dist", "lognormal:mean=2048,cv=0.5", "--osl", "128",
                               "--burstiness", "1.5", "--percentile", "99", "--json"])["plan"]
    inputs = plan["inputs"]
    assert inputs["isl"] == "lognormal:mean=2048,cv=0.5" and inputs["osl"] == 128
    assert inputs["burstiness"] == 1.5 and inputs["percentile"] == 99
    trace = tmp_path / "trace.csv"
    trace.write_text("input_tokens,output_tokens\n1000,100\n3000,300\n")
    plan = run_json(UNIFIED + ["--trace", str(trace), "--json"])["plan"]
    import hashlib

    assert plan["inputs"]["trace"]["file"] == "trace.csv" and plan["inputs"]["isl"] == 2000
    assert plan["inputs"]["trace"]["sha256"] == hashlib.sha256(trace.read_bytes()).hexdigest()
    assert plan["inputs"]["trace"]["requests"] == 2


# ---- errors ---------------------------------------------------------------------------------

BAD_INPUTS = [
    (["estimate", "--model", "llama-3.1-70", "--replicas", "1xtp8", "--qps", "1"], ["--model", "llama-3.1-70b"]),
    (["estimate", "--gpu", "h100", "--replicas", "1xtp8", "--qps", "1"], ["--gpu", "h100-sxm"]),
    (["estimate", "--prefill", "6xtp", "--decode", "2xtp8", "--qps", "1"], ["--prefill"]),
    (["estimate", "--prefill", "0xtp4", "--decode", "2xtp8", "--qps", "1"], ["--prefill"]),
    (["estimate", "--prefill", "2xtp3", "--decode", "2xtp8", "--qps", "1"], ["--prefill", "heads"]),
    (["estimate", "--replicas", "1xtp8@h1000", "--qps", "1"], ["--replicas", "h1000"]),
    (["step", "--gpu", "h100-sxm", "--tp", "16", "--prefill", "2048"], ["--tp", "valid"]),
    (["step", "--model", "llama-3.1-405b", "--dtype", "bf16", "--tp", "1", "--prefill", "2048"],
     ["--tp", "does not fit"]),
    (["estimate", "--model", "llama-3.1-405b", "--dtype", "bf16", "--replicas", "1xtp1", "--qps", "1"],
     ["--replicas", "does not fit"]),
    (["kv", "--seq-len", "0"], ["--seq-len"]),
    (["estimate", "--replicas", "1xtp8", "--qps", "1", "--ttft-slo", "abc"], ["--ttft-slo"]),
    (["estimate", "--replicas", "1xtp8", "--qps", "1", "--trace", "/no/such/trace.csv"], ["--trace"]),
    (["estimate", "--prefill", "1xtp8", "--decode", "1xtp8", "--qps", "1", "--link", "pcie9"],
     ["--link", "pcie4"]),
    (["estimate", "--replicas", "1xtp8", "--qps", "1", "--isl", "2k", "--isl-dist",
      "exponential:mean=2048"], ["--isl", "--isl-dist"]),
    (["estimate", "--approach", "unified", "--prefill", "1xtp8", "--qps", "1"], ["--prefill"]),
    (["estimate", "--approach", "unified", "--qps", "1"], ["--replicas"]),
    (["estimate", "--approach", "disaggregated", "--prefill", "1xtp8", "--qps", "1"], ["--decode"]),
    (["estimate", "--approach", "unified", "--replicas", "1xtp8", "--qps", "1", "--link", "pcie4"],
     ["--link"]),
    (["estimate", "--replicas", "1xtp8"], ["--qps"]),
    (["estimate", "--replicas", "1xtp8", "--qps", "0"], ["--qps"]),
    (["estimate", "--replicas", "1xtp8", "--qps", "1", "--percentile", "80"], ["--percentile", "90"]),
    (["estimate", "--replicas", "1xtp8", "--qps", "1", "--dtype", "fp16"], ["--dtype", "fp8"]),
    (["estimate", "--replicas", "1xtp8", "--qps", "1", "--isl", "lots"], ["--isl"]),
    (["step", "--prefill", "10", "--decode", "3"], ["--prefill", "--decode"]),
    (["step", "--decode", "3"], ["--context"]),
    (["kv", "--seq-len", "10", "--batch", "4"], ["--batch", "--gpu"]),
    (["catalog", "show", "h100-sxmm"], ["h100-sxm"]),
]


@pytest.mark.parametrize("args,needles", BAD_INPUTS, ids=[" ".join(a[0][1:]) for a in BAD_INPUTS])
def test_bad_input_is_one_error_line(args, needles):
    r = run(args)
    assert r.exit_code == 2, r.output
    lines = error_lines(r)
    assert len(lines) == 1, r.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in r.output
    assert r.stdout == "" or not r.stdout.strip().startswith("{")


def test_trace_with_a_bad_row_names_the_row(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("input_tokens,output_tokens\n100,20\n200,-5\n")
    r = run(UNIFIED + ["--trace", str(trace)])
    assert r.exit_code == 2
    (line,) = error_lines(r)
    assert "--trace" in line and "row 3" in line


def test_internal_error_is_one_line_without_traceback(monkeypatch):
    from planner import api

    def boom(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(api, "estimate", boom)
    r = run(UNIFIED)
    assert r.exit_code == 1
    (line,) = error_lines(r)
    assert "internal error: ZeroDivisionError" in line and "--debug" in line
    assert "Traceback" not in r.output
    r = run(["--debug"] + UNIFIED)
    assert isinstance(r.exception, ZeroDivisionError)


def test_no_feasible_plan_exits_3(monkeypatch):
    from planner import api
    from planner.errors import NoFeasiblePlanError

    def none(*a, **k):
        raise NoFeasiblePlanError("no deployment meets P90 TTFT 10 ms; nearest: 4xtp8 at 120 ms")

    monkeypatch.setattr(api, "estimate", none)
    r = run(UNIFIED + ["--json"])
    assert r.exit_code == 3
    (line,) = error_lines(r)
    assert line.startswith("Error: no deployment meets")
    # under --json the error is also the one document on stdout (issue 14)
    doc = envelope_of(r.stdout)
    assert doc["command"] == "estimate" and "result" not in doc
    assert doc["error"] == {"message": line.removeprefix("Error: "), "exit_code": 3}


def test_main_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_mod.main(["kv", "--seq-len", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if ln.startswith("Error:")] == [
        "Error: --seq-len: must be a positive whole number, got '0'"]


# ---- validate --------------------------------------------------------------------------------


def _fake_validate():
    row = {"id": "X-1", "kind": "prefill", "model": "llama-3.1-70b", "gpu": "h100-sxm", "tp": 8,
           "batch": 1, "isl": 2048, "osl": 1, "measured": 100.0, "predicted": 110.0, "unit": "ms",
           "error": 0.1, "included": True}
    report = types.SimpleNamespace(rows=[row], summary={"count": 1, "median_abs_error": 0.1,
                                                        "by_kind": {"prefill": {"count": 1, "median_abs_error": 0.1}}})
    mod = types.ModuleType("planner.validate")
    mod.run = lambda *a, **k: report
    return mod


def test_validate_with_a_fake_module(monkeypatch):
    import planner

    fake = _fake_validate()
    monkeypatch.setitem(sys.modules, "planner.validate", fake)
    monkeypatch.setattr(planner, "validate", fake, raising=False)
    doc = run_json(["validate", "--json"])
    assert doc["rows"][0]["id"] == "X-1" and doc["rows"][0]["error"] == 0.1
    assert doc["summary"]["median_abs_error"] == 0.1
    r = run(["validate"])
    assert r.exit_code == 0 and "X-1" in r.output and "+10%" in r.output


def test_validate_real():
    pytest.importorskip("planner.validate")
    doc = run_json(["validate", "--json"])
    assert doc["rows"] and "median_abs_error" in doc["summary"]
    for key in ("id", "kind", "model", "gpu", "tp", "batch", "isl", "osl", "measured", "predicted",
                "unit", "error", "included"):
        assert key in doc["rows"][0]


# ---- simulate ------------------------------------------------------------------------------


def _fake_simulate_module():
    mod = types.ModuleType("planner.sim")
    calls = []

    def simulate(inputs, dep, requests, seed):
        calls.append((inputs, dep, requests, seed))
        pct = {"mean": 0.2, "p50": 0.18, "p90": 0.3, "p95": 0.35, "p99": 0.5}
        return types.SimpleNamespace(
            requests=requests, ttft=pct, tpot={k: v / 10 for k, v in pct.items()}, itl_max_s=0.12,
            attainment=0.97, throughput_in_tok_s=40000.0, throughput_out_tok_s=5000.0,
            stable=True, duration_s=1000.0, wall_s=1.5)

    mod.simulate = simulate
    mod.calls = calls
    return mod


def test_simulate_with_a_fake_simulator(monkeypatch):
    import planner

    fake = _fake_simulate_module()
    monkeypatch.setitem(sys.modules, "planner.sim", fake)
    monkeypatch.setattr(planner, "simulate", fake, raising=False)
    doc = run_json(["simulate"] + UNIFIED[1:] + ["--requests", "500", "--seed", "7", "--json"])
    assert list(doc) == ["plan", "simulation"]
    sim = doc["simulation"]
    assert sim["requests"] == 500 and sim["counted"] == 500 and sim["attainment"] == 0.97
    assert sim["ttft_ms"]["p90"] == 300.0 and sim["tpot_ms"]["p99"] == 50.0
    assert sim["itl_max_ms"] == 120.0 and sim["stable"] is True and sim["wall_s"] == 1.5
    assert fake.calls[-1][2:] == (500, 7)
    assert doc["plan"]["approach"] == "unified"
    r = run(["simulate"] + DISAGG[1:] + ["--requests", "100"])
    assert r.exit_code == 0, r.output
    assert "analytic" in r.output and "simulated" in r.output


def test_simulate_reads_a_plan_file(tmp_path, monkeypatch):
    pytest.importorskip("planner.plans")
    import planner

    plan = run_json(DISAGG + ["--link", "pcie4", "--json"])["plan"]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    fake = _fake_simulate_module()
    monkeypatch.setitem(sys.modules, "planner.sim", fake)
    monkeypatch.setattr(planner, "simulate", fake, raising=False)
    doc = run_json(["simulate", str(path), "--requests", "200", "--json"])
    again = doc["plan"]
    plan["inputs"].pop("assumed")
    assert again == plan  # the plan file reproduces the plan, link override included
    doc = run_json(["simulate", str(path), "--qps", "10", "--json"])
    assert doc["plan"]["inputs"]["qps"] == 10
    r = run(["simulate", str(path), "--replicas", "1xtp8"])
    assert r.exit_code == 2 and "--replicas" in error_lines(r)[0]


def test_simulate_real_simulator_small():
    pytest.importorskip("planner.sim")
    doc = run_json(["simulate"] + UNIFIED[1:] + ["--requests", "400", "--json"])
    sim = doc["simulation"]
    assert sim["requests"] == 400 and 0 < sim["counted"] <= 400
    assert 0 <= sim["attainment"] <= 1 and sim["ttft_ms"]["p50"] > 0


# ---- render ---------------------------------------------------------------------------------


def test_documents_are_json_and_yaml_safe():
    from planner import render

    doc = {"a": math.inf, "b": [math.nan, 1.5], "c": {"d": (1, 2)}}
    assert json.loads(render.to_json(doc)) == {"a": None, "b": [None, 1.5], "c": {"d": [1, 2]}}
    assert yaml.safe_load(render.to_yaml(doc)) == {"a": None, "b": [None, 1.5], "c": {"d": [1, 2]}}


def test_plan_document_round_trips_through_yaml():
    from planner import api, render
    from planner.serving.common import Deployment, Pool

    inp = api.default_inputs(qps=1000)
    plan = api.estimate(inp, Deployment("unified", (Pool("unified", "h100-sxm", 1, 8),)))
    doc = render.plan_document(plan)
    assert doc["meets_slo"] is False and doc["metrics"]["ttft_ms"]["p90"] is None
    assert yaml.safe_load(render.to_yaml(doc)) == json.loads(render.to_json(doc))
    assert list(doc)[:5] == ["schema_version", "inputs", "approach", "total_gpus", "pools"]
    assert render.to_json(doc) == render.to_json(render.plan_document(plan))  # deterministic
