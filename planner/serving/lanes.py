"""Lanes that run in-flight (continuous) batching: every iteration carries all running decodes
plus prompt tokens up to the token budget ``C`` (vLLM V1, SGLang and TensorRT-LLM schedulers).

Two policies share this model and differ only in how prompts enter an iteration:

* **chunked** (``split=True``, Sarathi-Serve's stall-free batching, vLLM's default): prompts are
  split into pieces that fill the budget left by the decodes, ``s = C - B``;
* **unified** (``split=False``): prompts enter whole, as many as fit in ``C - B`` (the head of
  the queue always enters, as engines without chunking raise the budget to the longest prompt),
  so the room a prompt can take is ``s = max(C - B, max ISL)``. A long prompt makes its iteration
  long and every decode of the lane waits for it: the stall of unified serving.

Model (docs/methodology.md, "In-flight batching"):

* With ``B`` running decodes an iteration carries up to ``s`` prompt tokens. A busy iteration
  (one that carries prompt tokens) takes ``T_c = T_mix(B, c)``; a decode-only iteration takes
  ``t_d(B)``.
* Prompt tokens arrive at ``lam * E[ISL]``; the share of time spent in busy iterations is
  ``u = lam * E[ISL] * T_c / c`` and stability needs ``u < 1``.
* Every iteration gives each decode one token, so ``TPOT = 1 / (u / T_c + (1 - u) / t_d)`` with
  ``B = lam * E[OSL - 1] * TPOT`` (fixed point). The worst inter-token gap is one busy iteration.
* TTFT: the prompt-token backlog is an M/G/1 "token server" (service ``ISL * T_c / c``); a prompt
  then needs ``ceil(ISL / s)`` iterations of its own (one when whole), after the residual of the
  iteration in progress.
* Chunking re-reads the KV of earlier chunks: every chunk's attention reads all keys before it.

Decode-only lanes (the decode pool of a disaggregated deployment) are the case without prompts:
:func:`decode_equilibrium`.
"""

from __future__ import annotations

import math

import numpy as np

from planner.perf import StepModel
from planner.queueing.fast import (
    busy_probability,
    gg1_scale,
    mg1_wait_cdf_fn,
    mgc_wait_cdf_fn,
    quantiles_of_wait_plus,
    wait_plus_cdf,
)
from planner.serving.common import (
    _ERFC,
    ITL_HORIZON,
    PERCENTILES,
    Z_HORIZON,
    LaneResult,
    LoadShape,
    batch_cap,
    cap_label,
    decode_curve,
    interp_curve,
    kv_in_use,
    per_output_token,
    shape_of,
    solve_fixed_point,
    step_model,
    tpot_cdf,
    tpot_quantiles,
)

MAX_TPOT_S = 600.0


def _clip(x, lo, hi):
    """``np.clip`` without its Python-level dispatch (the fixed point calls it thousands of
    times on small arrays; the same values, NaN included)."""
    return np.minimum(np.maximum(x, lo), hi)
_CURVES: dict = {}  # (step model, chunk, split, lengths) -> IterationCurves


def _gather(table, j, B):
    """:meth:`IterationCurves.lookup` from a segment table (per segment: six left values, six
    slopes, its start and width) and each ``B``'s segment ``j``: one gather."""
    row = table[j]  # (..., 14)
    d = B - row[..., 12]
    ext = row[..., :4] + row[..., 6:10] * d[..., None]
    held = row[..., 4:6] + row[..., 10:12] * np.minimum(np.maximum(d, 0.0), row[..., 13])[..., None]
    return ext[..., 0], ext[..., 1], ext[..., 2], ext[..., 3], held[..., 0], held[..., 1]


def _busy_whole(mean_isl, c, t0, tf, t1, s_whole):
    """A whole-prompt iteration of ``c`` prompt tokens: piecewise linear from the empty one
    (``t0``) through one mean prompt (``t1``) to a full room (``tf`` at ``s_whole`` tokens)."""
    s = np.maximum(s_whole, 1e-9)
    c = np.asarray(c, dtype=float)
    low = t0 + (t1 - t0) * c / mean_isl
    high = t1 + (tf - t1) * (c - mean_isl) / np.maximum(s - mean_isl, 1e-9)
    return np.where(c <= mean_isl, low, high)


