"""What a simulation reports: percentiles over the counted window, attainment, throughput."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.serving.common import PERCENTILES
from planner.sim.engine import LaneEngine

# Statistics window: requests whose arrival index is in [WARMUP, DRAIN) of the run.
WARMUP_SHARE, DRAIN_SHARE = 0.10, 0.90
_INF = math.inf


@dataclass
class SimResult:
    requests: int  # requests counted in the statistics
    ttft: dict  # 'mean','p50','p90','p95','p99' -> seconds
    tpot: dict  # same keys; osl-1 requests excluded
    itl_max_s: float  # largest gap between consecutive tokens of any counted request
    attainment: float  # share of counted requests meeting both SLOs (osl 1: TTFT only)
    throughput_in_tok_s: float
    throughput_out_tok_s: float
    stable: bool
    duration_s: float  # simulated time
    wall_s: float  # wall-clock time of the simulation
    per_request: dict | None = None  # 'arrival','ttft','tpot' (+ 'isl','osl','counted','preemptions') arrays
    preemptions: int = 0  # recompute preemptions over the whole run (paged KV outgrown)
    preempted_share: float = 0.0  # share of counted requests preempted at least once


def _pct(x: np.ndarray) -> dict:
    if x.size == 0:
        return {"mean": math.nan, **{f"p{p}": math.nan for p in PERCENTILES}}
    out = {"mean": float(np.mean(x))}
    q = np.percentile(x, PERCENTILES)
    for p, v in zip(PERCENTILES, q):
        out[f"p{p}"] = float(v)
    return out


def statistics(inp, eng: LaneEngine, arr, isl, osl, stable, duration, keep) -> SimResult:
    n = arr.size
    lo = int(n * WARMUP_SHARE)
    hi = max(int(n * DRAIN_SHARE), lo + 1)
    tf = np.asarray(eng.t_first, dtype=float)
    tl = np.asarray(eng.t_last, dtype=float)
    ttft = tf - arr
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(osl > 1, (tl - tf) / np.maximum(osl - 1, 1), math.nan)
    idx = np.arange(lo, hi)
    multi = idx[osl[idx] > 1]
    if stable:
        ttft_s = _pct(ttft[idx])
        tpot_s = _pct(tpot[multi])
        itl = eng.itl_max(multi)
    else:
        ttft_s = {"mean": _INF, **{f"p{p}": _INF for p in PERCENTILES}}
        tpot_s = dict(ttft_s)
        itl = _INF
    slo = inp.slo
    with np.errstate(invalid="ignore"):
        ok = (ttft[idx] <= slo.ttft_s) & ((osl[idx] <= 1) | (tpot[idx] <= slo.tpot_s))
    attainment = float(np.mean(ok)) if idx.size else math.nan

    # Throughput served in the window spanned by the counted arrivals. A request's input
    # tokens count when its first token appears; its later tokens are spread evenly over
    # (t_first, t_last].
    w0 = float(arr[lo])
    w1 = float(arr[hi]) if hi < n else float(arr[-1])
    if not stable:
        w1 = min(w1, duration)
    width = w1 - w0
    if width > 0:
        has = np.isfinite(tf)
        inw = has & (tf >= w0) & (tf < w1)
        tok_in = float(np.sum(isl[inw]))
        fin = np.isfinite(tl) & (osl > 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ov = np.clip(np.minimum(tl, w1) - np.maximum(tf, w0), 0.0, None)
            frac = np.where(tl > tf, ov / np.where(tl > tf, tl - tf, 1.0), 0.0)
        tok_out = float(np.sum(inw)) + float(np.sum(((osl - 1) * frac)[fin]))
        thr_in, thr_out = tok_in / width, tok_out / width
    else:
        thr_in = thr_out = 0.0
    per = None
    if keep:
        counted = np.zeros(n, dtype=bool)
        counted[lo:hi] = True
        per = {"arrival": arr, "ttft": ttft, "tpot": tpot, "isl": isl, "osl": osl,
               "counted": counted, "preemptions": np.asarray(eng.npre, dtype=int)}
    return SimResult(
        requests=int(idx.size),
        ttft=ttft_s,
        tpot=tpot_s,
        itl_max_s=float(itl),
        attainment=attainment,
        throughput_in_tok_s=thr_in,
        throughput_out_tok_s=thr_out,
        stable=bool(stable),
        duration_s=float(duration),
        wall_s=0.0,
        per_request=per,
        preemptions=int(eng.preemptions),
        preempted_share=float(np.mean(np.asarray(eng.npre)[idx] > 0)) if idx.size else 0.0,
    )


__all__ = ["DRAIN_SHARE", "SimResult", "WARMUP_SHARE", "statistics"]
