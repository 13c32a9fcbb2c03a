"""The token-by-token reference scheduler: every iteration and every token, no shortcuts.

This is the meaning of each policy, written as plainly as possible; ``pdplan timeline`` draws
what it schedules, and the tests hold the fast simulator (:mod:`planner.sim.engine`, which runs
decode iterations in closed form) to it token by token. One rule per approach, in ``RULES``.

* ``unified``: in-flight batching without splitting. At every iteration boundary a lane takes
  the running decodes plus whole waiting prompts, first come first served, while they fit in the
  token budget left by the decodes (one token each); the first prompt always fits (engines
  without chunked prefill raise the budget to the longest prompt). A long prompt makes its
  iteration long, and every running sequence waits for it: the stall.
* ``chunked``: the same with splitting: the partly prefilled head first, then new prompts, cut to
  fill the budget (``--chunk-size``, decodes included).
* ``disaggregated``: prefill lanes take whole prompts from one shared FIFO queue; the KV cache
  then crosses its instance's link (a processor-sharing server: transfers in flight share its
  NICs), its blocks held on the decode side from the transfer's start; decode lanes admit the
  request at their next iteration boundary and run decode-only iterations.

Admission (every approach): a lane admits the head of its queue while it has fewer than
``max_seqs`` sequences and the KV cache has room: with ``reserve_full`` for the prompt and the
whole output (TensorRT-LLM's guaranteed-no-evict), otherwise (paged, vLLM and SGLang) for the
prompt next to the context every decoding sequence holds and its next token (the running
requests are scheduled first, as vLLM does). A lane with nothing admitted always admits. Paged lanes that prefill preempt: at a boundary where the running sequences' next tokens
no longer fit, the one that joined last is put back at the head of the queue and later prefills
its prompt and the tokens it had, which yields its next token (vLLM's recompute preemption). A
lone sequence always runs; disaggregated decode lanes admit against the current occupancy
without preempting. With ``mixed=False`` (SGLang's prefill-first default) an iteration that carries prompt
tokens carries no decodes: the running sequences sit it out.

Routing: an arrival goes to the lane with the fewest outstanding requests (``outstanding``) or
the fewest prompts not yet through their prefill, then outstanding (``prompts``); ties to the
lowest lane. Arrivals at a boundary's time are seen at that boundary (with overlap scheduling,
what arrives while a lane runs reaches it just after the boundary that ends that iteration), and
arrivals at the same time are all queued before an idle lane starts.

Prefix caching (``Request.cached``, ``Request.shared``; planner.workload.PrefixCache): a prefill
computes the prompt tokens after the cached ones (attending to them), a lane's ``kv_cap`` is what
is left beside the shared prefix it holds once, a sequence's KV is its context less its shared
tokens, and a disaggregated transfer carries all but the shared prefix.

A request's first token comes from its prefill (the end of the iteration that finishes the
prompt, or when its KV cache has arrived on the decode lane); each decode iteration it takes part
in gives it one more. ``output`` counts all of them.

Speculative decoding (``spec``, a :class:`planner.perf.speculative.SpecDecode`): every decode
feeds ``K + 1`` tokens (its share of the token budget and its KV slots) and each decode iteration
gives it ``1 + a`` tokens at the iteration's end, ``a`` drawn for that sequence and that
iteration from the chain of per-position acceptances (the run's seed), the last cut to the
output's end.

Clocks give an iteration its duration: :class:`TokenClock` (one tick per token, the abstract
timeline), :class:`StepClock` (:meth:`planner.perf.StepModel.iteration`, the real timeline) and
:class:`TableClock` (the simulator's fast tables, for exact comparisons with the simulator).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

ROUTINGS = ("outstanding", "prompts")


@dataclass(frozen=True)
class Request:
    prompt: int  # tokens
    output: int  # tokens generated, the first by the prefill
    arrival: float = 0.0  # ticks (abstract) or seconds (real)
    # Prefix caching: prompt tokens found in the cache (the prefill computes the rest, after
    # them) and, of those, the shared prefix's, whose KV the lane holds once (the lane's
    # ``kv_cap`` is what is left to its sequences; planner.workload.PrefixCache).
    cached: int = 0
    shared: int = 0


@dataclass
class Iteration:
    pool: str  # unified | prefill | decode
    start: float
    end: float
    pieces: tuple  # ((request, prompt tokens, offset), ...)
    decodes: tuple  # requests that get a token at the end of the iteration
    decode_share: float  # time at the end of the iteration drawn as the decode tick
    stalled: tuple = ()  # requests in the running batch that get no token
    lane: int = 0

    @property
    def duration(self) -> float:
        return self.end - self.start


# --------------------------------------------------------------------------------------------
# Clocks: how long an iteration takes
# --------------------------------------------------------------------------------------------


class TokenClock:
    """Abstract time: one tick per token processed; a decode iteration of the batch is one tick."""

    real = False
    unit = "tick"

    def iteration(self, pieces, contexts) -> tuple[float, float]:
        """(duration, share of it the decodes alone would take) of an iteration with prompt
        ``pieces`` [(tokens, offset, completes)] and decodes at ``contexts``."""
        dec = 1.0 if contexts else 0.0
        return float(sum(p[0] for p in pieces)) + dec, dec

    def prefill(self, tokens: int, offset: int = 0) -> float:
        return float(tokens)

    def transfer(self, tokens: int, prefill_s: float) -> tuple[float, float, float]:
        """(fixed part, data part alone on the link, of it what runs during the prefill) of
        one KV cache's transfer of ``tokens`` tokens."""
        return 0.0, 0.0, 0.0