class IterationCurves:
    """Step-time curves of one lane for a token budget, on a grid of decode batch sizes;
    ``split`` says whether prompts are split into pieces (chunked) or enter whole (unified)."""

    def __init__(self, sm: StepModel, shape: LoadShape, chunk: int, split: bool = True):
        self.chunk = int(chunk)
        self.split = bool(split)
        # Prompts that always fit whole (all of them in half the budget) batch the same way
        # with or without splitting: whole-prompt iterations, several prompts each.
        self.whole = not self.split or float(shape.computed.max()) <= self.chunk / 2        # Whether an iteration carrying prompt tokens also carries the running decodes (vLLM,
        # TensorRT-LLM: decode_first) or runs the prompts alone (SGLang's default: prefill_first,
        # mixed chunks off), stalling every decode for its length.
        self.mixed = sm.engine is None or sm.engine.schedule == "decode_first"
        # Prompt work is the tokens each prefill computes: with prefix caching those after the
        # cached ones, whose keys its attention still reads (``cached`` offsets every piece).
        isl = shape.computed
        cached = shape.cached.astype(float)
        # Tokens a decode takes of the budget (speculative decoding verifies K + 1 per sequence).
        self.q = q = int(sm.decode_query)
        cap, self.cap_by = batch_cap(sm, shape)
        self.bcap = float(min(cap, (chunk - 1) / q))
        if self.bcap < cap:
            self.cap_by = "token budget"
        self.ctx = shape.decode_context
        bmax = max(self.bcap, 1.0)
        self.grid, self.td = decode_curve(sm, self.ctx, bmax * 1.2)
        b = self.grid
        s = np.maximum(self.chunk - b * q, 1.0)
        if not self.split:
            s = np.maximum(s, float(isl.max()))
        self.pairs_per_token = float(np.sum(shape.prefill_pairs) / np.sum(isl))
        # Mean chunk when a prompt is processed alone (token-weighted) and when it is merged
        # with a backlog (full chunks).
        pieces = np.ceil(isl[None, :] / s[:, None])
        self.alone = np.sum(isl) / np.sum(pieces, axis=1)  # per grid B
        kv_per_token = np.sum(pieces * (pieces + 1) / 2.0 * np.minimum(s[:, None], isl[None, :])
                              + pieces * cached[None, :], axis=1) / np.sum(isl)
        self.s = s
        self.kv_per_token = kv_per_token
        self.sm = sm
        self.mean_isl = float(isl.mean())  # mean prompt tokens a prefill computes
        self._full = self._busy(s)
        # A busy iteration with no prompt tokens: the decode step when mixed, else the engine's
        # empty iteration (its overhead); busy times interpolate from it to a full room.
        self._empty = self.td if self.mixed else np.full_like(self.td, sm.overhead_s)
        # Whole prompts: the busy time is piecewise linear in its prompt tokens through one
        # mean prompt (the usual load), not a straight line to a full room.
        self._one = self._busy(np.full_like(self.grid, self.mean_isl)) if self.whole else None
        self._table = None  # lookup()'s stacked curves, built on first use
        self.cap_name = cap_label(self.cap_by)  # what saturates when the batch passes its cap

    @classmethod
    def cached(cls, sm: StepModel, shape: LoadShape, chunk: int, split: bool = True) -> IterationCurves:
        """The curves of ``sm`` for ``shape`` and ``chunk``, built once (the search and what-if
        grids ask for the same ones at every rate)."""
        key = (id(sm), int(chunk), bool(split), shape.isl.tobytes(), shape.osl.tobytes(),
               shape.cached.tobytes(), shape.shared.tobytes(), float(shape.prefix_tokens))
        hit = _CURVES.get(key)
        if hit is not None and hit[0] is sm:
            return hit[1]
        cv = cls(sm, shape, chunk, split)
        if len(_CURVES) >= 256:
            _CURVES.clear()
        _CURVES[key] = (sm, cv)
        return cv

    def busy(self, B, c):
        """Seconds of an iteration with ``B`` decodes and ``c`` prompt tokens."""
        t0, tf = self.empty(B), self.full(B)
        if not self.whole:
            s = np.maximum(np.maximum(self.chunk - np.asarray(B, dtype=float) * self.q, 1.0), 1e-9)
            return t0 + (tf - t0) * c / s
        return _busy_whole(self.mean_isl, c, t0, tf, interp_curve(B, self.grid, self._one),
                           np.interp(B, self.grid, self.s))

    def _busy(self, c):
        b = self.grid if self.mixed else 0.0 * self.grid
        c = np.minimum(c, self.s)
        return np.asarray(self.sm.iteration(
            decode_batch=b, decode_ctx=b * self.ctx, prefill_tokens=c,
            prefill_pairs=c * self.pairs_per_token, prefill_kv=c * self.kv_per_token,
            prefill_seqs=np.maximum(c / self.mean_isl, 1.0)).time_s, dtype=float)

    def table(self):
        """Per grid segment (rows): the six curves' left values and slopes, the segment's start
        and width (what :meth:`lookup` gathers from; built on first use)."""
        if self._table is None:
            g = self.grid
            one = self._one if self._one is not None else self._full
            vals = np.stack([self._empty, self._full, self.td, one, self.s, self.alone], axis=1)
            slope = np.diff(vals, axis=0) / np.diff(g)[:, None]
            self._table = np.ascontiguousarray(np.concatenate(
                [vals[:-1], slope, g[:-1, None], np.diff(g)[:, None]], axis=1))
        return self._table

    def lookup(self, B):
        """(empty, full, decode, one-prompt, whole room, lone-prompt chunk) at ``B`` in one pass:
        the first four interpolated and extended linearly beyond the grid (as
        :func:`interp_curve`), the last two held at the grid's ends (as ``np.interp``)."""
        B = np.asarray(B, dtype=float)
        g = self.grid
        j = np.searchsorted(g, B, side="right") - 1
        return _gather(self.table(), np.minimum(np.maximum(j, 0), len(g) - 2), B)

    def busy_at(self, B, c, t0, tf, t1, s_whole):
        """:meth:`busy` from values :meth:`lookup` gave at ``B``."""
        if not self.whole:
            s = np.maximum(np.maximum(self.chunk - np.asarray(B, dtype=float) * self.q, 1.0), 1e-9)
            return t0 + (tf - t0) * c / s
        return _busy_whole(self.mean_isl, c, t0, tf, t1, s_whole)

    def full(self, B):
        return interp_curve(B, self.grid, self._full)

    def decode(self, B):
        return interp_curve(B, self.grid, self.td)

    def empty(self, B):
        return interp_curve(B, self.grid, self._empty)

    def room(self, B):
        return np.maximum(self.chunk - np.asarray(B, dtype=float) * self.q, 0.0)


