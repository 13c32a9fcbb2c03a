"""Roofline step times of one model instance: prefill, decode and mixed iterations.

Every operator of a transformer layer is costed as ``max(FLOPs / achieved FLOP/s,
bytes / achieved bytes/s)`` (a per-operator roofline; LLM-Viewer and Sarathi-Serve section 3.1
use the same form) and the operators are summed. Tensor parallelism adds two all-reduces per
layer on an alpha-beta model (latency floor plus message-size-dependent bandwidth); pipeline
parallelism adds point-to-point hops between stages. The formulas, their sources and the
efficiency factors are in ``docs/methodology.md``.

An *instance* is ``tp * pp`` GPUs serving one model replica. With ``pp`` stages it keeps ``pp``
micro-batches in flight, so it behaves as ``pp`` *lanes*, each of which sees full-pass latency.
All step times returned here are full-pass latencies of one lane's batch.

Every function accepts numpy arrays (broadcast together) so that the optimizer and the simulator
can evaluate whole grids without Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np

from planner.catalog import ACTIVATION_BYTES, DTYPE_BYTES, GPUSpec, LinkSpec, ModelSpec
from planner.errors import DoesNotFitError, InvalidRequestError

# Share of HBM an engine hands to weights + KV cache (vLLM's default gpu_memory_utilization).
GPU_MEMORY_UTILIZATION = 0.90
# Tokens per iteration the activation reserve is sized for (vLLM's default token budget on
# large GPUs is 8192; arg_utils.get_batch_defaults).
ACTIVATION_RESERVE_TOKENS = 8192
# Fixed runtime reserve per GPU: CUDA context, CUDA graphs, NCCL buffers (an approximation;
# vLLM reports 1-2 GiB for these on H100-class GPUs).
RUNTIME_RESERVE_BYTES = 1.5e9
# Latency of one pipeline hop / KV handshake (AIConfigurator's p2p_latency constant).
P2P_LATENCY_S = 10e-6
# Base latency of one NCCL collective before the per-hop term (GenZ collective_times.py).
COLLECTIVE_BASE_S = 5e-6
# Elementwise traffic per layer in units of tokens * hidden * 2 bytes: two fused residual-add +
# RMSNorm kernels, each reading two tensors and writing two. RoPE is folded into attention.
ELEMENTWISE_PASSES = 8


@dataclass(frozen=True)
class StepCost:
    """One iteration's cost (arrays broadcast over the inputs)."""

    time_s: np.ndarray  # full-pass latency of the lane's batch
    flops: np.ndarray  # total FLOPs over the instance
    bytes: np.ndarray  # total bytes moved to/from HBM over the instance
    compute_s: np.ndarray  # time of ops whose compute term dominates
    memory_s: np.ndarray  # time of ops whose memory term dominates
    comm_s: np.ndarray  # collectives and pipeline hops
    overhead_s: np.ndarray  # fixed per-layer cost
    breakdown: dict  # op group -> seconds

    @property
    def bound(self):
        """'compute', 'memory' or 'communication': the largest share of the time."""
        stack = np.stack(np.broadcast_arrays(self.compute_s, self.memory_s, self.comm_s))
        names = np.array(["compute", "memory", "communication"])
        return names[np.argmax(stack, axis=0)]


def _as(x):
    return np.asarray(x, dtype=float)