class StepClock:
    """Real time from :meth:`planner.perf.StepModel.iteration` (what ``prefill_time``,
    ``decode_time`` and ``mixed_time`` evaluate), and the KV transfer over ``link``."""

    real = True
    unit = "ms"

    def __init__(self, sm, link=None, streams: int = 1, kv_bytes_per_token: float = 0.0,
                 overlap: bool = True, xfer=None):
        self.sm = sm
        self.link, self.streams = link, max(int(streams), 1)
        self.kv_bytes_per_token = float(kv_bytes_per_token)
        self.overlap = overlap
        self.xfer = xfer  # the KV-transfer engine (planner.catalog.TransferSpec) or None

    def _time(self, pieces, contexts) -> float:
        tokens = sum(p[0] for p in pieces)
        cost = self.sm.iteration(
            prefill_tokens=tokens,
            prefill_pairs=sum(c * (off + c / 2) for c, off, _ in pieces),
            prefill_kv=sum(off + c for c, off, _ in pieces),
            prefill_seqs=sum(1 for p in pieces if p[2]),
            decode_batch=len(contexts), decode_ctx=float(sum(contexts)))
        return float(cost.time_s)

    def iteration(self, pieces, contexts) -> tuple[float, float]:
        total = self._time(pieces, contexts)
        if not contexts:
            return total, 0.0
        dec = total if not pieces else min(self._time((), contexts), total)
        return total, dec

    def prefill(self, tokens: int, offset: int = 0) -> float:
        # (a disaggregated prefill: under data-parallel attention every rank takes a prompt)
        return float(self.sm.prefill_time(tokens, offset, self.sm.dp))

    def transfer(self, tokens: int, prefill_s: float) -> tuple[float, float, float]:
        if self.link is None:
            return 0.0, 0.0, 0.0
        from planner.perf import kv_transfer_time, transfer_fixed_time, transfer_rate

        nbytes = tokens * self.kv_bytes_per_token
        exposed = float(kv_transfer_time(nbytes, self.link, streams=self.streams,
                                         prefill_time=prefill_s, layers=self.sm.model.num_layers,
                                         overlap=self.overlap, xfer=self.xfer))
        fixed = transfer_fixed_time(self.link, self.xfer)
        data = nbytes / transfer_rate(self.link, self.streams, self.xfer)
        return fixed, data, max(data - (exposed - fixed), 0.0)


