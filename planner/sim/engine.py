"""The lane engine of the simulator: the lanes of one pool driven by one event heap.

A lane is one micro-batch stream of an instance (``pp`` per instance; see planner.perf). The
engine owns everything that is the same under every policy: the event heap, the running batch and
its KV account, decode runs in closed form (planner.sim.runs), completions, routing of arrivals
to lanes, the inter-token-gap bookkeeping and the open- and closed-loop drivers. What a step that
starts at an iteration boundary carries is the lane policy's (planner.sim.policies).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.perf import FastTimes
from planner.sim.runs import iter_time, run_reach, run_span

if TYPE_CHECKING:
    from planner.sim.policies import InflightReservation

_INF = math.inf
# Lane step kinds: idle, a run of decode iterations, a step carrying prompt tokens.
IDLE, PIECE, MIXED = 0, 2, 3
_IDLE, _PIECE, _MIXED = IDLE, PIECE, MIXED
# Routing by prompts: prompts not yet through their prefill weigh more than any running count.
PROMPT_WEIGHT = 1 << 32
_PROMPT_WEIGHT = PROMPT_WEIGHT


class LaneGate:
    """Which lanes take new requests, as time goes: lanes come up and go down at given times
    (instances a scaling schedule adds and removes; a lane that goes down finishes what it
    holds). ``intervals[l]``: the sorted ``(up, down)`` spans of lane ``l``. Arrivals come in
    time order, so the gate only moves forward."""

    def __init__(self, intervals: list):
        ev = sorted((t, kind, l) for l, spans in enumerate(intervals)
                    for a, b in spans for t, kind in ((a, 1), (b, 0)))  # a down before an up at one time
        self._t = [e[0] for e in ev]
        self._up = [e[1] == 1 for e in ev]
        self._lane = [e[2] for e in ev]
        self._i = 0
        self.on = [False] * len(intervals)

    def advance(self, t: float) -> None:
        """Apply the changes at or before ``t``."""
        i, ts = self._i, self._t
        while i < len(ts) and ts[i] <= t:
            self.on[self._lane[i]] = self._up[i]
            i += 1
        self._i = i

    def open_lanes(self, t: float) -> list:
        self.advance(t)
        lanes = [l for l, up in enumerate(self.on) if up]
        if not lanes:
            from planner.errors import InvalidRequestError

            raise InvalidRequestError(f"the scaling schedule leaves a pool without instances at t={t:.3f} s")
        return lanes


def up_at(spans: list, t: float) -> float | None:
    """The first time at or after ``t`` at which a lane with the sorted ``(up, down)`` spans
    is up (``t`` itself when it is up then), or None when it never is again."""
    from bisect import bisect_right

    j = bisect_right([b for _, b in spans], t)  # the first span that ends after t
    if j >= len(spans):
        return None
    a = spans[j][0]
    return t if a <= t else a


class LaneEngine:
    """Lanes of one pool driven by a global event heap keyed by each lane's next boundary.

    Every lane runs one *step* at a time: a unified prefill, one or more chunked (mixed)
    iterations, or a run of decode iterations that ends at the lane's next completion. Steps are
    planned from what is known at their start; two kinds depend on nothing having arrived and are
    revised when something does: a decode run chosen because nothing was waiting (cut at the
    first boundary at or after the arrival) and the last piece of a prompt that a chunked step
    planned ahead (dropped if the arrival comes before that piece starts). Revisions leave stale
    entries in the heap; each entry carries the lane's step version and stale ones are skipped.
    """

    def __init__(self, policy, lanes: int, ft: FastTimes, kv_cap: float, max_seqs: int,
                 isl: list, osl: list, t_first: list, route_prompts: bool = False,
                 route_work: bool = False, reserve_full: bool = False,
                 cached: list | None = None, shared: list | None = None, overlap: bool = False):
        # The lane policy: what a step that starts at a boundary carries (planner.sim.policies).
        self.policy = policy
        self.chunk = int(getattr(policy, "chunk", 0))
        # Iterations carrying prompt tokens also carry the decodes (mixed) or run alone
        # (prefill-first engines); KV held from admission for ISL + OSL (reserve_full) or for
        # the tokens a sequence has so far.
        self.mixed, self.reserve_full = bool(getattr(policy, "mixed", True)), bool(reserve_full)
        # Paged KV on lanes that prefill: when the running sequences outgrow the cache, the
        # newest is preempted and recomputed later (vLLM's recompute preemption).
        self.preempt = bool(getattr(policy, "preempts", False)) and not self.reserve_full
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
        self.ft = ft
        nb = min(ft.max_tokens, max_seqs) + 1
        # Speculative decoding (tables with ``runs``): a decode feeds ``q = K + 1`` tokens (its
        # share of the token budget and of the KV slots), a sequence gains ``gain = 1 + E[a]``
        # per iteration on average (the context sum grows by ``B gain``), its decode iterations
        # are drawn at admission (``draw``, set by the policy) and decode runs take the tables'
        # closed forms (planner.perf.speculative.SpecFastTimes.runs).
        self.q = int(getattr(ft, "decode_query", 1))
        self.gain = float(getattr(ft, "tokens_per_step", 1.0))
        runs = getattr(ft, "runs", None)
        self.spec_runs = runs(nb) if runs is not None else None
        self.draw = None
        if runs is None:
            # Decode iteration of B sequences at context sum X: A[B] + max(F[B] X, G[B] (X + B)).
            self.A = ft.decode_A_l[:nb]
            self.F = ft.decode_F_l
            self.G = ft.decode_G_l
        self.isl, self.osl = isl, osl
        n = len(isl)
        # Prefix caching, per request: prompt tokens found in the cache (its prefill computes
        # the rest, after them) and, of those, the shared prefix's, whose blocks the lane holds
        # once (``kv_cap`` is what is left to the sequences); a sequence holds the rest of its
        # context. (planner.workload.PrefixCache)
        self.cached = cached if cached is not None else [0] * n
        self.shared = shared if shared is not None else [0] * n
        self.t_first = t_first
        self.t_last = [math.nan] * n
        self.lane_of = [-1] * n
        self.seg_a = [-1] * n
        self.seg_b = [-1] * n
        self.gap1 = [0.0] * n
        # Preemption: original lengths (isl/osl then hold what a recompute prefills and what is
        # left to produce), tokens produced before the current admission, when the current
        # batch membership's finish iteration is due (-1: not decoding), when it joined, the
        # time of the token it joined with, when it was preempted, its longest preempted gap.
        self.isl0, self.osl0 = list(isl), list(osl)
        self.done_tok = [0] * n
        self.fin_at = [-1] * n
        self.kjoin = [0] * n
        self.jn = [0] * n
        self.t_tok = [0.0] * n
        self.t_pre = [0.0] * n
        self.gap_pre = [0.0] * n
        self.npre = [0] * n
        self.preemptions = 0
        # Per-lane state.
        L = lanes
        self.t0 = [0.0] * L  # start of the current step
        self.end = [_INF] * L  # its end (inf while idle)
        self.ver = [0] * L
        self.kind = [_IDLE] * L
        self.nrun = [0] * L  # iterations of the current decode run
        self.rev = [False] * L  # current run may be cut by an arrival
        self.data: list[Any] = [None] * L  # prefill request / requests finishing their prompt
        self.B = [0] * L
        self.X = [0.0] * L
        self.XS = [0.0] * L  # shared-prefix tokens in the context sum X (held once, not per sequence)
        self.k = [0] * L  # decode iterations done
        self.fin: list[list[tuple[int, int]]] = [[] for _ in range(L)]  # heap of (finish iteration, request)
        self.queue: list[deque[int]] = [deque() for _ in range(L)]
        self.kv = [0.0] * L  # reserve_full: reserved KV tokens; else prompt tokens of admitted
        # sequences not yet decoding (decoding ones hold their context, self.X)
        self.ns = [0] * L  # admitted, unfinished sequences (chunked: includes in prefill)
        self.out = [0] * L  # routing key (see prompt_weight)
        self.partial = [None] * L  # chunked: (request, tokens done)
        self.spec = [None] * L  # chunked: the step before its speculative last piece
        self.fresh: list[list[int]] = [[] for _ in range(L)]  # joined, waiting for their second token
        self.joined: list[list[tuple[int, int]]] = [[] for _ in range(L)]  # (request, join serial) in join order (preemption)
        self.cross: list[list[float]] = [[] for _ in range(L)]  # per segment: gap into its first iteration
        self.inner: list[list[float]] = [[] for _ in range(L)]  # per segment: largest gap inside it
        self.last_end = [0.0] * L
        self.heap: list = []
        self.now = 0.0
        self.done = 0
        self.spawn: list | None = None  # closed loop: completion times not yet turned into arrivals
        self.woken: list = []  # idle lanes an arrival went to, started after its simultaneous ones
        # KV tokens per lane held outside the lanes' own account at time t (disaggregated decode:
        # transfers in flight, allocated before they start); None: nothing is.
        self.reserved: InflightReservation | None = None
        # Overlap scheduling (the host plans iteration n + 1 while the GPU runs n): a request that
        # arrives while a lane runs is handed to the lane just after that iteration's boundary,
        # when n + 1 is already planned without it. Deliveries pending: (time, request, lane).
        self.overlap = bool(overlap)
        self.delayed: list = []
        self.bounds: list[list[float]] = [[] for _ in range(L)]  # a prompt step's boundaries, from its start
        # Lanes that take new requests over time (a scaling schedule); None: every lane, always.
        self.gate: LaneGate | None = None

    # ----------------------------------------------------------------------------------------
    def schedule(self, l: int, kind: int, t0: float, ev: float) -> None:
        self.kind[l] = kind
        self.t0[l] = t0
        self.end[l] = ev
        self.ver[l] += 1
        if ev < _INF:
            heapq.heappush(self.heap, (ev, l, self.ver[l]))

    def fits(self, l: int, rid: int, running: int) -> bool:
        if running == 0:
            return True
        if running >= self.max_seqs:
            return False
        cap = self.kv_cap if self.reserved is None else self.kv_cap - self.reserved(self.now)
        own = self.isl[rid] - self.shared[rid]  # prompt KV the sequence holds itself
        if self.reserve_full:
            return self.kv[l] + own + self.osl[rid] <= cap
        # Paged: the running sequences' next tokens are placed first (vLLM schedules the running
        # requests before the waiting ones), the prompt in what is left.
        return self.X[l] - self.XS[l] + self.kv[l] + self.B[l] * self.q + own <= cap

    def hold(self, l: int, rid: int, sign: int) -> None:
        """Admission (+1) and its release (-1) in the KV account."""
        self.kv[l] += sign * (self.isl[rid] - self.shared[rid] + (self.osl[rid] if self.reserve_full else 0))

    def replan(self, l: int, t: float) -> None:
        """Choose the step that starts at boundary ``t``."""
        policy = self.policy
        if self.preempt:
            self._relieve(l, t)
            self._clean(l)
        if policy.plan(self, l, t):
            return  # a step with prompt work
        B = self.B[l]
        if B > 0:
            fin = self.fin[l]
            n = fin[0][0] - self.k[l]
            if self.preempt and B > 1:
                n = min(n, self.kv_iterations(l))  # the run ends where the cache is full
            if self.reserved is not None and self.queue[l]:
                n = self._until_release(l, t, n)
            self.nrun[l] = n
            self.rev[l] = policy.run_revisable(self, l)
            sr = self.spec_runs
            span = (sr[0](B, self.X[l], n) if sr else
                    run_span(self.A[B], self.F[B], self.G[B], B, self.X[l], n))
            self.schedule(l, _PIECE, t, t + span)
        else:
            self.t0[l] = t
            self.schedule(l, _IDLE, t, _INF)

    def _until_release(self, l: int, t: float, n: int) -> int:
        """A lane whose queue waits for KV memory while transfers in flight hold some looks
        again at the first boundary at or after the next release (``self.reserved``)."""
        assert self.reserved is not None  # only called while transfers hold KV
        t_rel = self.reserved.next_release(t)
        if t_rel == _INF:
            return n
        B = self.B[l]
        m = run_reach(self.A[B], self.F[B], self.G[B], B, self.X[l], n, t_rel - t)
        return max(1, min(n, m))

    def join(self, l: int, rid: int) -> None:
        """``rid`` has its first token (or, recomputed, its next); it decodes from the next
        iteration on."""
        self.B[l] += 1
        self.X[l] += self.isl[rid]
        self.XS[l] += self.shared[rid]
        if not self.reserve_full:  # its prompt's KV now counts in the context sum
            self.kv[l] -= self.isl[rid] - self.shared[rid]
        if not self.done_tok[rid]:
            self.t_tok[rid] = self.t_first[rid]
        k = self.k[l]
        left = self.osl[rid] - 1
        due = k + (left if self.draw is None else self.draw(rid, left, not self.done_tok[rid]))
        self.fin_at[rid] = due
        self.kjoin[rid] = k
        heapq.heappush(self.fin[l], (due, rid))
        self.fresh[l].append(rid)
        if self.preempt:
            self.jn[rid] += 1
            self.joined[l].append((rid, self.jn[rid]))

    def _clean(self, l: int) -> None:
        """Drop finish entries of sequences preempted since (their batch membership ended)."""
        fin, fa = self.fin[l], self.fin_at
        while fin and fa[fin[0][1]] != fin[0][0]:
            heapq.heappop(fin)

    def kv_iterations(self, l: int) -> int:
        """Decode iterations lane ``l`` can run before its cache is full: each needs room for
        one more token per running sequence (``X + kv + B <= capacity`` before it; speculative:
        ``q`` slots each, and the context grows by ``B gain``)."""
        B = self.B[l]
        room = self.kv_cap - self.kv[l] - (self.X[l] - self.XS[l]) - B * self.q
        return int(room // (B * self.gain)) + 1 if room >= 0 else 0

    def _relieve(self, l: int, t: float) -> None:
        """At boundary ``t``: preempt the newest running sequences until the next iteration's
        tokens fit (a lone sequence always runs)."""
        while self.B[l] > 1 and self.X[l] - self.XS[l] + self.kv[l] + self.B[l] * self.q > self.kv_cap:
            self._preempt(l, t)

    def _preempt(self, l: int, t: float) -> None:
        """Recompute preemption of the sequence that joined last: its blocks are freed and it
        goes back to the head of the queue, to prefill its prompt and the tokens it has."""
        joined, fa, jn = self.joined[l], self.fin_at, self.jn
        while joined:
            rid, serial = joined.pop()
            if fa[rid] >= 0 and jn[rid] == serial:
                break
        else:
            return
        j = self.k[l] - self.kjoin[rid]  # decode iterations since it joined
        made = j  # tokens they gave it (speculative: its share of its drawn iterations)
        if self.draw is not None:
            made = min(int(j * (self.osl[rid] - 1) / max(fa[rid] - self.kjoin[rid], 1) + 0.5),
                       self.osl[rid] - 2)
        self.B[l] -= 1
        self.X[l] -= self.isl[rid] + j * self.gain
        self.XS[l] -= self.shared[rid]
        fa[rid] = -1
        self.done_tok[rid] += 1 + made
        self.isl[rid] = self.isl0[rid] + self.done_tok[rid]
        self.osl[rid] = self.osl0[rid] - self.done_tok[rid]
        self.ns[l] -= 1
        self.queue[l].appendleft(rid)
        self.out[l] += self.prompt_weight
        self.t_pre[rid] = t
        self.npre[rid] += 1
        self.preemptions += 1
        if rid in self.fresh[l]:  # preempted before its first decode iteration
            self.fresh[l].remove(rid)

    def _finish(self, l: int, rid: int, t: float) -> None:
        self.t_last[rid] = t
        if self.reserve_full:
            self.kv[l] -= self.isl[rid] - self.shared[rid] + self.osl[rid]
        elif self.osl[rid] <= 1:  # never decoded: its prompt is still in the KV account
            self.kv[l] -= self.isl[rid] - self.shared[rid]
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
            tt, ga, sa = self.t_tok, self.gap1, self.seg_a
            for rid in fresh:
                gap = first_end - tt[rid]
                if gap > ga[rid]:
                    ga[rid] = gap
                if sa[rid] < 0:
                    sa[rid] = s
            fresh.clear()
        self.last_end[l] = end

    def _completions(self, l: int, t: float) -> None:
        fin = self.fin[l]
        k = self.k[l]
        if fin and fin[0][0] == k:
            s = len(self.cross[l]) - 1
            isl, sb, fa, sh = self.isl, self.seg_b, self.fin_at, self.shared
            while fin and fin[0][0] == k:
                rid = heapq.heappop(fin)[1]
                if fa[rid] != k:
                    continue  # preempted since
                fa[rid] = -1
                self.B[l] -= 1
                # what it added to the context sum: B gain per iteration (osl - 1 tokens unless
                # speculative)
                self.X[l] -= isl[rid] + (k - self.kjoin[rid]) * self.gain
                self.XS[l] -= sh[rid]
                sb[rid] = s
                self._finish(l, rid, t)

    # ----------------------------------------------------------------------------------------
    def _on_event(self, l: int, t: float) -> None:
        kind = self.kind[l]
        if kind == _PIECE:
            n = self.nrun[l]
            if n > 0:
                B, X, t0 = self.B[l], self.X[l], self.t0[l]
                D = B * self.gain
                sr = self.spec_runs
                if sr:
                    d0 = sr[1](B, X)
                    inner = sr[1](B, X + (n - 1) * D) if n > 1 else 0.0
                else:
                    a, f, g = self.A[B], self.F[B], self.G[B]
                    d0 = iter_time(a, f, g, B, X)
                    inner = iter_time(a, f, g, B, X + (n - 1) * B) if n > 1 else 0.0
                self._segment(l, t0 + d0, inner, t)
                self.k[l] += n
                self.X[l] = X + n * D
                self._completions(l, t)
        elif kind == _MIXED:
            m, d0, dl, done = self.data[l]
            B = self.B[l]
            if B > 0 and self.mixed:
                self._segment(l, self.t0[l] + d0, dl, t)
                self.k[l] += m
                self.X[l] += m * B * self.gain
                self._completions(l, t)
            if done:
                self.out[l] -= self.prompt_weight * len(done)
            for rid in done:
                if self.done_tok[rid]:  # a recomputed sequence: its next token
                    gap = t - self.t_pre[rid]
                    if gap > self.gap_pre[rid]:
                        self.gap_pre[rid] = gap
                else:
                    self.t_first[rid] = t
                self.t_tok[rid] = t
                if self.osl[rid] <= 1:
                    self._finish(l, rid, t)
                else:
                    self.join(l, rid)
        self.replan(l, t)

    def _cut(self, l: int, ta: float) -> None:
        """An arrival at ``ta`` ends the current decode run at the first boundary >= ``ta``."""
        self.rev[l] = False
        n = self.nrun[l]
        B = self.B[l]
        X, t0 = self.X[l], self.t0[l]
        sr = self.spec_runs
        if sr:
            m = sr[2](B, X, n, ta - t0)
            if m >= n:
                return
            self.nrun[l] = m
            self.schedule(l, _PIECE, t0, t0 + sr[0](B, X, m))
            return
        a, f, g = self.A[B], self.F[B], self.G[B]
        m = run_reach(a, f, g, B, X, n, ta - t0)
        if m >= n:
            return
        self.nrun[l] = m
        self.schedule(l, _PIECE, t0, t0 + run_span(a, f, g, B, X, m))

    def _boundary_after(self, l: int, ta: float) -> float:
        """The end of the iteration lane ``l`` is running at ``ta`` (a decode run's iteration in
        progress; a prompt step's first iteration, or its end once past that)."""
        kind, t0 = self.kind[l], self.t0[l]
        if kind == _PIECE:
            n, B, X = self.nrun[l], self.B[l], self.X[l]
            sr = self.spec_runs
            if sr:
                m = sr[2](B, X, n, ta - t0)
                return t0 + sr[0](B, X, min(max(m, 1), n))
            a, f, g = self.A[B], self.F[B], self.G[B]
            m = run_reach(a, f, g, B, X, n, ta - t0)
            return t0 + run_span(a, f, g, B, X, min(max(m, 1), n))
        if kind == _MIXED:
            for b in self.bounds[l]:
                if t0 + b >= ta:
                    return t0 + b
        end = self.end[l]
        return end if end > ta else ta

    def _deliver(self, rid: int, l: int, ta: float) -> None:
        """Hand ``rid`` (routed to lane ``l``) to the lane at ``ta``."""
        self.queue[l].append(rid)
        kind = self.kind[l]
        if kind == _IDLE:
            if l not in self.woken:
                self.woken.append(l)  # started once the arrivals at ``ta`` are all queued
        elif self.rev[l]:
            if kind == _PIECE:
                self._cut(l, ta)
            elif kind == _MIXED:
                self.policy.take_back(self, l, ta)

    def _arrive(self, rid: int, ta: float) -> None:
        out = self.out
        lanes = range(self.L) if self.gate is None else self.gate.open_lanes(ta)
        if self.route_work:
            # Ties (several lanes with no prompt work left) go to the fewest outstanding.
            pw = self.pwork
            best, bo, l = _INF, 0, 0
            for j in lanes:
                v = pw[j] if pw[j] > ta else ta
                if v < best or (v == best and out[j] < bo):
                    best, bo, l = v, out[j], j
            pw[l] = best + self.policy.prompt_cost(self, l, rid)
        elif self.gate is None:
            l = out.index(min(out))
        else:
            l = min(lanes, key=out.__getitem__)
        out[l] += 1 + self.prompt_weight
        self.lane_of[rid] = l
        if self.overlap and self.kind[l] != _IDLE:
            # planned already: the iteration after the one in progress
            b1 = self._boundary_after(l, ta)
            heapq.heappush(self.delayed, (math.nextafter(b1, _INF), rid, l))
            return
        self._deliver(rid, l, ta)

    # ----------------------------------------------------------------------------------------
    def _wake(self, ta: float) -> None:
        """Start the idle lanes that arrivals at ``ta`` went to."""
        for l in self.woken:
            if self.kind[l] == _IDLE:
                self.replan(l, ta)
        self.woken.clear()

    def _next(self, ta: float):
        """The next thing to happen, given the next arrival at ``ta``: ``(time, True)`` for the
        lane event on top of the heap (revised steps' stale entries dropped), ``(ta, False)``
        for the arrival, ``None`` when nothing is left. An arrival at the time of a boundary
        comes first, so that the boundary sees it."""
        heap, ver = self.heap, self.ver
        while True:
            while heap and heap[0][2] != ver[heap[0][1]]:
                heapq.heappop(heap)  # a revised step
            dl = self.delayed
            if dl and dl[0][0] < ta and not (heap and heap[0][0] <= dl[0][0]):
                # an overlap-scheduled request reaches its lane (before the next arrival, after
                # the boundary it waited for)
                td, rid, l = heapq.heappop(dl)
                self.now = td
                self._deliver(rid, l, td)
                self._wake(td)
                continue
            break
        if heap and heap[0][0] < ta:
            return heap[0][0], True
        return (ta, False) if ta < _INF else None

    def _arrival(self, rid: int, ta: float, following: float) -> None:
        """Request ``rid`` arrives at ``ta``; idle lanes start once the arrivals at ``ta`` are all
        in (``following``: the time of the next arrival)."""
        self.now = ta
        self._arrive(rid, ta)
        if following != ta:
            self._wake(ta)

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
                i += 1
                self._arrival(order[i - 1], ta, times[i] if i < n else _INF)
        if not snapped:
            waiting = extra_waiting + sum(len(q) for q in self.queue)
            if waiting > backlog_limit:
                return False
        return True

    def run_closed(self, clients: int, think_s: float, n: int, t_arr: list, t_limit: float) -> bool:
        """Closed loop: ``clients`` clients send requests ``0..n-1`` in order, all at time 0 at
        first, then each ``think_s`` after its previous request completes (without think time:
        just after the boundary it completed at; ``t_arr`` receives the arrival times). Returns
        False when simulated time passes ``t_limit``."""
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
                rid_a = heapq.heappop(arrivals)[1]
                self._arrival(rid_a, t_next, arrivals[0][0] if arrivals else _INF)
            for tc in self.spawn:  # completions: those clients send their next requests
                if rid < n:
                    # Without think time the next request still comes after the boundary its
                    # predecessor finished at: the client needs that last token to send it, and
                    # the engine plans the iteration starting there at that very instant (the
                    # first representable time after it: it waits for that whole iteration).
                    ta = tc + think_s if think_s > 0 else math.nextafter(tc, _INF)
                    t_arr[rid] = ta
                    heapq.heappush(arrivals, (ta, rid))
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
        best = float(max(np.max(np.asarray(self.gap1)[rids]), np.max(np.asarray(self.gap_pre)[rids])))
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


__all__ = ["IDLE", "MIXED", "PIECE", "LaneEngine", "LaneGate", "up_at"]
