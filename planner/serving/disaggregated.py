"""Prefill/decode disaggregation (DistServe, Splitwise, Dynamo): a prefill pool and a decode pool.

Model (docs/methodology.md, "Disaggregated"):

* Prefill pool: ``N_p`` instances with ``pp_p`` lanes each, fed by shortest-queue routing, is
  treated as an M/G/c queue (``c = N_p * pp_p``; Erlang C with the Allen-Cunneen mean; DistServe
  section 3 uses M/D/1 per instance, the ``c = 1`` case).
* The KV cache then crosses the link the placement implies, through a transfer engine
  (``--kv-transfer``: a per-transfer setup and a share of the link bandwidth). With layer-wise
  overlap only the part the prefill cannot hide is exposed; every prefill instance's NICs are a
  processor-sharing server, so concurrent transfers slow each other, and the decode pool's NICs
  bound the byte rate too.
* ``TTFT = W_prefill + T_prefill + T_kv_exposed + (slowdown - 1) x`` (``x``: a transfer's data
  time alone).
* Transfers in flight hold their KV blocks on the decode side (allocated before the transfer
  starts): Little's law gives the tokens reserved per decode instance.
* Decode pool: decode-only continuous batching, no prefill interference:
  ``TPOT = t_d(B)``, ``B = lam_d * E[OSL - 1] * TPOT`` (fixed point), capped by KV memory.
"""

from __future__ import annotations

import numpy as np

from planner.catalog import LinkSpec
from planner.perf import (
    StepModel,
    kv_link_for,
    kv_transfer_time,
    link_capacity,
    transfer_fixed_time,
    transfer_rate,
)
from planner.queueing.exact import ps_slowdown
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
    kv_in_use,
    kv_tokens_per_sequence,
    max_num_seqs,
    per_output_token,
    sequence_kv_capacity,
    shape_of,
    step_model,
    tpot_cdf,
    tpot_quantiles,
    transfer_of,
)
from planner.serving.lanes import decode_equilibrium


class PrefillProfile:
    """Per-request prefill and KV-transfer times for one prefill configuration.

    A transfer is a fixed part ``fixed`` (the transfer engine's setup plus the link latency)
    and a data part of ``x = S / R`` seconds alone on the links (``R``: :func:`transfer_rate`).
    With layer-wise overlap the data part starts ``hidden`` before the prefill ends, so alone
    it exposes ``exposed - fixed = x - hidden`` after it. The prefill instance's NICs carry
    ``lanes = floor(capacity / R)`` such transfers at full speed at once (one, when a transfer
    uses all of them)."""

    def __init__(self, sm: StepModel, shape: LoadShape, link: LinkSpec, streams: int,
                 kv_bytes_per_token: float, overlap: bool = True, xfer=None):
        self.sm = sm
        # The prefill computes the uncached tokens after the cached ones. The KV cache sent is
        # what the decode instance does not hold: all but the shared prefix, which it caches
        # too (sent once, with its first request); tokens the prefill instance found in its own
        # cache (a hit-rate share) are the sequence's and still cross the link. Under
        # data-parallel attention each of the dp ranks prefills a prompt of its own, the others
        # as busy (their experts see every rank's tokens): dp servers an instance.
        self.S = np.asarray(sm.prefill_time(shape.computed, shape.cached, sm.dp), dtype=float)
        self.isl = (shape.isl - shape.shared).astype(float)
        self.kv_bytes = self.isl * kv_bytes_per_token
        self.exposed = np.asarray(kv_transfer_time(
            self.kv_bytes, link, streams=streams, prefill_time=self.S,
            layers=sm.model.num_layers, overlap=overlap, xfer=xfer), dtype=float)
        self.rate = transfer_rate(link, streams, xfer)
        self.fixed = transfer_fixed_time(link, xfer)
        self.x = self.kv_bytes / self.rate
        self.hidden = np.maximum(self.x - (self.exposed - self.fixed), 0.0)
        self.lanes = max(1.0, float(np.floor(link_capacity(link, sm.gpus, xfer) / self.rate
                                             + 1e-9)))
        self.link = link
        self.streams = streams
        self.xfer = xfer