class TableClock(StepClock):
    """The simulator's clock: iterations from its fast tables (:class:`planner.perf.FastTimes`),
    prefills of a disaggregated prefill lane and KV transfers as the simulator computes them."""

    def __init__(self, ft, sm, link=None, streams: int = 1, kv_bytes_per_token: float = 0.0,
                 overlap: bool = True, xfer=None):
        super().__init__(sm, link, streams, kv_bytes_per_token, overlap, xfer)
        self.ft = ft

    def iteration(self, pieces, contexts) -> tuple[float, float]:
        tok = sum(p[0] for p in pieces)
        pairs = sum(c * (off + c * 0.5) for c, off, _ in pieces)
        kv = float(sum(off + c for c, off, _ in pieces))
        seqs = sum(1 for p in pieces if p[2])
        t = self.ft.time(tok, pairs, kv, seqs, len(contexts), float(sum(contexts)))
        return t, (t if contexts and not pieces else 0.0)


# --------------------------------------------------------------------------------------------
# Lanes
# --------------------------------------------------------------------------------------------


class _Lane:
    def __init__(self):
        self.end = math.inf  # end of the iteration in progress
        self.step = None  # (pieces, decodes) of the iteration in progress
        self.queue: deque = deque()  # arrived, not admitted
        self.running: list = []  # decoding
        self.admitted: list = []  # admitted, prompt not finished
        self.done: dict = {}  # prompt tokens prefilled, per admitted request
        self.kv = 0.0  # KV tokens held by admitted requests beyond the running contexts
        self.out = 0  # outstanding requests
        self.prompts = 0  # arrived, first token not yet out


