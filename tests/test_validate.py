"""Predictions against published measurements (the validation set) with measured tolerances."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from planner.validate import KINDS, load_rows, run


@pytest.fixture(scope="module")
def report():
    return run()


def test_the_validation_set_is_broad_and_sourced():
    rows, models = load_rows()
    assert len(rows) >= 30
    assert len({r.gpu for r in rows}) >= 3
    assert {r.kind for r in rows} == set(KINDS)
    assert all(r.source.strip() for r in rows)
    assert len({r.id for r in rows}) == len(rows)


def test_every_row_is_predicted(report):
    assert all(r.included and np.isfinite(r.predicted) for r in report.rows), [
        r.id for r in report.rows if not r.included]


def test_median_error_stays_at_what_was_measured(report):
    # Step model v2 (kernel-derived constants, nothing fitted per GPU): measured 31.6% median
    # absolute error over 321 rows, p90 63.0%, bias -30.0% (docs/validation.md). The Splitwise
    # profile (204 rows, an engine without CUDA graphs or custom all-reduce) is most of the gap;
    # the previous per-GPU fit absorbed it into efficiency factors.
    s = report.summary
    assert s["median_abs_error"] <= 0.32, s["median_abs_error"]
    assert s["p90_abs_error"] <= 0.64, s["p90_abs_error"]


@pytest.mark.parametrize("kind,limit", [("prefill", 0.32), ("decode_step", 0.48),
                                        ("static_throughput", 0.09), ("offline_throughput", 0.11)])
def test_median_error_per_kind(report, kind, limit):
    assert report.summary["by_kind"][kind]["median_abs_error"] <= limit


def test_no_systematic_bias_beyond_what_was_measured(report):
    assert abs(report.summary["median_signed_error"]) <= 0.31


def test_out_of_sample_offline_grids():
    """The rest of the TensorRT-LLM offline grids, never used to fit: measured 12.0% median
    absolute error over 311 rows, bias -11.2%, with TensorRT-LLM's engine profile
    (docs/validation.md; L40S TP4/TP8 -53% to -89%, where the silicon all-reduce table of a PCIe
    L40S node is far slower than the published engine runs imply). It was 11.5% (bias -5.2%)
    before the routed experts were costed from the silicon MoE tables: the 110 Mixtral rows moved
    from +3% to -13% bias (A100 +22% -> -12%, H100/H200 FP8 +0%/+3% -> -10%/-15%): the
    TensorRT-LLM 1.0 MoE kernel tables run slower than the v0.17 engines that produced the grids."""
    rep = run(dataset="offline-grid")
    assert rep.summary["count"] >= 300
    assert rep.summary["median_abs_error"] <= 0.121, rep.summary["median_abs_error"]
    fitted = {r.id for r in load_rows()[0]}
    assert not fitted & {r.id for r in rep.rows}


@pytest.mark.parametrize("kind,median,p90", [("kernel_gemm_bf16", 0.066, 0.17),
                                             ("kernel_gemm_fp8", 0.039, 0.12),
                                             ("kernel_prefill_attention", 0.071, 0.33),
                                             ("kernel_decode_attention", 0.20, 0.69),
                                             ("kernel_moe", 0.151, 0.42)])
def test_held_out_kernel_timings(kind, median, p90):
    """Silicon kernel timings the derivation of the constants did not use (odd-numbered rows of
    each table): measured medians 6.5% / 3.8% / 7.0% / 19.3% / 15.0% (MoE: p90 41%, the
    expert-parallel rows under the tables' power-law routing -23%; docs/validation.md). Decode
    attention is the weak model: 8-37% of its table rows report KV reads above HBM bandwidth
    (the collector's sequences share KV blocks, or they sit in L2), which a model kept physical
    cannot follow."""
    s = _kernels().summary["by_kind"][kind]
    assert s["count"] >= 200
    assert s["median_abs_error"] <= median, s["median_abs_error"]
    assert s["p90_abs_error"] <= p90, s["p90_abs_error"]


def test_fp4_gemms_on_fp8_constants_are_measured():
    """FP4 (NVFP4) GEMMs run on the FP8 constants at the FP4 peak, an approximation: the held-out
    B200 NVFP4 rows of the same tables measure it at 35.8% median, +35.8% bias (slow; p90 70%).
    A fit of the GEMM form on those rows reaches 5.7% median but is 17-37% slow on the largest
    compute-bound shapes (2048 x 65536 x 8192: 672 against 491 us) and made 35 sustained MLPerf
    B200 FP4 points unstable instead of 19, so it is not shipped (docs/validation.md)."""
    s = _kernels().summary["by_kind_gpu"]["kernel_gemm_fp4 b200"]
    assert s["count"] >= 60
    assert 0.30 <= s["median_signed_error"] <= 0.40, s["median_signed_error"]
    assert s["median_abs_error"] <= 0.40, s["median_abs_error"]


_KERNELS: list = []


def _kernels():
    if not _KERNELS:
        _KERNELS.append(run(dataset="kernels"))
    return _KERNELS[0]


_SERVING: list = []


def _serving():
    if not _SERVING:
        _SERVING.append(run(dataset="serving"))
    return _SERVING[0]


def test_serving_set_is_published_runs_with_sources():
    """At least 150 published operating points (open and closed loop), at least 4 sources, 3
    engines and 3 GPU types, each with its source; none from the independent checks."""
    import yaml

    from planner.validate import data_dir

    data = yaml.safe_load((data_dir() / "serving.yaml").read_text())
    assert len(data) >= 150
    assert all(e.get("source") for e in data)
    assert len({e["id"].split("-")[0] for e in data}) >= 4
    assert len({e["engine"] for e in data}) >= 3 and len({e["gpu"] for e in data}) >= 3
    assert {"poisson", "closed"} <= {e["load"] for e in data}
    assert not any("inference_results_v4.1" in e["source"] or "aiconfigurator" in e["source"].lower()
                   for e in data)


@pytest.mark.slow
@pytest.mark.parametrize("kind,median", [("serving_throughput", 0.06), ("serving_tpot_mean", 0.22),
                                         ("serving_ttft_mean", 0.41)])
def test_serving_errors_stay_at_what_was_measured(kind, median):
    """Measured (docs/validation.md, "Serving"): throughput 4.9% median, mean TPOT 21.5%, mean
    TTFT 40.4% (biased fast: the TensorRT-LLM 0.14 Triton runs carry front-end time and host
    overhead the 0.5 ms default does not; the MLPerf v5.1 runs, predicted with their dataset
    lengths and their submitters' engine settings, TPOT -16% and TTFT -42%: B200 FP4 prefill is
    slow in pdplan, so Llama-3.1-405B with a 2,048-token budget comes out prefill-bound).
    Mean TPOT was 19.5% until the five MLPerf DeepSeek-R1 runs were predicted with the layout
    their submitters ran (attention DP 8 x EP 8, per-rank batch and token caps) instead of TP8:
    they moved from -15% to -57% (pdplan's DP8/EP8 decode step at 107 sequences a rank is 26 ms
    against 61 ms measured; TensorRT-LLM's own DP8/EP8 throughput runs are within -34%..+4%,
    `pdplan validate --set deepseek`), so the TP8 agreement was accidental and the gap is the
    harness's, not yet explained (docs/validation.md, "DeepSeek-class")."""
    s = _serving().summary["by_kind"][kind]
    assert s["count"] >= 60
    assert s["median_abs_error"] <= median, s["median_abs_error"]


@pytest.mark.slow
def test_serving_unstable_calls_are_counted():
    s = _serving().summary
    assert s["points"] >= 150 and s["points_predicted"] >= 80
    # measured: 24 sustained points called unstable (25 before NVIDIA's DeepSeek-R1 Server run
    # was predicted at its attention-DP layout). 2 TensorRT-LLM 0.14 points (Llama-3.1-70B
    # TP4, 467/16 tokens at 32 QPS, at the engine's edge) and 22 MLPerf v5.1 Server/Interactive
    # runs (VALID, so sustained), predicted with their submitters' engine settings: chiefly the
    # B200 FP4 Llama-3.1-405B runs (a 2,048-token budget against 9.4k-token prompts: pdplan's
    # B200 FP4 prefill is too slow, so the lanes come out prefill-bound) and the multi-node
    # Cisco runs without a config. A finding, not met (issue 10's target: none). 26 since the
    # routed experts are costed from the silicon MoE tables: two more Mixtral-8x7B runs (H200,
    # B200) come out above capacity (Mixtral serving max_qps bias +5% -> -24%). 19 since the
    # points whose layout the source does not state are skipped instead of predicted on one GPU
    # (7 Cisco runs on 8-32 GPUs without a config; the three Dell MI300X runs take their harness's
    # stated TP1 x 8 and settings): 12 B200 FP4 Llama-3.1-405B runs 1% above capacity, 2 H200
    # Mixtral runs 10%, 2 H200 Llama-3.1-8B runs 6-7% and the 2 TensorRT-LLM 0.14 points.
    assert len(s["called_unstable_sustained"]) <= 19, s["called_unstable_sustained"]


def test_serving_rows_take_the_runs_engine_settings(tmp_path):
    """A row's engine_settings (the submitter's own configuration) override the profile's
    defaults for that row alone; an unknown key is an error naming the row and the valid keys."""
    from planner import validate as v

    base = {"id": "X-1", "source": "s", "model": "llama-3.1-8b", "gpu": "h100-sxm", "engine": "trtllm",
            "dtype": "fp8", "tp": 1, "replicas": 1, "load": "poisson", "qps": 40.0, "isl": 800,
            "osl": 200, "metrics": {"tpot_ms_mean": 10.0}}
    tuned = dict(base, id="X-2", engine_settings={"memory_fraction": 0.5, "kv_admission": "incremental",
                                                 "max_num_seqs": 64})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump([base, tuned]))
    rows, _ = v.load_serving_rows(path)
    cat = v.load_catalog()
    a, b = (v.predict_serving(r, cat, {}) for r in rows)
    assert rows[1].shape["engine_settings"]["max_num_seqs"] == 64
    assert a != b  # a 64-sequence cap and half the memory change the prediction
    path.write_text(yaml.safe_dump([dict(base, engine_settings={"gpu_batch_size": 4})]))
    with pytest.raises(v.CatalogError, match="X-1: engine_settings: unknown key 'gpu_batch_size'"):
        v.load_serving_rows(path)


@pytest.mark.slow
def test_capacity_within_published_slo_stays_at_what_was_measured():
    """The planner's capacity answer against MLPerf v5.1 Server/Interactive runs: the largest
    rate at which pdplan keeps P99 TTFT and P99 TPOT within the run's constraints, against the
    rate the VALID run held them at (a lower bound of the engine's true limit). Measured: 103
    points, 17.7% median absolute, +2.7% bias; Llama-2-70B on B200 and H200 +2.7% and +4.9%;
    Llama-3.1-405B -20% (B200) and -43% (H200), where pdplan's prefill is too slow. With the
    five DeepSeek-R1 runs predicted at their attention-DP layout (see above: pdplan's decode is
    2.3x faster than those runs show, so it finds 2.7-3.7x their rate) the median is 18.9%."""
    s = _serving().summary["by_kind"]["serving_max_qps"]
    assert s["count"] >= 100
    assert s["median_abs_error"] <= 0.19, s["median_abs_error"]


_DEEPSEEK: list = []


def _deepseek():
    if not _DEEPSEEK:
        _DEEPSEEK.append(run(dataset="deepseek"))
    return _DEEPSEEK[0]


def test_deepseek_set_is_published_runs_with_sources():
    import yaml

    from planner.validate import data_dir

    data = yaml.safe_load((data_dir() / "deepseek.yaml").read_text())
    assert len(data) >= 20 and all(e.get("source") for e in data)
    assert len({e["source"].split("@")[0] for e in data}) >= 3
    assert len({e["engine"] for e in data}) >= 2
    assert not any("inference_results_v4.1" in e["source"] or "aiconfigurator" in e["source"].lower()
                   for e in data)
    # every row pdplan cannot express says why
    assert all(e["expressible"] or str(e.get("note", "")).startswith("Not expressible") for e in data)


def test_deepseek_errors_stay_at_what_was_measured():
    """Measured (docs/validation.md, "DeepSeek-class"): the 5 fully stated rows 19.1% median
    (SGLang's EP32 prefill on 32 H100 -14% to -24%, pdplan not modelling its two-batch overlap;
    TensorRT-LLM's DP8/EP8 max-throughput runs -21% on B200 FP4 and +4% on H200), all 7
    predicted rows 20.9%, biased slow (-21%). Since the routed experts are costed from the
    silicon MoE tables (TensorRT-LLM 1.0's fused MoE, slower than SGLang's DeepGEMM and
    TensorRT-LLM's tuned DeepSeek kernels): fully stated 20.9%, all 24.8%, bias -25%."""
    s = _deepseek().summary
    assert s["points_predicted"] >= 7
    assert s["fully_stated"]["count"] >= 5
    assert s["fully_stated"]["median_abs_error"] <= 0.21, s["fully_stated"]
    assert s["median_abs_error"] <= 0.25, s["median_abs_error"]
