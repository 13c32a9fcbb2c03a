"""Prefill/decode disaggregation (DistServe, Splitwise, Dynamo): a prefill pool and a decode pool.

Model (docs/methodology.md, "Disaggregated"):

* Prefill pool: ``N_p`` instances with ``pp_p`` lanes each, fed by shortest-queue routing, is
  treated as an M/G/c queue (``c = N_p * pp_p``; Erlang C with the Allen-Cunneen mean; DistServe
  section 3 uses M/D/1 per instance, the ``c = 1`` case).
* The KV cache then crosses the link the placement implies. With layer-wise overlap only the part
  the prefill cannot hide is exposed; every prefill instance's link is a FIFO server whose wait
  is added when prompts arrive faster than it drains.
* ``TTFT = W_prefill + T_prefill + T_kv_exposed (+ link wait)``.
* Decode pool: decode-only continuous batching, no prefill interference:
  ``TPOT = t_d(B)``, ``B = lam_d * E[OSL - 1] * TPOT`` (fixed point), capped by KV memory.
"""

from __future__ import annotations

import numpy as np

from planner.catalog import LinkSpec
from planner.perf import StepModel, kv_link_for, kv_transfer_time
from planner.queueing.fast import (
    mgc_wait_cdf_fn,
    quantiles_of_wait_plus,
    wait_plus_cdf,
)
from planner.serving.common import (
    ITL_HORIZON,
    PERCENTILES,
    Z_HORIZON,
    LaneResult,
    LoadShape,
    batch_cap,
    cap_label,
    compress,
    decode_curve,
    interp_curve,
    per_output_token,
    shape_of,
    step_model,
    tpot_cdf,
    tpot_quantiles,
)
from planner.serving.lanes import decode_equilibrium


class PrefillProfile:
    """Per-request prefill and exposed KV-transfer times for one prefill configuration."""

    def __init__(self, sm: StepModel, shape: LoadShape, link: LinkSpec, streams: int,
                 kv_bytes_per_token: float, overlap: bool = True):
        self.sm = sm
        self.S = np.asarray(sm.prefill_time(shape.isl), dtype=float)
        self.kv_bytes = shape.isl.astype(float) * kv_bytes_per_token
        self.exposed = np.asarray(kv_transfer_time(
            self.kv_bytes, link, streams=streams, prefill_time=self.S,
            layers=sm.model.num_layers, overlap=overlap), dtype=float)
        self.link_busy = self.kv_bytes / (link.bytes_per_s * max(int(streams), 1)) + link.latency_s
        self.link = link
        self.streams = streams


def prefill_pool(prof: PrefillProfile, lam_total, instances, arrival_cv: float = 1.0,
                 percentiles=PERCENTILES, ttft_slo=None) -> dict:
    """TTFT of a prefill pool of ``instances`` (array) instances at total rate ``lam_total``."""
    n = np.asarray(instances, dtype=float)
    lam = np.broadcast_to(np.asarray(lam_total, dtype=float), n.shape)
    servers = n * prof.sm.lanes
    S = prof.S
    es, es2 = float(S.mean()), float(np.mean(S * S))
    rho = lam * es / servers
    cdf, ew = mgc_wait_cdf_fn(lam, servers.astype(int), es, es2, arrival_cv)
    # The KV link of each prefill instance is a FIFO server (M/G/1 per instance).
    lam_i = lam / n
    x = prof.link_busy
    rho_link = lam_i * float(x.mean())
    link_wait = np.where(rho_link < 1, lam_i * float(np.mean(x * x)) / (2 * np.maximum(1 - rho_link, 1e-12)), np.inf)
    ys = compress(S + prof.exposed, 32)
    tt = quantiles_of_wait_plus(cdf, ys, percentiles, shape=n.shape)
    stable = (rho < 1) & np.isfinite(ew) & (rho_link < 1)
    out = {k: np.where(stable, v + link_wait, np.inf) for k, v in tt.items()}
    out["mean"] = np.where(stable, ew + es + float(prof.exposed.mean()) + link_wait, np.inf)
    attain = None
    if ttft_slo is not None:
        attain = np.where(stable, wait_plus_cdf(cdf, ys, ttft_slo - np.where(stable, link_wait, 0.0),
                                                shape=n.shape), 0.0)
    return {
        "attain": attain,
        "ttft": out,
        "stable": stable,
        "utilization": np.maximum(rho, rho_link),
        "saturated": np.where(stable, "", np.where(rho_link >= 1, "kv-link", "prefill")),
        "queue": np.where(stable, ew + link_wait, np.inf),
        "compute": np.full(n.shape, es),
        "transfer": np.full(n.shape, float(prof.exposed.mean())),
        "itl_extra": float(S.max()) * 0.0,
    }