class _Server:
    """Lanes of one pool under one rule, fed by arrivals, iteration by iteration."""

    def __init__(self, reqs, clock, tokens, its, pool, lanes, budget, split, kv_cap, max_seqs,
                 mixed, reserve_full, decode_only, preempt=False, spec=None, seed=0, overlap=False):
        self.reqs, self.clock, self.tokens, self.its, self.pool = reqs, clock, tokens, its, pool
        self.L = [_Lane() for _ in range(lanes)]
        # Overlap scheduling: what arrives while a lane runs an iteration reaches its queue only
        # after the boundary that ends it (the next iteration was planned during this one).
        self.overlap = overlap
        self.held: list[list[int]] = [[] for _ in range(lanes)]
        self.budget, self.split = budget, split
        self.kv_cap, self.max_seqs = kv_cap, max_seqs
        self.mixed, self.reserve_full, self.decode_only = mixed, reserve_full, decode_only
        self.preempt = preempt and not reserve_full and not decode_only
        # What a request's (next) prefill computes: its prompt, after a recompute preemption
        # its prompt and the tokens it had.
        self.prompt = [r.prompt for r in reqs]
        self.cached = [r.cached for r in reqs]
        self.shared = [r.shared for r in reqs]
        self.preemptions = [0] * len(reqs)
        # KV tokens per lane held for transfers in flight at time t (disaggregated decode).
        self.reserved = None
        self.now = 0.0
        # Speculative decoding: tokens a decode feeds in, and the draws of accepted counts.
        self.spec = spec
        self.q = spec.tokens + 1 if spec is not None else 1
        if spec is not None:
            import numpy as np

            from planner.sim.policies import SPEC_STREAM

            self.rng = np.random.default_rng([int(seed), SPEC_STREAM])

    def _context(self, r) -> int:
        # A decode attends to the prompt and the tokens generated before the one it feeds in.
        return self.reqs[r].prompt + len(self.tokens[r]) - 1

    def _fits(self, ln, r) -> bool:
        count = len(ln.running) + len(ln.admitted)
        if count == 0:
            return True
        if count >= self.max_seqs:
            return False
        # (a sequence holds its KV but the shared prefix's, which the lane holds once)
        need = self.prompt[r] - self.shared[r] + (self.reqs[r].output if self.reserve_full else 0)
        # Paged: the running sequences' next tokens are placed first, the prompt in what is left.
        held = ln.kv + (0 if self.reserve_full else sum(self._context(x) - self.shared[x] + self.q
                                                        for x in ln.running))
        cap = self.kv_cap - (self.reserved(self.now) if self.reserved is not None else 0.0)
        return held + need <= cap

    def _admit(self, ln, r) -> None:
        ln.queue.remove(r)
        ln.kv += self.prompt[r] - self.shared[r] + (self.reqs[r].output if self.reserve_full else 0)
        if self.decode_only:
            self._join(ln, r)
        else:
            ln.admitted.append(r)
            ln.done[r] = self.cached[r]  # a prefix-cache hit: its prefill starts after it

    def _join(self, ln, r) -> None:
        if not self.reserve_full:  # its prompt's KV now counts in its context
            ln.kv -= self.prompt[r] - self.shared[r]
        ln.running.append(r)

    def _relieve(self, ln) -> None:
        """Recompute preemption (vLLM): while the running sequences' next tokens do not fit,
        the one that joined last frees its blocks and goes back to the head of the queue, to
        prefill its prompt and the tokens it has (a lone sequence always runs)."""
        while len(ln.running) > 1 and (sum(self._context(x) - self.shared[x] for x in ln.running)
                                       + ln.kv + len(ln.running) * self.q > self.kv_cap):
            r = ln.running.pop()
            self.prompt[r] = self.reqs[r].prompt + len(self.tokens[r])
            ln.queue.appendleft(r)
            ln.prompts += 1
            self.preemptions[r] += 1

    def _release(self, ln, r) -> None:
        if self.reserve_full:
            ln.kv -= self.reqs[r].prompt - self.shared[r] + self.reqs[r].output
        ln.out -= 1

    def start(self, i: int, t: float) -> None:
        """Choose the iteration lane ``i`` starts at boundary ``t``."""
        ln = self.L[i]
        self.now = t
        pieces = []
        if self.preempt:
            self._relieve(ln)
        if self.decode_only:
            while ln.queue and self._fits(ln, ln.queue[0]):
                self._admit(ln, ln.queue[0])
        else:
            room = self.budget - len(ln.running) * self.q
            for r in list(ln.admitted):  # the partly prefilled head first
                if room <= 0:
                    break
                c = min(self.prompt[r] - ln.done[r], room)
                pieces.append((r, c, ln.done[r]))
                room -= c
            while room > 0 and ln.queue and self._fits(ln, ln.queue[0]):
                r = ln.queue[0]
                L = self.prompt[r] - self.cached[r]  # the tokens its prefill computes
                if not self.split and pieces and L > room:
                    break  # a whole prompt that does not fit waits for the next iteration
                self._admit(ln, r)
                c = L if not self.split else min(L, room)
                pieces.append((r, c, self.cached[r]))
                room -= c
        if not pieces and not ln.running:
            ln.end, ln.step = math.inf, None
            return
        decodes = tuple(ln.running) if (self.mixed or not pieces) else ()
        d, share = self.clock.iteration(
            tuple((c, off, off + c == self.prompt[r]) for r, c, off in pieces),
            [self._context(r) for r in decodes])
        stalled = tuple(r for r in ln.running if r not in decodes)
        self.its.append(Iteration(self.pool, t, t + d, tuple(pieces), decodes, share, stalled, i))
        ln.end, ln.step = t + d, (pieces, decodes)

    def finish(self, i: int) -> None:
        """The iteration of lane ``i`` ends: its tokens appear."""
        ln = self.L[i]
        t = ln.end
        pieces, decodes = ln.step
        for r in decodes:
            n = 1 if self.spec is None else 1 + self.spec.accepted(self.rng)
            for _ in range(min(n, self.reqs[r].output - len(self.tokens[r]))):
                self.tokens[r].append(t)
            if len(self.tokens[r]) == self.reqs[r].output:
                ln.running.remove(r)
                self._release(ln, r)
        for r, c, _ in pieces:
            ln.done[r] += c
            if ln.done[r] == self.prompt[r]:
                ln.admitted.remove(r)
                del ln.done[r]
                self.tokens[r].append(t)
                ln.prompts -= 1
                if len(self.tokens[r]) < self.reqs[r].output:
                    self._join(ln, r)  # decodes from the next iteration on
                else:
                    if not self.reserve_full:
                        ln.kv -= self.prompt[r] - self.shared[r]
                    self._release(ln, r)

    def run(self, arrivals, routing: str = "outstanding") -> None:
        """Serve ``arrivals`` [(time, request)], sorted, until every request is done."""
        k = 0
        while True:
            ends = [ln.end for ln in self.L]
            tn = min(ends)
            ta = arrivals[k][0] if k < len(arrivals) else math.inf
            if tn == math.inf and ta == math.inf:
                return
            if ta <= tn:
                idle = []
                while k < len(arrivals) and arrivals[k][0] == ta:  # simultaneous arrivals together
                    r = arrivals[k][1]
                    keys = [(ln.prompts, ln.out) if routing == "prompts" else ln.out for ln in self.L]
                    i = keys.index(min(keys))
                    ln = self.L[i]
                    ln.out += 1
                    ln.prompts += 0 if self.decode_only else 1
                    if self.overlap and ln.end != math.inf:
                        self.held[i].append(r)
                    else:
                        ln.queue.append(r)
                        if ln.end == math.inf and i not in idle:
                            idle.append(i)
                    k += 1
                for i in idle:
                    self.start(i, ta)
            else:
                i = ends.index(tn)
                self.finish(i)
                self.start(i, tn)
                if self.held[i]:
                    ln = self.L[i]
                    ln.queue.extend(self.held[i])
                    self.held[i].clear()
                    if ln.end == math.inf:  # nothing was planned: it starts on them
                        self.start(i, tn)


