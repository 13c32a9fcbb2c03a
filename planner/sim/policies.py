"""The simulator's policies, one class per approach, and the decode-only lane rule.

A lane policy decides what the step that starts at an iteration boundary carries
(:meth:`plan`; it returns False when the lane should run decode iterations or idle), whether a
decode run chosen with nothing waiting may be cut by an arrival (:meth:`run_revisable`), how a
planned-ahead step is taken back (:meth:`take_back`) and what a prompt costs a lane for routing
(:meth:`prompt_cost`). An approach's class also sets up its lanes and runs a job
(:meth:`simulate`). The rules are those of the analytic models (planner.serving) and of the
token-by-token reference scheduler (planner.sim.reference), which the tests hold them to.

* :class:`Unified`: in-flight batching without splitting. Each iteration carries the running
  decodes plus whole waiting prompts, FCFS, while they fit in the token budget left by the
  decodes (the engine's budget raised to the longest prompt, so the head always enters).
* :class:`Chunked`: the same with splitting; prompt pieces fill the budget left by the decodes.
* :class:`Disaggregated`: prefill lanes pull whole prompts from one shared FIFO queue; each
  prefill instance's NICs are a processor-sharing server for the KV transfers in flight
  (planner.sim.links) through the transfer engine (setup, bandwidth share); decode lanes
  (:class:`DecodeOnly`) hold the KV of transfers in flight and admit the transferred requests
  at their iteration boundaries.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from planner.errors import InvalidRequestError
from planner.perf import (
    fast_times,
    kv_link_for,
    kv_transfer_time,
    link_capacity,
    transfer_fixed_time,
    transfer_rate,
)
from planner.serving.common import (
    LoadShape,
    max_num_seqs,
    sequence_kv_capacity,
    step_model,
    transfer_of,
)
from planner.sim.engine import MIXED, LaneEngine, LaneGate, up_at
from planner.sim.links import ps_completions

if TYPE_CHECKING:
    from planner.api import Inputs
    from planner.serving.common import Deployment

# Simulated time may pass this many arrival spans before a run is called unstable.
TIME_LIMIT_SPANS = 50.0


@dataclass
class Job:
    """One simulation: the question, the deployment, the sampled requests and the limits."""

    inp: Inputs
    dep: Deployment
    arr: np.ndarray  # arrival times (closed loop: filled in by the run)
    isl_a: np.ndarray
    osl_a: np.ndarray
    isl: list
    osl: list
    t_first: list  # first-token times, filled in by the run
    span: float  # time of the last arrival (open loop)
    backlog_limit: float
    t_limit: float
    route_prompts: bool = False
    route_work: bool = True
    # Prefix caching (planner.workload.PrefixCache), per request: prompt tokens found in the
    # cache and, of those, the shared prefix's (held once per instance).
    cached_a: np.ndarray | None = None
    shared_a: np.ndarray | None = None
    seed: int = 0  # the run's seed (speculative decoding draws its accepted counts from it)
    # A scaling schedule: pool role -> per instance the sorted (up, down) spans in which it takes
    # new requests (None: every instance, always). See planner.sim.simulate_arrivals.
    avail: dict | None = None

    def lane_spans(self, role: str, pool, ranks: int = 1) -> list | None:
        """Per lane of ``pool`` (instance-major: ``lanes_per_instance * ranks`` lanes each) the
        spans of its instance, or None without a schedule."""
        if self.avail is None or role not in self.avail:
            return None
        spans = self.avail[role]
        per = pool.lanes_per_instance * ranks
        return [list(spans[l // per]) for l in range(pool.instances * per)]

    @property
    def cached(self) -> list:
        return (self.cached_a if self.cached_a is not None else np.zeros(len(self.isl), dtype=np.int64)).tolist()

    @property
    def shared(self) -> list:
        return (self.shared_a if self.shared_a is not None else np.zeros(len(self.isl), dtype=np.int64)).tolist()

    @property
    def computed_a(self) -> np.ndarray:
        """Prompt tokens each prefill computes (those after its cached ones)."""
        return self.isl_a - (self.cached_a if self.cached_a is not None else 0)


# The stream of the run's seed that speculative decoding's accepted counts come from (the
# arrivals and lengths keep theirs, so turning speculation on changes only the decodes).
SPEC_STREAM = 0x5BEC


def spec_draws(sm, job: Job):
    """Speculative decoding: ``draw(rid, tokens, first)``, the decode iterations a sequence
    needs for ``tokens`` more tokens, each iteration giving ``1 + a`` (``a`` from the chain of
    per-position acceptances, :meth:`planner.perf.speculative.SpecDecode.iterations`). The
    first admission's counts are drawn for every request at once; a preempted sequence draws
    again for what it has left. None without speculation."""
    spec = getattr(sm, "spec", None)
    if spec is None:
        return None
    rng = np.random.default_rng([int(job.seed), SPEC_STREAM])
    first = spec.iterations(np.maximum(np.asarray(job.osl_a, dtype=np.int64) - 1, 0), rng).tolist()

    def draw(rid: int, tokens: int, fresh: bool) -> int:
        if fresh:
            return first[rid]
        return int(spec.iterations([tokens], rng)[0])

    return draw


def _engine_flags(sm) -> tuple[bool, bool]:
    """(decodes ride in prompt iterations, KV reserved in full at admission) for the engine."""
    e = sm.engine
    return (e is None or e.schedule == "decode_first",
            e is not None and e.kv_admission == "reserve_full")


class InFlightBatching:
    """Lanes whose iterations carry prompt tokens next to the running decodes (unified and
    chunked): the prompt rule is :meth:`plan`, with ``split`` choosing pieces or whole prompts."""

    approach = ""
    split = True
    preempts = True  # paged KV: recompute preemption when the running sequences outgrow it

    def __init__(self, chunk: int, mixed: bool = True):
        self.chunk = int(chunk)
        self.mixed = bool(mixed)

    @classmethod
    def budget(cls, sm, dep, isl_a, osl_a, cached_a=None) -> int:
        raise NotImplementedError

    def run_revisable(self, e, l: int) -> bool:
        """A decode run chosen with nothing waiting (and room for a prompt) ends at the first
        boundary after the next arrival."""
        return not e.queue[l] and e.partial[l] is None and self.chunk > e.B[l] * e.q

    def plan(self, e, l: int, t: float) -> bool:
        """Chunked: fill the room left by the decodes with prompt tokens, FCFS.

        After the first iteration, further iterations in which the partially prefilled head
        takes the whole room admit nobody, so arrivals cannot change them; as long as no prompt
        finishes (a join) and no sequence completes, they are planned together as one step."""
        B = e.B[l]
        room = self.chunk - B * e.q  # each decode takes q = K + 1 tokens (1 without speculation)
        part = e.partial[l]
        q = e.queue[l]
        if room <= 0 or (part is None and not q):
            return False
        isl, cached = e.isl, e.cached
        time_of = e.ft.time
        X = e.X[l]
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
                e.partial[l] = None
            else:
                e.partial[l] = (rid, p + c)
            left -= c
        split = self.split
        while left > 0 and q and e.fits(l, q[0], e.ns[l]):
            rid = q[0]
            o = cached[rid]  # prefix-cache hit: computed from there on, its keys still read
            s = isl[rid] - o
            if not split and s > left and tok:
                break  # a whole prompt that does not fit waits for the next iteration
            q.popleft()
            e.hold(l, rid, 1)
            e.ns[l] += 1
            c = s if (s < left or not split) else left
            tok += c
            pairs += c * (o + c * 0.5)
            kvr += o + c
            if c == s:
                seqs += 1
                done.append(rid)
            else:
                e.partial[l] = (rid, o + c)
            left -= c
        if not tok:
            return False
        mixed = e.mixed
        Bm, Xm = (B, X) if mixed else (0, 0.0)  # prefill-first: the decodes sit this one out
        d0 = total = time_of(tok, pairs, kvr, seqs, Bm, Xm)
        bounds = [total]  # the step's iteration boundaries, from its start
        m = 1
        inner = 0.0
        part = e.partial[l]
        e.rev[l] = False
        if not done and part is not None:
            limit = e.fin[l][0][0] - e.k[l] if (B and mixed) else 1 << 62
            if e.preempt and mixed and B > 1:
                limit = min(limit, e.kv_iterations(l))  # the decodes' growth fills the cache
            rid, p = part
            rem = isl[rid] - p
            half = room * 0.5
            while m < limit and rem >= room:
                last = rem == room
                d = time_of(room, room * (p + half), float(p + room), 1 if last else 0, Bm,
                            Xm + m * Bm * e.gain)
                total += d
                bounds.append(total)
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
                e.spec[l] = (total, inner, p)
                d = time_of(rem, rem * (p + rem * 0.5), float(p + rem), 1, Bm, Xm + m * Bm * e.gain)
                total += d
                bounds.append(total)
                if d > inner:
                    inner = d
                m += 1
                done.append(rid)
                e.rev[l] = True
            e.partial[l] = None if done else (rid, p)
        e.data[l] = (m, d0, inner, done)
        e.bounds[l] = bounds
        e.schedule(l, MIXED, t, t + total)
        return True


    def take_back(self, e, l: int, ta: float) -> None:
        """An arrival at ``ta`` comes before the speculative last piece of a chunked step starts:
        the step ends before that piece, which is planned again at the boundary."""
        e.rev[l] = False
        total, inner, p = e.spec[l]
        t0 = e.t0[l]
        if ta > t0 + total:
            return
        m, d0, _, done = e.data[l]
        e.partial[l] = (done[0], p)
        e.data[l] = (m - 1, d0, inner, [])
        if e.bounds[l]:
            e.bounds[l].pop()
        e.schedule(l, MIXED, t0, t0 + total)


    def prompt_cost(self, e, l: int, rid: int) -> float:
        """Estimated lane time the prompt of ``rid`` takes (routing only)."""
        B = e.B[l]
        room = max(self.chunk - B * e.q, 1)
        isl, o = e.isl[rid], e.cached[rid]
        n = isl - o
        c = min(room, n) if self.split else n
        t = e.ft.time(c, c * (o + n * 0.5), float(isl), 0, B, e.X[l])
        return t * n / c

    @classmethod
    def simulate(cls, job: Job):
        """Run ``job`` on the deployment's one pool. Returns (engine, stable, duration,
        arrival times)."""
        inp, dep = job.inp, job.dep
        isl_a, osl_a, n = job.isl_a, job.osl_a, len(job.isl)
        pool = dep.pool("unified")
        sm = step_model(inp, pool)
        sm.require_fit()
        lanes = pool.lanes
        mseq = max_num_seqs(sm)
        C = cls.budget(sm, dep, isl_a, osl_a, job.cached_a)
        mixed, reserve_full = _engine_flags(sm)
        ft = fast_times(sm, max(int(C), mseq) + (0 if cls.split else int(isl_a.max())))
        kv_cap = sequence_kv_capacity(sm, inp.workload.prefix.tokens) / sm.lanes
        eng = LaneEngine(cls(C, mixed), lanes, ft, kv_cap, mseq, job.isl,
                         job.osl, job.t_first, route_prompts=job.route_prompts,
                         route_work=job.route_work, reserve_full=reserve_full,
                         cached=job.cached, shared=job.shared,
                         overlap=sm.engine is not None and sm.engine.overlap_schedule)
        eng.draw = spec_draws(sm, job)
        spans = job.lane_spans("unified", pool)
        if spans is not None:
            eng.gate = LaneGate(spans)
        arr = job.arr
        if inp.workload.closed:
            assert inp.workload.concurrency is not None  # what closed means
            t_arr = [math.nan] * n
            # The clients' rate is not known in advance: bound simulated time by the whole run
            # done one request at a time (every request alone, back to back), times 50.
            alone = float(np.sum(np.asarray(sm.prefill_time(isl_a), dtype=float)
                                 + np.maximum(osl_a - 1, 0) * float(sm.decode_time(1, float(np.mean(isl_a))))))
            stable = eng.run_closed(int(inp.workload.concurrency), float(inp.workload.think_s), n,
                                    t_arr, TIME_LIMIT_SPANS * (alone + n * inp.workload.think_s))
            arr = np.asarray(t_arr, dtype=float)
        else:
            stable = eng.run(list(range(n)), arr.tolist(), job.span, job.backlog_limit, job.t_limit)
        return eng, stable, eng.now, arr


class Unified(InFlightBatching):
    approach = "unified"
    split = False

    @classmethod
    def budget(cls, sm, dep, isl_a, osl_a, cached_a=None) -> int:
        from planner.serving import unified

        return unified.budget(sm, LoadShape(isl_a, osl_a, cached=cached_a), dep.chunk_size)


class Chunked(InFlightBatching):
    approach = "chunked"
    split = True

    @classmethod
    def budget(cls, sm, dep, isl_a, osl_a, cached_a=None) -> int:
        C = dep.chunk_size
        if not C or C < 1:
            raise InvalidRequestError("--chunk-size: chunked prefill needs a positive chunk size")
        return int(C) * sm.dp  # per rank, as the engine flag; a lane's is dp times it


class DecodeOnly:
    """Decode lanes of a disaggregated deployment: transferred requests join the running batch
    at the lane's iteration boundaries, as KV memory and the sequence cap allow."""

    chunk = 0
    mixed = True

    def plan(self, e, l: int, t: float) -> bool:
        q = e.queue[l]
        B = e.B[l]
        while q and e.fits(l, q[0], B):
            rid = q.popleft()
            e.hold(l, rid, 1)
            e.join(l, rid)
            e.ns[l] += 1
            B += 1
        return False

    def run_revisable(self, e, l: int) -> bool:
        return not e.queue[l]

    def take_back(self, e, l: int, ta: float) -> None:  # decode lanes plan nothing ahead
        return None

    def prompt_cost(self, e, l: int, rid: int) -> float:
        return 0.0


