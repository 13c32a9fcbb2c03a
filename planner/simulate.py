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
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from planner.errors import InvalidRequestError
from planner.perf import FastTimes, kv_transfer_time
from planner.serving.common import PERCENTILES, Deployment, LoadShape, max_num_seqs

# Statistics window: requests whose arrival index is in [WARMUP, DRAIN) of the run.
WARMUP_SHARE, DRAIN_SHARE = 0.10, 0.90
# Instability rule.
BACKLOG_FLOOR, BACKLOG_SHARE, TIME_LIMIT_SPANS = 200, 0.20, 50.0

_INF = math.inf
# Lane step kinds.
_IDLE, _PIECE, _MIXED = 0, 2, 3
# Engine modes: lanes with prompts (unified or chunked), decode-only lanes.
_CHUNKED, _DECODE = 1, 2
ROUTINGS = ("work", "prompts", "outstanding")
_PROMPT_WEIGHT = 1 << 32


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
    per_request: dict | None = None  # 'arrival','ttft','tpot' (+ 'isl','osl','counted') arrays


# --------------------------------------------------------------------------------------------
# Closed forms for runs of decode iterations at a constant batch
# --------------------------------------------------------------------------------------------


def _run_span(a: float, f: float, g: float, B: int, X: float, n: int) -> float:
    """Duration of ``n`` decode iterations of batch ``B`` starting at context sum ``X``:
    ``sum_{j<n} a + max(f * (X + jB), g * (X + jB + B))``."""
    if n <= 0:
        return 0.0
    if f <= g:
        return n * a + g * (n * (X + B) + B * (n * (n - 1) * 0.5))
    # Iterations with context below c* = gB / (f - g) are memory-bound, the rest compute-bound.
    js = math.ceil((g * B / (f - g) - X) / B)
    js = 0 if js < 0 else (n if js > n else js)
    s = n * a
    if js:
        s += g * (js * (X + B) + B * (js * (js - 1) * 0.5))
    m = n - js
    if m:
        s += f * (m * X + B * ((n * (n - 1) - js * (js - 1)) * 0.5))
    return s


def _iter_time(a: float, f: float, g: float, B: int, X: float) -> float:
    """One decode iteration (the same float operations as FastTimes.time)."""
    return a + max(f * X, g * (X + B))


def _solve_linear(alpha: float, beta: float, D: float) -> float:
    """Real ``m`` with ``alpha * m + beta * m (m - 1) / 2 = D``."""
    if beta <= 0:
        return D / alpha
    b = alpha - beta * 0.5
    return (-b + math.sqrt(b * b + 2.0 * beta * D)) / beta


def _run_reach(a: float, f: float, g: float, B: int, X: float, n: int, D: float) -> int:
    """Smallest ``m`` in ``[0, n]`` with ``_run_span(m) >= D`` (``n`` when none)."""
    if D <= 0:
        return 0
    if f <= g:
        est = _solve_linear(a + g * (X + B), g * B, D)
    else:
        js = math.ceil((g * B / (f - g) - X) / B)
        js = 0 if js < 0 else (n if js > n else js)
        s_js = _run_span(a, f, g, B, X, js)
        if D <= s_js:
            est = _solve_linear(a + g * (X + B), g * B, D)
        else:
            est = js + _solve_linear(a + f * (X + js * B), f * B, D - s_js)
    m = math.ceil(est - 1e-9)
    m = 0 if m < 0 else (n if m > n else m)
    while m > 0 and _run_span(a, f, g, B, X, m - 1) >= D:
        m -= 1
    while m < n and _run_span(a, f, g, B, X, m) < D:
        m += 1
    return m


# --------------------------------------------------------------------------------------------
# The lane engine (unified, chunked and decode-only lanes)
# --------------------------------------------------------------------------------------------


