"""Chunked prefill: a token budget ``C`` per iteration, decodes first, prompt chunks fill the rest
(Sarathi-Serve's stall-free batching; vLLM V1's default scheduler).

Model (docs/methodology.md, "Chunked prefill"):

* With ``B`` running decodes an iteration carries up to ``s = C - B`` prompt tokens. A busy
  iteration (one that carries prompt tokens) takes ``T_c = T_mix(B, c)``; a decode-only
  iteration takes ``t_d(B)``.
* Prompt tokens arrive at ``lam * E[ISL]``; the share of time spent in busy iterations is
  ``u = lam * E[ISL] * T_c / c`` and stability needs ``u < 1``.
* Every iteration gives each decode one token, so ``TPOT = 1 / (u / T_c + (1 - u) / t_d)`` with
  ``B = lam * E[OSL - 1] * TPOT`` (fixed point). The worst inter-token gap is one busy iteration.
* TTFT: the prompt-token backlog is an M/G/1 "token server" (service ``ISL * T_c / c``); a prompt
  then needs ``ceil(ISL / s)`` iterations of its own, after the residual of the iteration in
  progress.
* Chunking re-reads the KV of earlier chunks: every chunk's attention reads all keys before it.
"""

from __future__ import annotations

import numpy as np

from planner.perf import StepModel
from planner.serving.common import (
    KV_HEADROOM,
    PERCENTILES,
    LoadShape,
    busy_probability,
    decode_curve,
    gg1_scale,
    interp_curve,
    max_num_seqs,
    mg1_wait_cdf_fn,
    mgc_wait_cdf_fn,
    quantiles_of_wait_plus,
    solve_fixed_point,
    tpot_cdf,
    tpot_quantiles,
    wait_plus_cdf,
)

MAX_TPOT_S = 600.0


class ChunkCurves:
    """Step-time curves of one lane for a token budget, on a grid of decode batch sizes."""

    def __init__(self, sm: StepModel, shape: LoadShape, chunk: int):
        self.chunk = int(chunk)
        isl = shape.isl.astype(float)
        self.bcap = float(min(KV_HEADROOM * sm.kv_capacity_tokens / sm.pp / shape.reserved_tokens,
                              max_num_seqs(sm), chunk - 1))
        self.ctx = shape.decode_context
        bmax = max(self.bcap, 1.0)
        self.grid, self.td = decode_curve(sm, self.ctx, bmax * 1.2)
        b = self.grid
        s = np.maximum(self.chunk - b, 1.0)
        self.pairs_per_token = float(np.sum(isl * isl) / (2.0 * np.sum(isl)))
        # Mean chunk when a prompt is processed alone (token-weighted) and when it is merged
        # with a backlog (full chunks).
        pieces = np.ceil(isl[None, :] / s[:, None])
        self.alone = np.sum(isl) / np.sum(pieces, axis=1)  # per grid B
        kv_per_token = np.sum(pieces * (pieces + 1) / 2.0 * np.minimum(s[:, None], isl[None, :]),
                              axis=1) / np.sum(isl)
        self.s = s
        self.kv_per_token = kv_per_token
        self.sm = sm
        self.mean_isl = float(isl.mean())
        self._full = self._busy(s)

    def _busy(self, c):
        b = self.grid
        c = np.minimum(c, self.s)
        return np.asarray(self.sm.iteration(
            decode_batch=b, decode_ctx=b * self.ctx, prefill_tokens=c,
            prefill_pairs=c * self.pairs_per_token, prefill_kv=c * self.kv_per_token,
            prefill_seqs=np.maximum(c / self.mean_isl, 1.0)).time_s, dtype=float)

    def full(self, B):
        return interp_curve(B, self.grid, self._full)

    def decode(self, B):
        return interp_curve(B, self.grid, self.td)

    def room(self, B):
        return np.maximum(self.chunk - np.asarray(B, dtype=float), 0.0)