class InflightReservation:
    """KV tokens each decode lane holds for transfers in flight, as a function of time:
    request ``i`` reserves ``tokens[i]`` from its transfer's start ``begin[i]`` until the
    transfer is through (``end[i]``, when it reaches the decode lanes), spread evenly over the
    ``lanes`` (which lane receives it is chosen only on arrival)."""

    def __init__(self, begin, end, tokens, lanes: int):
        tokens = np.asarray(tokens, dtype=float)
        end = np.asarray(end, dtype=float)
        times = np.concatenate([end, np.asarray(begin, dtype=float)])
        delta = np.concatenate([-tokens, tokens])
        order = np.argsort(times, kind="stable")
        self._t = times[order].tolist()
        self._level = (np.cumsum(delta[order]) / max(int(lanes), 1)).tolist()
        self._ends = np.sort(end).tolist()

    def __call__(self, t: float) -> float:
        i = bisect_right(self._t, t)
        return self._level[i - 1] if i else 0.0

    def next_release(self, t: float) -> float:
        """The first time after ``t`` at which a transfer completes (and frees its hold)."""
        i = bisect_right(self._ends, t)
        return self._ends[i] if i < len(self._ends) else math.inf


class Disaggregated:
    approach = "disaggregated"

    @classmethod
    def simulate(cls, job: Job):
        """Prefill lanes (one shared FIFO queue, an M/G/c queue as the analytic model assumes),
        the KV links, then the decode lanes. Returns (engine, stable, duration, arrivals)."""
        inp, dep, arr, isl_a, osl_a = job.inp, job.dep, job.arr, job.isl_a, job.osl_a
        isl, osl, t_first, span = job.isl, job.osl, job.t_first, job.span
        backlog_limit, t_limit = job.backlog_limit, job.t_limit
        if inp.workload.closed:
            raise InvalidRequestError(
                "--concurrency: the simulator runs closed-loop clients on unified and chunked "
                "deployments only so far; for disaggregated give --qps (pdplan estimate models "
                "closed loops for every approach)")
        pool_p, pool_d = dep.pool("prefill"), dep.pool("decode")
        smp, smd = step_model(inp, pool_p), step_model(inp, pool_d)
        smp.require_fit()
        smd.require_fit()
        link, streams, _ = kv_link_for(inp.catalog, smp.gpu, smd.gpu, pool_p, pool_d, dep.link)
        kvb = inp.model.kv_bytes_per_token(dep.kv_transfer_dtype or inp.kv_dtype)
        xfer = transfer_of(inp)
        n = len(isl)
        # The prefill computes the uncached tokens after the cached ones; the link carries
        # the KV the decode instance lacks: all but the shared prefix, which it caches too.
        # (Under data-parallel attention each of an instance's dp ranks takes a prompt, the
        # others as busy: one prefill server per rank, as the analytic model.)
        cached_a = job.cached_a if job.cached_a is not None else np.zeros(n, dtype=np.int64)
        shared_a = job.shared_a if job.shared_a is not None else np.zeros(n, dtype=np.int64)
        P = np.asarray(smp.prefill_time(isl_a - cached_a, cached_a, smp.dp), dtype=float).reshape(-1)
        nbytes = (isl_a - shared_a).astype(float) * kvb
        exposed = np.broadcast_to(np.asarray(kv_transfer_time(
            nbytes, link, streams=streams, prefill_time=P, layers=inp.model.num_layers,
            overlap=dep.kv_overlap, xfer=xfer), dtype=np.float64), (n,))
        fixed = transfer_fixed_time(link, xfer)
        rate = transfer_rate(link, streams, xfer)
        x = nbytes / rate  # data part alone on the links
        hidden = np.maximum(x - (exposed - fixed), 0.0)  # of it, what runs during the prefill
        lanes = max(1.0, math.floor(link_capacity(link, pool_p.gpus_per_instance, xfer) / rate + 1e-9))

        # Prefill lanes pull from one shared FIFO queue (Dynamo's global prefill queue): each prompt
        # starts on the lane that frees up first -- an M/G/c queue, as the analytic model assumes.
        Lp = pool_p.lanes * smp.dp
        pspans = job.lane_spans("prefill", pool_p, smp.dp)
        if pspans is None:
            free = [(0.0, l) for l in range(Lp)]
        else:  # a scaling schedule: a lane joins when its instance first comes up
            free = [(u, l) for l in range(Lp) if (u := up_at(pspans[l], 0.0)) is not None]
        heapq.heapify(free)
        Pl, tl = P.tolist(), arr.tolist()
        start = [0.0] * n
        pend = [0.0] * n
        plane = [0] * n
        pop, push = heapq.heappop, heapq.heappush
        for i in range(n):
            ta = tl[i]
            while True:
                if not free:
                    raise InvalidRequestError(
                        f"the scaling schedule leaves the prefill pool without instances at t={ta:.3f} s")
                f, l = pop(free)
                s = f if f > ta else ta
                if pspans is None:
                    break
                u = up_at(pspans[l], s)  # down now: back when its instance is up again
                if u == s:
                    break
                if u is not None:
                    push(free, (u, l))
            e = s + Pl[i]
            push(free, (e, l))
            start[i], pend[i], plane[i] = s, e, l
        pend_a = np.asarray(pend)
        # KV links: the NICs of each prefill instance shared by its transfers in flight (a
        # processor-sharing server); a transfer's data part starts ``hidden`` before its prefill
        # ends and the decode side has it ``fixed`` after the data is through.
        inst = np.asarray(plane) // (pool_p.lanes_per_instance * smp.dp)
        begin = pend_a - hidden
        comp_a = np.empty(n)
        for j in range(pool_p.instances):
            sel = np.nonzero(inst == j)[0]
            if sel.size == 0:
                continue
            sel = sel[np.lexsort((sel, begin[sel]))]
            done = ps_completions(begin[sel].tolist(), x[sel].tolist(), lanes)
            comp_a[sel] = np.asarray(done) + fixed
        comp = comp_a.tolist()
        t_first[:] = comp
        # Waiting at the last arrival on the prefill side: queued for a prefill or for the link.
        T = span
        waiting = int(np.sum(np.asarray(start) > T)) + int(np.sum((pend_a <= T) & (comp_a > T + x + fixed)))

        mseq = max_num_seqs(smd)
        ft = fast_times(smd, mseq)
        Ld = pool_d.lanes
        e = smd.engine
        kv_cap = sequence_kv_capacity(smd, inp.workload.prefix.tokens) / smd.lanes
        eng = LaneEngine(DecodeOnly(), Ld, ft, kv_cap, mseq, isl, osl, t_first,
                         reserve_full=e is not None and e.kv_admission == "reserve_full",
                         shared=shared_a.tolist())
        eng.reserved = InflightReservation(begin, comp_a, isl_a - shared_a, Ld)
        eng.draw = spec_draws(smd, job)
        dspans = job.lane_spans("decode", pool_d)
        if dspans is not None:
            eng.gate = LaneGate(dspans)
        one = osl_a <= 1
        for i in np.nonzero(one)[0].tolist():
            eng.t_last[i] = t_first[i]
        if waiting > backlog_limit or float(comp_a.max()) > t_limit:
            return eng, False, min(float(comp_a.max()), t_limit), arr
        dec = np.nonzero(~one)[0]
        dorder = dec[np.lexsort((dec, comp_a[dec]))]
        stable = eng.run(dorder.tolist(), comp_a[dorder].tolist(), T, backlog_limit, t_limit,
                         extra_waiting=waiting)
        duration = max(eng.now, float(comp_a.max())) if stable else eng.now
        return eng, stable, duration, arr


POLICIES: dict[str, type[InFlightBatching] | type[Disaggregated]] = {
    "unified": Unified, "chunked": Chunked, "disaggregated": Disaggregated}

__all__ = ["POLICIES", "Chunked", "DecodeOnly", "Disaggregated", "InFlightBatching", "InflightReservation", "Job", "Unified"]