class StepModel:
    """Step-time model of one instance: ``model`` on ``tp * pp`` GPUs of type ``gpu``.

    ``ep`` (MoE only) is the expert-parallel degree inside the instance: 1 shards every expert
    over the TP group (all-reduce after the FFN), ``tp`` places whole experts on GPUs and
    replaces that all-reduce by a dispatch and a combine all-to-all.
    """

    def __init__(self, model: ModelSpec, gpu: GPUSpec, tp: int = 1, pp: int = 1, *,
                 dtype: str | None = None, kv_dtype: str | None = None, ep: int = 1,
                 link_pp: LinkSpec | None = None, intra_link: LinkSpec | None = None):
        self.model, self.gpu = model, gpu
        self.tp, self.pp = int(tp), int(pp)
        self.dtype = dtype or model.default_dtype
        self.kv_dtype = kv_dtype or model.default_kv_dtype
        if self.dtype not in DTYPE_BYTES or self.kv_dtype not in DTYPE_BYTES:
            raise InvalidRequestError(f"--dtype/--kv-dtype: unknown dtype {self.dtype}/{self.kv_dtype}")
        self.ep = int(ep) if model.is_moe else 1
        if self.ep not in (1, self.tp):
            raise InvalidRequestError(f"--ep: must be 1 or equal to tp ({self.tp}), got {ep}")
        self.bw = DTYPE_BYTES[self.dtype]
        self.bkv = DTYPE_BYTES[self.kv_dtype]
        self.peak = gpu.flops_for(self.dtype)
        self.peak_attn = gpu.peak_flops["bf16"]  # attention runs on BF16 activations
        # Interconnect bandwidth for TP collectives and PP hops.
        self.intra_bw = intra_link.bytes_per_s if intra_link else None
        self.pp_bw = link_pp.bytes_per_s if link_pp else None
        self._precompute()

    # ------------------------------------------------------------------------------------
    def _precompute(self):
        m, tp = self.model, self.tp
        h = m.hidden_size
        self.layers = m.num_layers
        self.stage_layers = ceil(m.num_layers / self.pp)
        # Per-GPU KV elements per token per layer (KV heads replicate when tp exceeds them; the
        # MLA latent is shared by all heads and replicated on every TP rank).
        if m.is_mla:
            self.kv_elems_gpu = float(m.kv_elements_per_token_per_layer)
        else:
            self.kv_elems_gpu = 2.0 * max(m.num_kv_heads / tp, 1.0) * m.head_dim
        # Attention FLOPs per (query token, key token) pair per layer, over the whole TP group.
        if m.is_mla:
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            self.attn_flops_pair_prefill = 2.0 * m.num_heads * (qk + m.v_head_dim)
            # Absorbed decode: scores over the latent (rank + rope) and values from the latent.
            self.attn_flops_pair_decode = 2.0 * m.num_heads * (2 * m.kv_lora_rank + m.qk_rope_head_dim)
        else:
            self.attn_flops_pair_prefill = 4.0 * m.num_heads * m.head_dim
            self.attn_flops_pair_decode = self.attn_flops_pair_prefill
        self.attn_params = float(m.attn_params_per_layer)
        # Bytes of activations read + written by the attention projections per token.
        if m.is_mla:
            qkv_out = m.num_heads * (m.qk_nope_head_dim + m.qk_rope_head_dim) + m.kv_lora_rank
            o_in = m.num_heads * m.v_head_dim
        else:
            qkv_out = (m.num_heads + 2 * m.num_kv_heads) * m.head_dim
            o_in = m.num_heads * m.head_dim
        self.attn_act_per_token = (h + qkv_out + o_in + h) * ACTIVATION_BYTES
        ff = m.intermediate_size
        self.dense_ffn_params = float(m.dense_ffn_params)
        self.dense_ffn_act = (h + (m.ffn_matrices - 1) * ff + ff + h) * ACTIVATION_BYTES
        if m.is_moe:
            fe = m.moe_intermediate_size
            self.expert_params = float(m.expert_params)
            self.moe_act = (h + m.experts_per_token * ((m.ffn_matrices - 1) * fe + fe) + h) * ACTIVATION_BYTES
        self.lm_params = float(m.vocab_size * h)

    # ------------------------------------------------------------------------------------
    def _eta_c(self, tokens):
        """Achieved fraction of peak compute for GEMMs with ``tokens`` rows: saturating in the
        row count, ``eta * n / (n + n_half)`` (small GEMMs do not fill the GPU)."""
        n = np.maximum(_as(tokens), 1e-9)
        return self.gpu.compute_efficiency * n / (n + self.gpu.compute_half_tokens)

    def _roof(self, flops, nbytes, eta_c, peak=None):
        """Per-op roofline: returns (time, compute part, memory part)."""
        t_c = flops / ((peak or self.peak) * eta_c)
        t_m = nbytes / (self.gpu.hbm_bytes_per_s * self.gpu.memory_efficiency)
        t = np.maximum(t_c, t_m)
        return t, np.where(t_c >= t_m, t, 0.0), np.where(t_c >= t_m, 0.0, t)

    def _allreduce(self, msg_bytes, n):
        """Ring all-reduce among ``n`` GPUs: ``base + 2(n-1) hops + 2(n-1)/n * M / (eta * B)``."""
        if n <= 1:
            return np.zeros_like(_as(msg_bytes))
        bw = (self.intra_bw or 1e30) * self.gpu.comm_efficiency
        lat = COLLECTIVE_BASE_S + 2 * (n - 1) * self.gpu.allreduce_hop_s
        return lat + 2 * (n - 1) / n * _as(msg_bytes) / bw

    def _alltoall(self, msg_bytes, n):
        if n <= 1:
            return np.zeros_like(_as(msg_bytes))
        bw = (self.intra_bw or 1e30) * self.gpu.comm_efficiency
        lat = COLLECTIVE_BASE_S + (n - 1) * self.gpu.allreduce_hop_s
        return lat + (n - 1) / n * _as(msg_bytes) / bw

    # ------------------------------------------------------------------------------------
    def base(self, tokens, logits):
        """Everything but the attention core for an iteration of ``tokens`` tokens of which
        ``logits`` need the LM head (decodes plus prefills that finish). Returns a dict of arrays
        per op group plus totals; times are full-pass (all layers) latencies."""
        m, tp = self.model, self.tp
        T = _as(tokens)
        nl = _as(logits)
        eta = self._eta_c(T)
        h = m.hidden_size
        out = {}
        # Attention projections (QKV / MLA down-up projections and the output projection).
        fl = 2.0 * T * self.attn_params / tp
        by = (self.attn_params * self.bw + T * self.attn_act_per_token) / tp
        t, tc, tm = self._roof(fl, by, eta)
        acc = {"flops": fl * m.num_layers, "bytes": by * m.num_layers,
               "compute": tc * m.num_layers, "memory": tm * m.num_layers}
        out["attention_proj"] = t * m.num_layers

        def add(name, t, tc, tm, fl, by, layers):
            out[name] = out.get(name, 0.0) + t * layers
            acc["flops"] = acc["flops"] + fl * layers
            acc["bytes"] = acc["bytes"] + by * layers
            acc["compute"] = acc["compute"] + tc * layers
            acc["memory"] = acc["memory"] + tm * layers

        # Dense FFN layers.
        if m.dense_layers:
            fl = 2.0 * T * self.dense_ffn_params / tp
            by = (self.dense_ffn_params * self.bw + T * self.dense_ffn_act) / tp
            add("ffn", *self._roof(fl, by, eta), fl, by, m.dense_layers)
        # MoE layers: routed experts touched by the batch, shared experts, router.
        comm = np.zeros_like(T)
        if m.is_moe:
            E, k = m.num_experts, m.experts_per_token
            touched = E * -np.expm1(T * np.log1p(-k / E)) if k < E else np.full_like(T, E)
            per_gpu_experts = touched / tp
            fl = 2.0 * T * (k + m.num_shared_experts) * self.expert_params / tp + 2.0 * T * h * E / tp
            by = ((per_gpu_experts * tp + m.num_shared_experts) * self.expert_params * self.bw
                  + T * self.moe_act + h * E * ACTIVATION_BYTES) / tp
            # Rows per expert GEMM set the efficiency, not the whole batch.
            rows = np.maximum(T * k / np.maximum(touched, 1.0), 1.0)
            add("moe_ffn", *self._roof(fl, by, self._eta_c(rows)), fl, by, m.moe_layers)
            if self.ep > 1:
                a2a = 2.0 * self._alltoall(T * k * h * ACTIVATION_BYTES / tp, tp)
                comm = comm + a2a * m.moe_layers
        # Norms, residual adds, RoPE: memory-bound elementwise traffic (replicated on each rank).
        by = ELEMENTWISE_PASSES * T * h * ACTIVATION_BYTES
        add("elementwise", *self._roof(np.zeros_like(by), by, eta), np.zeros_like(by), by, m.num_layers)
        # LM head (vocab-parallel over TP; kept in BF16 by quantised checkpoints).
        fl = 2.0 * nl * self.lm_params / tp
        by = (self.lm_params * ACTIVATION_BYTES + nl * (h + m.vocab_size) * ACTIVATION_BYTES) / tp
        add("lm_head", *self._roof(fl, by, self._eta_c(nl), peak=self.peak_attn), fl, by, 1)
        # Tensor-parallel all-reduces: after attention and after the FFN (the latter replaced by
        # all-to-alls under expert parallelism).
        msg = T * h * ACTIVATION_BYTES
        ar = self._allreduce(msg, tp)
        n_ar = 2 * m.num_layers - (m.moe_layers if self.ep > 1 else 0)
        comm = comm + ar * n_ar
        # Pipeline hops between stages.
        if self.pp > 1:
            bw = self.pp_bw or 1e30
            comm = comm + (self.pp - 1) * (P2P_LATENCY_S + msg / bw)
        out["communication"] = comm
        overhead = np.full_like(T, self.gpu.step_overhead_s * m.num_layers)
        out["overhead"] = overhead
        acc["comm"], acc["overhead"] = comm, overhead
        return out, acc

    def attention(self, prefill_tokens, prefill_pairs, prefill_kv, decode_batch, decode_ctx):
        """Attention core (FlashAttention-style, fused). ``prefill_pairs`` = sum over prefill
        pieces of ``c * (offset + c / 2)`` (causal query-key pairs), ``prefill_kv`` = keys read
        by them (``offset + c``), ``decode_ctx`` = sum of decode contexts. Prefill and decode
        attention are separate kernels and are costed separately."""
        m = self.model
        tp = self.tp
        kvb = self.kv_elems_gpu * self.bkv
        n_pf = _as(prefill_tokens)
        # Prefill attention: compute-bound in all but tiny chunks; reads the cached keys once.
        fl_p = self.attn_flops_pair_prefill * _as(prefill_pairs) / tp
        by_p = (_as(prefill_kv) + n_pf) * kvb + n_pf * 2 * m.num_heads / tp * m.head_dim * ACTIVATION_BYTES
        tp_, tcp, tmp = self._roof(fl_p, by_p, self._eta_c(n_pf), peak=self.peak_attn)
        # Decode attention: reads every cached token of every sequence.
        B = _as(decode_batch)
        fl_d = self.attn_flops_pair_decode * _as(decode_ctx) / tp
        by_d = (_as(decode_ctx) + B) * kvb
        td, tcd, tmd = self._roof(fl_d, by_d, self._eta_c(B), peak=self.peak_attn)
        L = m.num_layers
        return {"attention": (tp_ + td) * L, "flops": (fl_p + fl_d) * L, "bytes": (by_p + by_d) * L,
                "compute": (tcp + tcd) * L, "memory": (tmp + tmd) * L}

    # ------------------------------------------------------------------------------------
    def iteration(self, *, prefill_tokens=0, prefill_pairs=0, prefill_kv=0, prefill_seqs=0,
                  decode_batch=0, decode_ctx=0) -> StepCost:
        """The general iteration: ``decode_batch`` decodes (context sum ``decode_ctx``) plus
        ``prefill_tokens`` prompt tokens in ``prefill_seqs`` pieces."""
        T = _as(prefill_tokens) + _as(decode_batch)
        logits = _as(prefill_seqs) + _as(decode_batch)
        parts, acc = self.base(T, logits)
        att = self.attention(prefill_tokens, prefill_pairs, prefill_kv, decode_batch, decode_ctx)
        parts["attention"] = att["attention"]
        time = sum(parts.values())
        tp_pp = self.tp  # FLOPs/bytes above are per GPU of one stage over all layers
        return StepCost(
            time_s=time,
            flops=(acc["flops"] + att["flops"]) * tp_pp,
            bytes=(acc["bytes"] + att["bytes"]) * tp_pp,
            compute_s=acc["compute"] + att["compute"],
            memory_s=acc["memory"] + att["memory"],
            comm_s=acc["comm"],
            overhead_s=acc["overhead"],
            breakdown=parts,
        )

    def prefill(self, tokens, offset=0, seqs=1) -> StepCost:
        """Prefill of ``seqs`` sequences of ``tokens`` new tokens each, after ``offset`` cached
        tokens (a chunk). Causal attention: ``c * (offset + c / 2)`` pairs per sequence."""
        c, p, s = _as(tokens), _as(offset), _as(seqs)
        return self.iteration(prefill_tokens=c * s, prefill_pairs=s * c * (p + c / 2),
                              prefill_kv=s * (p + c), prefill_seqs=s)

    def decode(self, batch, context) -> StepCost:
        """One decode step of ``batch`` sequences at mean context ``context``."""
        B = _as(batch)
        return self.iteration(decode_batch=B, decode_ctx=B * _as(context))

    def mixed(self, batch, context, chunk, offset=0) -> StepCost:
        """``batch`` decodes at mean context ``context`` plus a ``chunk``-token prefill piece
        after ``offset`` cached tokens (Sarathi-style hybrid batch)."""
        B, c, p = _as(batch), _as(chunk), _as(offset)
        return self.iteration(decode_batch=B, decode_ctx=B * _as(context), prefill_tokens=c,
                              prefill_pairs=c * (p + c / 2), prefill_kv=p + c,
                              prefill_seqs=np.where(c > 0, 1.0, 0.0))

    # Fast paths returning seconds only.
    def prefill_time(self, tokens, offset=0, seqs=1):
        return self.prefill(tokens, offset, seqs).time_s

    def decode_time(self, batch, context):
        return self.decode(batch, context).time_s

    def mixed_time(self, batch, context, chunk, offset=0):
        return self.mixed(batch, context, chunk, offset).time_s

    def chunked_prefill_time(self, isl, chunk):
        """Sum of the attention re-read cost when a prompt of ``isl`` tokens is processed in
        chunks of ``chunk`` tokens alone (no decodes): the pieces read the earlier chunks' KV."""
        isl = int(isl)
        starts = np.arange(0, isl, int(chunk), dtype=float)
        sizes = np.minimum(chunk, isl - starts)
        return float(np.sum(self.prefill_time(sizes, starts)))

    # ------------------------------------------------------------------------------------
    # Memory
    @property
    def weight_bytes_per_gpu(self) -> float:
        m = self.model
        body = (m.total_params - m.embedding_params) * self.bw / (self.tp * self.pp)
        embed = m.vocab_size * m.hidden_size * ACTIVATION_BYTES / self.tp  # one table per end stage
        if self.pp == 1 and not m.tie_word_embeddings:
            embed *= 2
        return body + embed

    @property
    def activation_reserve_bytes(self) -> float:
        m = self.model
        width = 4 * m.hidden_size + 2 * max(m.intermediate_size, m.moe_intermediate_size * m.experts_per_token) / self.tp
        return RUNTIME_RESERVE_BYTES + ACTIVATION_RESERVE_TOKENS * width * ACTIVATION_BYTES

    @property
    def kv_bytes_per_token_per_gpu(self) -> float:
        return self.stage_layers * self.kv_elems_gpu * self.bkv

    @property
    def kv_budget_bytes_per_gpu(self) -> float:
        return (self.gpu.hbm_bytes * GPU_MEMORY_UTILIZATION - self.weight_bytes_per_gpu
                - self.activation_reserve_bytes)

    @property
    def fits(self) -> bool:
        return self.kv_budget_bytes_per_gpu > 0

    @property
    def kv_capacity_tokens(self) -> float:
        """KV tokens the whole instance can hold (shared by its ``pp`` lanes)."""
        return max(self.kv_budget_bytes_per_gpu, 0.0) / self.kv_bytes_per_token_per_gpu

    def require_fit(self) -> None:
        if not self.fits:
            need = (self.weight_bytes_per_gpu + self.activation_reserve_bytes) / 1e9
            have = self.gpu.hbm_bytes * GPU_MEMORY_UTILIZATION / 1e9
            raise DoesNotFitError(
                f"{self.model.id} in {self.dtype} does not fit {self.gpu.id} at tp={self.tp} pp={self.pp}: "
                f"needs {need:.1f} GB per GPU for weights and runtime, {have:.1f} GB usable; "
                "raise --tp/--pp or use --dtype fp8"
            )