def lane_metrics(sm: StepModel, shape: LoadShape, lam, chunk: int, arrival_cv: float = 1.0,
                 curves: ChunkCurves | None = None, lanes=1,
                 percentiles=PERCENTILES, slo=None) -> dict:
    """Metrics of chunked-prefill lanes at per-lane rates ``lam``; ``lanes`` lanes share the
    traffic by shortest-queue routing (pooled prompt queue, M/G/c)."""
    lam = np.asarray(lam, dtype=float)
    lanes = np.broadcast_to(np.asarray(lanes, dtype=float), lam.shape)
    cv = curves or ChunkCurves(sm, shape, chunk)
    m_o = shape.mean_decode_tokens
    work = lam * shape.mean_isl  # prompt tokens per second

    def state(B):
        s = np.maximum(cv.room(B), 1e-9)
        tf = cv.full(B)
        td = cv.decode(B)
        u_full = work * tf / s
        # Busy iterations carry full chunks under a backlog, a lone prompt's pieces otherwise.
        c_alone = np.interp(B, cv.grid, cv.alone)
        c_bar = np.clip(u_full * s + (1 - np.minimum(u_full, 1.0)) * c_alone, 1.0, s)
        tc = td + (tf - td) * c_bar / s
        u = work * tc / c_bar
        rate = np.minimum(u, 1.0) / tc + np.maximum(1.0 - u, 0.0) / td
        return 1.0 / rate, u, tc, td, tf, c_bar, s

    def resid(t):
        tp = state(lam * m_o * t)[0]
        return tp - t

    lo = np.maximum(cv.td[1], 1e-6) * 0.999
    tpot = solve_fixed_point(resid, np.full(lam.shape, lo), MAX_TPOT_S)
    B = np.where(np.isfinite(tpot), lam * m_o * tpot, 0.0)
    _, u, tc, td, tf, c_bar, s = state(B)
    stable = np.isfinite(tpot) & (u < 1.0) & (B <= cv.bcap) & (cv.room(B) >= 1.0)
    util = np.maximum(u, B / cv.bcap)

    # TTFT: token-server wait + residual of the current iteration + own iterations.
    isl = shape.isl.astype(float)
    service = isl[None, :] * (tc / c_bar)[:, None] if lam.ndim else isl * tc / c_bar
    n_full = np.floor(isl[None, :] / s.reshape(-1, 1))
    rem = isl[None, :] - n_full * s.reshape(-1, 1)
    # The iteration in progress when a prompt arrives: a busy one (length tc) if its lane is
    # carrying prompt chunks, else a decode step (td). With one lane that is the busy share u;
    # the router sends a prompt to a lane without prompt work unless every lane has some
    # (Erlang C of the lanes at that share).
    from planner import queueing as q

    uu = np.clip(u, 1e-12, 1.0 - 1e-9)
    erl = q.erlang_c(np.maximum(lanes, 1).astype(int), lanes * uu) if np.any(lanes > 1) else uu
    p_busy = busy_probability(lanes, uu, arrival_cv, erlang=erl)
    r = _residual_points(p_busy, tc, td, 6)
    # The prompt's own iterations: full chunks, then its last piece. That piece rides in a
    # cheap iteration unless the next prompt is already waiting on the lane, whose first chunk
    # then fills it (a full iteration): with the probability that the lane is busy.
    last_cheap = np.where(rem > 0, td.reshape(-1, 1) + (tf - td).reshape(-1, 1) * rem / s.reshape(-1, 1), 0.0)
    last_full = np.where(rem > 0, tf.reshape(-1, 1), 0.0)
    base = n_full * tf.reshape(-1, 1)
    own = (base + last_cheap).reshape(lam.shape + (-1,))
    pick = _pick(own.shape[-1], 8)
    cheap = np.sort(own, axis=-1)[..., pick]
    full = np.sort((base + last_full).reshape(lam.shape + (-1,)), axis=-1)[..., pick]
    # A prompt queues behind this one on the same lane if it arrives while this one's full
    # chunks run and the router picks this lane: always with one lane; otherwise only when every
    # lane is busy, which (given that this one is) has probability p_busy / u.
    t_own = np.mean(base.reshape(lam.shape + (-1,)), axis=-1)
    behind = lam * t_own * np.clip(p_busy / np.maximum(busy_probability(1, uu, arrival_cv), 1e-9), 0.0, 1.0)
    slots = (np.arange(16) + 0.5) / 16
    nxt = (-np.expm1(-behind))[..., None, None]
    mixed = np.where(slots[..., :, None] < nxt, full[..., None, :], cheap[..., None, :])  # (slots, pieces)
    flat = np.sort(mixed.reshape(lam.shape + (-1,)), axis=-1)
    flat = flat[..., _pick(flat.shape[-1], 16)]
    ys = (flat[..., :, None] + r[..., None, :]).reshape(lam.shape + (-1,))
    es = np.mean(service, axis=-1)
    es2 = np.mean(np.asarray(service) ** 2, axis=-1)
    if lam.ndim == 0:
        cdf = mg1_wait_cdf_fn(lam, np.asarray(service).ravel(), arrival_cv)
        from planner import queueing as q

        ew = q.mg1_mean_wait(lam, es, es2)
        if arrival_cv != 1.0:
            ew = ew * gg1_scale(arrival_cv, np.asarray(service).ravel())
    else:
        if np.all(lanes == 1):
            cdf, ew = _rowwise_wait_cdf(lam, service, arrival_cv)
        else:
            # Erlang C at the lanes' offered load lam * lanes * E[S] = lanes * u: reuse it.
            cdfc, ewc = mgc_wait_cdf_fn(lam * lanes, lanes.astype(int), es, es2, arrival_cv,
                                        pwait=np.where(lanes > 1, erl, uu))
            idx = np.nonzero((lanes == 1).reshape(-1))[0]
            ew = np.array(ewc, dtype=float).reshape(-1)
            if len(idx):  # one-lane rows: M/G/1 (exact M/D/1 for equal prompts), on those rows only
                svc = np.asarray(service, dtype=float).reshape(-1, np.shape(service)[-1])[idx]
                cdf1, ew1 = _rowwise_wait_cdf(lam.reshape(-1)[idx], svc, arrival_cv)
                ew[idx] = ew1
            lead = lam.shape

            def cdf(x, idx=idx):
                out = np.array(cdfc(x), dtype=float)
                if len(idx):
                    flat = out.reshape((-1,) + out.shape[len(lead):])
                    xf = np.broadcast_to(x, out.shape).reshape(flat.shape)
                    flat[idx] = cdf1(xf[idx])
                return out

            ew = ew.reshape(lead)
    tt = quantiles_of_wait_plus(cdf, ys, percentiles, shape=lam.shape)
    own_mean = np.mean(mixed.reshape(lam.shape + (-1,)), axis=-1)
    tt["mean"] = ew + np.mean(r, axis=-1) + own_mean

    # TPOT: decode-only iterations plus the extra time busy iterations add.
    jump_scale = np.maximum(tc - td, 0.0) / c_bar  # extra seconds per prompt token
    j1 = jump_scale * float(np.mean(isl))
    j2 = jump_scale**2 * float(np.mean(isl**2))
    j3 = jump_scale**3 * float(np.mean(isl**3))
    slope = (cv.decode(B + 1.0) - td)
    td_sd = slope * np.sqrt(B * 2.0 / 3.0)
    tq = tpot_quantiles(td, td_sd, j1[..., None] if np.ndim(j1) else j1,
                        j2[..., None] if np.ndim(j2) else j2, j3[..., None] if np.ndim(j3) else j3,
                        lam, shape.decode_tokens, tpot, cap=tf, percentiles=percentiles,
                        clump=arrival_cv**2 / np.maximum(1.0 - np.clip(u, 0, 1), 1e-3) ** 2 / lanes)
    tq["mean"] = tpot
    inf = np.inf
    res = {
        "ttft": {k: np.where(stable, v, inf) for k, v in tt.items()},
        "tpot": {k: np.where(stable, v, inf) for k, v in tq.items()},
        "itl_max": np.where(stable, tf, inf),
        "stable": stable,
        "utilization": util,
        "batch": np.where(stable, B, inf),
        "kv_used": np.where(stable, B * shape.decode_context * sm.pp, inf),
        "kv_capacity": sm.kv_capacity_tokens,
        "breakdown": {
            "ttft_queue_s": np.where(stable, ew + np.mean(r, axis=-1), inf),
            "ttft_compute_s": own_mean,
            "ttft_transfer_s": np.zeros(lam.shape),
            "tpot_step_s": td,
            "tpot_interference_s": np.where(stable, tpot - td, inf),
        },
    }
    res["saturated"] = np.where(stable, "", np.where(B > cv.bcap, "kv-memory", "chunked"))
    if slo is not None:
        f_t = wait_plus_cdf(cdf, ys, slo[0], shape=lam.shape)
        f_p = tpot_cdf(slo[1], td, td_sd, j1[..., None] if np.ndim(j1) else j1,
                       j2[..., None] if np.ndim(j2) else j2, j3[..., None] if np.ndim(j3) else j3,
                       lam, shape.decode_tokens, tpot, cap=tf,
                       clump=arrival_cv**2 / np.maximum(1.0 - np.clip(u, 0, 1), 1e-3) ** 2 / lanes)
        res["attain"] = np.where(stable, f_t * f_p, 0.0)
    return res


