"""Closed-loop load: ``N`` clients, each sending its next request ``Z`` (think time) after its
previous one completes, as benchmark tools with a concurrency limit do (``vllm bench serve
--max-concurrency``, genai-perf and AIPerf ``--concurrency``, SGLang ``bench_serving``).

The throughput solves ``lam (Z + R(lam)) = N`` with ``R`` the mean response time
(``TTFT + E[OSL - 1] TPOT``): the fixed point of a closed queueing network, evaluated with the
open-loop models of the approach (:func:`planner.serving.evaluate`). By the arrival theorem
(Reiser and Lavenberg) an arriving request sees the system as it is with one client fewer; with
Schweitzer's approximation that is the load ``lam (N - 1) / N``, at which its TTFT is evaluated
(one client never waits for another). TPOT, the batch and the memory are those at ``lam``. The
solution is found on a fixed grid of rates, refined in the bracket, so it does not depend on a
starting guess.

Two effects of closed loops that open-loop models do not have:

* **Saturation.** When the clients ask for more than the deployment sustains (where the
  open-loop model turns unstable), the throughput stays at the largest rate it sustains,
  ``lam*``, and every request's response is ``N / lam* - Z`` (Little's law on the closed
  network). What that leaves beyond the served response is spent where the clients wait: before
  the first token when the running batch is full (KV memory, the sequence cap) or prompts queue
  (a prefill pool, a KV link); in the running batch when unified/chunked lanes are bound by
  compute (everyone is admitted and every step slows: the time goes to TPOT), unless their
  token budget fills: then every iteration carries ``B = C d / (ISL + d)`` decodes (``d`` the
  mean output tokens after the first) and prompt tokens for the rest, TPOT is that full
  iteration, the throughput ``B / (d T)`` per lane, and the prompts queue for the remainder.
* **Cohorts.** Clients start together. When every request has the same lengths and there is no
  random think time, the prompts that enter one iteration finish together, decode together,
  complete together and come back together: the clients move in *cohorts* that never drift
  apart. A cohort is the prompts one iteration takes, ``g = floor((C - B) / ISL)`` (token budget
  ``C``, running decodes ``B``; at least 1, at most the lane's clients), and its members' first
  tokens all wait for the iteration that carries the whole cohort: a member's TTFT is the one
  the steady model gives plus what that iteration takes beyond one carrying a single prompt,
  ``t(B, g ISL) - t(B, ISL)``. Any spread in the
  lengths breaks cohorts up within a cycle (members finish in different iterations), so with
  variable lengths arrivals are taken as a renewal process as regular as the requests' stays:
  the coefficient of variation of the output length, clipped to [0.1, 1]. Disaggregated prefill
  lanes take one prompt at a time, so cohorts do not form there.
* **Just after the boundary.** Without think time a request is sent when its predecessor's last
  token comes out: at the boundary where the engine plans its next iteration, which it
  therefore misses and waits for in full. The cohorts form a chain (they entered consecutive
  iterations at the start): each waits for the full iteration of the cohort ahead of it, the
  head for a decode step (:meth:`_Cohorts.in_progress`), and a request's decode phase holds one
  cohort iteration fewer (:meth:`_Cohorts.chain_tpot`). ``tests/test_engines.py`` and
  ``tests/test_agreement.py`` measure both against the simulator, which runs the clients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from planner.serving.common import LaneResult, lane_budget, step_model

_GRID = 10.0 ** (np.arange(-72, 121) / 24.0)  # 1e-3 .. 1e5 requests/s, 24 a decade


@dataclass
class ClosedLoop:
    """The solution: throughput, metrics there, and how it was reached."""

    qps: float  # requests per second the clients reach
    result: LaneResult
    saturated: bool  # the clients ask for more than the deployment sustains
    queue_s: float  # wait for a place in the batch added to TTFT (saturated)
    slowdown_s: float  # time per output token added to TPOT (saturated by compute)
    cohort: int  # clients moving together (1: none)


class _Cohorts:
    """Cohorts of clients on one deployment (see the module's docstring): their size and the
    time their iteration adds to a member's first token, as functions of the running batch."""

    def __init__(self, inp, dep):
        wl = inp.workload
        self.in_flight = dep.approach in ("unified", "chunked")
        self.on = self.in_flight and wl.trace is None and wl.isl.is_fixed and wl.osl.is_fixed
        if not self.in_flight:
            return
        from planner.serving import chunked, unified
        from planner.serving.common import shape_of

        pool = dep.pool("unified")
        sm = step_model(inp, pool)
        shape = shape_of(wl, tail=False)
        self.isl = shape.mean_computed  # prompt tokens a prefill computes
        self.decode_tokens = shape.mean_decode_tokens
        if dep.approach == "chunked":
            self.curves = chunked.ChunkCurves(sm, shape, lane_budget(sm, dep.chunk_size))
        else:
            self.curves = unified.curves(sm, shape, dep.chunk_size)
        self.budget = float(self.curves.chunk)
        # Speculative decoding: a decode takes q = K + 1 tokens of the budget and gains g.
        self.q, self.g = float(sm.decode_query), float(sm.tokens_per_step)
        self.lanes = pool.lanes
        self.per_lane = math.ceil(int(wl.concurrency) / self.lanes)
        self.overlap = sm.engine is not None and sm.engine.overlap_schedule

    def budget_bound(self, N: int, Z: float):
        """Lanes whose every iteration is full (decodes plus prompt tokens fill the budget):
        ``B = C d / (ISL + d)`` decodes each, iterations ``T(B)`` long, so the throughput is
        ``lanes B / (d T)``, TPOT is ``T`` and a request waits ``N / lam - Z - d T`` for its first
        token. None when the clients are too few to fill it. (Speculative decoding: a decode
        takes ``q`` tokens of the budget and gains ``g`` per iteration, so
        ``B = C d / (g ISL + q d)``, the throughput is ``lanes B g / (d T)`` and TPOT ``T / g``.)"""
        if not self.in_flight or self.decode_tokens <= 0:
            return None
        d, q, g = self.decode_tokens, self.q, self.g
        b = self.budget * d / (g * self.isl + q * d)
        if b >= N / self.lanes or b < 1:
            return None
        t = float(np.asarray(self.curves.full(b)).reshape(-1)[0]) / g
        lam = self.lanes * b / (d * t)
        return lam, t, b, N / lam - Z - d * t

    def size(self, batch):
        """Prompts one iteration takes, ``floor((C - B) / ISL)`` within [1, clients per lane]."""
        b = np.nan_to_num(np.asarray(batch, dtype=float), nan=0.0, posinf=0.0)
        if not self.on:
            return np.ones_like(b)
        return np.clip(np.floor(np.maximum(self.budget - b * self.q, 0.0) / self.isl), 1.0, float(self.per_lane))

    def extra(self, batch):
        """Seconds the iteration carrying a whole cohort adds over one carrying one prompt."""
        b = np.nan_to_num(np.asarray(batch, dtype=float), nan=0.0, posinf=0.0)
        if not self.on:
            return np.zeros_like(b)
        g = self.size(b)
        cv = self.curves
        return np.maximum(cv.busy(b, g * self.isl) - cv.busy(b, self.isl), 0.0)

    def in_progress(self, batch, tpot) -> tuple[np.ndarray, np.ndarray]:
        """What requests of clients without think time wait for the iteration that starts at the
        boundary their predecessor finished at (they arrive just after it), at running batches
        ``batch`` and TPOTs ``tpot`` (arrays): ``(shares, seconds)``, each ``(3,) + shape``, the
        shares of requests with each wait, with the own iteration of a cohort smaller than ``g``
        (what it differs from the full cohort's, which :meth:`extra` charges) folded in.

        With cohorts the ``m = ceil(n / g)`` cohorts of a lane's ``n`` clients form a chain (at
        the start they enter ``m`` consecutive iterations): the head cohort finds a decode step
        in progress (nothing at all when it is every client: the lane is idle), every later one
        the full iteration of the cohort ahead of it, which it cannot join (its members arrive
        after that iteration was planned), so the cohorts keep finishing one iteration apart.
        Without cohorts (spread lengths) the iteration in progress is a typical one, whose mean
        length by count is the TPOT times the tokens a step gives."""
        b = np.nan_to_num(np.asarray(batch, dtype=float), nan=0.0, posinf=0.0)
        tp = np.nan_to_num(np.asarray(tpot, dtype=float), nan=0.0, posinf=0.0)
        one, zero = np.ones_like(b), np.zeros_like(b)
        if not self.in_flight:
            return np.stack([one, zero, zero]), np.stack([zero, zero, zero])
        if not self.on:
            return np.stack([one, zero, zero]), np.stack([tp * self.g, zero, zero])
        n = float(max(self.per_lane, 1))
        g = np.minimum(self.size(b), n)
        m = np.ceil(n / g)
        r = n - (m - 1) * g
        full = np.asarray(self.curves.busy(b, g * self.isl), dtype=float)
        last = np.asarray(self.curves.busy(b, r * self.isl), dtype=float)
        td = np.asarray(self.curves.decode(b), dtype=float)
        chain = m > 1
        # head: a decode step; middle cohorts: the full iteration ahead; the last (r members):
        # the full iteration ahead plus its own smaller one instead of a full one.
        shares = np.stack([np.where(chain, g / n, 1.0), np.where(chain, (m - 2) * g / n, 0.0),
                           np.where(chain, r / n, 0.0)])
        waits = np.stack([np.where(chain, td, 0.0), np.where(chain, full, 0.0), np.where(chain, last, 0.0)])
        if self.overlap:
            # The host planned the next iteration too before the request came (overlap
            # scheduling): in the chain that is one more decode step for the head cohort and
            # one more cohort iteration for the others, where the lane model charged a typical
            # iteration (the TPOT).
            typical = tp * self.g
            waits = waits + np.stack([np.where(chain, td, 0.0), np.where(chain, full, 0.0),
                                      np.where(chain, full, 0.0)]) - typical * np.where(chain, 1.0, 0.0)
        return shares, waits

    def chain_tpot(self, batch, tpot) -> np.ndarray:
        """TPOT of clients without think time moving in a chain of cohorts (fixed lengths): a
        request's ``d`` decode iterations are decode steps but for the cohorts' full iterations
        that fall inside them: all ``m - 1`` others for the head cohort, ``m - 2`` for the rest
        (the full iteration of the cohort ahead runs while the request waits for its own, see
        :meth:`in_progress`), at most the ``B / g`` cohorts admitted during it; none when one
        cohort holds every client. ``tpot`` (the open-loop
        model's) is returned where cohorts do not form."""
        tp = np.asarray(tpot, dtype=float)
        if not (self.in_flight and self.on) or self.decode_tokens <= 0:
            return tp
        b = np.nan_to_num(np.asarray(batch, dtype=float), nan=0.0, posinf=0.0)
        n = float(max(self.per_lane, 1))
        g = np.minimum(self.size(b), n)
        m = np.ceil(n / g)
        head = np.minimum(g / n, 1.0)
        # full iterations inside a decode phase: the chain's, but no more than the cohorts
        # admitted while it decodes (B / g, Little's law on the batch: fewer when the batch is
        # capped and the other clients wait for a place)
        seen = np.where(m > 1, np.minimum(m - 2.0 + head, b / g), 0.0)
        d_it = self.decode_tokens / self.g  # decode iterations a request takes
        seen = np.minimum(seen, d_it)
        full = np.asarray(self.curves.busy(b, g * self.isl), dtype=float)
        td = np.asarray(self.curves.decode(b), dtype=float)
        out = (seen * full + (d_it - seen) * td) / (d_it * self.g)
        return np.where(np.isfinite(tp), out, tp)

    def mean_wait(self, batch, tpot) -> np.ndarray:
        """The mean of :meth:`in_progress`."""
        w, t = self.in_progress(batch, tpot)
        return np.sum(w * t, axis=0)

def solve(inp, dep) -> ClosedLoop:
    """The throughput ``inp.workload.concurrency`` clients reach on ``dep`` and the metrics
    there (TTFT as an arriving request sees it)."""
    from planner.serving import evaluate

    wl = inp.workload
    N = int(wl.concurrency)
    Z = float(wl.think_s)
    _, osl_g = wl.grid()
    cv_o = float(np.std(osl_g) / max(np.mean(osl_g), 1e-12))
    inp = replace(inp, workload=replace(wl, arrival_cv=float(np.clip(cv_o, 0.1, 1.0))))
    d_mean = max(wl.mean_osl - 1.0, 0.0)
    boundary = Z == 0
    cohorts = _Cohorts(inp, dep)
    # (one client: the system it sees is empty; a vanishing load stands for that)
    share = max((N - 1) / N, 1e-9)

    def gap(lams):
        r = evaluate(inp, dep, lams)
        ttft = np.asarray(evaluate(inp, dep, lams * share, at_boundary=boundary).ttft["mean"], dtype=float)
        tp = np.asarray(r.tpot["mean"], dtype=float)
        if boundary:
            tp = cohorts.chain_tpot(r.batch, tp)
            ttft = ttft + cohorts.mean_wait(r.batch, tp)
        resp = ttft + cohorts.extra(r.batch) + d_mean * tp
        return np.where(np.isfinite(resp) & np.asarray(r.stable), lams * (Z + resp) - N, np.inf)

    sat, over = False, ""
    g_ = gap(_GRID)
    above = np.nonzero(g_ >= 0)[0]
    if len(above) == 0:
        lam = float(_GRID[-1])
    elif above[0] == 0:
        lam = float(_GRID[0])
    else:
        j = int(above[0])
        fine = np.linspace(_GRID[j - 1], _GRID[j], 33)
        gf = gap(fine)
        k = int(np.argmax(gf >= 0))
        lo, hi = fine[k - 1], fine[k]
        glo, ghi = gf[k - 1], gf[k]
        if np.isfinite(ghi) and ghi > glo:
            lam = float(lo + (hi - lo) * (-glo / (ghi - glo)))
        else:  # the largest rate sustained falls short of N clients: saturated
            lam, sat = float(lo), True
            over = str(np.asarray(evaluate(inp, dep, [hi], percentiles=()).saturated).reshape(-1)[0])

    r = evaluate(inp, dep, [lam])
    seen = evaluate(inp, dep, [lam * share], at_boundary=boundary)
    b = float(np.asarray(r.batch).reshape(-1)[0])
    g = int(cohorts.size([b])[0])
    shift = float(cohorts.extra([b])[0])
    tpot = float(np.asarray(r.tpot["mean"]).reshape(-1)[0])
    chain_shift = 0.0
    if boundary:
        # cohorts in a chain: decodes see fewer full iterations than open-loop prompts bring
        chain_shift = float(cohorts.chain_tpot([b], [tpot])[0]) - tpot
        tpot += chain_shift
    # (the iteration in progress when a request of clients without think time arrives)
    if boundary:
        ws, ts = cohorts.in_progress([b], [tpot])
        waits = [(float(w[0]), float(t[0])) for w, t in zip(ws, ts) if w[0] > 0]
    else:
        waits = [(1.0, 0.0)]
    order = sorted(waits, key=lambda p: p[1])
    cum = np.cumsum([w for w, _ in order])
    queue = slow = 0.0
    w_mean = float(sum(w * t for w, t in waits))
    if sat:
        ttft0 = float(np.asarray(seen.ttft["mean"]).reshape(-1)[0]) + shift + w_mean
        extra = max(N / lam - Z - ttft0 - d_mean * tpot, 0.0)
        full = cohorts.budget_bound(N, Z)
        if _waits_for_first_token(over, dep.approach) or d_mean == 0:
            queue = extra
        elif full is not None and full[3] > ttft0:
            # Compute-bound lanes whose budget fills: decodes get their share of every full
            # iteration and the prompts queue for the rest.
            lam_f, t_full, b_full, ttft_f = full
            scale = b_full / max(b, 1e-9)
            r = replace(r, batch=np.asarray(r.batch, dtype=float) * scale,
                        kv_used=np.asarray(r.kv_used, dtype=float) * scale)
            lam, queue, slow = lam_f, ttft_f - ttft0, max(t_full - tpot, 0.0)
        else:
            slow = extra / d_mean
    shift += queue

    def wait_at(key: str) -> float:
        if key == "mean":
            return w_mean
        k = int(np.searchsorted(cum, float(key[1:]) / 100.0 - 1e-12))
        return order[min(k, len(order) - 1)][1]

    ttft = {k: np.asarray(v, dtype=float) + shift + wait_at(k) for k, v in seen.ttft.items()}
    tpots = {k: np.maximum(np.asarray(v, dtype=float) + chain_shift, 0.0) + slow for k, v in r.tpot.items()}
    attain = r.attain
    if shift > 0 or slow > 0 or any(t > 0 for _, t in waits):
        # The share within both SLOs as an arriving request sees it, with the cohort's longer
        # iteration, the iteration in progress and the wait for a place taken off its TTFT
        # budget (each share of requests with its own wait).
        def attain_with(wait: float):
            slo = replace(inp.slo, ttft_s=max(inp.slo.ttft_s - shift - wait, 0.0),
                          tpot_s=max(inp.slo.tpot_s - slow, 0.0))
            return np.asarray(evaluate(replace(inp, slo=slo), dep, [lam * share], at_boundary=boundary,
                                       percentiles=()).attain, dtype=float)

        attain = sum(w * attain_with(t) for w, t in waits)
    bd = dict(r.breakdown,
              ttft_queue_s=np.asarray(seen.breakdown["ttft_queue_s"], dtype=float) + queue + wait_at("mean"),
              ttft_compute_s=np.asarray(seen.breakdown["ttft_compute_s"], dtype=float) + shift - queue)
    bd["tpot_interference_s"] = np.asarray(bd["tpot_interference_s"], dtype=float) + slow
    return ClosedLoop(lam, replace(r, ttft=ttft, tpot=tpots, breakdown=bd, attain=attain), sat,
                      queue, slow, g)


def _waits_for_first_token(resource: str, approach: str) -> bool:
    """Where the clients a saturated deployment cannot serve wait: before their first token
    when prompts queue (a prefill pool, its KV link) or when the running batch is full (KV
    memory, the sequence cap) on a pool that also prefills; in the running batch otherwise
    (compute-bound unified/chunked lanes admit everyone and every step slows down; a full
    disaggregated decode pool delays the second token)."""
    if resource in ("prefill", "kv-link"):
        return True
    return resource in ("kv-memory", "max-num-seqs", "token-budget") and approach != "disaggregated"


__all__ = ["ClosedLoop", "solve"]