# --------------------------------------------------------------------------------------------
# Construction helpers and KV transfer
# --------------------------------------------------------------------------------------------


def check_parallel(model: ModelSpec, gpu: GPUSpec, tp: int, pp: int, flag: str = "--tp") -> None:
    """Raise a clear error for a TP/PP the model or the node cannot take."""
    if tp < 1 or pp < 1:
        raise InvalidRequestError(f"{flag}: must be a positive whole number, got tp={tp} pp={pp}")
    if tp > gpu.gpus_per_node:
        raise InvalidRequestError(
            f"{flag}: tp={tp} exceeds the {gpu.gpus_per_node} GPUs of a {gpu.id} node; "
            f"valid: {', '.join(str(t) for t in (1, 2, 4, 8) if t <= gpu.gpus_per_node)}"
        )
    if not model.valid_tp(tp):
        valid = [t for t in (1, 2, 4, 8) if model.valid_tp(t) and t <= gpu.gpus_per_node]
        raise InvalidRequestError(
            f"{flag}: tp={tp} does not divide the {model.num_heads} attention heads "
            f"({model.num_kv_heads} KV heads) of {model.id}; valid: {', '.join(map(str, valid))}"
        )
    if pp > model.num_layers:
        raise InvalidRequestError(f"--pp: pp={pp} exceeds the {model.num_layers} layers of {model.id}")


