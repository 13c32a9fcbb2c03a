"""Time of one engine iteration of one model instance, costed operator group by operator group.

Each group below is one small method whose docstring gives its shapes; the time of each kernel
comes from :mod:`planner.perf.efficiency` (GEMMs by ``m x n x k`` and dtype, attention by length
and occupancy, collectives by message size), with the GPU's constants from the catalog. The
iteration adds one per-iteration engine overhead (host scheduling and sampling, graph launch):
there is no per-layer fitted term. Formulas and sources: ``docs/methodology.md`` section 1.

An *instance* is ``tp * dp * pp`` GPUs serving one model replica. With ``pp`` stages it keeps
``pp`` micro-batches in flight, so it behaves as ``pp`` *lanes*, each of which sees full-pass
latency. With data-parallel attention (``dp`` ranks of ``tp`` GPUs, MoE models) each rank holds
its own sequences, but the ranks step together (the MoE layers need every rank's tokens; engines
run an idle rank on an empty batch), so an iteration lasts as long as the busiest rank's: the
``dp`` ranks form one lane, whose batch and prompt tokens are the ranks' together, costed on the
attention side by what the busiest rank carries and on the routed experts by all of them. All
step times returned here are full-pass latencies of one lane's batch (all layers).

Every method accepts numpy arrays (broadcast together) so that the optimizer and the simulator
can evaluate whole grids without Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Any

import numpy as np

from planner.catalog import (
    ACTIVATION_BYTES,
    COMPUTE_DTYPE,
    DTYPE_BYTES,
    GPUSpec,
    LinkSpec,
    ModelSpec,
)
from planner.errors import InvalidRequestError
from planner.perf import efficiency as eff
from planner.perf.memory import InstanceMemory

# Latency of one pipeline hop (AIConfigurator's p2p_latency constant, systems/*.yaml).
P2P_LATENCY_S = 10e-6
# Host cost of one engine iteration outside the GPU kernels: scheduling, input preparation,
# sampling and the CUDA-graph launch. One constant for every GPU (it belongs to the engine; the
# engine profiles of the next issue replace it). Source: ../shared/research/fidelity-findings.md
# (step model, cause 1: "a few tenths of a ms to about 1.5 ms, by engine"); the lower middle of
# that range is taken for graph-captured engines. `pdplan validate --fit` shows that the in-sample
# rows do not identify it (their loss moves 1% between 0 and 3 ms); docs/validation.md.
ITERATION_OVERHEAD_S = 0.5e-3
# Fused elementwise kernels per layer outside attention and the GEMMs (two residual-add + RMSNorm
# kernels in vLLM / TensorRT-LLM); each reads two tensors and writes two of T x hidden.
ELEMENTWISE_KERNELS = 2
ELEMENTWISE_PASSES = 4  # tensors read + written per kernel


@dataclass(frozen=True)
class Calibration:
    """Constants fitted to a user's own benchmark results (``pdplan calibrate``): what their
    stack achieves relative to the catalog's kernel models. ``compute`` multiplies every
    kernel's compute efficiency (GEMMs, attention, MoE), ``memory`` its HBM efficiency (GEMM
    weight streaming, decode attention, elementwise), ``comm`` the speed of collectives and
    pipeline hops (times are divided by it); ``overhead_s`` replaces the engine's per-iteration
    overhead (None keeps it). ``request_s`` is latency outside the engine's iterations (API
    server, tokenisation, streaming the first token) added to every TTFT; the step model does
    not use it, the serving results do. The neutral calibration changes nothing."""

    overhead_s: float | None = None
    request_s: float = 0.0
    compute: float = 1.0
    memory: float = 1.0
    comm: float = 1.0

    @property
    def neutral(self) -> bool:
        return (self.overhead_s is None and self.request_s == 0.0 and self.compute == 1.0
                and self.memory == 1.0 and self.comm == 1.0)


@dataclass(frozen=True)
class StepCost:
    """One iteration's cost (arrays broadcast over the inputs)."""

    time_s: np.ndarray  # full-pass latency of the lane's batch
    flops: np.ndarray  # total FLOPs over the instance
    bytes: np.ndarray  # total bytes moved to/from HBM over the instance
    compute_s: np.ndarray  # time of ops whose ideal compute time exceeds their memory time
    memory_s: np.ndarray  # time of the other GPU ops
    comm_s: np.ndarray  # collectives and pipeline hops
    overhead_s: np.ndarray  # the per-iteration engine overhead
    breakdown: dict  # op group -> seconds

    @property
    def bound(self):
        """'compute', 'memory' or 'communication': the largest share of the time."""
        stack = np.stack(np.broadcast_arrays(self.compute_s, self.memory_s, self.comm_s))
        names = np.array(["compute", "memory", "communication"])
        return names[np.argmax(stack, axis=0)]