class StackedCurves:
    """Several :class:`IterationCurves` of one step model (token budgets of a search) evaluated
    in one :func:`lane_metrics` call: the candidates are stacked, ``rows[i]`` of them on
    ``curves[i]``, each row on its own curves. They must agree in how prompts batch (``whole``,
    ``split``, ``mixed``, the mean prompt); what differs per row (budget, batch cap, the
    curves themselves) comes back per row, so the stack gives each row what its own curves give.
    (The per-call cost of the model is mostly fixed: one call over the stack instead of one per
    budget is what makes the search fast.)"""

    def __init__(self, curves: list, rows: list):
        c0 = curves[0]
        for c in curves[1:]:
            # (unified and chunked lanes whose prompts all enter whole batch alike: only the
            # name of what saturates differs, which comes back per row)
            if (c.whole, c.mixed, c.mean_isl, c.q) != (c0.whole, c0.mixed, c0.mean_isl, c0.q) \
                    or (not c.whole and not c.split):
                raise ValueError("stacked curves must batch prompts the same way")
        self.parts = list(curves)
        self.rows = [int(r) for r in rows]
        self.whole, self.mixed, self.mean_isl, self.q = c0.whole, c0.mixed, c0.mean_isl, c0.q
        self.split = np.repeat([c.split for c in curves], self.rows)
        self.td = c0.td  # (its first points: one sequence's step, the same on every grid)
        self.bounds = np.cumsum([0] + self.rows)
        self.chunk = np.repeat([float(c.chunk) for c in curves], self.rows)
        self.bcap = np.repeat([c.bcap for c in curves], self.rows)
        self.cap_by = np.repeat(np.array([c.cap_by for c in curves], dtype=object), self.rows)
        self.cap_name = np.repeat(np.array([c.cap_name for c in curves], dtype=object), self.rows)
        tabs = [c.table() for c in curves]
        self.offsets = np.cumsum([0] + [len(t) for t in tabs])[:-1]
        self.tab = np.concatenate(tabs)

    def _per_row(self, values, like):
        """Per-row ``values`` shaped to broadcast against ``like`` (rows on its first axis)."""
        return values.reshape((-1,) + (1,) * (np.ndim(like) - 1))

    def lookup(self, B):
        """:meth:`IterationCurves.lookup`, each row on its own curves (one gather)."""
        B = np.asarray(B, dtype=float)
        j = np.empty(B.shape, dtype=np.intp)
        for c, a, b, off in zip(self.parts, self.bounds[:-1], self.bounds[1:], self.offsets):
            jj = np.searchsorted(c.grid, B[a:b], side="right") - 1
            j[a:b] = np.minimum(np.maximum(jj, 0), len(c.grid) - 2) + off
        return _gather(self.tab, j, B)

    def room(self, B):
        return np.maximum(self._per_row(self.chunk, B) - np.asarray(B, dtype=float) * self.q, 0.0)

    def busy_at(self, B, c, t0, tf, t1, s_whole):
        if not self.whole:
            s = np.maximum(np.maximum(self._per_row(self.chunk, B) - np.asarray(B, dtype=float) * self.q, 1.0), 1e-9)
            return t0 + (tf - t0) * c / s
        return _busy_whole(self.mean_isl, c, t0, tf, t1, s_whole)

    def busy(self, B, c):
        t0, tf, _, t1, s_whole, _ = self.lookup(B)
        return self.busy_at(B, c, t0, tf, t1, s_whole)

    def decode(self, B):
        return self.lookup(B)[2]

    def empty(self, B):
        return self.lookup(B)[0]

    def full(self, B):
        return self.lookup(B)[1]

    def split_rows(self, values):
        """``values`` (rows on the first axis) cut back into one piece per curves."""
        return [values[a:b] for a, b in zip(self.bounds[:-1], self.bounds[1:])]


def overlap_lag(sm: StepModel, B, u, tc, tpot, gain: float):
    """Seconds an engine that schedules iteration ``n + 1`` while ``n`` runs (``overlap_schedule``)
    adds to a prompt's first token: arriving during ``n`` it is first scheduled into ``n + 2``,
    so it also waits for ``n + 1``, a typical iteration (its mean length by count is the TPOT
    times the tokens a step gives) while sequences decode, a busy one (``tc``) when the lane
    runs prompts alone; nothing when the lane is idle (the host is waiting for work)."""
    if sm.engine is None or not sm.engine.overlap_schedule:
        return np.zeros(np.shape(B))
    b = np.nan_to_num(np.asarray(B, dtype=float), nan=0.0, posinf=0.0)
    p_dec = -np.expm1(-b)  # sequences are decoding
    typical = np.nan_to_num(np.asarray(tpot, dtype=float) * gain, posinf=0.0)
    busy = np.clip(np.nan_to_num(np.asarray(u, dtype=float)), 0.0, 1.0)
    return p_dec * typical + (1.0 - p_dec) * busy * np.nan_to_num(np.asarray(tc, dtype=float), posinf=0.0)