def _residual_points(p_busy, tc, td, k: int):
    """``k`` quantile mid-points of the residual of the iteration in progress: Uniform(0, tc)
    with probability ``p_busy``, else Uniform(0, td)."""
    p = np.clip(np.asarray(p_busy, dtype=float), 0.0, 1.0)[..., None]
    tc_, td_ = np.asarray(tc, dtype=float)[..., None], np.asarray(td, dtype=float)[..., None]
    qs = (np.arange(k) + 0.5) / k
    with np.errstate(all="ignore"):
        low = qs / (p / tc_ + (1 - p) / td_)  # residuals below td
        high = tc_ * (qs - (1 - p)) / np.where(p > 0, p, 1.0)  # beyond td: busy iterations only
        knee = p * td_ / tc_ + (1 - p)  # mixture CDF at td
        out = np.where(qs <= knee, low, np.maximum(high, td_))
    return np.nan_to_num(out, nan=0.0, posinf=0.0)


def _pick(n: int, k: int):
    if n <= k:
        return np.arange(n)
    return ((np.arange(k) + 0.5) / k * n).astype(int)


def _rowwise_wait_cdf(lam, service, arrival_cv):
    """M/G/1 wait CDFs when the service samples differ per candidate (rows of ``service``):
    service scales with a per-row factor, so each row is ``base * factor``."""
    service = np.asarray(service, dtype=float)
    base = service[0] / max(service[0].mean(), 1e-30)
    factor = service.mean(axis=-1)
    # Time-scaling: W(lam, a*S) = a * W(lam*a, S) -- evaluate with unit-mean service.
    cdf_unit = mg1_wait_cdf_fn(lam * factor, base, arrival_cv)

    def cdf(x):
        return cdf_unit(x / factor[..., None])

    from planner import queueing as q

    ew = q.mg1_mean_wait(lam, factor, factor**2 * float(np.mean(base**2)))
    if arrival_cv != 1.0:
        ew = ew * gg1_scale(arrival_cv, base)
    return cdf, ew


__all__ = ["ChunkCurves", "lane_metrics"]