# --------------------------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------------------------


def _fcfs(reqs) -> list:
    return sorted(range(len(reqs)), key=lambda i: (reqs[i].arrival, i))


def in_flight(reqs, clock, budget: int, split: bool, lanes: int = 1, kv_cap: float = math.inf,
              max_seqs: float = math.inf, mixed: bool = True, reserve_full: bool = False,
              routing: str = "outstanding", preemptions: list | None = None, spec=None,
              seed: int = 0, overlap: bool = False) -> tuple[list, list]:
    """Unified (``split=False``) or chunked lanes. Returns (iterations, token times per
    request); ``preemptions``, when given, receives each request's preemption count. ``spec``:
    speculative decoding (accepted counts drawn with ``seed``)."""
    tokens: list = [[] for _ in reqs]
    its: list = []
    srv = _Server(reqs, clock, tokens, its, "unified", lanes, budget, split, kv_cap, max_seqs,
                  mixed, reserve_full, decode_only=False, preempt=True, spec=spec, seed=seed,
                  overlap=overlap)
    srv.run([(reqs[i].arrival, i) for i in _fcfs(reqs)], routing)
    if preemptions is not None:
        preemptions[:] = srv.preemptions
    return its, tokens


def unified(reqs, clock, budget: int, **kw) -> tuple[list, list]:
    return in_flight(reqs, clock, budget, False, **kw)


def chunked(reqs, clock, chunk: int, **kw) -> tuple[list, list]:
    return in_flight(reqs, clock, chunk, True, **kw)