def lane_metrics(sm: StepModel, shape: LoadShape, lam, chunk: int, arrival_cv: float = 1.0,
                 curves: IterationCurves | StackedCurves | None = None, lanes=1,
                 percentiles=PERCENTILES, slo=None, split: bool = True,
                 at_boundary: bool = False) -> LaneResult:
    """Metrics of in-flight-batching lanes at per-lane rates ``lam``; ``lanes`` lanes share the
    traffic by shortest-queue routing (pooled prompt queue, M/G/c). ``at_boundary``: requests
    arrive at iteration boundaries (closed-loop clients without think time send the next request
    when the previous one's last token comes out), so none waits for an iteration in progress."""
    lam = np.asarray(lam, dtype=float)
    lanes = np.broadcast_to(np.asarray(lanes, dtype=float), lam.shape)
    cv = curves or IterationCurves(sm, shape, chunk, split)
    if isinstance(cv, StackedCurves) and (len(percentiles) or lam.shape != (int(cv.bounds[-1]),)):
        raise ValueError("stacked curves answer the search: one rate per stacked row, no percentiles")
    m_o = shape.mean_decode_tokens
    gain = float(sm.tokens_per_step)
    work = lam * shape.mean_computed  # prompt tokens computed per second

    multi = bool(np.any(lanes > 1))

    def mates(t1):
        """Share of a lane's arrivals that can join a prompt already waiting on it: all of them
        with one lane; with several, a router sends a prompt to a lane without prompt work
        unless every lane has some (Erlang C given this one is busy)."""
        # Smoother arrivals than Poisson (closed-loop clients: ca^2 < 1) bring fewer prompts
        # into one iteration; burstier ones are left at Poisson (their clumps are in the wait).
        smooth = min(arrival_cv**2, 1.0)
        if not cv.whole or not multi:
            return smooth
        # Sakasegawa's approximation of Erlang C, rho^(sqrt(2 (c + 1)) - 1), divided by rho
        # (exact for one lane; this runs inside the fixed point, where Erlang C proper is slow).
        u1 = _clip(work * t1 / cv.mean_isl, 1e-9, 1.0 - 1e-9)
        return smooth * u1 ** (np.sqrt(2.0 * (lanes + 1.0)) - 2.0)

    def state(B):
        s = np.maximum(cv.room(B), 1e-9)
        t0, tf, td, t_one, s_whole, c_alone = cv.lookup(B)
        if not cv.whole:
            u_full = work * tf / s
            # Busy iterations carry full chunks under a backlog, a lone prompt's pieces otherwise.
            c_bar = _clip(u_full * s + (1 - np.minimum(u_full, 1.0)) * c_alone, 1.0, s)
        else:
            t1 = cv.busy_at(B, cv.mean_isl, t0, tf, t_one, s_whole)
            c_bar = cv.mean_isl * whole_prompts(lam * mates(t1), t0, t1 - t0, s / cv.mean_isl, td,
                                                ranks=sm.dp)[0]
        tc = cv.busy_at(B, c_bar, t0, tf, t_one, s_whole)
        u = work * tc / c_bar
        # Tokens per second per decode: every iteration gives one (speculative: 1 + accepted
        # on average), busy ones only when mixed.
        rate = gain * ((np.minimum(u, 1.0) / tc if cv.mixed else 0.0) + np.maximum(1.0 - u, 0.0) / td)
        return 1.0 / rate, u, tc, td, tf, c_bar, s

    def resid(t):
        tp = state(lam * m_o * t)[0]
        return tp - t

    lo = np.maximum(cv.td[1] / gain, 1e-6) * 0.999
    tpot = solve_fixed_point(resid, np.full(lam.shape, lo), MAX_TPOT_S)
    B = np.where(np.isfinite(tpot), lam * m_o * tpot, 0.0)
    _, u, tc, td, tf, c_bar, s = state(B)
    stable = np.isfinite(tpot) & (u < 1.0) & (B <= cv.bcap) & (cv.room(B) >= 1.0)
    util = np.maximum(u, B / cv.bcap)

    # TTFT: token-server wait + residual of the current iteration + own iterations (of the
    # tokens each prefill computes).
    isl = shape.computed
    per_token = tc / c_bar
    service = isl[None, :] * per_token[:, None] if lam.ndim else isl * per_token
    n_full = np.floor(isl[None, :] / s.reshape(-1, 1))
    rem = isl[None, :] - n_full * s.reshape(-1, 1)
    # The iteration in progress when a prompt arrives: a busy one (length tc) if its lane is
    # carrying prompt chunks, else a decode step (td). With one lane that is the busy share u;
    # the router sends a prompt to a lane without prompt work unless every lane has some
    # (Erlang C of the lanes at that share).
    from planner import queueing as q

    uu = np.clip(u, 1e-12, 1.0 - 1e-9)
    erl = q.erlang_c(np.maximum(lanes, 1).astype(int), lanes * uu) if np.any(lanes > 1) else uu
    p_busy = busy_probability(lanes, uu, arrival_cv, erlang=erl)
    if sm.dp > 1:
        # Data-parallel attention: a prompt holds one of the lane's dp ranks for its busy
        # iteration, which carries k = max(c_bar / (mean ISL dp), 1) prompts a rank; the prompt
        # queue is M/G/(lanes dp) with that service (the ranks take prompts in parallel).
        k_rank = np.maximum(c_bar / (cv.mean_isl * sm.dp), 1.0)
        scale = tc / k_rank / cv.mean_isl
        service = isl[None, :] * scale[:, None] if lam.ndim else isl * scale
        q_lanes = lanes * sm.dp
        q_u = np.clip(lam * np.mean(service, axis=-1) / sm.dp, 1e-12, 1.0 - 1e-9)
        q_erl = q.erlang_c(q_lanes.astype(int), q_lanes * q_u)
    else:
        q_lanes, q_erl = lanes, np.where(lanes > 1, erl, uu)
    r = _residual_points(p_busy, tc, td, 6)
    if cv.whole:
        # Whole prompts: the wait of the token server already holds the busy iteration in
        # progress (its prompts are the ones "in service"); only a decode step in progress adds.
        # (A decode step runs only while sequences are decoding: probability 1 - e^-B.)
        decoding = -np.expm1(-np.asarray(B, dtype=float))
        r = _residual_points(np.zeros_like(p_busy), tc, td, 6) * ((1 - p_busy) * decoding)[..., None]
    if sm.dp > 1:
        # (with dp ranks the prompt queue above is one of free ranks; a prompt still waits for
        # the lane's iteration in progress: a busy one with the lane's busy share)
        r = _residual_points(uu, tc, td, 6)
    if at_boundary:
        r = np.zeros_like(r)
    # The prompt's own iterations: full chunks, then its last piece. That piece rides in a
    # cheap iteration unless the next prompt is already waiting on the lane, whose first chunk
    # then fills it (a full iteration): with the probability that the lane is busy.
    t0 = cv.empty(B)
    last_cheap = np.where(rem > 0, t0.reshape(-1, 1) + (tf - t0).reshape(-1, 1) * rem / s.reshape(-1, 1), 0.0)
    # (the next prompt adds its first chunk, at most the room left: with a budget much larger
    # than the prompts the iteration is not full)
    fill = np.minimum(rem + cv.mean_isl, s.reshape(-1, 1))
    last_full = np.where(rem > 0, t0.reshape(-1, 1) + (tf - t0).reshape(-1, 1) * fill / s.reshape(-1, 1), 0.0)
    base = n_full * tf.reshape(-1, 1)
    own = (base + last_cheap).reshape(lam.shape + (-1,))
    pick = _pick(own.shape[-1], 8)
    cheap = np.sort(own, axis=-1)[..., pick]
    full = np.sort((base + last_full).reshape(lam.shape + (-1,)), axis=-1)[..., pick]
    # A prompt queues behind this one on the same lane if it arrives while this one's full
    # chunks run and the router picks this lane: always with one lane; otherwise only when every
    # lane is busy, which (given that this one is) has probability p_busy / u.
    t_own = np.mean(base.reshape(lam.shape + (-1,)), axis=-1)
    behind = lam * t_own * np.clip(p_busy / np.maximum(busy_probability(1, uu, arrival_cv), 1e-9), 0.0, 1.0)
    slots = (np.arange(16) + 0.5) / 16
    nxt = (-np.expm1(-behind))[..., None, None]
    mixed = np.where(slots[..., :, None] < nxt, full[..., None, :], cheap[..., None, :])  # (slots, pieces)
    if cv.whole:
        # Its own iteration carries it and the others that came during the previous one: a
        # prompt is in the first iteration of a run (share n1 e^-m / n of prompts) or a later one.
        t1 = cv.busy(B, cv.mean_isl)
        lam_m = lam * mates(t1)
        n, n1, later = whole_prompts(lam_m, t0, t1 - t0, s / cv.mean_isl, td, ranks=sm.dp)
        m = np.maximum(lam_m * (t0 + n * (t1 - t0)), 1e-12)
        p_first = np.clip(n1 * np.exp(-m) / n, 0.0, 1.0)
        Bc = np.reshape(B, (-1, 1))

        def own_with(k):
            c = isl[None, :] + (np.maximum(np.reshape(k, (-1, 1)), 1.0) - 1.0) * cv.mean_isl
            o = cv.busy(Bc, c).reshape(lam.shape + (-1,))
            return np.sort(o, axis=-1)[..., _pick(o.shape[-1], 8)]

        first, rest = own_with(n1), own_with(later)
        mixed = np.where(slots[..., :, None] < p_first[..., None, None], first[..., None, :],
                         rest[..., None, :])
    flat = np.sort(mixed.reshape(lam.shape + (-1,)), axis=-1)
    flat = flat[..., _pick(flat.shape[-1], 16)]
    ys = (flat[..., :, None] + r[..., None, :]).reshape(lam.shape + (-1,))
    # Admission: a prompt enters only when the KV cache (or the sequence cap) has room.
    td_b = np.maximum(cv.decode(B), 1e-12)
    elastic = B * (cv.decode(B + 1.0) - td_b) / td_b
    kv_pts, kv_mean, kv_pwait = admission_wait(lam, B, cv.bcap, shape, 4, elastic)
    weights = None
    # (candidates far from their cap, waiting with probability 1e-4 or less, skip this: their
    # mixture is the one without the admission wait, whatever other candidates need)
    p_kv = np.where(kv_pwait > 1e-4, kv_pwait, 0.0)
    if np.any(p_kv > 0):
        # No wait with probability 1 - p (the samples above), else one of 4 conditional
        # quantiles of the wait on top of 24 of them.
        k = ys.shape[-1]
        picked = np.sort(ys, axis=-1)[..., _pick(k, 24)]
        waited = (picked[..., :, None] + kv_pts[..., None, :]).reshape(lam.shape + (-1,))
        m = waited.shape[-1]
        weights = np.concatenate([np.broadcast_to(((1.0 - p_kv) / k)[..., None], lam.shape + (k,)),
                                  np.broadcast_to((p_kv / m)[..., None], lam.shape + (m,))], axis=-1)
        ys = np.concatenate([ys, waited], axis=-1)
    es = np.mean(service, axis=-1)
    es2 = np.mean(np.asarray(service) ** 2, axis=-1)
    if lam.ndim == 0:
        cdf = mg1_wait_cdf_fn(lam, np.asarray(service).ravel(), arrival_cv)
        from planner import queueing as q

        ew = q.mg1_mean_wait(lam, es, es2)
        if arrival_cv != 1.0:
            ew = ew * gg1_scale(arrival_cv, np.asarray(service).ravel())
    else:
        if np.all(q_lanes == 1):
            cdf, ew = _rowwise_wait_cdf(lam, service, arrival_cv)
        else:
            # Erlang C at the lanes' offered load lam * lanes * E[S] = lanes * u: reuse it.
            cdfc, ewc = mgc_wait_cdf_fn(lam * lanes, q_lanes.astype(int), es, es2, arrival_cv,
                                        pwait=q_erl)
            idx = np.nonzero((q_lanes == 1).reshape(-1))[0]
            ew = np.array(ewc, dtype=float).reshape(-1)
            if len(idx):  # one-lane rows: M/G/1 (exact M/D/1 for equal prompts), on those rows only
                svc = np.asarray(service, dtype=float).reshape(-1, np.shape(service)[-1])[idx]
                cdf1, ew1 = _rowwise_wait_cdf(lam.reshape(-1)[idx], svc, arrival_cv)
                ew[idx] = ew1
            lead = lam.shape

            def cdf(x, idx=idx):
                out = np.array(cdfc(x), dtype=float)
                if len(idx):
                    flat = out.reshape((-1,) + out.shape[len(lead):])
                    xf = np.broadcast_to(x, out.shape).reshape(flat.shape)
                    flat[idx] = cdf1(xf[idx])
                return out

            ew = ew.reshape(lead)
    lag = overlap_lag(sm, B, u, tc, tpot, gain)
    ys = ys + np.asarray(lag)[..., None]
    tt = quantiles_of_wait_plus(cdf, ys, percentiles, shape=lam.shape, weights=weights)
    own_mean = np.mean(mixed.reshape(lam.shape + (-1,)), axis=-1)
    tt["mean"] = ew + np.mean(r, axis=-1) + own_mean + kv_mean + lag

    # TPOT: decode-only iterations plus the extra time busy iterations add.
    # Extra seconds per prompt token a decode waits: what a busy iteration adds to a decode step
    # when mixed, the whole busy iteration when prompts run alone.
    jump_scale = (np.maximum(tc - td, 0.0) if cv.mixed else tc) / c_bar
    j1 = jump_scale * float(np.mean(isl))
    j2 = jump_scale**2 * float(np.mean(isl**2))
    j3 = jump_scale**3 * float(np.mean(isl**3))
    slope = (cv.decode(B + 1.0) - td)
    # Per output token: the iteration over the tokens it gives (speculative decoding: 1 + E[a]).
    tdt, td_sd = per_output_token(sm, shape, td, slope * np.sqrt(B * 2.0 / 3.0))
    tq = tpot_quantiles(tdt, td_sd, j1[..., None] if np.ndim(j1) else j1,
                        j2[..., None] if np.ndim(j2) else j2, j3[..., None] if np.ndim(j3) else j3,
                        lam, shape.decode_tokens, tpot, cap=tf / gain, percentiles=percentiles,
                        clump=arrival_cv**2 / np.maximum(1.0 - np.clip(u, 0, 1), 1e-3) ** 2 / lanes)
    tq["mean"] = tpot
    inf = np.inf
    over = np.where(cv.split, "chunked", "unified")
    attain = None
    if slo is not None:
        f_t = wait_plus_cdf(cdf, ys, slo[0], shape=lam.shape, weights=weights)
        f_p = tpot_cdf(slo[1], tdt, td_sd, j1[..., None] if np.ndim(j1) else j1,
                       j2[..., None] if np.ndim(j2) else j2, j3[..., None] if np.ndim(j3) else j3,
                       lam, shape.decode_tokens, tpot, cap=tf / gain,
                       clump=arrival_cv**2 / np.maximum(1.0 - np.clip(u, 0, 1), 1e-3) ** 2 / lanes)
        attain = np.where(stable, f_t * f_p, 0.0)
    return LaneResult(
        ttft={k: np.where(stable, v, inf) for k, v in tt.items()},
        tpot={k: np.where(stable, v, inf) for k, v in tq.items()},
        itl_max=np.where(stable, worst_gap(sm, cv, shape, lam * mates(cv.busy(B, cv.mean_isl)), B, td)
                         if len(percentiles) and isinstance(cv, IterationCurves) else
                         (tf if cv.mixed else tf + td), inf),
        stable=stable,
        attain=attain,
        saturated=np.where(stable, "", np.where(B > cv.bcap, cv.cap_name, over)),
        utilization={"unified": util},
        batch=np.where(stable, B, inf),
        kv_used=np.where(stable, kv_in_use(B, shape, sm), inf),
        kv_capacity=sm.kv_capacity_tokens,
        batch_cap=cv.bcap,
        batch_cap_by=cv.cap_by,
        breakdown={
            "ttft_queue_s": np.where(stable, ew + np.mean(r, axis=-1) + kv_mean + lag, inf),
            "ttft_compute_s": own_mean,
            "ttft_transfer_s": np.zeros(lam.shape),
            "tpot_step_s": tdt,
            "tpot_interference_s": np.where(stable, tpot - tdt, inf),
            **({"decode_iteration_s": td} if gain != 1.0 else {}),
        },
        admission_wait=np.where(stable, kv_pwait, 1.0),
    )