def build_step_model(catalog, model: ModelSpec, gpu: GPUSpec, tp: int = 1, pp: int = 1, *,
                     dtype: str | None = None, kv_dtype: str | None = None, ep: int = 1) -> StepModel:
    """A :class:`StepModel` with the links implied by the placement: TP inside a node on the
    GPU's intra-node link; PP hops on the intra-node link while the instance fits one node,
    else on the inter-node network."""
    check_parallel(model, gpu, tp, pp)
    intra = catalog.links[gpu.intra_node_link]
    pp_link = intra if tp * pp <= gpu.gpus_per_node else LinkSpec(
        id="inter-node", name="inter-node network", bytes_per_s=gpu.inter_node_bytes_per_s,
        latency_s=catalog.links[gpu.inter_node_link].latency_s)
    return StepModel(model, gpu, tp, pp, dtype=dtype, kv_dtype=kv_dtype, ep=ep,
                     link_pp=pp_link, intra_link=intra)


def kv_transfer_bytes(model: ModelSpec, tokens, kv_dtype: str):
    """Bytes of KV cache for ``tokens`` tokens in ``kv_dtype``."""
    return _as(tokens) * model.kv_bytes_per_token(kv_dtype)


def kv_transfer_time(nbytes, link: LinkSpec, *, streams: int = 1, prefill_time=None,
                     layers: int = 1, overlap: bool = False):
    """Time the decode side waits for a KV cache of ``nbytes`` over ``link``.

    ``streams`` GPUs send their shards in parallel (a TP group sends ``tp`` shards over ``tp``
    NICs or NVLink ports). Serialized: ``latency + S / (streams * B)``. With layer-wise overlap
    (Splitwise, Mooncake, DistServe) the transfer of layer ``i`` runs during the prefill of layer
    ``i + 1``; only what the prefill cannot hide is exposed:
    ``latency + max(S / (layers * BW), S / BW - T_prefill * (layers - 1) / layers)``.
    """
    bw = link.bytes_per_s * max(int(streams), 1)
    full = _as(nbytes) / bw
    if not overlap or prefill_time is None:
        return link.latency_s + full
    per_layer = full / max(layers, 1)
    hidden = _as(prefill_time) * (layers - 1) / max(layers, 1)
    return link.latency_s + np.maximum(per_layer, full - hidden)