def worst_decode_gap(sm: StepModel, shape: LoadShape, lam, B, td, lanes=1):
    """The largest gap between two tokens expected over :data:`ITL_HORIZON` requests on a decode
    pool: a transferred request waits for a place in the running batch (the M/G/c admission
    wait of :func:`planner.serving.lanes.admission_wait` over the pooled places of the
    ``lanes`` lanes, at its ``1 - 1/horizon`` quantile),
    for the lane's next iteration boundary and then its first iteration: two steps at a batch
    ``Z_HORIZON`` Poisson deviations above the mean."""
    from planner.serving.lanes import admission_wait

    b = np.nan_to_num(np.asarray(B, dtype=float), nan=0.0, posinf=0.0)
    b_hi = b + Z_HORIZON * np.sqrt(b)
    cap, _ = batch_cap(sm, shape)
    grid, vals = decode_curve(sm, shape.decode_context, max(cap, 1.0) * 1.5)
    steps = 2.0 * np.maximum(interp_curve(np.minimum(b_hi, cap), grid, vals), np.asarray(td, dtype=float))
    # The router sends each transferred request to the lane with the fewest sequences, so a
    # request waits only when every lane is full: the lanes' places are pooled.
    n = np.broadcast_to(np.asarray(lanes, dtype=float), b.shape)
    lam_ = np.broadcast_to(np.asarray(lam, dtype=float), b.shape)
    mean_w, pw = np.zeros(b.shape), np.zeros(b.shape)
    for v in np.unique(n):
        sel = n == v
        _, mw, p = admission_wait(lam_[sel] * v, b[sel] * v, cap * v, shape)
        mean_w[sel], pw[sel] = mw, p
    given = np.where(pw > 0, mean_w / np.maximum(pw, 1e-300), 0.0)  # mean wait, given one
    tail = np.where(pw * ITL_HORIZON > 1.0, given * np.log(np.maximum(pw * ITL_HORIZON, 1.0)), 0.0)
    return steps + tail


def decode_pool(sm: StepModel, shape: LoadShape, lam_total, instances, percentiles=PERCENTILES,
                tpot_slo=None) -> dict:
    """TPOT of a decode pool of ``instances`` (array) instances at total rate ``lam_total``."""
    n = np.asarray(instances, dtype=float)
    lam = np.asarray(lam_total, dtype=float) / (n * sm.lanes)
    tpot, B, td_it, slope_it, bcap, cap_by = decode_equilibrium(sm, shape, lam, np.zeros(n.shape))
    stable = np.isfinite(tpot) & (B <= bcap)
    Bf = np.where(np.isfinite(B), B, 0.0)
    # Per output token (speculative decoding: the iteration over its 1 + E[a] tokens).
    g = float(sm.tokens_per_step)
    td, td_sd = per_output_token(sm, shape, td_it, slope_it * np.sqrt(Bf * 2.0 / 3.0))
    slope = slope_it / g
    tq = tpot_quantiles(td, td_sd, 0.0, 0.0, 0.0, lam, shape.decode_tokens, tpot,
                        percentiles=percentiles)
    tq["mean"] = tpot
    attain = None
    if tpot_slo is not None:
        attain = np.where(stable, tpot_cdf(tpot_slo, td, td_sd, 0.0, 0.0, 0.0, lam, shape.decode_tokens,
                                           tpot), 0.0)
    return {
        "attain": attain,
        "tpot": {k: np.where(stable, v, np.inf) for k, v in tq.items()},
        "stable": stable,
        "utilization": np.where(np.isfinite(B), np.maximum(B / bcap, slope * lam * shape.mean_decode_tokens), np.inf),
        "saturated": np.where(stable, "", np.where(B > bcap, cap_label(cap_by), "decode")),
        "batch": B,
        "step": td,
        "iteration": td_it,
        "itl_max": np.where(stable, worst_decode_gap(sm, shape, lam, B, td_it, n * sm.lanes) if len(percentiles) else td_it * 1.0,
                            np.inf),
        "kv_used": np.where(np.isfinite(B), B * shape.decode_context * sm.lanes, np.inf),
        "kv_capacity": sm.kv_capacity_tokens,
        "batch_cap": bcap,
        "batch_cap_by": cap_by,
    }


