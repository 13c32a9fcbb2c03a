"""Table-driven step times for the simulator, built by evaluating :class:`StepModel`.

An iteration decomposes exactly into ``base[T] + lm[logits] + prefill attention + decode
attention``: everything but attention depends only on the token count ``T`` and the number of
logits, which are tabulated by evaluating the roofline's own operator methods; the decode
attention is ``floor[B] + max(F * X, G[B] * (X + B))`` in the context sum ``X`` (the shape the
simulator's closed-form decode runs rely on), and the prefill attention is evaluated in scalar
arithmetic with the same formulas. ``tests/test_perf.py`` pins :meth:`FastTimes.time` to
:meth:`StepModel.iteration` (hypothesis, 1e-9 relative)."""

from __future__ import annotations

import math

import numpy as np

from planner.perf.efficiency import decode_attention_floor
from planner.perf.roofline import StepModel


class FastTimes:
    """Scalar step times in a few float operations (see the module docstring)."""

    def __init__(self, sm: StepModel, max_tokens: int):
        n = int(max_tokens) + 1
        T = np.arange(n, dtype=float)
        base = sm.attention_proj(T)[0] + sm.elementwise(T)[0] + sm.tp_comm(T)
        for op in (sm.dense_ffn(T), sm.moe_ffn(T)):
            if op is not None:
                base = base + op[0]
        if sm.pp > 1:
            base = base + sm.pp_comm(T)
        base = base + np.where(T > 0, sm.overhead_s, 0.0)
        # Expert-parallel all-to-alls: normal kernels when the iteration has prompt tokens,
        # low-latency ones for decode-only iterations (as StepModel.iteration).
        base_dec = base
        if sm.ep > 1:
            base, base_dec = base + sm.ep_comm(T), base + sm.ep_comm(T, "low_latency")
        L = sm.layers
        t_c, t_m = sm._decode_coefficients(T)
        self.base = base
        self.lm = sm.lm_head(T)[0]
        self.dec_floor = decode_attention_floor(T, sm.kv_reads_gpu, d=sm.eff.decode) * L
        self.max_tokens = n - 1
        # Plain Python lists: indexing them is faster than numpy scalars.
        self.base_l = self.base.tolist()
        self.base_dec_l = self.base_l if base_dec is base else base_dec.tolist()
        self.lm_l = self.lm.tolist()
        self.dec_floor_l = self.dec_floor.tolist()
        self.dec_flop_l = [float(t_c) * L] * n  # F: compute seconds per context token
        self.dec_byte_l = (np.asarray(t_m) * L).tolist()  # G[B]: memory seconds per token read
        # Prefill attention constants (scalar copies of StepModel.prefill_attention's terms).
        a = sm.eff.prefill
        self._pf = (sm.attn_flops_pair_prefill / sm.tp, sm.heads_gpu, float(sm.gpu.sm_count),
                    a["floor_s"], a["mamf"], a["half_tokens"], a["wave"], sm.peak_bf16,
                    sm.kv_elems_gpu * sm.bkv, 2 * sm.heads_gpu * sm.model.head_dim * 2.0,
                    sm.gpu.hbm_bytes_per_s * sm.g_bf16["mem"], float(L))

    def prefill_attention(self, tokens: float, pairs: float, kv: float, seqs: float) -> float:
        if tokens <= 0:
            return 0.0
        c_fl, heads, sms, floor, mamf, half, wave, peak, kvb, act, bw, L = self._pf
        s = max(seqs, 1.0)
        q = tokens / s
        blocks = max(s * heads * math.ceil(q / 128.0), 1.0)
        util = blocks / (math.ceil(blocks / sms) * sms)
        fl = c_fl * pairs
        t = floor + fl / (peak * (mamf * q / (q + half) * util ** wave)) if fl > 0 else 0.0
        t = max(t, ((kv + tokens) * kvb + tokens * act) / bw)
        return t * L

    def decode_attention(self, batch: int, ctx: float, query: int = 1) -> float:
        if batch <= 0:
            return 0.0
        return self.dec_floor_l[batch] + max(query * self.dec_flop_l[batch] * ctx,
                                             self.dec_byte_l[batch] * (ctx + query * batch))

    def time(self, pf_tokens: int, pf_pairs: float, pf_kv: float, pf_seqs: int,
             dec_batch: int, dec_ctx: float, dec_query: int = 1) -> float:
        """``dec_query`` tokens per decode (speculative verification: ``K + 1``)."""
        rows = dec_batch * dec_query
        T = pf_tokens + rows
        if T > self.max_tokens:
            raise ValueError(f"iteration of {T} tokens exceeds the table ({self.max_tokens})")
        t = (self.base_l if pf_tokens else self.base_dec_l)[T] + self.lm_l[pf_seqs + rows]
        if pf_tokens:
            t += self.prefill_attention(pf_tokens, pf_pairs, pf_kv, pf_seqs)
        if dec_batch:
            t += self.decode_attention(dec_batch, dec_ctx, dec_query)
        return t


def fast_times(sm: StepModel, max_tokens: int):
    """The simulator's tables of ``sm``: :class:`FastTimes`, or for a speculative instance
    (:class:`planner.perf.speculative.SpecStepModel`) its ``SpecFastTimes``."""
    if getattr(sm, "spec", None) is None:
        return FastTimes(sm, max_tokens)
    from planner.perf.speculative import SpecFastTimes

    return SpecFastTimes(sm, max_tokens)
