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
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from planner.perf.efficiency import decode_attention_floor
from planner.perf.roofline import StepModel

if TYPE_CHECKING:
    from planner.perf.speculative import SpecStepModel


class FastTimes:
    """Scalar step times in a few float operations (see the module docstring).

    Under data-parallel attention (``sm.dp > 1``) the tables are indexed by what the busiest
    rank carries (attention side) and by the lane's total tokens (routed experts), and
    :meth:`time` maps a lane's iteration to its busiest rank the way
    :meth:`StepModel.busiest_rank` does."""

    # Per-token tables (lists of seconds) that one dp branch builds and the other sets to None;
    # the hot paths index them unchecked, after branching on dp.
    rank_l: Any
    rank_dec_l: Any
    routed_l: Any
    base_l: Any
    base_dec_l: Any

    def __init__(self, sm: StepModel, max_tokens: int):
        n = int(max_tokens) + 1
        T = np.arange(n, dtype=float)
        self.dp = int(sm.dp)
        parts = sm.moe_parts(T, T) if sm.model.is_moe else None
        # The rank's part of everything but attention (indexed by the rank's tokens) ...
        base = sm.attention_proj(T)[0] + sm.elementwise(T)[0] + sm.tp_comm(T)
        if sm.dense_ffn(T) is not None:
            base = base + sm.dense_ffn(T)[0]
        if parts is not None:
            base = base + parts[0][0]
        if sm.pp > 1:
            base = base + sm.pp_comm(T)
        base_dec = base
        if sm.ep > 1:
            # Expert-parallel all-to-alls: normal kernels when the iteration has prompt tokens,
            # low-latency ones for decode-only iterations (as StepModel.iteration).
            base, base_dec = base + sm.ep_comm(T), base + sm.ep_comm(T, "low_latency")
        # ... and the routed experts (indexed by the lane's tokens), with the iteration's
        # overhead; with dp == 1 both are folded into one table by the lane's tokens.
        routed = (parts[1][0] if parts is not None else 0.0 * T) + np.where(T > 0, sm.overhead_s, 0.0)
        L = sm.layers
        t_c, t_m = sm._decode_coefficients(T)
        self.lm = sm.lm_head(T)[0]
        self.dec_floor = decode_attention_floor(T, sm.kv_reads_gpu, d=sm.eff.decode) * L
        self.max_tokens = n - 1
        # Plain Python lists: indexing them is faster than numpy scalars.
        self.lm_l = self.lm.tolist()
        self.dec_floor_l = self.dec_floor.tolist()
        self.dec_flop_l = [float(t_c) * L] * n  # F: compute seconds per context token
        self.dec_byte_l = (np.asarray(t_m) * L).tolist()  # G[B]: memory seconds per token read
        if self.dp == 1:
            self.base = base + routed
            self.base_l = self.base.tolist()
            self.base_dec_l = self.base_l if base_dec is base else (base_dec + routed).tolist()
            self.rank_l = self.rank_dec_l = None
            self.routed_l = None
            # A decode iteration of B sequences at context sum X: A[B] + max(F[B] X, G[B] (X + B)).
            self.decode_A_l = [self.base_dec_l[b] + self.lm_l[b] + self.dec_floor_l[b] for b in range(n)]
            self.decode_F_l = self.dec_flop_l
            self.decode_G_l = self.dec_byte_l
        else:
            self.rank_l, self.rank_dec_l = base.tolist(), base_dec.tolist()
            self.routed_l = routed.tolist()
            self.base_l = self.base_dec_l = None
            # Decodes only: the busiest rank holds Br = ceil(B / dp) of them and Br / B of the
            # context sum, so its attention is floor[Br] + max(F Br/B X, G[Br] Br/B (X + B)).
            terms = [self.decode_terms(b) for b in range(n)]
            self.decode_A_l = [t[0] for t in terms]
            self.decode_F_l = [t[1] for t in terms]
            self.decode_G_l = [t[2] for t in terms]
        # Prefill attention constants (scalar copies of StepModel.prefill_attention's terms).
        a = sm.eff.prefill
        self._pf = (sm.attn_flops_pair_prefill / sm.tp, sm.heads_gpu, float(sm.gpu.sm_count),
                    a["floor_s"], a["mamf"], a["half_tokens"], a["wave"], sm.peak_bf16,
                    sm.kv_elems_gpu * sm.bkv, 2 * sm.heads_gpu * sm.model.head_dim * 2.0,
                    sm.gpu.hbm_bytes_per_s * sm.g_bf16["mem"], float(L))

    def _rank_batch(self, b: int) -> int:
        """The busiest rank's share of ``b`` (``min(b, ceil(b / dp))``, as StepModel.busiest_rank)."""
        return min(b, math.ceil(b / self.dp - 1e-9))

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

    def decode_terms(self, b: int, q: int = 1) -> tuple[float, float, float]:
        """A decode-only iteration of ``b`` sequences feeding ``q`` tokens each, at context sum
        ``X``, is ``A + max(F X, G (X + q b))``: returns ``(A, F, G)`` (under data-parallel
        attention for the lane's ``b``: its busiest rank holds ``Br = ceil(b / dp)`` and
        ``Br / b`` of the context)."""
        if b <= 0:
            return 0.0, 0.0, 0.0
        if self.dp == 1:
            return (self.base_dec_l[b * q] + self.lm_l[b * q] + self.dec_floor_l[b],
                    q * self.dec_flop_l[b], self.dec_byte_l[b])
        br = self._rank_batch(b)
        return (self.rank_dec_l[br * q] + self.routed_l[b * q] + self.lm_l[br * q] + self.dec_floor_l[br],
                q * self.dec_flop_l[br] * br / b, self.dec_byte_l[br] * br / b)

    def time(self, pf_tokens: int, pf_pairs: float, pf_kv: float, pf_seqs: int,
             dec_batch: int, dec_ctx: float, dec_query: int = 1) -> float:
        """``dec_query`` tokens per decode (speculative verification: ``K + 1``)."""
        rows = dec_batch * dec_query
        T = pf_tokens + rows
        if T > self.max_tokens:
            raise ValueError(f"iteration of {T} tokens exceeds the table ({self.max_tokens})")
        if self.dp > 1:
            return self._time_dp(pf_tokens, pf_pairs, pf_kv, pf_seqs, dec_batch, dec_ctx, dec_query)
        t = (self.base_l if pf_tokens else self.base_dec_l)[T] + self.lm_l[pf_seqs + rows]
        if pf_tokens:
            t += self.prefill_attention(pf_tokens, pf_pairs, pf_kv, pf_seqs)
        if dec_batch:
            t += self.decode_attention(dec_batch, dec_ctx, dec_query)
        return t

    def _time_dp(self, pf_tokens, pf_pairs, pf_kv, pf_seqs, dec_batch, dec_ctx, q=1) -> float:
        br = self._rank_batch(dec_batch)
        ctx = dec_ctx * br / dec_batch if dec_batch else 0.0
        if pf_tokens and pf_seqs:
            sr = min(pf_seqs, math.ceil(pf_seqs / self.dp - 1e-9))
            share = sr / pf_seqs
            nr = math.ceil(pf_tokens * share - 1e-9)
        else:
            sr, share, nr = pf_seqs, 1.0, pf_tokens
        t = ((self.rank_l if pf_tokens else self.rank_dec_l)[nr + br * q]
             + self.routed_l[pf_tokens + dec_batch * q] + self.lm_l[sr + br * q])
        if nr:
            t += self.prefill_attention(nr, pf_pairs * share, pf_kv * share, sr)
        if br:
            t += self.decode_attention(br, ctx, q)
        return t


def fast_times(sm: StepModel, max_tokens: int):
    """The simulator's tables of ``sm``: :class:`FastTimes`, or for a speculative instance
    (:class:`planner.perf.speculative.SpecStepModel`) its ``SpecFastTimes``."""
    if getattr(sm, "spec", None) is None:
        return FastTimes(sm, max_tokens)
    from planner.perf.speculative import SpecFastTimes

    return SpecFastTimes(cast("SpecStepModel", sm), max_tokens)  # it has a spec: a SpecStepModel
