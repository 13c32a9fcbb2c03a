"""Discrete-event simulation, at iteration level, of the three serving policies.

The simulator is the referee of the analytic models in :mod:`planner.serving`: it makes the same
assumptions (same step-time functions, same lane decomposition, same admission rules) but
replaces every queueing formula by an explicit schedule of iterations. It is seeded and
deterministic: the same seed gives identical results.

Lanes. An instance of ``tp * pp`` GPUs is ``pp`` lanes; each lane is an independent server whose
step times are the full-pass latencies of :class:`planner.perf.StepModel`, and the instance's KV
capacity is split evenly among its lanes. Unified and chunked arrivals go to the lane whose
routed prompt work ends first (least work left: a router that weighs pending prefill work, as
Dynamo's does; with FCFS lanes it waits like the pooled prompt queue the analytic models
assume). ``routing="prompts"`` picks the fewest waiting prompts instead and
``routing="outstanding"`` the fewest waiting + running requests (decodes then swamp the prompt
counts and bursts of prompts pile onto one lane).

Policies (see the analytic modules for the same rules in closed form):

* ``unified``: at every iteration boundary a lane prefills the head of its FIFO queue alone (if
  its KV reservation ``isl + osl`` and the ``max_num_seqs`` cap allow), otherwise runs one decode
  iteration over all running sequences, otherwise idles until its next arrival.
* ``chunked``: every iteration carries all running decodes plus up to ``C - B`` prompt tokens
  taken FCFS (the partially prefilled head first, then newly admitted requests).
* ``disaggregated``: prefill lanes pull whole prompts from one shared FIFO queue (as Dynamo's
  global prefill queue does); each prefill instance's KV link is a
  FIFO server; the first token is delivered when the transfer completes; decode lanes run
  decode-only continuous batching and admit transferred requests at their iteration boundaries.

Speed. Decode iterations are never simulated one by one. Between two events that change a lane's
batch (a join, a completion, or an arrival that makes a waiting prompt eligible) the batch ``B`` is
constant and the context sum grows by ``B`` per iteration, so the step times are
``a(B) + max(f(B) * X_j, g * (X_j + B))`` with ``X_j`` linear in ``j``: the total duration of a run
of iterations and the first iteration boundary after a given time have closed forms. Each lane
keeps a heap of ``(decode iteration index at which the request finishes, request)``, so a
completion costs O(log n). A run that an arrival interrupts is cut at the first boundary at or
after the arrival.

Inter-token gaps. Within a run of constant batch the step times do not decrease, so the largest
gap of a run is its last iteration (or the gap into its first iteration, which also spans any
prefills since the previous decode iteration). Each run is logged as a *segment* (the gap into it
and its largest inner gap); a request's largest gap is the maximum over the segments it spans plus
its own first gap, computed with numpy after the run.

Instability. The run is declared unstable (``stable=False``, percentiles ``inf``) when, at the
time of the last arrival, more than ``max(200, 20% of requests)`` requests are waiting, or when
simulated time passes 50 times the arrival span; the simulation then stops.

Layout: :mod:`planner.sim.engine` (lanes, events, decode runs), :mod:`planner.sim.policies` (one
class per approach), :mod:`planner.sim.runs` (closed forms), :mod:`planner.sim.stats` (what is
reported) and :mod:`planner.sim.reference` (the token-by-token reference scheduler that the
timeline draws and the tests hold the simulator to).
"""

from __future__ import annotations

import math
import time

import numpy as np

from planner.errors import InvalidRequestError, unknown_name
from planner.serving.common import Deployment, engine_side, request_latency
from planner.sim.policies import POLICIES, TIME_LIMIT_SPANS, Job
from planner.sim.stats import SimResult, statistics

# Instability rule: the backlog at the last arrival (at least BACKLOG_FLOOR, else this share of
# the requests) and simulated time (TIME_LIMIT_SPANS arrival spans).
BACKLOG_FLOOR, BACKLOG_SHARE = 200, 0.20
ROUTINGS = ("work", "prompts", "outstanding")