def worst_gap(sm: StepModel, cv: IterationCurves, shape: LoadShape, lam, B, td):
    """The largest gap between two tokens of a decoding request expected over
    :data:`ITL_HORIZON` requests: the longest iteration it sits through, at a batch
    ``Z_HORIZON`` Poisson deviations above the mean (plus the decode iteration after it when
    prompts run apart from the decodes).

    * Chunked: a full budget whose prompt piece is the last piece of the longest prompt (its
      attention reads the whole prompt).
    * Unified, and chunked whose prompts all enter whole (each at most half the budget, e.g.
      short uncached remainders behind a prefix cache): the heavier of the iteration carrying the longest prompt whole and the one
      carrying the most prompts that arrive together: ``k`` prompts arrive during an iteration
      that carried ``k - 1``, so the chance of an iteration with ``k`` is the product over
      ``j < k`` of ``P(Poisson(lam T(j)) >= j + 1)`` (``T(j)`` the iteration with ``j`` mean
      prompts); the largest ``k`` whose chance is at least ``1 / horizon``, within the budget.
    ``lam`` is the rate at which prompts pile onto one lane (with several lanes, the router
    sends a prompt elsewhere unless every lane has prompt work). Only evaluated where
    percentiles are asked for (the search does not need it)."""
    lam = np.asarray(lam, dtype=float)
    b = np.nan_to_num(np.asarray(B, dtype=float), nan=0.0, posinf=0.0)
    b_hi = np.minimum(b + Z_HORIZON * np.sqrt(b), max(cv.bcap, 0.0))
    room = np.maximum(cv.chunk - b_hi * cv.q, 1.0)
    ctx = shape.decode_context
    longest = max(shape.longest, 1.0)

    def t(c, pairs, kv, seqs):
        return np.asarray(sm.iteration(prefill_tokens=c, prefill_pairs=pairs, prefill_kv=kv,
                                       prefill_seqs=seqs, decode_batch=b_hi if cv.mixed else 0.0,
                                       decode_ctx=(b_hi if cv.mixed else 0.0) * ctx).time_s, dtype=float)

    if cv.split and not cv.whole:
        c = np.minimum(room, shape.longest_computed)
        off = np.maximum(longest - c, 0.0)
        worst = t(c, c * (off + c / 2.0), off + c, 1.0)
    else:
        # (per prompt: computed tokens m1, causal pairs mp, keys read mk)
        m1, mp, mk = shape.mean_computed, float(np.mean(shape.prefill_pairs)), shape.mean_isl
        n_l = min(shape.longest_computed, longest)
        one = t(n_l, n_l * (longest - n_l + n_l / 2.0), longest, 1.0)
        from planner.queueing.fast import poisson_at_least

        k_cap = np.maximum(np.floor(room / m1), 1.0)
        k = np.ones(lam.shape)
        chain = np.ones(lam.shape)
        for n in range(2, int(min(np.max(k_cap), 256)) + 1):
            # n prompts ride together when n arrived during the iteration before, one that
            # carried n - 1 of them: a chain of ever rarer iterations
            m = lam * t((n - 1) * m1, (n - 1) * mp, (n - 1) * mk, float(n - 1))
            chain = chain * poisson_at_least(n, m)
            ok = (chain >= 1.0 / ITL_HORIZON) & (n <= k_cap)
            if not ok.any():
                break
            k = np.where(ok, float(n), k)
        worst = np.maximum(one, t(k * m1, k * mp, k * mk, k))
    return worst if cv.mixed else worst + np.asarray(td, dtype=float)


