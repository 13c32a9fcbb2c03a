"""The roofline step model: hand-derived values on a toy model and GPU, and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.catalog import Efficiency, GPUSpec, LinkSpec, ModelSpec, load_catalog
from planner.perf import FastTimes, StepModel, build_step_model, kv_transfer_time
from planner.perf import efficiency as eff

TOY = ModelSpec(id="toy", name="toy", num_layers=2, hidden_size=1024, num_heads=8, num_kv_heads=8,
                head_dim=128, intermediate_size=4096, vocab_size=1000, source="test")
# An ideal GPU: every kernel at its roofline, no floors, no wave or occupancy losses.
IDEAL_EFF = Efficiency(
    bf16_mamf=1.0, bf16_floor_s=0.0, bf16_mem=1.0, bf16_mem_half_bytes=0.0, bf16_blend=20.0,
    bf16_wave=0.0, fp8_mamf=1.0, fp8_floor_s=0.0, fp8_mem=1.0, fp8_mem_half_bytes=0.0,
    fp8_blend=20.0, fp8_wave=0.0, fp8_quant=0.0, pf_mamf=1.0, pf_floor_s=0.0, pf_half_tokens=0.0,
    pf_wave=0.0, dec_mem=1.0, dec_floor_s=0.0, dec_per_seq_s=0.0, dec_per_read_s=0.0,
    dec_group_max=256.0, dec_half_occupancy=0.0,
    dec_shape=1.0, dec_fp8=1.0, moe_floor_s=0.0, moe_per_expert_s=0.0, moe_mamf=1.0,
    moe_half_rows=0.0, moe_mem=1.0, moe_fp8=1.0, oneshot_s=5e-6, busbw=1.0)
IDEAL = GPUSpec(id="ideal", name="ideal", peak_flops={"bf16": 1e15}, hbm_bytes=80e9,
                hbm_bytes_per_s=1e12, gpus_per_node=8, intra_node_link="l", inter_node_link="l",
                inter_node_bytes_per_s=50e9, tdp_w=700, price_per_hour=1.0, price_date="2026-01",
                sm_count=100, efficiency=IDEAL_EFF)
LINK = LinkSpec(id="l", name="link", bytes_per_s=100e9, latency_s=10e-6)


def toy(tp=1, pp=1, **kw):
    return StepModel(TOY, IDEAL, tp, pp, intra_link=LINK, link_pp=LINK, overhead_s=0.0, **kw)


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
    # One token on the ideal GPU: two GEMMs whose memory side dominates (p-norm 20 ~ max).
    t, *_ = toy().attention_proj(np.array(1.0))
    qkv = (1024 * 3072 * 2 + 1024 * 2 + 3072 * 2) / 1e12
    o = (1024 * 1024 * 2 + 1024 * 2 + 1024 * 2) / 1e12
    assert float(t) == pytest.approx(2 * (qkv + o), rel=1e-3)


def test_gemm_time_by_hand():
    g = {"mamf": 0.8, "floor_s": 3e-6, "mem": 0.85, "mem_half_bytes": 2e6, "blend": 1.0, "wave": 1.0}
    # 256 x 8192 x 8192 on 132 SMs: 2 x 64 = 128 tiles in one wave -> q = 128/132.
    t = float(eff.gemm_time(256, 8192, 8192, peak=1e15, hbm=4.8e12, sms=132, g=g, w_bytes=2.0))
    t_c = 2 * 256 * 8192 * 8192 / (1e15 * 0.8 * (128 / 132))
    nbytes = 8192 * 8192 * 2 + 256 * 8192 * 2 + 256 * 8192 * 2
    t_m = (nbytes + 2e6) / (4.8e12 * 0.85)
    assert t == pytest.approx(3e-6 + t_c + t_m, rel=1e-12)  # blend 1: the two terms add
    assert float(eff.gemm_time(0, 8192, 8192, peak=1e15, hbm=4.8e12, sms=132, g=g, w_bytes=2.0)) == 0.0


def test_decode_attention_by_hand():
    d = {"mem": 0.8, "floor_s": 10e-6, "per_seq_s": 0.1e-6, "per_read_s": 20e-9, "group_max": 16.0,
         "half_occupancy": 2.0, "shape": 1.0, "fp8": 0.9}
    eta = float(eff.decode_attention_eta(4, 8, d=d, fp8=False))
    assert eta == pytest.approx(0.8 * 32 / 34)
    assert float(eff.decode_attention_eta(4, 8, d=d, fp8=True)) == pytest.approx(0.9 * eta)
    # 4 sequences x 8 KV heads read: 10 us + 4 x (0.1 us + 8 x 20 ns)
    assert float(eff.decode_attention_floor(4, 8, d=d)) == pytest.approx(11.04e-6)
    assert float(eff.decode_attention_floor(0, 8, d=d)) == 0.0


def test_decode_kv_reads_follow_the_kernel_packing_limit():
    d = {"group_max": 16.0}
    assert eff.decode_kv_reads(64, 8, d=d) == 8.0  # GQA ratio 8: one read per KV head
    assert eff.decode_kv_reads(128, 8, d=d) == 8.0  # ratio 16: still packed
    assert eff.decode_kv_reads(232, 8, d=d) == 232.0  # ratio 29: one read per query head
    assert eff.decode_kv_reads(128, 1, d=d, latent=True) == 1.0  # MLA latent: once for all heads
    # The kernel-table form agrees: 2 sequences x 100 tokens x 232 reads x 128 dims x K and V x 2 B
    full = {"mem": 1.0, "floor_s": 0.0, "per_seq_s": 0.0, "per_read_s": 0.0, "group_max": 16.0,
            "half_occupancy": 0.0, "shape": 1.0, "fp8": 1.0}
    t = float(eff.decode_attention_time(2, 100, 232, 8, d=full, hbm=1e12, fp8=False))
    assert t == pytest.approx(2 * 100 * 232 * 128 * 2 * 2 / 1e12)


def test_allreduce_is_interpolated_in_log_log_and_analytic_without_a_table():
    table = {8: (np.array([1e3, 1e5, 1e7]), np.array([4e-6, 16e-6, 100e-6]))}
    kw = dict(table=table, link_bw=450e9, oneshot_s=5e-6, busbw=0.8)
    assert float(eff.allreduce_time(1e5, 8, **kw)) == pytest.approx(16e-6)
    assert float(eff.allreduce_time(1e4, 8, **kw)) == pytest.approx(8e-6)  # geometric midpoint
    assert float(eff.allreduce_time(2e7, 8, **kw)) == pytest.approx(100e-6 + 1e7 * 84e-6 / 9.9e6)
    assert float(eff.allreduce_time(1e6, 4, **kw)) == pytest.approx(5e-6 + 1.5 * 1e6 / 360e9)
    assert float(eff.allreduce_time(1e6, 1, **kw)) == 0.0


def test_tensor_parallel_adds_two_allreduces_per_layer():
    T = 256
    sm = toy(tp=2)
    one = 5e-6 + 2 * 1 / 2 * T * 1024 * 2 / 100e9  # no table: one-shot latency + bandwidth term
    assert float(sm.tp_comm(np.array(float(T)))) == pytest.approx(2 * 2 * one, rel=1e-12)


def test_no_per_layer_overhead_remains():
    cat = load_catalog()
    m, gpu = cat.models["llama-3.1-70b"], cat.gpus["h200"]
    sm = build_step_model(cat, m, gpu, 8, 1)
    c = sm.decode(1, 2176)
    assert float(c.overhead_s) == pytest.approx(sm.overhead_s)  # one per iteration, not per layer
    ar = float(c.breakdown["tp_allreduce"]) / (2 * m.num_layers)
    assert 2e-6 < ar < 8e-6  # a custom one-shot all-reduce: a few us per call at decode sizes


def test_elementwise_traffic_is_replicated_per_rank():
    t, *_ = toy(tp=4).elementwise(np.array(100.0))
    assert float(t) == pytest.approx(2 * 2 * 4 * 100 * 1024 * 2 / 1e12)


def test_prefill_is_compute_bound_and_decode_memory_bound_on_a_real_gpu():
    cat = load_catalog()
    sm = build_step_model(cat, cat.models["llama-3.1-70b"], cat.gpus["h100-sxm"], 8, 1)
    assert sm.prefill(2048).bound == "compute"
    assert sm.decode(8, 2048).bound in ("memory", "communication")


def test_moe_decode_reads_only_the_experts_the_batch_touches():
    cat = load_catalog()
    m = cat.models["mixtral-8x7b"]
    sm = build_step_model(cat, m, cat.gpus["h100-sxm"], 2, 1)
    assert float(sm.experts_touched(1.0)) == pytest.approx(2.0)
    assert float(sm.experts_touched(4096.0)) == pytest.approx(8.0)
    one = float(sm.moe_ffn(np.array(1.0))[0])
    many = float(sm.moe_ffn(np.array(4096.0))[0])
    g = sm.g
    # The memory side alone: the touched experts' TP-sharded weights at the GEMM's bandwidth.
    expert_read = m.expert_params * 2 / 2 * m.moe_layers / (sm.gpu.hbm_bytes_per_s * g["mem"])
    assert 2 * expert_read <= one < 2 * expert_read * 1.5
    assert many > 4 * expert_read


@settings(max_examples=80, deadline=None)
@given(model=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "deepseek-v3"]),
       gpu=st.sampled_from(["h100-sxm", "h200", "a100-80g", "b200", "mi300x"]),
       tp=st.sampled_from([1, 2, 4, 8]), dtype=st.sampled_from(["bf16", "fp8"]),
       pf=st.integers(0, 3000), seqs=st.integers(1, 4), off=st.integers(0, 4000),
       batch=st.integers(0, 256), ctx=st.integers(1, 8000), query=st.sampled_from([1, 1, 2, 4]))
def test_fast_tables_equal_the_roofline(model, gpu, tp, dtype, pf, seqs, off, batch, ctx, query):
    cat = load_catalog()
    m, g = cat.models[model], cat.gpus[gpu]
    if not m.valid_tp(tp):
        return
    sm = build_step_model(cat, m, g, tp, 1, dtype=dtype)
    ft = FastTimes(sm, 4100)
    pf = pf if pf >= seqs else 0
    seqs = seqs if pf else 0
    pairs = pf * (off + pf / seqs / 2) if pf else 0.0
    kv = seqs * off + pf
    X = float(batch * ctx)
    exact = float(sm.iteration(prefill_tokens=pf, prefill_pairs=pairs, prefill_kv=kv,
                               prefill_seqs=seqs, decode_batch=batch, decode_ctx=X,
                               decode_query=query).time_s)
    fast = ft.time(pf, pairs, kv, seqs, batch, X, query)
    assert fast == pytest.approx(exact, rel=1e-9, abs=1e-15)


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "deepseek-v3"]),
       gpu=st.sampled_from(["h100-sxm", "h200", "b200"]), tp=st.sampled_from([1, 2, 4, 8]),
       k=st.integers(1, 4), draft=st.sampled_from([None, "llama-3.1-8b"]),
       pf=st.integers(0, 2000), batch=st.integers(0, 200), ctx=st.integers(1, 6000))
def test_speculative_tables_equal_the_roofline(model, gpu, tp, k, draft, pf, batch, ctx):
    """The simulator's speculative tables (target at K + 1 tokens per decode plus the draft's K
    passes) give what SpecStepModel.iteration gives, and so do their decode-run closed forms."""
    from planner.perf import fast_times, speculative

    cat = load_catalog()
    m, g = cat.models[model], cat.gpus[gpu]
    if not m.valid_tp(tp) or (draft and cat.models[draft].vocab_size != m.vocab_size):
        return
    spec = speculative.build(k, "0.7", draft, m, cat)
    sm = speculative.speculative_step_model(cat, build_step_model(cat, m, g, tp, 1), spec)
    ft = fast_times(sm, 2300)
    X = float(batch * ctx)
    pairs = pf * pf / 2
    exact = float(sm.iteration(prefill_tokens=pf, prefill_pairs=pairs, prefill_kv=pf,
                               prefill_seqs=1 if pf else 0, decode_batch=batch, decode_ctx=X).time_s)
    assert ft.time(pf, pairs, float(pf), 1 if pf else 0, batch, X) == pytest.approx(exact, rel=1e-9, abs=1e-15)
    if batch:
        _, one, _ = ft.runs(batch + 1)
        assert one(batch, X) == pytest.approx(float(sm.decode_time(batch, ctx)), rel=1e-9)


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


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 200_000), k=st.integers(2, 9),
       model=st.sampled_from(["llama-3.1-70b", "deepseek-v3", "qwen3-30b-a3b"]),
       kv=st.sampled_from(["bf16", "fp8"]))
def test_kv_bytes_are_linear_in_sequence_length(n, k, model, kv):
    from planner.perf import kv_transfer_bytes

    m = load_catalog().models[model]
    assert float(kv_transfer_bytes(m, n * k, kv)) == pytest.approx(k * float(kv_transfer_bytes(m, n, kv)))