def link_load(prof: PrefillProfile, lam_instance):
    """The KV link of one prefill instance as an M/G/k processor-sharing server (its NICs
    shared by the transfers in flight, each at most at its solo rate): offered load
    ``a = lam_i E[x]`` in solo-transfer seconds per second, utilisation ``a / k`` and the mean
    slowdown of a transfer's data part (:func:`planner.queueing.exact.ps_slowdown`)."""
    a = np.asarray(lam_instance, dtype=float) * float(prof.x.mean())
    return a / prof.lanes, ps_slowdown(a, prof.lanes)


def prefill_pool(prof: PrefillProfile, lam_total, instances, arrival_cv: float = 1.0,
                 percentiles=PERCENTILES, ttft_slo=None, decode_link=None) -> dict:
    """TTFT of a prefill pool of ``instances`` (array) instances at total rate ``lam_total``.

    The KV transfer's data part is stretched by the prefill instance's link slowdown
    (:func:`link_load`), its mean added to every quantile. ``decode_link``: ``(instances,
    bytes_per_s)`` of the decode pool's NICs; their utilisation ``lam E[bytes] / (N_d C_d)``
    bounds stability too (the transfers' slowdown there is not modelled)."""
    n = np.asarray(instances, dtype=float)
    lam = np.broadcast_to(np.asarray(lam_total, dtype=float), n.shape)
    servers = n * prof.sm.lanes * prof.sm.dp
    S = prof.S
    es, es2 = float(S.mean()), float(np.mean(S * S))
    rho = lam * es / servers
    cdf, ew = mgc_wait_cdf_fn(lam, servers.astype(int), es, es2, arrival_cv)
    rho_link, slow = link_load(prof, lam / n)
    rho_dec = np.zeros(n.shape)
    if decode_link is not None:
        nd, cap_d = decode_link
        rho_dec = lam * float(prof.kv_bytes.mean()) / (float(nd) * float(cap_d))
    link_ok = (rho_link < 1) & (rho_dec < 1)
    stretch = np.where(link_ok, (np.where(link_ok, slow, 1.0) - 1.0) * float(prof.x.mean()), np.inf)
    ys = compress(S + prof.exposed, 32)
    tt = quantiles_of_wait_plus(cdf, ys, percentiles, shape=n.shape)
    stable = (rho < 1) & np.isfinite(ew) & link_ok
    out = {k: np.where(stable, v + stretch, np.inf) for k, v in tt.items()}
    out["mean"] = np.where(stable, ew + es + float(prof.exposed.mean()) + stretch, np.inf)
    attain = None
    if ttft_slo is not None:
        attain = np.where(stable, wait_plus_cdf(cdf, ys, ttft_slo - np.where(stable, stretch, 0.0),
                                                shape=n.shape), 0.0)
    # In flight, from the data part's start to the decode side's notice: slow x + fixed.
    slow_f = np.where(link_ok, slow, np.inf)
    return {
        "attain": attain,
        "ttft": out,
        "stable": stable,
        "utilization": rho,
        "link_utilization": np.maximum(rho_link, rho_dec),
        "saturated": np.where(stable, "", np.where(~link_ok, "kv-link", "prefill")),
        "queue": np.where(stable, ew, np.inf),
        "compute": np.full(n.shape, es),
        "transfer": np.where(stable, float(prof.exposed.mean()) + stretch, np.inf),
        "inflight_token_s": slow_f * float(np.mean(prof.isl * prof.x))
        + prof.fixed * float(prof.isl.mean()),
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
                tpot_slo=None, reserved=None) -> dict:
    """TPOT of a decode pool of ``instances`` (array) instances at total rate ``lam_total``.

    ``reserved``: KV tokens per instance held by transfers in flight (the decode side
    allocates a request's blocks before its transfer starts), array like the rates; they leave
    the running batch ``(1 - reserved / capacity)`` of the KV memory."""
    n = np.asarray(instances, dtype=float)
    lam = np.asarray(lam_total, dtype=float) / (n * sm.lanes)
    tpot, B, td_it, slope_it, bcap, cap_by = decode_equilibrium(sm, shape, lam, np.zeros(n.shape))
    res = np.zeros(n.shape) if reserved is None else np.broadcast_to(
        np.asarray(reserved, dtype=float), n.shape)
    cap_tok = float(sm.kv_capacity_tokens)
    kv_cap = sequence_kv_capacity(sm, shape) / sm.lanes / kv_tokens_per_sequence(sm, shape)
    kv_eff = kv_cap * np.clip(1.0 - res / max(cap_tok, 1e-300), 0.0, 1.0)
    seqs = float(max_num_seqs(sm))
    cap_eff = np.minimum(kv_eff, seqs)
    by_eff = np.where(kv_eff < seqs, cap_label("kv-memory"), cap_label("max-num-seqs"))
    stable = np.isfinite(tpot) & (B <= cap_eff)
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
        "utilization": np.where(np.isfinite(B), np.maximum(B / np.maximum(cap_eff, 1e-300),
                                                           slope * lam * shape.mean_decode_tokens), np.inf),
        "saturated": np.where(stable, "", np.where(B > cap_eff, by_eff, "decode")),
        "batch": B,
        "step": td,
        "iteration": td_it,
        "itl_max": np.where(stable, worst_decode_gap(sm, shape, lam, B, td_it, n * sm.lanes) if len(percentiles) else td_it * 1.0,
                            np.inf),
        "kv_used": np.where(np.isfinite(B), kv_in_use(B, shape, sm) + res, np.inf),
        "kv_reserved": res,
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
    xfer = transfer_of(inp)
    prof = PrefillProfile(smp, shape, link, streams, inp.model.kv_bytes_per_token(tdtype),
                          dep.kv_overlap, xfer)
    n = np.ones_like(qps)
    cap_d = link_capacity(link, pd_.gpus_per_instance, xfer)
    pr = prefill_pool(prof, qps, n * pp_.instances, cv, percentiles=percentiles,
                      ttft_slo=inp.slo.ttft_s, decode_link=(pd_.instances, cap_d))
    # Transfers in flight hold decode KV blocks (Little: rate per instance x time in flight).
    reserved = np.where(pr["stable"], qps / pd_.instances * pr["inflight_token_s"], 0.0)
    dr = decode_pool(smd, shape, qps, n * pd_.instances, percentiles=percentiles,
                     tpot_slo=inp.slo.tpot_s, reserved=reserved)
    stable = pr["stable"] & dr["stable"]
    inf = np.inf
    return LaneResult(
        ttft={k: np.where(stable, v, inf) for k, v in pr["ttft"].items()},
        tpot={k: np.where(stable, v, inf) for k, v in dr["tpot"].items()},
        itl_max=np.where(stable, dr["itl_max"], inf),
        stable=stable,
        attain=np.where(stable, pr["attain"] * dr["attain"], 0.0),
        saturated=np.where(pr["stable"], np.where(dr["stable"], "", dr["saturated"]), pr["saturated"]),
        utilization={"prefill": pr["utilization"], "decode": dr["utilization"],
                     "kv_link": pr["link_utilization"]},
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
              "exposed_s": float(prof.exposed.mean()),
              "transfer": xfer.id if xfer is not None else None,
              "efficiency": xfer.efficiency if xfer is not None else 1.0,
              "setup_s": xfer.setup_s if xfer is not None else 0.0,
              "rate_bytes_per_s": float(prof.rate)},
    )