def decode_equilibrium(sm: StepModel, shape: LoadShape, lam, stall_share):
    """Decode-only lanes: solve ``TPOT (1 - stall_share) = t_d(lam * E[OSL-1] * TPOT) / g`` per
    candidate (``g`` tokens per iteration: 1, or ``1 + E[a]`` under speculative decoding).
    Returns (tpot, batch, t_d at that batch, slope of t_d in B, batch cap, what caps): ``t_d``
    and its slope are the iteration's."""
    lam = np.asarray(lam, dtype=float)
    bcap, by = batch_cap(sm, shape)
    ctx = shape.decode_context
    m_o = shape.mean_decode_tokens
    grid, vals = decode_curve(sm, ctx, max(bcap, 1.0) * 1.5)
    free = 1.0 - np.asarray(stall_share, dtype=float)
    ok = free > 0
    free_safe = np.where(ok, free, 1.0)
    gain = float(sm.tokens_per_step)

    def resid(t):
        return interp_curve(lam * m_o * t, grid, vals) / gain - t * free_safe

    # (below the step of one sequence, the grid's first point: the solution at a vanishing load)
    lo = np.maximum(vals[0] / gain / free_safe, 1e-6) * 0.999
    tpot = solve_fixed_point(resid, lo, MAX_TPOT_S)
    tpot = np.where(ok, tpot, np.inf)
    batch = np.where(np.isfinite(tpot), lam * m_o * tpot, np.inf)
    td = interp_curve(np.where(np.isfinite(batch), batch, 0.0), grid, vals)
    eps = np.maximum(batch, 1.0) * 0.01
    slope = (interp_curve(np.where(np.isfinite(batch), batch + eps, 1.0), grid, vals) - td) / eps
    return tpot, batch, td, slope, bcap, by