def simulate(inp, dep: Deployment, requests: int = 20000, seed: int = 0,
             keep_requests: bool = False, routing: str = "work") -> SimResult:
    """Simulate ``requests`` arrivals of ``inp.workload`` on ``dep`` (seeded, deterministic).

    ``routing`` picks the lane of each arrival in a unified or chunked pool: ``"work"`` (the
    lane whose routed prompt work ends first: least work left, which with FCFS lanes waits like
    one shared queue; the default), ``"prompts"`` (fewest prompts not yet through their
    prefill, then fewest outstanding) or ``"outstanding"`` (fewest waiting + running requests). Prefill lanes of a disaggregated
    deployment pull from one shared queue; decode lanes take the transferred request with the
    fewest active + waiting sequences. Ties go to the lowest lane index."""
    wall0 = time.perf_counter()
    n = int(requests)
    if n < 1:
        raise InvalidRequestError(f"--requests: must be at least 1, got {requests}")
    if dep.approach not in POLICIES:
        raise unknown_name("approach", dep.approach, POLICIES, "--approach")
    if routing not in ROUTINGS:
        raise InvalidRequestError(f"routing: unknown {routing!r}; valid: {', '.join(ROUTINGS)}")
    by_prompts = routing == "prompts"
    by_work = routing == "work"
    rng = np.random.default_rng(seed)
    arr, isl_a, osl_a, cached_a = inp.workload.sample_requests(n, rng)
    arr = np.asarray(arr, dtype=float)
    isl_a = np.asarray(isl_a, dtype=np.int64)
    osl_a = np.asarray(osl_a, dtype=np.int64)
    prefix = inp.workload.prefix.on or inp.workload.trace_cached
    isl, osl = isl_a.tolist(), osl_a.tolist()
    span = float(arr[-1])
    t_limit = TIME_LIMIT_SPANS * max(span, 1e-9)
    backlog_limit = max(BACKLOG_FLOOR, BACKLOG_SHARE * n)
    t_first = [math.nan] * n

    job = Job(inp, dep, arr, isl_a, osl_a, isl, osl, t_first, span, backlog_limit, t_limit,
              route_prompts=by_prompts, route_work=by_work, seed=seed,
              cached_a=np.asarray(cached_a, dtype=np.int64) if prefix else None,
              shared_a=inp.workload.prefix.shared(isl_a) if prefix else None)
    eng, stable, duration, arr = POLICIES[dep.approach].simulate(job)
    # A calibration's per-request latency outside the engine: the engine meets the TTFT SLO
    # less it, and every TTFT carries it.
    req = request_latency(inp)
    res = statistics(engine_side(inp), eng, arr, isl_a, osl_a, stable, duration, keep_requests)
    if req > 0:
        res.ttft = {k: v + req for k, v in res.ttft.items()}
        if res.per_request is not None and "ttft" in res.per_request:
            res.per_request["ttft"] = np.asarray(res.per_request["ttft"]) + req
    res.wall_s = time.perf_counter() - wall0
    return res


def simulate_arrivals(inp, dep: Deployment, arrival_s, isl, osl, cached=None, *, avail: dict | None = None,
                      seed: int = 0, routing: str = "work") -> SimResult:
    """Simulate the given requests (arrival times in seconds, sorted; their prompt and output
    tokens; prompt tokens found in the prefix cache, or None) on ``dep``, with the pools'
    instances taking new requests only within the spans of ``avail`` (pool role -> per
    instance a sorted list of ``(up, down)`` seconds: a scaling schedule; None: all of them
    always). An instance that goes down finishes what it holds. Open loop only; the run is never
    cut short for its backlog (a schedule may overload a pool for a while), only past
    ``TIME_LIMIT_SPANS`` arrival spans. The result keeps every request's TTFT and TPOT."""
    wall0 = time.perf_counter()
    if inp.workload.closed:
        raise InvalidRequestError("simulating given arrivals is for open-loop traffic (a rate), not "
                                  "closed-loop clients (--concurrency)")
    if dep.approach not in POLICIES:
        raise unknown_name("approach", dep.approach, POLICIES, "--approach")
    arr = np.asarray(arrival_s, dtype=float)
    n = int(arr.size)
    if n < 1:
        raise InvalidRequestError("simulating given arrivals needs at least one request")
    if np.any(np.diff(arr) < 0):
        raise InvalidRequestError("simulating given arrivals needs them sorted by time")
    isl_a = np.asarray(isl, dtype=np.int64)
    osl_a = np.asarray(osl, dtype=np.int64)
    prefix = inp.workload.prefix.on or cached is not None
    cached_a = (inp.workload.prefix.cached(isl_a, cached) if prefix else None)
    span = float(arr[-1])
    t_first = [math.nan] * n
    job = Job(inp, dep, arr, isl_a, osl_a, isl_a.tolist(), osl_a.tolist(), t_first, span, math.inf,
              TIME_LIMIT_SPANS * max(span, 1e-9), route_prompts=routing == "prompts",
              route_work=routing == "work", seed=seed,
              cached_a=np.asarray(cached_a, dtype=np.int64) if prefix else None,
              shared_a=inp.workload.prefix.shared(isl_a) if prefix else None, avail=avail)
    eng, stable, duration, arr = POLICIES[dep.approach].simulate(job)
    req = request_latency(inp)
    res = statistics(engine_side(inp), eng, arr, isl_a, osl_a, stable, duration, True)
    if req > 0:
        res.ttft = {k: v + req for k, v in res.ttft.items()}
        assert res.per_request is not None  # kept above
        res.per_request["ttft"] = np.asarray(res.per_request["ttft"]) + req
    res.wall_s = time.perf_counter() - wall0
    return res


__all__ = ["POLICIES", "ROUTINGS", "SimResult", "simulate", "simulate_arrivals"]
