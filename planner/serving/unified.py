"""Unified serving: prefill-prioritised continuous batching (vLLM V0, DistServe's colocated mode).

Each lane runs a whole prompt whenever one is waiting, otherwise one decode step for every
running sequence. A prefill therefore stalls all decodes of the lane for its whole duration.

Model (docs/methodology.md, "Unified"):

* Prefills form an M/G/1 queue with *multiple vacations*: when no prompt waits, the lane takes a
  decode step of length ``t_d(B)``. By the Fuhrmann-Cooper decomposition the prompt's wait is the
  M/G/1 wait plus the residual of the decode step in progress (uniform on ``[0, t_d]``), so
  ``TTFT = W_MG1 + U(0, t_d) + S_p``.
* Decodes advance only between prefills: ``TPOT = t_d(B) / (1 - rho_p)`` with ``rho_p = lam E[S_p]``
  and ``B = lam * E[OSL - 1] * TPOT`` (Little), solved as a fixed point.
* A request's own TPOT is ``t_d + X / (OSL - 1)`` where ``X`` is the sum of the prefills that start
  during its decode lifetime (compound Poisson).
"""

from __future__ import annotations

import numpy as np

from planner.perf import StepModel
from planner.serving.common import (
    KV_HEADROOM,
    PERCENTILES,
    LoadShape,
    compress,
    decode_curve,
    interp_curve,
    max_num_seqs,
    prompt_wait,
    quantiles_of_wait_plus,
    solve_fixed_point,
    tpot_cdf,
    tpot_quantiles,
    uniform_points,
    wait_plus_cdf,
)

MAX_TPOT_S = 600.0


def decode_equilibrium(sm: StepModel, shape: LoadShape, lam, stall_share):
    """Solve ``TPOT (1 - stall_share) = t_d(lam * E[OSL-1] * TPOT)`` per candidate.

    Returns (tpot, batch, t_d at that batch, slope of t_d in B, batch cap)."""
    lam = np.asarray(lam, dtype=float)
    cap_kv = KV_HEADROOM * sm.kv_capacity_tokens / sm.pp / shape.reserved_tokens
    bcap = float(min(cap_kv, max_num_seqs(sm)))
    ctx = shape.decode_context
    m_o = shape.mean_decode_tokens
    grid, vals = decode_curve(sm, ctx, max(bcap, 1.0) * 1.5)
    free = 1.0 - np.asarray(stall_share, dtype=float)
    ok = free > 0
    free_safe = np.where(ok, free, 1.0)

    def resid(t):
        return interp_curve(lam * m_o * t, grid, vals) - t * free_safe

    lo = np.maximum(vals[1] / free_safe, 1e-6) * 0.999
    tpot = solve_fixed_point(resid, lo, MAX_TPOT_S)
    tpot = np.where(ok, tpot, np.inf)
    batch = np.where(np.isfinite(tpot), lam * m_o * tpot, np.inf)
    td = interp_curve(np.where(np.isfinite(batch), batch, 0.0), grid, vals)
    eps = np.maximum(batch, 1.0) * 0.01
    slope = (interp_curve(np.where(np.isfinite(batch), batch + eps, 1.0), grid, vals) - td) / eps
    return tpot, batch, td, slope, bcap


def lane_metrics(sm: StepModel, shape: LoadShape, lam, arrival_cv: float = 1.0, lanes=1,
                 percentiles=PERCENTILES, slo=None) -> dict:
    """Metrics of unified lanes at per-lane arrival rates ``lam`` (array). ``lanes`` (array or
    scalar) is how many lanes share the traffic: with shortest-queue routing on waiting prompts
    the prompt queue is pooled, an M/G/c queue with ``c = lanes``."""
    lam = np.asarray(lam, dtype=float)
    lanes = np.broadcast_to(np.asarray(lanes, dtype=float), lam.shape)
    S = np.asarray(sm.prefill_time(shape.isl), dtype=float)
    es = float(S.mean())
    rho = lam * es
    tpot, B, td, slope, bcap = decode_equilibrium(sm, shape, lam, rho)
    stable = np.isfinite(tpot) & (rho < 1) & (B <= bcap)
    util = np.where(np.isfinite(B), np.maximum(rho + slope * lam * shape.mean_decode_tokens, B / bcap), np.inf)

    # TTFT = W + residual decode step (when decodes are running) + own prefill.
    busy = -np.expm1(-np.where(np.isfinite(B), B, 0.0))
    resid = uniform_points(np.where(np.isfinite(td), td * busy, 0.0), 4)  # (n, 4)
    own = compress(S, 16)
    ys = (own[None, :, None] + resid[:, None, :]).reshape(lam.shape + (-1,))
    cdf, ew = prompt_wait(lam, lanes, S, arrival_cv)
    tt = quantiles_of_wait_plus(cdf, ys, percentiles, shape=lam.shape)
    tt["mean"] = ew + np.where(np.isfinite(td), td * busy / 2, 0.0) + es

    # TPOT: base step (fluctuating with the batch) plus stalls by prefills.
    td_sd = slope * np.sqrt(np.maximum(np.where(np.isfinite(B), B, 0.0), 0.0) * 2.0 / 3.0)
    # Bursty arrivals (CV > 1) make the count of stalls more variable in proportion to ca2.
    clump = arrival_cv**2 / np.maximum(1.0 - rho, 1e-3) ** 2 / lanes
    tq = tpot_quantiles(td, td_sd, es, float(np.mean(S**2)), float(np.mean(S**3)), lam,
                        shape.decode_tokens, tpot, percentiles=percentiles, clump=clump)
    tq["mean"] = tpot
    res = {
        "ttft": {k: np.where(stable, v, np.inf) for k, v in tt.items()},
        "tpot": {k: np.where(stable, v, np.inf) for k, v in tq.items()},
        "itl_max": np.where(stable, td + S.max(), np.inf),
        "stable": stable,
        "utilization": util,
        "batch": B,
        "kv_used": np.where(np.isfinite(B), B * shape.decode_context * sm.pp, np.inf),
        "kv_capacity": sm.kv_capacity_tokens,
        "breakdown": {
            "ttft_queue_s": np.where(stable, tt["mean"] - es, np.inf),
            "ttft_compute_s": np.full(lam.shape, es),
            "ttft_transfer_s": np.zeros(lam.shape),
            "tpot_step_s": td,
            "tpot_interference_s": np.where(stable, tpot - td, np.inf),
        },
    }
    res["saturated"] = np.where(stable, "", np.where(B > bcap, "kv-memory", "unified"))
    if slo is not None:
        f_t = wait_plus_cdf(cdf, ys, slo[0], shape=lam.shape)
        f_p = tpot_cdf(slo[1], td, td_sd, es, float(np.mean(S**2)), float(np.mean(S**3)), lam,
                       shape.decode_tokens, tpot, clump=clump)
        res["attain"] = np.where(stable, f_t * f_p, 0.0)
    return res