def admission_wait(lam, batch, cap, shape: LoadShape, k: int = 4, elasticity=0.0):
    """The wait for a place in the running batch, as an M/G/c queue whose servers are the
    ``cap`` places (KV memory at the steady occupancy per sequence, or the engine's sequence cap)
    and whose service is a sequence's stay, ``L = batch / lam`` (Little), ``a = batch`` places in
    use. The probability of waiting is Erlang C in the Halfin-Whitt form,
    ``1 / (1 + b Phi(b) / phi(b))`` with ``b = (c - a) / sqrt(a s / (1 - e))``: ``s``, the
    spread ``E[ctx^2] / E[ctx]^2`` of the KV a sequence holds, and ``e``, the elasticity of the
    step time in the batch (a fuller batch steps slower, so its sequences stay longer), widen the
    fluctuations of the occupancy. Given a wait it is exponential with mean
    ``L / (c - a) * (1 + cs^2) / 2`` (Kingman's correction, ``cs^2`` that of the output lengths).

    Returns ``k`` quantile mid-points of the wait given that there is one, the mean wait and the
    probability of waiting."""
    lam = np.asarray(lam, dtype=float)
    a = np.nan_to_num(np.asarray(batch, dtype=float), nan=0.0, posinf=0.0)
    c = np.maximum(np.floor(np.asarray(cap, dtype=float)), 1.0)  # (per candidate when stacked)
    o = shape.decode_tokens
    cs2 = float(np.var(o) / max(np.mean(o) ** 2, 1e-12)) if o.size else 0.0
    ok = (a > 0) & (a < c) & (lam > 0)
    a_safe = np.where(ok, a, 0.5)
    e = np.clip(np.asarray(elasticity, dtype=float), 0.0, 0.9)
    # Places are KV tokens in units of the mean held per sequence: a population of Poisson(a)
    # sequences holding ctx each varies as a E[ctx^2] / E[ctx]^2 (time-weighted over each
    # sequence's decode: ctx = ISL + U OSL, U uniform).
    w = np.maximum(o, 1e-9)
    isl_f = (shape.isl - shape.shared).astype(float)  # the prompt KV a sequence holds itself
    m1 = np.sum((isl_f + o / 2.0) * w) / np.sum(w)
    m2 = np.sum((isl_f**2 + isl_f * o + o**2 / 3.0) * w) / np.sum(w)
    spread = m2 / max(m1 * m1, 1e-12)
    b = (c - a_safe) / np.sqrt(a_safe * spread / (1.0 - e))
    phi = np.exp(-0.5 * b * b) / math.sqrt(2.0 * math.pi)
    Phi = 0.5 * np.asarray(_ERFC(-b / math.sqrt(2.0)), dtype=float)
    with np.errstate(over="ignore", divide="ignore"):
        pw = np.where(ok, 1.0 / (1.0 + b * Phi / np.maximum(phi, 1e-300)), 0.0)
    stay = np.where(ok, a_safe / np.where(lam > 0, lam, 1.0), 0.0)
    mean_w = np.where(ok, stay / np.maximum(c - a_safe, 1e-9) * (1.0 + cs2) / 2.0, 0.0)
    qs = (np.arange(k) + 0.5) / k
    pts = -mean_w[..., None] * np.log1p(-qs)  # quantile mid-points of the wait, given one
    return pts, pw * mean_w, pw


