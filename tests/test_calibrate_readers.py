"""Benchmark-result readers (planner.calibrate.readers): every format read with its values
converted by hand, the format told from content, and one clear error for every bad input.

The checked-in files are described in tests/data/calibration/README.md (sources and schemas)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.calibrate import FORMATS, BenchResult, read_results
from planner.calibrate.readers import CSV_COLUMNS, detect_format
from planner.errors import InvalidRequestError

DATA = Path(__file__).parent / "data" / "calibration"


def one(path) -> BenchResult:
    rs = read_results([path])
    assert len(rs) == 1
    return rs[0]


# --------------------------------------------------------------------------------------------
# Each format, values checked by hand against the file
# --------------------------------------------------------------------------------------------


def test_vllm_sweep_reads_as_four_open_loop_points():
    rs = read_results(sorted(DATA.glob("vllm_bench_*.json")))
    assert [r.qps for r in rs] == [16.0, 2.0, 4.0, 8.0]  # sorted by file name
    r = next(r for r in rs if r.qps == 16.0)
    assert r.format == "vllm" and r.row == 1
    assert r.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert r.concurrency is None
    assert r.isl == pytest.approx(233500 / 500) and r.osl == pytest.approx(128000 / 500)
    assert (r.completed, r.failed) == (500, 0)  # num_prompts 500 - completed 500
    assert r.metrics == {"ttft_s": {"mean": pytest.approx(0.030)},
                         "itl_s": {"mean": pytest.approx(0.011)},
                         "output_tok_s": 3765.0, "request_s": 15.0}
    assert (r.engine, r.engine_version, r.gpu, r.tp) == (None, None, None, None)
    assert r.duration_s is None and r.date is None and r.per_request is None
    assert len(r.sha256) == 64


def test_vllm_detailed_run_per_request_and_percentiles():
    r = one(DATA / "vllm_detailed_lambda_h100.json")
    assert r.qps == math.inf and r.concurrency is None  # request_rate "inf", no cap
    assert r.isl == pytest.approx(136.9) and r.osl == pytest.approx(44.2)  # 1369/10, 442/10
    assert r.date == "2024-09-07T08:26:34"  # "20240907-082634"
    assert r.duration_s == pytest.approx(1.0679055179934949)
    ttft = r.metrics["ttft_s"]
    assert ttft["mean"] == pytest.approx(0.04416175780061167)
    assert ttft["p50"] == pytest.approx(0.06247698800143553)  # median_ttft_ms
    assert ttft["p99"] == pytest.approx(0.06457043718444766)
    assert "p90" not in ttft  # not stated
    assert r.metrics["e2e_s"]["mean"] == pytest.approx(0.29035341650014743)  # mean_latency_ms
    per = r.per_request
    assert per["input_lens"][:3] == [13, 25, 27] and len(per["ttft_s"]) == 10
    assert per["itl_s"][8] == [pytest.approx(0.04695434599125292)]


def test_sglang_jsonl_one_result_per_line_and_infinity():
    rs = read_results([DATA / "sglang_bench.jsonl"])
    assert [(r.row, r.format, r.qps) for r in rs] == [(1, "sglang", 8.0), (2, "sglang", math.inf)]
    assert rs[0].model is None  # SGLang 0.5.3 writes no model
    assert rs[1].metrics["ttft_s"] == {"mean": pytest.approx(3.335)}
    assert rs[1].metrics["itl_s"] == {"mean": pytest.approx(0.039)}
    assert rs[1].isl == 467.0 and rs[1].osl == 256.0


def test_genai_perf():
    r = one(DATA / "genai_perf_profile_export.json")
    assert r.format == "genai-perf" and r.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert (r.qps, r.concurrency) == (4.0, None)
    assert (r.isl, r.osl, r.completed, r.failed) == (467.0, 256.0, 500, 0)
    # genai-perf's inter_token_latency is per request (latency - TTFT) / (OSL - 1): TPOT
    assert r.metrics == {"ttft_s": {"mean": pytest.approx(0.024)},
                         "tpot_s": {"mean": pytest.approx(0.009)},
                         "output_tok_s": 929.0, "request_s": 4.0}


def test_aiperf():
    r = one(DATA / "aiperf_profile_export.json")
    assert r.format == "aiperf" and r.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert (r.qps, r.concurrency) == (16.0, None)
    assert r.metrics["ttft_s"] == {"mean": pytest.approx(0.030)}
    assert r.metrics["tpot_s"] == {"mean": pytest.approx(0.011)}


def test_guidellm_one_result_per_benchmark():
    rs = read_results([DATA / "guidellm_report.json"])
    assert [(r.row, r.qps, r.concurrency) for r in rs] == [(1, 2.0, None), (2, 32.0, None)]
    r = rs[1]
    assert r.format == "guidellm" and r.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert (r.isl, r.osl, r.completed, r.failed) == (467.0, 256.0, 500, 0)
    assert r.metrics == {"ttft_s": {"mean": pytest.approx(0.050)},
                         "tpot_s": {"mean": pytest.approx(0.019)},
                         "output_tok_s": 6774.0, "request_s": 26.0}


def test_csv_states_hardware_and_engine():
    rs = read_results([DATA / "results.csv"])
    assert [r.row for r in rs] == [1, 2, 3, 4, 5, 6]
    r = rs[4]
    assert (r.model, r.gpu, r.tp, r.engine, r.engine_version) == (
        "meta-llama/Llama-3.1-70B-Instruct", "h100-sxm", 4, "trtllm", "0.14.0")
    assert r.metrics["ttft_s"] == {"mean": pytest.approx(0.062)}
    assert r.metrics["itl_s"] == {"mean": pytest.approx(0.021)}
    assert rs[5].qps == math.inf and rs[5].concurrency is None


def test_guidellm_strategies_and_percentiles(tmp_path):
    def bench(strategy):
        return {"config": {"strategy": strategy},
                "scheduler_metrics": {"start_time": 1751292000.0, "measure_start_time": 10.0,
                                      "measure_end_time": 70.0},
                "metrics": {"request_totals": {"successful": 90, "errored": 10},
                            "prompt_token_count": {"successful": {"mean": 1000}},
                            "output_token_count": {"successful": {"mean": 100}},
                            "time_to_first_token_ms": {"successful": {
                                "mean": 50, "median": 40,
                                "percentiles": {"p50": 41, "p90": 90, "p99": 150}}},
                            "request_latency": {"successful": {"mean": 1.5}}}}
    p = tmp_path / "g.json"
    p.write_text(json.dumps({"benchmarks": [
        bench({"type_": "synchronous"}), bench({"type_": "concurrent", "streams": 8}),
        bench({"type_": "throughput", "max_concurrency": 64}),
        bench({"type_": "poisson", "rate": 3.5})]}))
    rs = read_results([p])
    assert [(r.qps, r.concurrency) for r in rs] == [(None, 1), (None, 8), (math.inf, 64),
                                                   (3.5, None)]
    r = rs[0]
    assert r.metrics["ttft_s"] == {"mean": 0.05, "p50": 0.04, "p90": 0.09, "p99": 0.15}
    assert r.metrics["e2e_s"] == {"mean": 1.5}  # request_latency is in seconds
    assert (r.completed, r.failed, r.duration_s) == (90, 10, 60.0)
    assert r.date == "2025-06-30T14:00:00+00:00"


def test_vllm_closed_loop_and_capped_open_loop(tmp_path):
    base = {"model_id": "m", "completed": 10, "total_input_tokens": 100,
            "total_output_tokens": 50}
    for rate, cap, want in (("inf", 16, (None, 16)), (4.0, 16, (4.0, 16)), (4, None, (4.0, None))):
        p = tmp_path / "v.json"
        p.write_text(json.dumps({**base, "request_rate": rate, "max_concurrency": cap}))
        r = one(p)
        assert (r.qps, r.concurrency) == want


def test_aiperf_concurrency_phase_and_units(tmp_path):
    obj = {"aiperf_version": "0.13.0",
           "request_count": {"unit": "requests", "avg": 200},
           "error_request_count": {"unit": "requests", "avg": 3},
           "benchmark_duration": {"unit": "sec", "avg": 42.0},
           "input_sequence_length": {"unit": "tokens", "avg": 1024},
           "output_sequence_length": {"unit": "tokens", "avg": 128},
           "time_to_first_token": {"unit": "ms", "avg": 80, "p50": 70, "p90": 120, "p99": 200,
                                   "p25": 60, "std": 5},
           "inter_chunk_latency": {"unit": "ns", "avg": 9e6},
           "start_time": "2025-07-01T10:00:00",
           "input_config": {"models": {"items": [{"name": "org/model"}]},
                            "phases": [{"name": "warmup", "kind": "warmup", "type": "concurrency",
                                        "concurrency": 2},
                                       {"name": "profiling", "type": "concurrency",
                                        "concurrency": 32}]}}
    p = tmp_path / "profile_export_aiperf.json"
    p.write_text(json.dumps(obj))
    r = one(p)
    assert (r.qps, r.concurrency, r.completed, r.failed) == (None, 32, 200, 3)
    assert r.duration_s == 42.0 and r.date == "2025-07-01T10:00:00"
    assert r.metrics["ttft_s"] == {"mean": 0.08, "p50": 0.07, "p90": 0.12, "p99": 0.2}
    assert r.metrics["itl_s"] == {"mean": pytest.approx(0.009)}


# --------------------------------------------------------------------------------------------
# Format detection by content
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,fmt", [
    ("vllm_bench_qps2.json", "vllm"), ("vllm_detailed_lambda_h100.json", "vllm"),
    ("sglang_bench.jsonl", "sglang"), ("genai_perf_profile_export.json", "genai-perf"),
    ("aiperf_profile_export.json", "aiperf"), ("guidellm_report.json", "guidellm"),
    ("results.csv", "csv")])
def test_detect_format_from_content(name, fmt, tmp_path):
    text = (DATA / name).read_text()
    assert detect_format(text, name) == fmt
    renamed = tmp_path / "result.txt"  # the extension plays no part
    renamed.write_text(text)
    assert {r.format for r in read_results([renamed])} == {fmt}


def test_forced_format_and_unknown_format_name():
    assert one(DATA / "vllm_bench_qps2.json").format == "vllm"
    assert read_results([DATA / "vllm_bench_qps2.json"], fmt="sglang")[0].format == "sglang"
    with pytest.raises(InvalidRequestError, match="unknown result format 'vlm'.*'vllm'"):
        read_results([DATA / "vllm_bench_qps2.json"], fmt="vlm")


def test_formats_and_csv_columns_documented():
    doc = (Path(__file__).parents[1] / "docs" / "calibrate.md").read_text()
    assert FORMATS == ("vllm", "sglang", "aiperf", "genai-perf", "guidellm", "csv")
    for col in CSV_COLUMNS:
        assert f"`{col}`" in doc, col


# --------------------------------------------------------------------------------------------
# Bad input: one InvalidRequestError naming the file (and row / key)
# --------------------------------------------------------------------------------------------

VLLM = {"model_id": "m", "request_rate": 2.0, "completed": 10, "total_input_tokens": 100,
        "total_output_tokens": 50, "mean_ttft_ms": 20.0, "p99_ttft_ms": 40.0}


def _write(tmp_path, text, name="r.json"):
    p = tmp_path / name
    p.write_text(text) if isinstance(text, str) else p.write_bytes(text)
    return p


@pytest.mark.parametrize("text,pattern", [
    ("", r"r\.json is empty"),
    ("  \n\n", r"r\.json is empty"),
    ('{"model_id": "m", "completed": 10, "mean_t', r"r\.json: not valid JSON \(line 1\)"),
    ('{\n  "model_id": "m",\n  "completed": 1', r"r\.json: not valid JSON \(line 3\)"),
    (b"\x00\x01\x02", r"r\.json is a binary file"),
    ('{"hello": 1}', r"r\.json: not a benchmark result pdplan knows.*known formats: vllm, "
                     r"sglang, aiperf, genai-perf, guidellm, csv"),
    ("[1, 2]", r"not a benchmark result pdplan knows \(it is not a JSON object\)"),
    ("a,b,c\n1,2,3\n", r"not a benchmark result pdplan knows \(neither JSON nor a CSV"),
    (json.dumps({**VLLM, "completed": 0, "num_prompts": 10}),
     r"r\.json: row 1: no completed requests \(10 failed\); a run with errors only"),
    (json.dumps({**VLLM, "mean_ttft_ms": -3.0}), r"r\.json: row 1: mean_ttft_ms is negative"),
    (json.dumps({**VLLM, "p99_ttft_ms": float("nan")}), r"r\.json: row 1: p99_ttft_ms is NaN"),
    (json.dumps({**VLLM, "std_ttft_ms": float("inf")}), r"row 1: std_ttft_ms is infinite"),
    (json.dumps({**VLLM, "mean_ttft_ms": "fast"}), r"row 1: mean_ttft_ms must be a number"),
    (json.dumps({k: v for k, v in VLLM.items() if k != "completed"}),
     r"row 1: completed is missing"),
    (json.dumps({k: v for k, v in VLLM.items() if k != "total_input_tokens"}),
     r"row 1: total_input_tokens is missing"),
    (json.dumps({**VLLM, "request_rate": -1}), r"row 1: request_rate must be a positive"),
    (json.dumps({**VLLM, "max_concurrency": 0}), r"row 1: max_concurrency must be a whole"),
    (json.dumps({**VLLM, "ttfts": [0.1, 0.2], "input_lens": [1]}),
     r"row 1: the per-request lists differ in length"),
])
def test_bad_json_input(tmp_path, text, pattern):
    with pytest.raises(InvalidRequestError, match=pattern):
        read_results([_write(tmp_path, text)])


def test_bad_jsonl_line_names_the_line(tmp_path):
    good = json.dumps({**VLLM, "total_output_tokens_retokenized": 50})
    p = _write(tmp_path, good + "\n" + good + "\n" + good[:30] + "\n", "s.jsonl")
    with pytest.raises(InvalidRequestError, match=r"s\.jsonl: line 3: not valid JSON"):
        read_results([p])
    bad = json.dumps({**VLLM, "total_output_tokens_retokenized": 50, "mean_ttft_ms": -1})
    p = _write(tmp_path, good + "\n" + bad + "\n", "s.jsonl")
    with pytest.raises(InvalidRequestError, match=r"s\.jsonl: row 2: mean_ttft_ms is negative"):
        read_results([p])


def test_sglang_all_failed_run_with_nan_statistics(tmp_path):
    # sglang 0.5.3 writes np.mean([]) = NaN for the latencies of a run whose requests all failed
    obj = {"backend": "sglang", "request_rate": 4.0, "completed": 0, "total_input_tokens": 0,
           "total_output_tokens": 0, "mean_e2e_latency_ms": float("nan"),
           "errors": ["timeout", "timeout", "500"], "input_lens": [10, 10, 10],
           "output_lens": [0, 0, 0], "ttfts": [0.0, 0.0, 0.0], "itls": [[], [], []]}
    p = _write(tmp_path, json.dumps(obj) + "\n", "s.jsonl")
    with pytest.raises(InvalidRequestError, match=r"row 1: no completed requests \(3 failed\)"):
        read_results([p])


def test_missing_unreadable_and_directory(tmp_path):
    with pytest.raises(InvalidRequestError, match=r"nope\.json does not exist"):
        read_results([tmp_path / "nope.json"])
    with pytest.raises(InvalidRequestError, match="is a directory"):
        read_results([tmp_path])
    p = _write(tmp_path, json.dumps(VLLM))
    p.chmod(0)
    try:
        if not (p.stat().st_mode & 0o444) and not _is_root():
            with pytest.raises(InvalidRequestError, match="cannot read"):
                read_results([p])
    finally:
        p.chmod(0o644)


def _is_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


def test_bad_perf_and_guidellm_input(tmp_path):
    perf = json.loads((DATA / "genai_perf_profile_export.json").read_text())
    perf["time_to_first_token"]["p99"] = -5
    with pytest.raises(InvalidRequestError, match=r"row 1: time_to_first_token\.p99 is negative"):
        read_results([_write(tmp_path, json.dumps(perf))])
    perf = json.loads((DATA / "aiperf_profile_export.json").read_text())
    perf["request_count"]["avg"] = 0
    perf["error_request_count"] = {"unit": "requests", "avg": 500}
    with pytest.raises(InvalidRequestError, match=r"no completed requests \(500 failed\)"):
        read_results([_write(tmp_path, json.dumps(perf))])
    rep = json.loads((DATA / "guidellm_report.json").read_text())
    rep["benchmarks"][1]["metrics"]["time_to_first_token_ms"]["successful"]["mean"] = -1.0
    with pytest.raises(InvalidRequestError,
                       match=r"row 2: metrics\.time_to_first_token_ms\.successful\.mean is "
                             "negative"):
        read_results([_write(tmp_path, json.dumps(rep))])
    rep = json.loads((DATA / "guidellm_report.json").read_text())
    rep["benchmarks"][0]["config"]["strategy"] = {"type_": "warp"}
    with pytest.raises(InvalidRequestError, match=r"row 1: strategy type 'warp'.*synchronous"):
        read_results([_write(tmp_path, json.dumps(rep))])
    rep["benchmarks"] = []
    with pytest.raises(InvalidRequestError, match="has no benchmarks"):
        read_results([_write(tmp_path, json.dumps(rep))])


HEADER = "model,isl,osl,qps,concurrency,completed,ttft_ms_mean"


@pytest.mark.parametrize("text,pattern", [
    (HEADER + "\nm,1024,128,2,8,100,30\n",
     r"r\.csv: row 1: give exactly one of qps .* it has both"),
    (HEADER + "\nm,1024,128,2,,100,30\nm,1024,128,,,100,30\n",
     r"r\.csv: row 2: give exactly one of qps .* it has neither"),
    ("model,isl,osl,qps,completed,ttft_ms_avg\nm,1,1,1,1,1\n",
     r"r\.csv: unknown column 'ttft_ms_avg' \(did you mean 'ttft_ms_mean'\?\); valid columns: "
     r"model, gpu, tp"),
    ("model,isl,osl,completed\nm,1,1,1\n", r"needs a qps or a concurrency column"),
    ("model,osl,qps,completed\nm,1,1,1\n", r"r\.csv: not a benchmark result pdplan knows"),
    (HEADER + "\nm,1024,128,2,,0,30\n", r"row 1: no completed requests"),
    (HEADER + "\nm,1024,128,2,,100,-30\n", r"row 1: ttft_ms_mean is negative"),
    (HEADER + "\nm,1024,128,2,,100,nan\n", r"row 1: ttft_ms_mean is NaN"),
    (HEADER + "\nm,1024,128,2,,100,quick\n", r"row 1: ttft_ms_mean must be a number"),
    (HEADER + "\nm,1024,128,,8.5,100,30\n", r"row 1: concurrency must be a whole number"),
    (HEADER + "\nm,,128,2,,100,30\n", r"row 1: isl is empty"),
    (HEADER + "\nm,1024,128,2,,100,30,7\n", r"row 1: 8 cells for 7 columns"),
    (HEADER + "\n", r"r\.csv: has a header but no rows"),
    ("model,isl,osl,qps,completed,date\nm,1,1,1,1,yesterday\n", r"row 1: date must be an ISO"),
])
def test_bad_csv_input(tmp_path, text, pattern):
    with pytest.raises(InvalidRequestError, match=pattern):
        read_results([_write(tmp_path, text, "r.csv")])


def test_csv_empty_cells_are_not_stated(tmp_path):
    p = _write(tmp_path, "model,gpu,isl,osl,concurrency,completed,ttft_ms_mean,ttft_ms_p99,"
                         "tpot_ms_p50,date\n,,1024,128,16,100,,250,12.5,2025-06-30\n", "r.csv")
    r = one(p)
    assert (r.model, r.gpu, r.qps, r.concurrency) == (None, None, None, 16)
    assert r.metrics == {"ttft_s": {"p99": 0.25}, "tpot_s": {"p50": 0.0125}}
    assert r.date == "2025-06-30"


def test_error_message_text(tmp_path):
    """The exact line a user sees (the CLI prints it after "Error: ")."""
    p = _write(tmp_path, HEADER + "\nm,1024,128,2,8,100,30\n", "sweep.csv")
    with pytest.raises(InvalidRequestError) as exc:
        read_results([p])
    assert str(exc.value) == (f"{p}: row 1: give exactly one of qps (open loop) and concurrency "
                              "(closed loop); it has both")
    p = _write(tmp_path, '{"hello": 1}', "x.json")
    with pytest.raises(InvalidRequestError) as exc:
        read_results([p])
    assert str(exc.value) == (f"{p}: not a benchmark result pdplan knows (its keys (hello) "
                              "match none of them); known formats: vllm, sglang, aiperf, "
                              "genai-perf, guidellm, csv")


# --------------------------------------------------------------------------------------------
# Round trip: a vLLM result with random valid statistics reads back exactly
# --------------------------------------------------------------------------------------------

_pos = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(completed=st.integers(1, 10**6), failed=st.integers(0, 1000),
       isl=st.integers(1, 10**5), osl=st.integers(1, 10**4),
       rate=st.one_of(st.just("inf"), _pos), cap=st.one_of(st.none(), st.integers(1, 4096)),
       stats=st.dictionaries(st.sampled_from(["ttft", "tpot", "itl", "e2el"]),
                             st.tuples(_pos, _pos, _pos), min_size=1),
       duration=_pos, tput=_pos)
def test_vllm_round_trip(tmp_path, completed, failed, isl, osl, rate, cap, stats, duration,
                         tput):
    obj = {"date": "20250630-140500", "backend": "vllm", "model_id": "org/m",
           "num_prompts": completed + failed, "request_rate": rate, "burstiness": 1.0,
           "max_concurrency": cap, "duration": duration, "completed": completed,
           "total_input_tokens": completed * isl, "total_output_tokens": completed * osl,
           "request_throughput": tput, "output_throughput": tput * osl}
    for name, (mean, median, p99) in stats.items():
        obj.update({f"mean_{name}_ms": mean, f"median_{name}_ms": median,
                    f"std_{name}_ms": 0.0, f"p99_{name}_ms": p99})
    p = tmp_path / "rt.json"
    p.write_text(json.dumps(obj))
    r = one(p)
    want_qps = None if (cap is not None and rate == "inf") else (
        math.inf if rate == "inf" else rate)
    assert (r.qps, r.concurrency) == (want_qps, cap)
    assert (r.completed, r.failed) == (completed, failed)
    assert r.isl == pytest.approx(isl) and r.osl == pytest.approx(osl)
    assert r.duration_s == duration and r.date == "2025-06-30T14:05:00"
    ours = {"ttft": "ttft_s", "tpot": "tpot_s", "itl": "itl_s", "e2el": "e2e_s"}
    for name, (mean, median, p99) in stats.items():
        assert r.metrics[ours[name]] == pytest.approx(
            {"mean": mean / 1000, "p50": median / 1000, "p99": p99 / 1000})
    assert r.metrics["output_tok_s"] == tput * osl and r.metrics["request_s"] == tput