_as = eff._as


class StepModel(InstanceMemory):
    """Step-time model of one instance: ``model`` on ``tp * dp * pp`` GPUs of type ``gpu``.

    ``ep`` (MoE only) is the expert-parallel degree inside the instance: 1 shards every expert
    over the TP group (all-reduce after the FFN), ``tp * dp`` places whole experts on GPUs and
    replaces that all-reduce by a dispatch and a combine all-to-all (DeepEP-style: low-latency
    kernels for decode-only iterations, normal kernels otherwise), on NVLink inside a node and on
    the GPU's NIC to other nodes. ``dp`` (MoE only) is data-parallel attention: ``dp`` ranks of
    ``tp`` GPUs, each holding the KV cache of its own sequences (an MLA latent is not replicated
    across ranks), with the experts spread over all ``tp * dp`` GPUs (``ep = tp * dp``).
    """

    # Tokens a decoding sequence feeds into an iteration and gains from it on average: 1 and 1
    # here; speculative decoding (planner.perf.speculative) verifies K + 1 and gains 1 + accepted.
    decode_query = 1
    tokens_per_step = 1.0

    def __init__(self, model: ModelSpec, gpu: GPUSpec, tp: int = 1, pp: int = 1, *,
                 dtype: str | None = None, kv_dtype: str | None = None, ep: int = 1, dp: int = 1,
                 link_pp: LinkSpec | None = None, intra_link: LinkSpec | None = None,
                 overhead_s: float | None = None, engine=None, calibration: Calibration | None = None):
        self.model, self.gpu = model, gpu
        # A user's fitted constants (pdplan calibrate); None = the catalog's models as they are.
        self.calibration = calibration if calibration is not None and not calibration.neutral else None
        cal = self.calibration or Calibration()
        self._sc, self._sm, self._scomm = cal.compute, cal.memory, cal.comm
        # The serving engine (planner.catalog.EngineSpec): memory policy, token budget, sequence
        # cap and per-iteration overhead; None = the documented defaults (vLLM-like).
        self.engine = engine
        self.tp, self.pp = int(tp), int(pp)
        self.dtype = dtype or model.default_dtype
        self.kv_dtype = kv_dtype or model.default_kv_dtype
        if self.dtype not in DTYPE_BYTES or self.kv_dtype not in DTYPE_BYTES:
            raise InvalidRequestError(f"--dtype/--kv-dtype: unknown dtype {self.dtype}/{self.kv_dtype}")
        self.dp = int(dp) if model.is_moe else 1
        self.ep = int(ep) if model.is_moe else 1
        valid_ep = (1, self.tp) if self.dp == 1 else (self.tp * self.dp,)
        if self.ep not in valid_ep:
            raise InvalidRequestError(f"--ep: must be {' or '.join(map(str, valid_ep))} at tp={self.tp} "
                                      f"dp={self.dp}, got {ep}")
        # GPUs per instance.
        self.gpus = self.tp * self.dp * self.pp
        # One lane per pipeline micro-batch: the dp attention ranks step together (each
        # iteration lasts as long as the busiest rank's), so they form one lane whose batch,
        # token budget and KV cache are the ranks' together.
        self.lanes = self.pp
        self.bw = DTYPE_BYTES[self.dtype]
        self.bkv = DTYPE_BYTES[self.kv_dtype]
        self.peak = gpu.flops_for(self.dtype)
        self.peak_bf16 = gpu.peak_flops["bf16"]
        self.eff = gpu.efficiency
        self.g = self.eff.gemm(self.dtype)
        self.g_bf16 = self.eff.gemm("bf16")
        # FP8/FP4 GEMMs quantise their activations; INT4 is weight-only (BF16 activations).
        self.low_precision = self.dtype in ("fp8", "fp4") and self.peak > self.peak_bf16
        self.a_bytes = 1.0 if self.low_precision else ACTIVATION_BYTES
        if not self.low_precision:
            self.g = self.g_bf16
            self.peak = self.peak_bf16
        # A checkpoint's per-part dtypes (ModelSpec.part_dtype: gpt-oss's MXFP4 experts beside
        # BF16 attention), as (peak, GEMM constants, weight bytes, activation bytes, quantise).
        self.attn_prec = self._precision(model.part_dtype("attention", self.dtype))
        self.expert_prec = self._precision(model.part_dtype("experts", self.dtype))
        if overhead_s is None and engine is not None and engine.iteration_overhead_s is not None:
            overhead_s = engine.iteration_overhead_s
        self.overhead_s = float(ITERATION_OVERHEAD_S if overhead_s is None else overhead_s)
        if cal.overhead_s is not None:
            self.overhead_s = float(cal.overhead_s)
        self.intra_bw = intra_link.bytes_per_s if intra_link else None
        self.nic_bw = gpu.inter_node_bytes_per_s
        self.pp_bw = link_pp.bytes_per_s if link_pp else None
        # The measured all-reduce table as arrays, once (GPU count -> sizes, seconds).
        self._ar_table = {n: (np.array(x), np.array(t)) for n, x, t in gpu.allreduce_table}
        self._precompute()

    def _precision(self, dtype: str) -> tuple:
        """(peak FLOP/s, GEMM constants, weight bytes, activation bytes, quantise) of GEMMs whose
        weights are stored in ``dtype`` (the instance's own for its dtype)."""
        if dtype == self.dtype:
            return self.peak, self.g, self.bw, self.a_bytes, self.low_precision
        peak = self.gpu.flops_for(dtype)
        lp = COMPUTE_DTYPE.get(dtype, dtype) in ("fp8", "fp4") and peak > self.peak_bf16
        return ((peak, self.eff.gemm(dtype), DTYPE_BYTES[dtype], 1.0, True) if lp else
                (self.peak_bf16, self.g_bf16, DTYPE_BYTES[dtype], ACTIVATION_BYTES, False))

    # ------------------------------------------------------------------------------------
    def _precompute(self):
        m, tp = self.model, self.tp
        h = m.hidden_size
        # Attention layers (all but a DeciLM model's no-op ones) and their share per stage.
        self.layers = m.attention_layers
        self.stage_layers = ceil(m.num_layers / self.pp)
        self.stage_attn_layers = ceil(m.attention_layers / self.pp)
        # KV per token relative to every attention layer in full: sliding-window layers hold at
        # most their window (evaluated at the model's kv_context_tokens; 1.0 without them).
        self.kv_window = m.kv_window_factor
        self.heads_gpu = m.num_heads / tp
        self.kv_heads_gpu = max(m.num_kv_heads / tp, 1.0)
        # Per-GPU KV elements per token per layer (KV heads replicate when tp exceeds them; the
        # MLA latent is shared by all heads and replicated on every TP rank).
        if m.is_mla:
            self.kv_elems_gpu = float(m.kv_elements_per_token_per_layer)
            self.kv_heads_gpu = 1.0
        else:
            self.kv_elems_gpu = 2.0 * self.kv_heads_gpu * m.head_dim
        # KV heads the decode kernel reads per sequence (more than it holds when the query heads
        # sharing one exceed what the kernel packs); KV bytes read scale by reads / KV heads.
        self.kv_reads_gpu = eff.decode_kv_reads(self.heads_gpu, self.kv_heads_gpu, d=self.eff.decode,
                                                latent=m.is_mla)
        self.kv_read_factor = self.kv_reads_gpu / self.kv_heads_gpu
        if m.is_mla:
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            self.attn_flops_pair_prefill = 2.0 * m.num_heads * (qk + m.v_head_dim)
            # Absorbed decode: scores over the latent (rank + rope) and values from the latent.
            self.attn_flops_pair_decode = 2.0 * m.num_heads * (2 * m.kv_lora_rank + m.qk_rope_head_dim)
            o_in = m.num_heads * m.v_head_dim
        else:
            self.attn_flops_pair_prefill = 4.0 * m.num_heads * m.head_dim
            self.attn_flops_pair_decode = self.attn_flops_pair_prefill
            o_in = m.num_heads * m.head_dim
        # Attention projections as two GEMMs: the fused input projection (QKV, or MLA's down
        # and up projections folded into one of the same parameter count) and the output one.
        self.o_params = float(o_in * h)
        self.qkv_n = (m.attn_params_per_layer - self.o_params) / h / tp
        self.o_k = o_in / tp
        self.ff_up_n = (m.ffn_matrices - 1) * m.intermediate_size / tp
        self.ff_down_k = m.intermediate_size / tp

    def _gemm(self, m, n, k, *, groups=1.0, bf16=False, prec=None):
        """(seconds, FLOPs, bytes) of a GEMM in the instance's weight dtype (BF16 if asked; a
        part's own precision from :meth:`_precision` if given)."""
        if prec is not None and not bf16:
            peak, g, wb, ab, lp = prec
        else:
            g, peak = (self.g_bf16, self.peak_bf16) if bf16 else (self.g, self.peak)
            lp = self.low_precision and not bf16
            wb = ACTIVATION_BYTES if bf16 else self.bw
            ab = 1.0 if lp else ACTIVATION_BYTES
        t = eff.gemm_time(m, n, k, peak=peak, hbm=self.gpu.hbm_bytes_per_s, sms=self.gpu.sm_count,
                          g=g, w_bytes=wb, a_bytes=ab, groups=groups, quantise=lp, scale_c=self._sc,
                          scale_m=self._sm)
        m, groups = _as(m), _as(groups)
        fl = 2.0 * m * n * k * groups
        by = groups * (n * k * wb + m * k * ab + m * n * ACTIVATION_BYTES)
        return t, fl, by, peak

    # ------------------------------------------------------------------------------------
    # Operator groups: each returns {name: (seconds over all its layers, FLOPs, bytes, peak)}
    def attention_proj(self, T):
        """QKV projection ``T x hidden @ hidden x (heads + 2 kv_heads) hd / tp`` and output
        projection ``T x heads hd / tp @ . x hidden``, every layer."""
        h = self.model.hidden_size
        a = self._gemm(T, self.qkv_n, h, prec=self.attn_prec)
        b = self._gemm(T, h, self.o_k, prec=self.attn_prec)
        return self._sum(a, b, layers=self.layers)

    def dense_ffn(self, T):
        """Gate+up ``T x hidden @ hidden x 2 ff / tp`` (gated) and down ``T x ff / tp @ . x
        hidden`` in each dense layer."""
        m = self.model
        if not m.dense_layers:
            return None
        a = self._gemm(T, self.ff_up_n, m.hidden_size)
        b = self._gemm(T, m.hidden_size, self.ff_down_k)
        return self._sum(a, b, layers=m.dense_layers)

    def experts_touched(self, T):
        """Expected distinct routed experts a batch of ``T`` tokens activates (uniform routing):
        ``E (1 - (1 - k / E)^T)``."""
        return eff.moe_layout(T, self.model.num_experts, self.model.experts_per_token)[0]

    def moe_ffn(self, T, T_all=None):
        """Router ``T x hidden @ hidden x E`` (BF16); routed experts as the fused grouped-GEMM
        kernel of :func:`planner.perf.efficiency.moe_experts_time` over the experts this GPU
        holds that the batch touches, with ``T k / touched`` rows each (TP-sharded widths when
        ``ep == 1``, whole experts when ``ep > 1``, the busiest GPU's rows under uniform
        routing), token permutation (gather + scatter of ``T k`` rows) included; shared experts
        as dense GEMMs. Under data-parallel attention ``T`` is the rank's tokens (router, shared
        experts) and ``T_all`` the instance's (routed experts; default ``T * dp``, every rank as
        loaded as this one)."""
        parts = self.moe_parts(T, T_all)
        if parts is None:
            return None
        rank, routed = parts
        return tuple(a + b for a, b in zip(rank[:3], routed[:3])) + (rank[3],)

    def moe_parts(self, T, T_all=None):
        """:meth:`moe_ffn` as (the rank's part: router and shared experts on ``T``; the routed
        part on ``T_all``), each ``(seconds, FLOPs, bytes, peak)`` over the MoE layers."""
        m = self.model
        if not m.is_moe:
            return None
        T = _as(T)
        T_all = T * self.dp if T_all is None else _as(T_all)
        h, fe, E, k = m.hidden_size, m.moe_intermediate_size, m.num_experts, m.experts_per_token
        groups, rows = eff.moe_layout(T_all, E, k, self.ep)
        width = fe if self.ep > 1 else fe / self.tp
        up_n = (m.ffn_matrices - 1) * width
        rank = [self._gemm(T, E, h, bf16=True)]
        if m.num_shared_experts:
            sw = m.num_shared_experts * fe / self.tp
            rank += [self._gemm(T, (m.ffn_matrices - 1) * sw, h), self._gemm(T, h, sw)]
        perm = 2.0 * 2.0 * T_all * k * h * ACTIVATION_BYTES / (self.ep if self.ep > 1 else 1)
        peak, g, wb, ab, lp = self.expert_prec  # the routed experts' stored dtype
        t = eff.moe_experts_time(rows, groups, up_n, width, h, peak=peak, hbm=self.gpu.hbm_bytes_per_s,
                                 sms=self.gpu.sm_count, g=g, moe=self.eff.moe, w_bytes=wb,
                                 a_bytes=ab, quantise=lp, perm_bytes=perm,
                                 scale_c=self._sc, scale_m=self._sm)
        fl = 2.0 * rows * groups * (up_n * h + h * width)
        by = groups * ((up_n * h + h * width) * wb + rows * (h + width) * ab
                       + rows * (up_n + h) * ACTIVATION_BYTES) + perm
        routed = [(t, fl, by, peak)]
        return self._sum(*rank, layers=m.moe_layers), self._sum(*routed, layers=m.moe_layers)

    def elementwise(self, T):
        """Residual adds + RMSNorms: ``ELEMENTWISE_KERNELS`` fused kernels per layer, each moving
        ``ELEMENTWISE_PASSES x T x hidden`` BF16 values, at the GEMM kernel floor + bandwidth."""
        T = _as(T)
        by = ELEMENTWISE_PASSES * T * self.model.hidden_size * ACTIVATION_BYTES
        g = self.g_bf16
        t = np.where(T > 0, ELEMENTWISE_KERNELS * g["floor_s"]
                     + ELEMENTWISE_KERNELS * by / (self.gpu.hbm_bytes_per_s * g["mem"] * self._sm), 0.0)
        n = self.model.num_layers
        return t * n, 0.0 * T, ELEMENTWISE_KERNELS * by * n, self.peak_bf16

    def lm_head(self, logits):
        """``logits x hidden @ hidden x vocab / tp`` in BF16 (kept so by quantised checkpoints)."""
        return self._sum(self._gemm(logits, self.model.vocab_size / self.tp, self.model.hidden_size,
                                    bf16=True), layers=1)

    def tp_comm(self, T):
        """Two all-reduces of ``T x hidden`` BF16 per layer (after attention and after the FFN;
        the MoE one becomes all-to-alls under expert parallelism), each timed by message size."""
        m = self.model
        if self.tp <= 1:
            return _as(T) * 0.0
        one = self.allreduce(_as(T) * m.hidden_size * ACTIVATION_BYTES)
        n_ar = m.num_layers + m.attention_layers - (m.moe_layers if self.ep > 1 else 0)
        return one * n_ar / self._scomm

    def allreduce(self, msg_bytes):
        """One all-reduce among the TP group (measured table where the GPU has one)."""
        return eff.allreduce_time(msg_bytes, self.tp, table=self._ar_table, link_bw=self.intra_bw or 1e30,
                                  oneshot_s=self.eff.oneshot_s, busbw=self.eff.busbw)

    def ep_comm(self, T, mode="normal"):
        """Dispatch and combine per MoE layer among the ``ep`` expert-parallel GPUs: each GPU
        sends its ``T / tp`` tokens times top-k rows of hidden, in FP8 for the dispatch of an FP8
        (or FP4) model and BF16 otherwise, BF16 for the combine
        (:func:`planner.perf.efficiency.ep_alltoall_time`; ``mode`` picks DeepEP's low-latency
        or normal kernels)."""
        m = self.model
        if self.ep <= 1:
            return _as(T) * 0.0
        rows = _as(T) * m.experts_per_token * m.hidden_size / self.tp
        kw = dict(gpus_per_node=self.gpu.gpus_per_node, nvlink_bw=self.intra_bw or 1e30,
                  nic_bw=self.nic_bw, mode=mode, topk=m.experts_per_token)
        dispatch = eff.ep_alltoall_time(rows * self.a_bytes, self.ep, **kw)
        combine = eff.ep_alltoall_time(rows * ACTIVATION_BYTES, self.ep, **kw)
        return (dispatch + combine) * m.moe_layers / self._scomm

    def pp_comm(self, T):
        """``pp - 1`` point-to-point hops of ``T x hidden`` BF16 activations."""
        if self.pp <= 1:
            return _as(T) * 0.0
        msg = _as(T) * self.model.hidden_size * ACTIVATION_BYTES
        return (self.pp - 1) * (P2P_LATENCY_S + msg / (self.pp_bw or 1e30)) / self._scomm

    def prefill_attention(self, tokens, pairs, kv, seqs):
        """FlashAttention-style causal prefill over ``tokens`` query tokens in ``seqs`` pieces
        (``pairs`` query-key pairs, ``kv`` keys read), per layer:
        ``max(prefill kernel(FLOPs, mean piece, blocks), KV bytes / (HBM_BW * mem))``."""
        n, s = _as(tokens), np.maximum(_as(seqs), 1.0)
        q_len = n / s
        fl = self.attn_flops_pair_prefill * _as(pairs) / self.tp
        blocks = s * self.heads_gpu * np.ceil(q_len / 128.0)
        t = eff.prefill_attention_time(fl, q_len, blocks, peak=self.peak_bf16, sms=self.gpu.sm_count,
                                       a=self.eff.prefill, scale_c=self._sc)
        kvb = self.kv_elems_gpu * self.bkv
        by = (_as(kv) + n) * kvb + n * 2 * self.heads_gpu * self.model.head_dim * ACTIVATION_BYTES
        t = np.where(n > 0, np.maximum(t, by / (self.gpu.hbm_bytes_per_s * self.g_bf16["mem"] * self._sm)), 0.0)
        return t * self.layers, fl * self.layers, by * self.layers, self.peak_bf16

    def decode_attention(self, batch, ctx, query=1):
        """Paged decode attention for ``batch`` sequences of total context ``ctx``, per layer:
        ``floor + (per_seq + per_read r) B + max(FLOPs / (peak_bf16 * mamf_prefill),
        KV bytes read / (HBM_BW eta(B r)))`` with ``r`` the KV heads read per sequence and ``eta``
        occupancy-bound by ``B x r`` (see efficiency.decode_kv_reads, decode_attention_eta).
        ``query`` rows per sequence (speculative verification: ``K + 1``) read each sequence's KV
        once, multiply the FLOPs and write ``query`` new KV entries: ``max(q t_c X, t_m (X + q B))``."""
        B, q = _as(batch), _as(query)
        kvb = self.kv_elems_gpu * self.bkv * self.kv_read_factor
        read = _as(ctx) * self.kv_window  # sliding-window layers read at most their window
        fl = self.attn_flops_pair_decode * read * q / self.tp
        by = (read + q * B) * kvb
        t_c, t_m = self._decode_coefficients(B)
        t = np.where(B > 0, eff.decode_attention_floor(B, self.kv_reads_gpu, d=self.eff.decode)
                     + np.maximum(q * t_c * _as(ctx), t_m * (_as(ctx) + q * B)), 0.0)
        return t * self.layers, fl * self.layers, by * self.layers, self.peak_bf16

    def _decode_coefficients(self, B):
        """Per-layer seconds per context token of the decode kernel's compute and memory terms."""
        kvb = self.kv_elems_gpu * self.bkv * self.kv_read_factor
        eta = eff.decode_attention_eta(B, self.kv_reads_gpu, d=self.eff.decode, fp8=self.kv_dtype == "fp8",
                                       scale_m=self._sm)
        t_c = self.attn_flops_pair_decode / self.tp / (self.peak_bf16 * self.eff.pf_mamf * self._sc)
        w = self.kv_window  # context read per context token (sliding-window layers; 1.0 without)
        return t_c * w, kvb / (self.gpu.hbm_bytes_per_s * eta) * w

    @staticmethod
    def _sum(*parts, layers):
        t = sum(p[0] for p in parts) * layers
        fl = sum(p[1] for p in parts) * layers
        by = sum(p[2] for p in parts) * layers
        return t, fl, by, parts[0][3]

    # ------------------------------------------------------------------------------------
    def busiest_rank(self, prefill_tokens, prefill_pairs, prefill_kv, prefill_seqs, decode_batch,
                     decode_ctx):
        """What the busiest of the ``dp`` attention ranks carries of a lane's iteration (the
        ranks step together, so it sets the iteration's length): ``ceil(B / dp)`` of the ``B``
        decodes (at most ``B``) with their share of the context, and ``ceil(s / dp)`` of the
        ``s`` prompt pieces (a piece lives on one rank) with that share of the prompt tokens
        (rounded up), pairs and keys. Returns the six quantities for that rank."""
        if self.dp == 1:
            return prefill_tokens, prefill_pairs, prefill_kv, prefill_seqs, decode_batch, decode_ctx
        dp = self.dp
        B, n, s = _as(decode_batch), _as(prefill_tokens), _as(prefill_seqs)
        Br = np.minimum(B, np.ceil(B / dp - 1e-9))
        ctx_r = np.where(B > 0, _as(decode_ctx) * Br / np.maximum(B, 1e-12), 0.0)
        sr = np.minimum(s, np.ceil(s / dp - 1e-9))
        share = np.where((n > 0) & (s > 0), sr / np.maximum(s, 1e-12), 1.0)
        nr = np.ceil(n * share - 1e-9)
        return nr, _as(prefill_pairs) * share, _as(prefill_kv) * share, sr, Br, ctx_r

    def iteration(self, *, prefill_tokens=0, prefill_pairs=0, prefill_kv=0, prefill_seqs=0,
                  decode_batch=0, decode_ctx=0, decode_query=1) -> StepCost:
        """The general iteration of one lane: ``decode_batch`` decodes (context sum
        ``decode_ctx``) plus ``prefill_tokens`` prompt tokens in ``prefill_seqs`` pieces. Under
        data-parallel attention these are the instance's (per pipeline lane): the attention side
        runs what the busiest rank carries (:meth:`busiest_rank`), the routed experts every
        rank's tokens. ``decode_query``: tokens each decode feeds in (``K + 1`` when verifying
        ``K`` draft tokens; every one is a GEMM row and a logit)."""
        T_all = _as(prefill_tokens) + _as(decode_batch) * decode_query
        (prefill_tokens, prefill_pairs, prefill_kv, prefill_seqs, decode_batch,
         decode_ctx) = self.busiest_rank(prefill_tokens, prefill_pairs, prefill_kv, prefill_seqs,
                                         decode_batch, decode_ctx)
        T = _as(prefill_tokens) + _as(decode_batch) * decode_query
        logits = _as(prefill_seqs) + _as(decode_batch) * decode_query
        ops = {"attention_proj": self.attention_proj(T), "ffn": self.dense_ffn(T),
               "moe_ffn": self.moe_ffn(T, T_all), "elementwise": self.elementwise(T),
               "lm_head": self.lm_head(logits),
               "attention_prefill": self.prefill_attention(prefill_tokens, prefill_pairs, prefill_kv,
                                                           prefill_seqs),
               "attention_decode": self.decode_attention(decode_batch, decode_ctx, decode_query)}
        parts: dict[str, Any] = {}
        flops: Any = 0.0  # floats or arrays, as the inputs broadcast
        nbytes: Any = 0.0
        comp: Any = 0.0
        mem: Any = 0.0
        hbm = self.gpu.hbm_bytes_per_s
        for name, op in ops.items():
            if op is None:
                continue
            t, fl, by, peak = op
            parts[name] = t
            flops, nbytes = flops + fl, nbytes + by
            is_c = _as(fl) / peak >= _as(by) / hbm
            comp = comp + np.where(is_c, t, 0.0)
            mem = mem + np.where(is_c, 0.0, t)
        parts["tp_allreduce"] = self.tp_comm(T)
        if self.ep > 1:
            # Decode-only iterations use the low-latency kernels, the others the normal ones.
            decode_only = _as(prefill_tokens) <= 0
            parts["ep_alltoall"] = np.where(decode_only, self.ep_comm(T, "low_latency"), self.ep_comm(T))
        if self.pp > 1:
            parts["pp_sendrecv"] = self.pp_comm(T)
        comm = parts["tp_allreduce"] + parts.get("ep_alltoall", 0.0) + parts.get("pp_sendrecv", 0.0)
        busy = (T_all > 0) | (logits > 0)
        overhead = np.where(busy, self.overhead_s, 0.0) + 0.0 * T
        parts["overhead"] = overhead
        time = sum(parts.values())
        # (FLOPs and bytes: the busiest rank's times the GPUs, an upper bound under dp.)
        return StepCost(time_s=time, flops=flops * self.tp * self.dp, bytes=nbytes * self.tp * self.dp,
                        compute_s=comp,
                        memory_s=mem, comm_s=comm, overhead_s=overhead, breakdown=parts)

    def prefill(self, tokens, offset=0, seqs=1) -> StepCost:
        """Prefill of ``seqs`` sequences of ``tokens`` new tokens each, after ``offset`` cached
        tokens (a chunk). Causal attention: ``c * (offset + c / 2)`` pairs per sequence."""
        c, p, s = _as(tokens), _as(offset), _as(seqs)
        return self.iteration(prefill_tokens=c * s, prefill_pairs=s * c * (p + c / 2),
                              prefill_kv=s * (p + c), prefill_seqs=s)

    def decode(self, batch, context, query=None) -> StepCost:
        """One decode step of ``batch`` sequences at mean context ``context`` (``query`` tokens
        each; default the instance's :attr:`decode_query`)."""
        B = _as(batch)
        q = self.decode_query if query is None else query
        return self.iteration(decode_batch=B, decode_ctx=B * _as(context), decode_query=q)

    # Fast paths returning seconds only.
    def prefill_time(self, tokens, offset=0, seqs=1):
        return self.prefill(tokens, offset, seqs).time_s

    def decode_time(self, batch, context, query=None):
        return self.decode(batch, context, query).time_s