def evaluate(inp, dep, qps, at_boundary: bool = False, percentiles=PERCENTILES) -> LaneResult:
    """The registry's entry: ``dep`` (a prefill and a decode pool) at the total rates ``qps``.
    The phases are independent, so the joint attainment is the product of the two pools'.
    (Closed-loop arrivals at iteration boundaries change nothing here: prompts do not share
    iterations with decodes.)"""
    qps = np.atleast_1d(np.asarray(qps, dtype=float))
    shape = shape_of(inp.workload)
    cv = inp.workload.arrival_cv
    pp_, pd_ = dep.pool("prefill"), dep.pool("decode")
    smp, smd = step_model(inp, pp_), step_model(inp, pd_)
    smp.require_fit()
    smd.require_fit()
    link, streams, where = kv_link_for(inp.catalog, smp.gpu, smd.gpu, pp_, pd_, dep.link)
    tdtype = dep.kv_transfer_dtype or inp.kv_dtype
    prof = PrefillProfile(smp, shape, link, streams, inp.model.kv_bytes_per_token(tdtype),
                          dep.kv_overlap)
    n = np.ones_like(qps)
    pr = prefill_pool(prof, qps, n * pp_.instances, cv, percentiles=percentiles,
                      ttft_slo=inp.slo.ttft_s)
    dr = decode_pool(smd, shape, qps, n * pd_.instances, percentiles=percentiles,
                     tpot_slo=inp.slo.tpot_s)
    stable = pr["stable"] & dr["stable"]
    inf = np.inf
    return LaneResult(
        ttft={k: np.where(stable, v, inf) for k, v in pr["ttft"].items()},
        tpot={k: np.where(stable, v, inf) for k, v in dr["tpot"].items()},
        itl_max=np.where(stable, dr["itl_max"], inf),
        stable=stable,
        attain=np.where(stable, pr["attain"] * dr["attain"], 0.0),
        saturated=np.where(pr["stable"], np.where(dr["stable"], "", dr["saturated"]), pr["saturated"]),
        utilization={"prefill": pr["utilization"], "decode": dr["utilization"]},
        batch=dr["batch"],
        kv_used=dr["kv_used"],
        kv_capacity=dr["kv_capacity"],
        batch_cap=dr["batch_cap"],
        batch_cap_by=dr["batch_cap_by"],
        breakdown={
            "ttft_queue_s": pr["queue"],
            "ttft_compute_s": pr["compute"],
            "ttft_transfer_s": pr["transfer"],
            "tpot_step_s": dr["step"],
            "tpot_interference_s": np.zeros_like(qps),
            **({"decode_iteration_s": dr["iteration"]} if smd.tokens_per_step != 1.0 else {}),
        },
        link={"id": link.id, "name": link.name, "where": where, "streams": streams,
              "bytes_per_s": link.bytes_per_s, "dtype": tdtype, "overlap": dep.kv_overlap,
              "bytes_per_request": float(prof.kv_bytes.mean()),
              "exposed_s": float(prof.exposed.mean())},
    )