class FastTimes:
    """Table-driven step times for the simulator: the same numbers as
    :meth:`StepModel.iteration`, but a scalar evaluation costs a few float operations.

    The iteration time decomposes exactly into ``base[T] + lm[logits] + attention``, where the
    attention terms are maxima of quantities linear in the context sums with coefficients that
    depend only on the token counts (tabulated here)."""

    def __init__(self, sm: StepModel, max_tokens: int):
        n = int(max_tokens) + 1
        T = np.arange(n, dtype=float)
        parts, _ = sm.base(T, np.zeros(n))
        lm_parts, _ = sm.base(np.zeros(1), T)
        zero_parts, _ = sm.base(np.zeros(1), np.zeros(1))
        self.base = sum(parts.values()) - parts["lm_head"]  # without the LM head
        self.lm = (lm_parts["lm_head"] - zero_parts["lm_head"] + zero_parts["lm_head"]).astype(float)
        m, tp, L = sm.model, sm.tp, sm.model.num_layers
        kvb = sm.kv_elems_gpu * sm.bkv
        mem = sm.gpu.hbm_bytes_per_s * sm.gpu.memory_efficiency
        eta = sm._eta_c(T)
        self.pf_flop = L * sm.attn_flops_pair_prefill / tp / (sm.peak_attn * eta)  # per pair
        self.pf_byte = L * kvb / mem  # per key read or written
        self.pf_act = L * 2 * m.num_heads / tp * m.head_dim * ACTIVATION_BYTES / mem  # per token
        self.dec_flop = L * sm.attn_flops_pair_decode / tp / (sm.peak_attn * eta)  # per context token
        self.max_tokens = n - 1
        # Plain Python lists: indexing them is faster than numpy scalars.
        self.base_l = self.base.tolist()
        self.lm_l = self.lm.tolist()
        self.pf_flop_l = self.pf_flop.tolist()
        self.dec_flop_l = self.dec_flop.tolist()

    def time(self, pf_tokens: int, pf_pairs: float, pf_kv: float, pf_seqs: int,
             dec_batch: int, dec_ctx: float) -> float:
        T = pf_tokens + dec_batch
        if T > self.max_tokens:
            raise ValueError(f"iteration of {T} tokens exceeds the table ({self.max_tokens})")
        t = self.base_l[T] + self.lm_l[pf_seqs + dec_batch]
        if pf_tokens:
            t += max(self.pf_flop_l[pf_tokens] * pf_pairs,
                     self.pf_byte * (pf_kv + pf_tokens) + self.pf_act * pf_tokens)
        if dec_batch:
            t += max(self.dec_flop_l[dec_batch] * dec_ctx, self.pf_byte * (dec_ctx + dec_batch))
        return t