def whole_prompts(lam, t_empty, t_prompt, k_max, t_decode, iters: int = 6, ranks: int = 1):
    """Whole prompts per iteration that carries prompts, when prompts that arrive during an
    iteration join the next one together (at most ``k_max``). Returns ``(mean, first, later)``:
    the mean over busy iterations, and the prompts in the first iteration of a run of busy
    iterations and in each later one.

    A busy iteration of ``n`` prompts lasts ``T(n) = t_empty + n t_prompt``; under data-parallel
    attention (``ranks`` > 1) its prompts spread over the ranks, which step together, so it lasts
    ``t_empty + max(n / ranks, 1) t_prompt`` (the busiest rank's). The next carries the
    ``A ~ Poisson(m)``, ``m = lam T``, that arrived meanwhile, and the run ends when none did:
    runs last ``e^m`` iterations on average. The first carries the prompt that started it and
    those arriving in the rest of the decode step, ``n1 = 1 + lam t_decode / 2``, each later one
    ``E[A | A >= 1] = m / (1 - e^-m)``; averaged over the run, ``n = m + n1 e^-m`` (one prompt
    at light load, ``m`` under saturation). Solved by fixed-point iteration."""
    lam = np.asarray(lam, dtype=float)
    kmax = np.maximum(k_max, 1.0)
    n1 = np.minimum(1.0 + lam * np.asarray(t_decode, dtype=float) / 2.0, kmax)
    n = np.ones(np.broadcast(lam, t_empty, t_prompt, k_max, t_decode).shape)
    def span(n):
        return t_empty + (n if ranks <= 1 else np.maximum(n / ranks, 1.0)) * t_prompt

    for _ in range(iters if ranks <= 1 else 4 * iters):
        m = np.maximum(lam * span(n), 1e-12)
        n = _clip(m + n1 * np.exp(-m), 1.0, kmax)
    m = np.maximum(lam * span(n), 1e-12)
    later = _clip(m / -np.expm1(-m), 1.0, kmax)
    return n, n1 * np.ones_like(n), later


def _residual_points(p_busy, tc, td, k: int):
    """``k`` quantile mid-points of the residual of the iteration in progress: Uniform(0, tc)
    with probability ``p_busy``, else Uniform(0, td)."""
    p = np.clip(np.asarray(p_busy, dtype=float), 0.0, 1.0)[..., None]
    tc_, td_ = np.asarray(tc, dtype=float)[..., None], np.asarray(td, dtype=float)[..., None]
    qs = (np.arange(k) + 0.5) / k
    with np.errstate(all="ignore"):
        low = qs / (p / tc_ + (1 - p) / td_)  # residuals below td
        high = tc_ * (qs - (1 - p)) / np.where(p > 0, p, 1.0)  # beyond td: busy iterations only
        knee = p * td_ / tc_ + (1 - p)  # mixture CDF at td
        out = np.where(qs <= knee, low, np.maximum(high, td_))
    return np.nan_to_num(out, nan=0.0, posinf=0.0)


def _pick(n: int, k: int):
    if n <= k:
        return np.arange(n)
    return ((np.arange(k) + 0.5) / k * n).astype(int)


def _rowwise_wait_cdf(lam, service, arrival_cv):
    """M/G/1 wait CDFs when the service samples differ per candidate (rows of ``service``):
    service scales with a per-row factor, so each row is ``base * factor``."""
    service = np.asarray(service, dtype=float)
    base = service[0] / max(service[0].mean(), 1e-30)
    factor = service.mean(axis=-1)
    # Time-scaling: W(lam, a*S) = a * W(lam*a, S) -- evaluate with unit-mean service.
    cdf_unit = mg1_wait_cdf_fn(lam * factor, base, arrival_cv)

    def cdf(x):
        return cdf_unit(x / factor[..., None])

    from planner import queueing as q

    ew = q.mg1_mean_wait(lam, factor, factor**2 * float(np.mean(base**2)))
    if arrival_cv != 1.0:
        ew = ew * gg1_scale(arrival_cv, base)
    return cdf, ew


def pool_args(inp, dep, qps):
    """What ``lane_metrics`` needs for a one-pool deployment at total rates ``qps``: the pool's
    step model (fitted), its lane count, the per-lane rates, the load shape and the SLO pair."""
    pool = dep.pool("unified")
    sm = step_model(inp, pool)
    sm.require_fit()
    lanes = pool.lanes
    qps = np.atleast_1d(np.asarray(qps, dtype=float))
    return sm, lanes, qps / lanes, shape_of(inp.workload), (inp.slo.ttft_s, inp.slo.tpot_s)


__all__ = ["IterationCurves", "StackedCurves", "decode_equilibrium", "lane_metrics", "pool_args", "whole_prompts"]