class _Engine:
    """Lanes of one pool driven by a global event heap keyed by each lane's next boundary.

    Every lane runs one *step* at a time: a unified prefill, one or more chunked (mixed)
    iterations, or a run of decode iterations that ends at the lane's next completion. Steps are
    planned from what is known at their start; two kinds depend on nothing having arrived and are
    revised when something does: a decode run chosen because nothing was waiting (cut at the
    first boundary at or after the arrival) and the last piece of a prompt that a chunked step
    planned ahead (dropped if the arrival comes before that piece starts). Revisions leave stale
    entries in the heap; each entry carries the lane's step version and stale ones are skipped.
    """

    def __init__(self, mode: int, lanes: int, ft: FastTimes, kv_cap: float, max_seqs: int,
                 isl: list, osl: list, t_first: list, chunk: int = 0, route_prompts: bool = False,
                 route_work: bool = False, split: bool = True, mixed: bool = True,
                 reserve_full: bool = False):
        self.mode = mode
        # Prompts split into pieces (chunked) or whole (unified); iterations carrying prompt
        # tokens also carry the decodes (mixed) or run alone (prefill-first engines); KV held
        # from admission for ISL + OSL (reserve_full) or for the tokens a sequence has so far.
        self.split, self.mixed, self.reserve_full = bool(split), bool(mixed), bool(reserve_full)
        # Routing key per lane: outstanding requests, or (with route_prompts) prompts not yet
        # through their prefill first and outstanding requests second.
        self.prompt_weight = _PROMPT_WEIGHT if route_prompts else 0
        # With route_work: each lane's estimated end of the prompt work routed to it so far
        # (least-work-left routing; with FCFS servers it waits like one shared queue).
        self.route_work = route_work
        self.pwork = [0.0] * lanes
        self.L = lanes
        self.kv_cap = float(kv_cap)
        self.max_seqs = int(max_seqs)
        self.chunk = int(chunk)
        self.ft = ft
        nb = min(ft.max_tokens, max_seqs) + 1
        # Decode iteration of B sequences at context sum X: A[B] + max(F[B] X, G[B] (X + B)).
        self.A = [ft.base_l[b] + ft.lm_l[b] + ft.dec_floor_l[b] for b in range(nb)]
        self.F = ft.dec_flop_l
        self.G = ft.dec_byte_l
        self.isl, self.osl = isl, osl
        n = len(isl)
        self.t_first = t_first
        self.t_last = [math.nan] * n
        self.lane_of = [-1] * n
        self.seg_a = [-1] * n
        self.seg_b = [-1] * n
        self.gap1 = [0.0] * n
        # Per-lane state.
        L = lanes
        self.t0 = [0.0] * L  # start of the current step
        self.ver = [0] * L
        self.kind = [_IDLE] * L
        self.nrun = [0] * L  # iterations of the current decode run
        self.rev = [False] * L  # current run may be cut by an arrival
        self.data = [None] * L  # prefill request / requests finishing their prompt
        self.B = [0] * L
        self.X = [0.0] * L
        self.k = [0] * L  # decode iterations done
        self.fin = [[] for _ in range(L)]  # heap of (finish iteration, request)
        self.queue = [deque() for _ in range(L)]
        self.kv = [0.0] * L  # reserve_full: reserved KV tokens; else prompt tokens of admitted
        # sequences not yet decoding (decoding ones hold their context, self.X)
        self.ns = [0] * L  # admitted, unfinished sequences (chunked: includes in prefill)
        self.out = [0] * L  # routing key (see prompt_weight)
        self.partial = [None] * L  # chunked: (request, tokens done)
        self.spec = [None] * L  # chunked: the step before its speculative last piece
        self.fresh = [[] for _ in range(L)]  # joined, waiting for their second token
        self.cross = [[] for _ in range(L)]  # per segment: gap into its first iteration
        self.inner = [[] for _ in range(L)]  # per segment: largest gap inside it
        self.last_end = [0.0] * L
        self.heap: list = []
        self.now = 0.0
        self.done = 0
        self.spawn: list | None = None  # closed loop: completion times not yet turned into arrivals

    # ----------------------------------------------------------------------------------------
    def _schedule(self, l: int, kind: int, t0: float, ev: float) -> None:
        self.kind[l] = kind
        self.t0[l] = t0
        self.ver[l] += 1
        if ev < _INF:
            heapq.heappush(self.heap, (ev, l, self.ver[l]))

    def _fits(self, l: int, rid: int, running: int) -> bool:
        if running == 0:
            return True
        if running >= self.max_seqs:
            return False
        if self.reserve_full:
            return self.kv[l] + self.isl[rid] + self.osl[rid] <= self.kv_cap
        return self.X[l] + self.kv[l] + self.isl[rid] <= self.kv_cap

    def _hold(self, l: int, rid: int, sign: int) -> None:
        """Admission (+1) and its release (-1) in the KV account."""
        self.kv[l] += sign * (self.isl[rid] + (self.osl[rid] if self.reserve_full else 0))

    def _replan(self, l: int, t: float) -> None:
        """Choose the step that starts at boundary ``t``."""
        q = self.queue[l]
        mode = self.mode
        if mode == _CHUNKED:
            if self._plan_mixed(l, t):
                return
        else:
            B = self.B[l]
            while q and self._fits(l, q[0], B):
                rid = q.popleft()
                self._hold(l, rid, 1)
                self._join(l, rid)
                self.ns[l] += 1
                B += 1
        B = self.B[l]
        if B > 0:
            fin = self.fin[l]
            n = fin[0][0] - self.k[l]
            self.nrun[l] = n
            if mode == _CHUNKED:
                self.rev[l] = not q and self.partial[l] is None and self.chunk > B
            else:
                self.rev[l] = not q
            a, f = self.A[B], self.F[B]
            self._schedule(l, _PIECE, t, t + _run_span(a, f, self.G[B], B, self.X[l], n))
        else:
            self.t0[l] = t
            self._schedule(l, _IDLE, t, _INF)

    def _plan_mixed(self, l: int, t: float) -> bool:
        """Chunked: fill the room left by the decodes with prompt tokens, FCFS.

        After the first iteration, further iterations in which the partially prefilled head
        takes the whole room admit nobody, so arrivals cannot change them; as long as no prompt
        finishes (a join) and no sequence completes, they are planned together as one step."""
        B = self.B[l]
        room = self.chunk - B
        part = self.partial[l]
        q = self.queue[l]
        if room <= 0 or (part is None and not q):
            return False
        isl = self.isl
        time_of = self.ft.time
        X = self.X[l]
        tok, pairs, kvr, seqs = 0, 0.0, 0.0, 0
        done = []
        left = room
        if part is not None:
            rid, p = part
            rem = isl[rid] - p
            c = rem if rem < left else left
            tok, pairs, kvr = c, c * (p + c * 0.5), float(p + c)
            if c == rem:
                seqs = 1
                done.append(rid)
                self.partial[l] = None
            else:
                self.partial[l] = (rid, p + c)
            left -= c
        split = self.split
        while left > 0 and q and self._fits(l, q[0], self.ns[l]):
            rid = q[0]
            s = isl[rid]
            if not split and s > left and tok:
                break  # a whole prompt that does not fit waits for the next iteration
            q.popleft()
            self._hold(l, rid, 1)
            self.ns[l] += 1
            c = s if (s < left or not split) else left
            tok += c
            pairs += c * c * 0.5
            kvr += c
            if c == s:
                seqs += 1
                done.append(rid)
            else:
                self.partial[l] = (rid, c)
            left -= c
        if not tok:
            return False
        mixed = self.mixed
        Bm, Xm = (B, X) if mixed else (0, 0.0)  # prefill-first: the decodes sit this one out
        d0 = total = time_of(tok, pairs, kvr, seqs, Bm, Xm)
        m = 1
        inner = 0.0
        part = self.partial[l]
        self.rev[l] = False
        if not done and part is not None:
            limit = self.fin[l][0][0] - self.k[l] if (B and mixed) else 1 << 62
            rid, p = part
            rem = isl[rid] - p
            half = room * 0.5
            while m < limit and rem >= room:
                last = rem == room
                d = time_of(room, room * (p + half), float(p + room), 1 if last else 0, Bm, Xm + m * Bm)
                total += d
                if d > inner:
                    inner = d
                m += 1
                p += room
                rem -= room
                if last:
                    done.append(rid)
                    break
            if not done and m < limit and not q:
                # The prompt's last piece leaves room that an arrival before it starts would
                # use: plan it now, take it back in _arrive if such an arrival comes.
                self.spec[l] = (total, inner, p)
                d = time_of(rem, rem * (p + rem * 0.5), float(p + rem), 1, Bm, Xm + m * Bm)
                total += d
                if d > inner:
                    inner = d
                m += 1
                done.append(rid)
                self.rev[l] = True
            self.partial[l] = None if done else (rid, p)
        self.data[l] = (m, d0, inner, done)
        self._schedule(l, _MIXED, t, t + total)
        return True

    def _take_back_tail(self, l: int, ta: float) -> None:
        """An arrival at ``ta`` comes before the speculative last piece of a chunked step starts:
        the step ends before that piece, which is planned again at the boundary."""
        self.rev[l] = False
        total, inner, p = self.spec[l]
        t0 = self.t0[l]
        if ta > t0 + total:
            return
        m, d0, _, done = self.data[l]
        self.partial[l] = (done[0], p)
        self.data[l] = (m - 1, d0, inner, [])
        self._schedule(l, _MIXED, t0, t0 + total)

    def _join(self, l: int, rid: int) -> None:
        """``rid`` has its first token; it decodes from the next iteration on."""
        self.B[l] += 1
        self.X[l] += self.isl[rid]
        if not self.reserve_full:  # its prompt's KV now counts in the context sum
            self.kv[l] -= self.isl[rid]
        heapq.heappush(self.fin[l], (self.k[l] + self.osl[rid] - 1, rid))
        self.fresh[l].append(rid)

    def _finish(self, l: int, rid: int, t: float) -> None:
        self.t_last[rid] = t
        if self.reserve_full:
            self.kv[l] -= self.isl[rid] + self.osl[rid]
        elif self.osl[rid] <= 1:  # never decoded: its prompt is still in the KV account
            self.kv[l] -= self.isl[rid]
        self.ns[l] -= 1
        self.out[l] -= 1
        self.done += 1
        if self.spawn is not None:
            self.spawn.append(t)  # closed loop: this client sends its next request

    def _segment(self, l: int, first_end: float, inner: float, end: float) -> None:
        """Log a run of decode iterations (tokens for every running sequence)."""
        cross = self.cross[l]
        cross.append(first_end - self.last_end[l])
        self.inner[l].append(inner)
        fresh = self.fresh[l]
        if fresh:
            s = len(cross) - 1
            tf, ga, sa = self.t_first, self.gap1, self.seg_a
            for rid in fresh:
                ga[rid] = first_end - tf[rid]
                sa[rid] = s
            fresh.clear()
        self.last_end[l] = end

    def _completions(self, l: int, t: float) -> None:
        fin = self.fin[l]
        k = self.k[l]
        if fin and fin[0][0] == k:
            s = len(self.cross[l]) - 1
            isl, osl, sb = self.isl, self.osl, self.seg_b
            while fin and fin[0][0] == k:
                rid = heapq.heappop(fin)[1]
                self.B[l] -= 1
                self.X[l] -= isl[rid] + osl[rid] - 1
                sb[rid] = s
                self._finish(l, rid, t)

    # ----------------------------------------------------------------------------------------
    def _on_event(self, l: int, t: float) -> None:
        kind = self.kind[l]
        if kind == _PIECE:
            n = self.nrun[l]
            if n > 0:
                B, X, t0 = self.B[l], self.X[l], self.t0[l]
                a, f, g = self.A[B], self.F[B], self.G[B]
                d0 = _iter_time(a, f, g, B, X)
                inner = _iter_time(a, f, g, B, X + (n - 1) * B) if n > 1 else 0.0
                self._segment(l, t0 + d0, inner, t)
                self.k[l] += n
                self.X[l] = X + n * B
                self._completions(l, t)
        elif kind == _MIXED:
            m, d0, dl, done = self.data[l]
            B = self.B[l]
            if B > 0 and self.mixed:
                self._segment(l, self.t0[l] + d0, dl, t)
                self.k[l] += m
                self.X[l] += m * B
                self._completions(l, t)
            if done:
                self.out[l] -= self.prompt_weight * len(done)
            for rid in done:
                self.t_first[rid] = t
                if self.osl[rid] <= 1:
                    self._finish(l, rid, t)
                else:
                    self._join(l, rid)
        self._replan(l, t)

    def _cut(self, l: int, ta: float) -> None:
        """An arrival at ``ta`` ends the current decode run at the first boundary >= ``ta``."""
        self.rev[l] = False
        n = self.nrun[l]
        B = self.B[l]
        a, f, g, X, t0 = self.A[B], self.F[B], self.G[B], self.X[l], self.t0[l]
        m = _run_reach(a, f, g, B, X, n, ta - t0)
        if m >= n:
            return
        self.nrun[l] = m
        self._schedule(l, _PIECE, t0, t0 + _run_span(a, f, g, B, X, m))

    def _prompt_cost(self, l: int, rid: int) -> float:
        """Estimated lane time the prompt of ``rid`` takes (routing only)."""
        B = self.B[l]
        room = max(self.chunk - B, 1)
        isl = self.isl[rid]
        c = min(room, isl) if self.split else isl
        t = self.ft.time(c, c * (isl * 0.5), float(isl), 0, B, self.X[l])
        return t * isl / c

    def _arrive(self, rid: int, ta: float) -> None:
        out = self.out
        if self.route_work:
            # Ties (several lanes with no prompt work left) go to the fewest outstanding.
            pw = self.pwork
            best, bo, l = _INF, 0, 0
            for j in range(self.L):
                v = pw[j] if pw[j] > ta else ta
                if v < best or (v == best and out[j] < bo):
                    best, bo, l = v, out[j], j
            pw[l] = best + self._prompt_cost(l, rid)
        else:
            l = out.index(min(out))
        out[l] += 1 + self.prompt_weight
        self.lane_of[rid] = l
        self.queue[l].append(rid)
        kind = self.kind[l]
        if kind == _IDLE:
            self._replan(l, ta)
        elif self.rev[l]:
            if kind == _PIECE:
                self._cut(l, ta)
            elif kind == _MIXED:
                self._take_back_tail(l, ta)

    # ----------------------------------------------------------------------------------------
    def _next(self, ta: float):
        """The next thing to happen, given the next arrival at ``ta``: ``(time, True)`` for the
        lane event on top of the heap (revised steps' stale entries dropped), ``(ta, False)``
        for the arrival, ``None`` when nothing is left."""
        heap, ver = self.heap, self.ver
        while heap and heap[0][2] != ver[heap[0][1]]:
            heapq.heappop(heap)  # a revised step
        if heap and heap[0][0] <= ta:
            return heap[0][0], True
        return (ta, False) if ta < _INF else None

    def _fire(self) -> None:
        """Run the lane event on top of the heap."""
        ev, l, _ = heapq.heappop(self.heap)
        self.now = ev
        self._on_event(l, ev)

    def run(self, order: list, times: list, t_snap: float, backlog_limit: float,
            t_limit: float, extra_waiting: int = 0) -> bool:
        """Feed the arrivals ``order`` (request ids) at ``times`` (sorted) and run until every
        admitted request finishes. Returns False (and stops) when the backlog at ``t_snap``
        exceeds ``backlog_limit`` or simulated time passes ``t_limit``."""
        n = len(order)
        i = 0
        snapped = False
        while True:
            ta = times[i] if i < n else _INF
            nxt = self._next(ta)
            if nxt is None:
                break
            t_next, is_event = nxt
            if not snapped and t_next > t_snap:
                snapped = True
                waiting = extra_waiting + sum(len(q) for q in self.queue)
                if waiting > backlog_limit:
                    self.now = t_snap
                    return False
            if t_next > t_limit:
                self.now = t_limit
                return False
            if is_event:
                self._fire()
            else:
                self.now = ta
                self._arrive(order[i], ta)
                i += 1
        if not snapped:
            waiting = extra_waiting + sum(len(q) for q in self.queue)
            if waiting > backlog_limit:
                return False
        return True

    def run_closed(self, clients: int, think_s: float, n: int, t_arr: list, t_limit: float) -> bool:
        """Closed loop: ``clients`` clients send requests ``0..n-1`` in order, all at time 0 at
        first, then each ``think_s`` after its previous request completes (``t_arr`` receives the
        arrival times). Returns False when simulated time passes ``t_limit``."""
        self.spawn = []
        arrivals: list = []
        rid = 0
        for _ in range(min(clients, n)):
            heapq.heappush(arrivals, (0.0, rid))
            t_arr[rid] = 0.0
            rid += 1
        while True:
            nxt = self._next(arrivals[0][0] if arrivals else _INF)
            if nxt is None:
                break
            t_next, is_event = nxt
            if t_next > t_limit:
                self.now = t_limit
                return False
            if is_event:
                self._fire()
            else:
                self.now = t_next
                self._arrive(heapq.heappop(arrivals)[1], t_next)
            for tc in self.spawn:  # completions: those clients send their next requests
                if rid < n:
                    t_arr[rid] = tc + think_s
                    heapq.heappush(arrivals, (tc + think_s, rid))
                    rid += 1
            self.spawn.clear()
        return True

    def itl_max(self, rids: np.ndarray) -> float:
        """Largest inter-token gap over the requests ``rids`` (finished, osl >= 2)."""
        rids = rids[np.isfinite(np.asarray(self.t_last)[rids])]
        if rids.size == 0:
            return 0.0
        lane = np.asarray(self.lane_of)[rids]
        sa = np.asarray(self.seg_a)[rids]
        sb = np.asarray(self.seg_b)[rids]
        best = float(np.max(np.asarray(self.gap1)[rids]))
        for l in np.unique(lane):
            sel = lane == l
            cross = np.asarray(self.cross[l])
            inner = np.asarray(self.inner[l])
            if cross.size == 0:
                continue
            a, b = sa[sel], sb[sel]
            best = max(best, float(inner[a].max()))
            # Segments a+1..b are spanned whole: mark their union with a difference array.
            span = b > a
            if span.any():
                diff = np.zeros(cross.size + 1)
                np.add.at(diff, a[span] + 1, 1.0)
                np.add.at(diff, b[span] + 1, -1.0)
                cover = np.cumsum(diff[:-1]) > 0
                if cover.any():
                    best = max(best, float(np.max(np.maximum(cross, inner)[cover])))
        return best


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def simulate(inp, dep: Deployment, requests: int = 20000, seed: int = 0,
             keep_requests: bool = False, routing: str = "work") -> SimResult:
    """Simulate ``requests`` arrivals of ``inp.workload`` on ``dep`` (seeded, deterministic).

    ``routing`` picks the lane of each arrival in a unified or chunked pool: ``"work"`` (the
    lane whose routed prompt work ends first: least work left, which with FCFS lanes waits like
    one shared queue; the default), ``"prompts"`` (fewest prompts not yet through their
    prefill, then fewest outstanding) or ``"outstanding"`` (fewest waiting + running requests). Prefill lanes of a disaggregated
    deployment pull from one shared queue; decode lanes take the transferred request with the
    fewest active + waiting sequences. Ties go to the lowest lane index."""
    from planner import api

    wall0 = time.perf_counter()
    n = int(requests)
    if n < 1:
        raise InvalidRequestError(f"--requests: must be at least 1, got {requests}")
    if dep.approach not in ("unified", "chunked", "disaggregated"):
        raise InvalidRequestError(f"--approach: unknown {dep.approach!r}")
    if routing not in ROUTINGS:
        raise InvalidRequestError(f"routing: unknown {routing!r}; valid: {', '.join(ROUTINGS)}")
    by_prompts = routing == "prompts"
    by_work = routing == "work"
    rng = np.random.default_rng(seed)
    arr, isl_a, osl_a = inp.workload.sample(n, rng)
    arr = np.asarray(arr, dtype=float)
    isl_a = np.asarray(isl_a, dtype=np.int64)
    osl_a = np.asarray(osl_a, dtype=np.int64)
    isl, osl = isl_a.tolist(), osl_a.tolist()
    span = float(arr[-1])
    t_limit = TIME_LIMIT_SPANS * max(span, 1e-9)
    backlog_limit = max(BACKLOG_FLOOR, BACKLOG_SHARE * n)
    t_first = [math.nan] * n

    if dep.approach in ("unified", "chunked"):
        from planner.serving import unified as _unified

        pool = dep.pool("unified")
        sm = api.step_model(inp, pool)
        sm.require_fit()
        lanes = pool.instances * pool.pp
        mseq = max_num_seqs(sm)
        split = dep.approach == "chunked"
        if split:
            C = dep.chunk_size
            if not C or C < 1:
                raise InvalidRequestError("--chunk-size: chunked prefill needs a positive chunk size")
        else:
            C = _unified.budget(sm, LoadShape(isl_a, osl_a), dep.chunk_size)
        eng_spec = sm.engine
        ft = FastTimes(sm, max(int(C), mseq) if split else max(int(C), mseq) + int(isl_a.max()))
        eng = _Engine(_CHUNKED, lanes, ft, sm.kv_capacity_tokens / pool.pp, mseq, isl, osl, t_first,
                      chunk=int(C), route_prompts=by_prompts, route_work=by_work, split=split,
                      mixed=eng_spec is None or eng_spec.schedule == "decode_first",
                      reserve_full=eng_spec is not None and eng_spec.kv_admission == "reserve_full")
        if inp.workload.closed:
            t_arr = [math.nan] * n
            # The clients' rate is not known in advance: bound simulated time by the whole run
            # done one request at a time (every request alone, back to back), times 50.
            alone = float(np.sum(np.asarray(sm.prefill_time(isl_a), dtype=float)
                                 + np.maximum(osl_a - 1, 0) * float(sm.decode_time(1, float(np.mean(isl_a))))))
            stable = eng.run_closed(int(inp.workload.concurrency), float(inp.workload.think_s), n, t_arr,
                                    TIME_LIMIT_SPANS * (alone + n * inp.workload.think_s))
            arr = np.asarray(t_arr, dtype=float)
        else:
            stable = eng.run(list(range(n)), arr.tolist(), span, backlog_limit, t_limit)
        duration = eng.now
    else:
        if inp.workload.closed:
            raise InvalidRequestError(
                "--concurrency: the simulator runs closed-loop clients on unified and chunked "
                "deployments only so far; for disaggregated give --qps (pdplan estimate models "
                "closed loops for every approach)")
        eng, stable, duration = _run_disaggregated(api, inp, dep, arr, isl_a, osl_a, isl, osl,
                                                   t_first, span, backlog_limit, t_limit)

    res = _statistics(inp, eng, arr, isl_a, osl_a, stable, duration, keep_requests)
    res.wall_s = time.perf_counter() - wall0
    return res


