"""The roofline step model: hand-derived values on a toy model and GPU, and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.catalog import GPUSpec, LinkSpec, ModelSpec, load_catalog
from planner.perf import (
    COLLECTIVE_BASE_S,
    ELEMENTWISE_PASSES,
    StepModel,
    build_step_model,
    kv_transfer_time,
)

TOY = ModelSpec(id="toy", name="toy", num_layers=2, hidden_size=1024, num_heads=8, num_kv_heads=8,
                head_dim=128, intermediate_size=4096, vocab_size=1000, source="test")
IDEAL = GPUSpec(id="ideal", name="ideal", peak_flops={"bf16": 1e15}, hbm_bytes=80e9,
                hbm_bytes_per_s=1e12, gpus_per_node=8, intra_node_link="l", inter_node_link="l",
                inter_node_bytes_per_s=50e9, tdp_w=700, price_per_hour=1.0, price_date="2026-01",
                compute_efficiency=1.0, compute_half_tokens=1e-9, memory_efficiency=1.0,
                comm_efficiency=1.0, allreduce_hop_s=1e-6, step_overhead_s=0.0)
LINK = LinkSpec(id="l", name="link", bytes_per_s=100e9, latency_s=10e-6)


def toy(tp=1, pp=1, **kw):
    return StepModel(TOY, IDEAL, tp, pp, intra_link=LINK, link_pp=LINK, **kw)


def test_prefill_flops_match_the_hand_formula():
    n = 512
    sm = toy()
    h, L = 1024, 2
    attn = h * (8 + 16) * 128 + 8 * 128 * h
    ffn = 3 * h * 4096
    expected = (2 * n * (attn + ffn) * L  # linear layers
                + 4 * 8 * 128 * (n * n / 2) * L  # causal attention: QK and PV over n^2/2 pairs
                + 2 * 1 * h * 1000)  # LM head on the last token only
    assert float(sm.prefill(n).flops) == pytest.approx(expected, rel=1e-12)


def test_decode_at_batch_one_is_a_weight_read():
    sm = toy()
    cost = sm.decode(1, 1)
    m = TOY
    weights = (m.attn_params_per_layer + m.dense_ffn_params) * 2 * m.num_layers + m.vocab_size * m.hidden_size * 2
    # Everything else (activations, one KV token, norms) is a few kilobytes.
    assert float(cost.time_s) == pytest.approx(weights / 1e12, rel=0.01)
    assert cost.bound == "memory"


def test_attention_projection_op_by_hand():
    # One token: max(2 * P / F, (2 * P + act) / B) with P = 4,194,304 parameters.
    parts, _ = toy().base(np.array(1.0), np.array(0.0))
    act = (1024 + 3072 + 1024 + 1024) * 2
    per_layer = (4_194_304 * 2 + act) / 1e12
    assert float(parts["attention_proj"]) == pytest.approx(2 * per_layer, rel=1e-12)


def test_tensor_parallel_adds_two_allreduces_per_layer():
    T = 256
    parts, _ = toy(tp=2).base(np.array(float(T)), np.array(0.0))
    msg = T * 1024 * 2
    one = COLLECTIVE_BASE_S + 2 * 1 * 1e-6 + 2 * 1 / 2 * msg / 100e9
    assert float(parts["communication"]) == pytest.approx(2 * 2 * one, rel=1e-12)


def test_elementwise_traffic_is_replicated_per_rank():
    parts, _ = toy(tp=4).base(np.array(100.0), np.array(0.0))
    assert float(parts["elementwise"]) == pytest.approx(ELEMENTWISE_PASSES * 100 * 1024 * 2 * 2 / 1e12)


def test_prefill_is_compute_bound_and_decode_memory_bound_on_a_real_gpu():
    cat = load_catalog()
    sm = build_step_model(cat, cat.models["llama-3.1-70b"], cat.gpus["h100-sxm"], 8, 1)
    assert sm.prefill(2048).bound == "compute"
    assert sm.decode(8, 2048).bound in ("memory", "communication")


def test_moe_decode_reads_only_the_experts_the_batch_touches():
    cat = load_catalog()
    m = cat.models["mixtral-8x7b"]
    sm = build_step_model(cat, m, cat.gpus["h100-sxm"], 2, 1)
    one, _ = sm.base(np.array(1.0), np.array(0.0))
    many, _ = sm.base(np.array(4096.0), np.array(0.0))
    expert_bytes = m.expert_params * 2 / 2 * m.moe_layers / (sm.gpu.hbm_bytes_per_s * sm.gpu.memory_efficiency)
    # One token touches 2 of 8 experts; 4096 tokens touch all 8 (memory side of the roofline).
    assert float(one["moe_ffn"]) == pytest.approx(2 * expert_bytes, rel=0.02)
    assert float(many["moe_ffn"]) >= 8 * expert_bytes * 0.999


def test_mla_kv_cache_is_not_split_by_tensor_parallelism():
    cat = load_catalog()
    m = cat.models["deepseek-v3"]
    a = build_step_model(cat, m, cat.gpus["h200"], 8, 1, dtype="fp8")
    assert a.kv_bytes_per_token_per_gpu == m.kv_bytes_per_token("bf16")
    g = build_step_model(cat, cat.models["llama-3.1-70b"], cat.gpus["h100-sxm"], 8, 1)
    assert g.kv_bytes_per_token_per_gpu == cat.models["llama-3.1-70b"].kv_bytes_per_token("bf16") / 8


def test_memory_fit_and_capacity():
    cat = load_catalog()
    m, gpu = cat.models["llama-3.1-70b"], cat.gpus["h100-sxm"]
    assert not build_step_model(cat, m, gpu, 2, 1).fits  # 141 GB of BF16 weights on two 80 GB GPUs
    assert build_step_model(cat, m, gpu, 2, 1, dtype="fp8").fits
    small = build_step_model(cat, m, gpu, 4, 1).kv_capacity_tokens
    big = build_step_model(cat, m, gpu, 8, 1).kv_capacity_tokens
    assert big > 2 * small > 0


def test_fp8_halves_the_weight_read():
    cat = load_catalog()
    m, gpu = cat.models["llama-3.1-8b"], cat.gpus["h100-sxm"]
    b = build_step_model(cat, m, gpu, 1, 1, dtype="bf16").weight_bytes_per_gpu
    f = build_step_model(cat, m, gpu, 1, 1, dtype="fp8").weight_bytes_per_gpu
    emb = m.embedding_params * 2
    assert f - emb == pytest.approx((b - emb) / 2)


def test_kv_transfer_overlap_hides_what_the_prefill_covers():
    nbytes, prefill = 671_088_640, 0.2
    serial = float(kv_transfer_time(nbytes, LINK))
    assert serial == pytest.approx(10e-6 + nbytes / 100e9)
    over = float(kv_transfer_time(nbytes, LINK, prefill_time=prefill, layers=80, overlap=True))
    assert over == pytest.approx(10e-6 + nbytes / 100e9 / 80)  # one layer's worth is exposed
    slow = LinkSpec("s", "slow", 1e9, 10e-6)
    exposed = float(kv_transfer_time(nbytes, slow, prefill_time=prefill, layers=80, overlap=True))
    assert exposed == pytest.approx(10e-6 + nbytes / 1e9 - prefill * 79 / 80)
    assert float(kv_transfer_time(nbytes, slow, streams=4)) == pytest.approx(10e-6 + nbytes / 4e9)


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 512), ctx=st.integers(1, 32768), n=st.integers(1, 16384))
def test_step_times_grow_with_work(b, ctx, n):
    cat = load_catalog()
    sm = build_step_model(cat, cat.models["llama-3.1-8b"], cat.gpus["h100-sxm"], 1, 1)
    assert sm.decode_time(b + 1, ctx) >= sm.decode_time(b, ctx)
    assert sm.decode_time(b, ctx + 1) >= sm.decode_time(b, ctx)
    assert sm.prefill_time(n + 1) >= sm.prefill_time(n)
    t = float(sm.prefill_time(n))
    assert math.isfinite(t) and t > 0


def test_chunked_prefill_costs_at_least_the_whole_prefill():
    cat = load_catalog()
    sm = build_step_model(cat, cat.models["llama-3.1-70b"], cat.gpus["h100-sxm"], 8, 1)
    whole = float(sm.prefill_time(4096))
    assert sm.chunked_prefill_time(4096, 512) > whole
    assert sm.chunked_prefill_time(4096, 4096) == pytest.approx(whole)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 200_000), k=st.integers(2, 9),
       model=st.sampled_from(["llama-3.1-70b", "deepseek-v3", "qwen3-30b-a3b"]),
       kv=st.sampled_from(["bf16", "fp8"]))
def test_kv_bytes_are_linear_in_sequence_length(n, k, model, kv):
    from planner.perf import kv_transfer_bytes

    m = load_catalog().models[model]
    assert float(kv_transfer_bytes(m, n * k, kv)) == pytest.approx(k * float(kv_transfer_bytes(m, n, kv)))