def shared_link(begins: list, sizes: list, lanes: int = 1) -> list:
    """Completion times on a processor-sharing link, step by step: ``lanes`` lanes of unit
    speed shared by the jobs present (each at most one lane); job ``i`` arrives at
    ``begins[i]`` needing ``sizes[i]`` seconds alone."""
    k = max(1, int(lanes))
    left: dict[int, float] = {}
    done = [0.0] * len(begins)
    pending = sorted(range(len(begins)), key=lambda i: (begins[i], i))
    t = 0.0
    while pending or left:
        speed = 1.0 if len(left) <= k else k / len(left)
        t_arr = begins[pending[0]] if pending else math.inf
        t_dep = t + min(left.values()) / speed if left else math.inf
        t_new = min(t_arr, t_dep)
        for i in left:
            left[i] -= (t_new - t) * speed
        t = t_new
        if t_dep <= t_arr:
            for i in [i for i in left if left[i] <= 1e-12 * max(1.0, sizes[i])]:
                done[i] = t
                del left[i]
        else:
            i = pending.pop(0)
            left[i] = sizes[i]
    return done


def disaggregated(reqs, clock, prefill_lanes: int = 1, lanes_per_instance: int = 1,
                  decode_lanes: int = 1, kv_cap: float = math.inf, max_seqs: float = math.inf,
                  reserve_full: bool = False, link_lanes: int = 1, spec=None,
                  seed: int = 0) -> tuple[list, list, dict, dict]:
    """Prefill lanes, KV links (one per prefill instance of ``lanes_per_instance`` lanes, each
    a processor-sharing link of ``link_lanes`` transfers at full speed) and decode lanes, which
    hold the KV of every transfer in flight (spread evenly over them). Returns (iterations,
    token times, prefill end and exposed transfer per request)."""
    tokens: list = [[] for _ in reqs]
    its: list = []
    free = [0.0] * prefill_lanes  # one shared FIFO queue: each prompt takes the lane free first
    prefill_end, lane_of = {}, {}
    for r in _fcfs(reqs):
        j = min(range(prefill_lanes), key=lambda q: (free[q], q))
        s = max(free[j], reqs[r].arrival)
        n, o = reqs[r].prompt - reqs[r].cached, reqs[r].cached  # computed after the cached ones
        d = clock.prefill(n, o)
        its.append(Iteration("prefill", s, s + d, ((r, n, o),), (), 0.0, (), j))
        free[j] = prefill_end[r] = s + d
        lane_of[r] = j
    ready, exposed, begin = {}, {}, {}
    instances = max(1, math.ceil(prefill_lanes / lanes_per_instance))
    for j in range(instances):
        mine = [r for r in prefill_end if lane_of[r] // lanes_per_instance == j]
        # the KV the decode lane lacks: all but the shared prefix, which it caches too
        parts = {r: clock.transfer(reqs[r].prompt - reqs[r].shared,
                                   clock.prefill(reqs[r].prompt - reqs[r].cached, reqs[r].cached))
                 for r in mine}
        for r in mine:
            begin[r] = prefill_end[r] - parts[r][2]
        out = shared_link([begin[r] for r in mine], [parts[r][1] for r in mine], link_lanes)
        for r, t in zip(mine, out):
            ready[r] = t + parts[r][0]
            exposed[r] = ready[r] - prefill_end[r]
            tokens[r].append(ready[r])  # the first token is delivered with the KV cache
    srv = _Server(reqs, clock, tokens, its, "decode", decode_lanes, 0, False, kv_cap, max_seqs,
                  True, reserve_full, decode_only=True, spec=spec, seed=seed)
    spans = [(begin[r], ready[r], reqs[r].prompt - reqs[r].shared) for r in ready]

    def reserved(t: float) -> float:
        return sum(p for b, e, p in spans if b <= t < e) / decode_lanes

    srv.reserved = reserved
    srv.run(sorted((ready[r], r) for r in ready if reqs[r].output > 1))
    return its, tokens, prefill_end, exposed


RULES = {"unified": unified, "chunked": chunked, "disaggregated": disaggregated}

__all__ = ["RULES", "Iteration", "Request", "StepClock", "TableClock", "TokenClock", "chunked",
           "disaggregated", "in_flight", "shared_link", "unified"]