def _run_disaggregated(api, inp, dep, arr, isl_a, osl_a, isl, osl, t_first, span,
                       backlog_limit, t_limit):
    pool_p, pool_d = dep.pool("prefill"), dep.pool("decode")
    smp, smd = api.step_model(inp, pool_p), api.step_model(inp, pool_d)
    smp.require_fit()
    smd.require_fit()
    link, streams, _ = api.kv_link_for(inp.catalog, smp.gpu, smd.gpu, pool_p, pool_d, dep.link)
    kvb = inp.model.kv_bytes_per_token(dep.kv_transfer_dtype or inp.kv_dtype)
    n = len(isl)
    P = np.asarray(smp.prefill_time(isl_a), dtype=float).reshape(-1)
    nbytes = isl_a.astype(float) * kvb
    exposed = np.broadcast_to(np.asarray(kv_transfer_time(
        nbytes, link, streams=streams, prefill_time=P, layers=inp.model.num_layers,
        overlap=dep.kv_overlap), dtype=float), (n,))
    busy = nbytes / (max(int(streams), 1) * link.bytes_per_s) + link.latency_s

    # Prefill lanes pull from one shared FIFO queue (Dynamo's global prefill queue): each prompt
    # starts on the lane that frees up first -- an M/G/c queue, as the analytic model assumes.
    Lp = pool_p.instances * pool_p.pp
    free = [(0.0, l) for l in range(Lp)]
    heapq.heapify(free)
    Pl, tl = P.tolist(), arr.tolist()
    start = [0.0] * n
    pend = [0.0] * n
    plane = [0] * n
    pop, push = heapq.heappop, heapq.heappush
    for i in range(n):
        ta = tl[i]
        f, l = pop(free)
        s = f if f > ta else ta
        e = s + Pl[i]
        push(free, (e, l))
        start[i], pend[i], plane[i] = s, e, l
    pend_a = np.asarray(pend)
    # KV links: one FIFO server per prefill instance, in order of prefill completion.
    inst = np.asarray(plane) // pool_p.pp
    order = np.lexsort((np.arange(n), pend_a))
    link_free = [0.0] * pool_p.instances
    comp = [0.0] * n
    ready = (pend_a + exposed).tolist()
    bl, il = busy.tolist(), inst.tolist()
    for i in order.tolist():
        j = il[i]
        c = link_free[j] + bl[i]
        if ready[i] > c:
            c = ready[i]
        link_free[j] = c
        comp[i] = c
    comp_a = np.asarray(comp)
    t_first[:] = comp
    # Waiting at the last arrival on the prefill side: queued for a prefill or for the link.
    T = span
    waiting = int(np.sum(np.asarray(start) > T)) + int(np.sum((pend_a <= T) & (comp_a > T + busy)))

    mseq = max_num_seqs(smd)
    ft = FastTimes(smd, mseq)
    Ld = pool_d.instances * pool_d.pp
    e = smd.engine
    eng = _Engine(_DECODE, Ld, ft, smd.kv_capacity_tokens / pool_d.pp, mseq, isl, osl, t_first,
                  reserve_full=e is not None and e.kv_admission == "reserve_full")
    one = osl_a <= 1
    for i in np.nonzero(one)[0].tolist():
        eng.t_last[i] = t_first[i]
    if waiting > backlog_limit or float(comp_a.max()) > t_limit:
        return eng, False, min(float(comp_a.max()), t_limit)
    dec = np.nonzero(~one)[0]
    dorder = dec[np.lexsort((dec, comp_a[dec]))]
    stable = eng.run(dorder.tolist(), comp_a[dorder].tolist(), T, backlog_limit, t_limit,
                     extra_waiting=waiting)
    duration = max(eng.now, float(comp_a.max())) if stable else eng.now
    return eng, stable, duration


def _pct(x: np.ndarray) -> dict:
    if x.size == 0:
        return {"mean": math.nan, **{f"p{p}": math.nan for p in PERCENTILES}}
    out = {"mean": float(np.mean(x))}
    q = np.percentile(x, PERCENTILES)
    for p, v in zip(PERCENTILES, q):
        out[f"p{p}"] = float(v)
    return out


def _statistics(inp, eng: _Engine, arr, isl, osl, stable, duration, keep) -> SimResult:
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
               "counted": counted}
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
    )


__all__ = ["SimResult", "simulate", "ROUTINGS"]
