"""Engine profiles, paged KV admission, whole-prompt unified batching and closed-loop clients
(serving v2): catalog checks, hand-derived memory and admission values, the CLI contract, and the
acceptance cases against the simulator."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from jsondoc import result_of

from planner import api
from planner.catalog import load_catalog, parse_engine
from planner.cli import cli
from planner.errors import CatalogError
from planner.serving.common import Deployment, LoadShape, Pool, batch_cap, kv_tokens_per_sequence
from planner.serving.lanes import admission_wait

ENGINES = Path(__file__).resolve().parent.parent / "hardware" / "engines"


def run(args, **kw):
    return CliRunner().invoke(cli, args, **kw)


# ---- the profiles ---------------------------------------------------------------------------


def test_every_profile_loads_with_a_source_for_every_default():
    cat = load_catalog()
    assert {"vllm", "sglang", "trtllm"} <= set(cat.engines)
    for e in cat.engines.values():
        for key in ("version", "max_num_batched_tokens", "max_num_seqs", "memory_fraction",
                    "kv_block_tokens", "schedule", "kv_admission", "iteration_overhead_ms"):
            assert e.sources.get(key), (e.id, key)


def test_vllm_defaults_depend_on_the_gpu_as_its_source_says():
    cat = load_catalog()
    v = cat.engines["vllm"]
    assert (v.token_budget(cat.gpus["h100-sxm"]), v.max_seqs(cat.gpus["h100-sxm"])) == (8192, 1024)
    # "a100" in the device name takes the small-GPU branch although it has 80 GB
    assert (v.token_budget(cat.gpus["a100-80g"]), v.max_seqs(cat.gpus["a100-80g"])) == (2048, 256)
    assert (v.token_budget(cat.gpus["l40s"]), v.max_seqs(cat.gpus["l40s"])) == (2048, 256)


def _profile(**over):
    data = yaml.safe_load((ENGINES / "vllm.yaml").read_text())
    data.update(over)
    return data


@pytest.mark.parametrize("change,key", [
    ({"max_num_seqs": None}, "max_num_seqs"),
    ({"memory_policy": "half"}, "memory_policy"),
    ({"memory_fraction": 1.5}, "memory_fraction"),
    ({"max_num_batched_tokens": 128}, "max_num_batched_tokens"),
    ({"chunked_prefill": "yes"}, "chunked_prefill"),
    ({"schedule": "random"}, "schedule"),
])
def test_bad_profiles_name_the_key(change, key):
    data = _profile(**change)
    data = {k: v for k, v in data.items() if not (k in change and change[k] is None)}
    with pytest.raises(CatalogError, match=key):
        parse_engine(Path("x.yaml"), data)


def test_a_profile_without_a_source_is_refused():
    data = _profile()
    del data["sources"]["kv_block_tokens"]
    with pytest.raises(CatalogError, match="sources.kv_block_tokens"):
        parse_engine(Path("x.yaml"), data)


def test_unknown_engine_is_exit_2_with_the_nearest_name():
    r = run(["estimate", "--replicas", "1xtp8", "--qps", "1", "--engine", "vlm"])
    assert r.exit_code == 2
    assert "vllm" in r.output and "--engine" in r.output


def test_a_user_engine_from_the_catalog_directory(tmp_path):
    d = tmp_path / "engines"
    d.mkdir()
    data = _profile(id="my-vllm", name="my vLLM", max_num_seqs=64)
    (d / "my.yaml").write_text(yaml.safe_dump(data))
    r = run(["--catalog", str(tmp_path), "estimate", "--replicas", "1xtp8", "--qps", "1",
             "--engine", "my-vllm", "--json"])
    assert r.exit_code == 0, r.output
    assert result_of(r.stdout)["plan"]["engine"]["id"] == "my-vllm"


# ---- memory and admission, by hand ----------------------------------------------------------


def _sm(engine: str, gpu="h100-sxm", tp=8):
    inp = api.default_inputs(engine=engine, gpu=gpu)
    return api.step_model(inp, Pool("unified", gpu, 1, tp))


def test_memory_policies_by_hand():
    v, s, t = _sm("vllm"), _sm("sglang"), _sm("trtllm")
    hbm, w, act = v.gpu.hbm_bytes, v.weight_bytes_per_gpu, v.activation_reserve_bytes
    assert v.kv_budget_bytes_per_gpu == pytest.approx(0.9 * hbm - w - act)  # of the total
    assert s.kv_budget_bytes_per_gpu == pytest.approx(0.835 * hbm - s.weight_bytes_per_gpu)  # static
    free = hbm - t.weight_bytes_per_gpu - t.activation_reserve_bytes
    assert t.kv_budget_bytes_per_gpu == pytest.approx(0.9 * free)  # of what is free


def test_paged_and_reserved_kv_per_sequence_by_hand():
    shape = LoadShape(np.array([1000, 3000]), np.array([101, 301]))
    # incremental (vLLM, 16-token blocks): E[(ISL + OSL/2)(OSL - 1)] / E[OSL - 1] + 8
    d = (1000 + 50) * 100 + (3000 + 150) * 300
    assert kv_tokens_per_sequence(_sm("vllm"), shape) == pytest.approx(d / 400 + 8)
    # reserve_full (TensorRT-LLM, 32-token blocks): ISL + OSL rounded up to blocks
    assert kv_tokens_per_sequence(_sm("trtllm"), shape) == pytest.approx((1120 + 3328) / 2)
    sm = _sm("vllm")
    cap, by = batch_cap(sm, shape)
    kv = sm.kv_capacity_tokens / kv_tokens_per_sequence(sm, shape)
    assert cap == pytest.approx(min(kv, 1024)) and by == ("kv-memory" if kv < 1024 else "max-num-seqs")
    small = LoadShape(np.array([100]), np.array([20]))  # short requests: the sequence cap binds
    assert batch_cap(sm, small) == (1024.0, "max-num-seqs")


def test_admission_wait_properties():
    shape = LoadShape(np.array([2048]), np.array([256]))
    pts, mean, pw = admission_wait(np.array([1.0, 10.0, 14.0]), np.array([10.0, 100.0, 140.0]), 150,
                                   shape, 4)
    assert np.all(np.diff(pw) > 0) and pw[0] < 1e-6  # more waiting as the batch nears its cap
    assert np.all(np.diff(pts, axis=-1) > 0)
    # given a wait, exponential with mean L / (c - a) / 2 (equal output lengths: cs^2 = 0)
    assert mean[2] == pytest.approx(pw[2] * (140 / 14.0) / (150 - 140) / 2)
    _, m0, p0 = admission_wait(np.array([1.0]), np.array([0.0]), 150, shape, 4)
    assert m0[0] == 0 and p0[0] == 0


# ---- whole-prompt unified batching ------------------------------------------------------------


def test_unified_iteration_carries_decodes_and_whole_prompts():
    from planner.timeline import Request, build

    tl = build("unified", [Request(4, 6, 0), Request(2, 3, 0), Request(3, 3, 0)])
    first = tl.iterations[0]
    # budget = the longest prompt (4): the first enters alone, the next two (5 tokens) wait
    assert [r for r, _, _ in first.pieces] == [0]
    second = tl.iterations[1]
    assert [r for r, _, _ in second.pieces] == [1] and second.decodes == (0,)


def test_timeline_chunk_4_decodes_every_iteration():
    r = run(["timeline", "--approach", "chunked", "--chunk-size", "4", "--json"])
    doc = result_of(r.stdout)
    # every iteration after the short request's prompt carries its decode until it finishes
    its = doc["iterations"]
    carrying = [it for it in its[1:] if it["prefill"]]
    assert carrying and all(0 in it["decode"] for it in carrying)
    r = run(["timeline", "--approach", "unified"])
    assert r.exit_code == 0 and "xxxxxxxx" in r.output  # the stall is still there


# ---- closed loop ------------------------------------------------------------------------------


@pytest.mark.parametrize("args,flag", [
    (["--qps", "5", "--concurrency", "4"], "--qps and --concurrency"),
    (["--concurrency", "0"], "--concurrency"),
    (["--qps", "5", "--think-time", "1s"], "--think-time"),
    (["--concurrency", "4", "--burstiness", "2"], "--burstiness"),
    ([], "--qps"),
])
def test_closed_loop_bad_input(args, flag):
    r = run(["estimate", "--replicas", "1xtp8"] + args)
    assert r.exit_code == 2 and flag in r.output, r.output


def test_acceptance_closed_loop_agrees_with_the_simulator():
    """The acceptance case: chunked qwen3-32b on one H100 tp2, 32 clients, 1024/128 tokens;
    analytic and simulated within 10% at P50 (TTFT and TPOT) and in throughput."""
    args = ["--approach", "chunked", "--model", "qwen3-32b", "--gpu", "h100-sxm", "--replicas",
            "1xtp2", "--concurrency", "32", "--isl", "1024", "--osl", "128", "--json"]
    est = result_of(run(["estimate"] + args).stdout)["plan"]
    sim = result_of(run(["simulate", "--requests", "4000"] + args).stdout)
    assert est["inputs"]["concurrency"] == 32
    s = sim["simulation"]
    for metric in ("ttft_ms", "tpot_ms"):
        a, b = est["metrics"][metric]["p50"], s[metric]["p50"]
        assert a == pytest.approx(b, rel=0.10), (metric, a, b)
    thr_a = est["inputs"]["qps"] * 128
    assert thr_a == pytest.approx(s["throughput_tokens_per_s"]["output"], rel=0.10)


def test_closed_loop_one_client_never_waits():
    inp = api.default_inputs(model="llama-3.1-8b", isl=1024, osl=64)
    dep = Deployment("chunked", (Pool("unified", "h100-sxm", 1, 1),), chunk_size=8192)
    p = api.estimate(replace(inp, workload=replace(inp.workload, concurrency=1)), dep,
                     with_headroom=False)
    sm = api.step_model(inp, dep.pools[0])
    assert p.metrics.ttft["p99"] == pytest.approx(float(sm.prefill_time(1024)), rel=0.02)
    # throughput = 1 / (TTFT + 63 TPOT)
    r = p.metrics.ttft["mean"] + 63 * p.metrics.tpot["mean"]
    assert p.inputs.workload.qps == pytest.approx(1 / r, rel=0.02)


def test_closed_loop_plan_round_trip(tmp_path):
    out = tmp_path / "plan.yaml"
    r = run(["recommend", "--concurrency", "64", "--ttft-slo", "1s", "-o", str(out)])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(out.read_text())
    assert doc["inputs"]["concurrency"] == 64 and doc["engine"]["id"] == "vllm"
    assert "engines" in doc["catalog"]
    ev = run(["evaluate", str(out), "--json"])
    assert ev.exit_code == 0, ev.output
    assert result_of(ev.stdout)["plan"]["inputs"]["concurrency"] == 64


def test_simulator_refuses_closed_loop_disaggregated():
    r = run(["simulate", "--approach", "disaggregated", "--prefill", "1xtp4", "--decode", "1xtp4",
             "--concurrency", "8"])
    assert r.exit_code == 2 and "--concurrency" in r.output
