"""Speculative decoding: ``K`` draft tokens proposed per step, verified by one pass of the target.

One description, :class:`SpecDecode` (on :class:`planner.api.Inputs`), is read by every model:

* **Acceptance.** ``p_i`` is the probability that draft token ``i`` is accepted given tokens
  ``1..i-1`` were; the accepted count ``a`` of one step is the length of the run of successes, so
  ``P(a >= i) = prod_{j<=i} p_j`` and ``E[a] = sum_i prod_{j<=i} p_j`` (with equal ``p`` this is
  Leviathan et al. 2023, section 3.1: ``(1 - p^(K+1)) / (1 - p) - 1``). A step gives each
  sequence ``1 + a`` tokens: the accepted drafts and the target's own next token. Given only the
  mean ``A``, the chain has equal probabilities solved from ``sum_{i<=K} p^i = A``.
* **The step** (:class:`SpecStepModel`): the target's iteration with every decode feeding
  ``K + 1`` tokens (GEMM rows, logits, attention query rows; each sequence's KV is still read
  once: :meth:`planner.perf.roofline.StepModel.decode_attention`), plus the draft's ``K``
  sequential passes of batch ``B`` (the first also carries the iteration's prompt tokens, which
  the draft must see too). The draft is a separate model (``--draft-model``) or, by default, a
  one-layer head of the target's own shapes: the checkpoint's MTP module where it ships one
  (DeepSeek-V3: ``num_nextn_predict_layers`` 1, a layer "identical to the main model hidden
  layers" that shares the embedding and output head: deepseek-ai/DeepSeek-V3@0b39205
  README_WEIGHTS.md), else an EAGLE-style head of the same shape (Li et al. 2024, EAGLE: one
  decoder layer over the target's features, sharing its LM head). Draft passes run inside the
  target's iteration: no second engine overhead. Each draft pass attends to the context as it
  stood before the step (the ``K - 1`` drafted tokens it has added are left out: ``K / context``
  relative, under 1% for contexts above a few hundred tokens).
* **Memory.** The draft's weights (a head: its layer only, the embedding and head being shared)
  come out of the KV budget, and every cached token also holds the draft's KV.

The simulator draws the accepted counts (:meth:`SpecDecode.iterations`); the analytic models use
``1 + E[a]`` tokens per step and the variance of ``a`` (docs/methodology.md, "Speculative
decoding").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from planner.catalog import ACTIVATION_BYTES, ModelSpec
from planner.errors import InvalidRequestError
from planner.perf.roofline import StepCost, StepModel
from planner.perf.tables import FastTimes

DRAFT_KINDS = ("mtp", "eagle", "model")
# Acceptance lists are compared and written with this many decimals (a plan reads back the same).
_DIGITS = 6


@dataclass(frozen=True)
class SpecDecode:
    """Speculative decoding as the user described it.

    ``acceptance``: the per-position conditional probabilities ``p_1..p_K``. ``mean_given``: the
    mean accepted count when that is what was given (the chain is then solved from it), else
    None. ``draft``: a separate draft model (a catalog :class:`ModelSpec`), or None for the
    target's one-layer head, whose ``kind`` is ``"mtp"`` (the checkpoint ships MTP layers) or
    ``"eagle"`` (an assumed EAGLE-style head of the same shape)."""

    tokens: int
    acceptance: tuple
    kind: str = "mtp"
    draft: ModelSpec | None = None
    mean_given: float | None = None

    @property
    def survival(self) -> np.ndarray:
        """``P(a >= i)`` for ``i = 0..K``."""
        return np.concatenate([[1.0], np.cumprod(np.asarray(self.acceptance, dtype=float))])

    @property
    def pmf(self) -> np.ndarray:
        """``P(a = i)`` for ``i = 0..K``."""
        s = self.survival
        return np.clip(s - np.append(s[1:], 0.0), 0.0, 1.0)

    @property
    def mean_accepted(self) -> float:
        """``E[a] = sum_{i>=1} P(a >= i)``."""
        return float(self.survival[1:].sum())

    @property
    def tokens_per_step(self) -> float:
        """Tokens a decoding sequence gains per iteration on average, ``1 + E[a]``."""
        return 1.0 + self.mean_accepted

    @property
    def variance(self) -> float:
        """Variance of the tokens gained per iteration (of ``a``)."""
        i = np.arange(self.tokens + 1, dtype=float)
        p = self.pmf
        return float(np.sum(p * i * i) - np.sum(p * i) ** 2)

    @property
    def draft_id(self) -> str:
        return self.draft.id if self.draft is not None else self.kind

    def describe(self) -> str:
        """``K=3, 2.10 accepted per step (p 0.8/0.7/0.6), draft MTP head``."""
        probs = "/".join(f"{p:.3g}" for p in self.acceptance)
        what = {"mtp": "the model's MTP head", "eagle": "an EAGLE-style one-layer head"}.get(
            self.kind, f"draft model {self.draft_id}")
        return (f"K={self.tokens}, {self.mean_accepted:.2f} accepted per step "
                f"(p {probs}), draft {what}")

    def document(self) -> dict:
        """What a plan records (and :func:`from_document` reads back)."""
        doc: dict[str, Any] = {"tokens": int(self.tokens)}
        if self.mean_given is not None:
            doc["acceptance"] = round(float(self.mean_given), _DIGITS)
        else:
            doc["acceptance"] = [round(float(p), _DIGITS) for p in self.acceptance]
        doc["draft"] = self.draft_id
        doc["mean_accepted"] = round(self.mean_accepted, 4)
        doc["tokens_per_step"] = round(self.tokens_per_step, 4)
        return doc

    def iterations(self, tokens, rng: np.random.Generator) -> np.ndarray:
        """Decode iterations that produce ``tokens`` (array of counts) when each iteration gives
        ``1 + a`` tokens, ``a`` drawn independently from :attr:`pmf` (the last one may be cut
        short by the end of the output). Drawn in blocks, continuing each sequence's draws where
        the block ran out (never restarting it, which would bias the count)."""
        need = np.asarray(tokens, dtype=np.int64).reshape(-1).copy()
        out = np.zeros(need.shape, dtype=np.int64)
        cdf = np.cumsum(self.pmf)[:-1]
        g = self.tokens_per_step
        todo = np.nonzero(need > 0)[0]
        while todo.size:
            m = need[todo]
            # Enough draws for most sequences in one go: the mean count plus four deviations.
            sd = math.sqrt(max(self.variance, 1e-12) / g**3)
            k = np.minimum(np.ceil(m / g + 4.0 * sd * np.sqrt(m) + 4.0), m).astype(np.int64)
            # Blocks of at most ~4M draws bound the memory.
            cut = max(int(np.searchsorted(np.cumsum(k), 4_000_000, side="right")), 1)
            sel, m, k = todo[:cut], m[:cut], k[:cut]
            gains = 1 + np.searchsorted(cdf, rng.random(int(k.sum())), side="right")
            c = np.cumsum(gains)
            ends = np.cumsum(k)
            starts = ends - k
            before = np.where(starts > 0, c[np.maximum(starts - 1, 0)], 0)
            hit = np.searchsorted(c, before + m, side="left")  # first draw reaching the need
            done = hit < ends
            out[sel[done]] += hit[done] - starts[done] + 1
            left = ~done
            out[sel[left]] += k[left]
            need[sel[left]] = m[left] - (c[ends[left] - 1] - before[left])
            need[sel[done]] = 0
            todo = np.concatenate([sel[left], todo[cut:]])
        return out.reshape(np.shape(tokens))

    def accepted(self, rng: np.random.Generator) -> int:
        """One step's accepted count (the reference scheduler draws these one by one)."""
        return int(np.searchsorted(np.cumsum(self.pmf)[:-1], rng.random(), side="right"))


def solve_equal_chain(mean: float, k: int) -> float:
    """The ``p`` with ``sum_{i=1..k} p^i = mean`` (0 <= mean <= k), by bisection."""
    if mean <= 0:
        return 0.0
    if mean >= k:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        s = sum(mid**i for i in range(1, k + 1))
        lo, hi = (mid, hi) if s < mean else (lo, mid)
        if hi - lo < 1e-15:
            break
    return (lo + hi) / 2


FLAGS = {"tokens": "--spec-tokens", "acceptance": "--acceptance", "draft": "--draft-model"}


def build(tokens, acceptance, draft, model, catalog, flags: dict = FLAGS) -> SpecDecode | None:
    """A :class:`SpecDecode` from what the user gave (flags, or a plan's ``speculative``
    mapping with ``flags`` naming its keys): ``tokens`` K (1 to MAX_SPEC_TOKENS), ``acceptance``
    (one mean from 0 to K, or K comma-separated probabilities from 0 to 1, as text, a number
    or a list), ``draft`` a catalog model id (or None: the target's MTP head, else an
    EAGLE-style head). None when none of them is given."""
    from planner.units import MAX_SPEC_TOKENS, parse_count, parse_number, shown

    ft, fa, fd = flags["tokens"], flags["acceptance"], flags["draft"]
    if tokens is None:
        for given, flag in ((acceptance, fa), (draft, fd)):
            if given is not None:
                raise InvalidRequestError(f"{flag}: only with {ft} K (the draft tokens proposed "
                                          f"per step, 1 to {MAX_SPEC_TOKENS})")
        return None
    k = parse_count(tokens, ft, 1, MAX_SPEC_TOKENS, "a whole number of draft tokens")
    many = f"{k} per-position probabilities" if k > 1 else "the draft token's acceptance probability"
    if acceptance is None or (isinstance(acceptance, str) and not acceptance.strip()):
        raise InvalidRequestError(
            f"{fa}: missing; {ft} {k} needs the mean accepted draft tokens per step (from 0 to "
            f"{k}) or {many} (from 0 to 1), e.g. {fa} 0.8")
    if isinstance(acceptance, (list, tuple)):
        parts = list(acceptance)
    elif isinstance(acceptance, str) and "," in acceptance:
        parts = [p.strip() for p in acceptance.split(",")]
    else:
        parts = None
    if parts is None:
        mean = parse_number(acceptance, f"{fa} (mean accepted draft tokens per step, {ft} {k})",
                            0.0, float(k))
        p = solve_equal_chain(mean, k)
        probs, given = (p,) * k, mean
    else:
        if len(parts) != k:
            raise InvalidRequestError(
                f"{fa}: {len(parts)} per-position probabilities for {ft} {k}; give {k} (each from "
                f"0 to 1) or one mean accepted count from 0 to {k}, got {shown(acceptance, 40)}")
        probs = tuple(parse_number(v, f"{fa}: position {i + 1}", 0.0, 1.0, what="a probability")
                      for i, v in enumerate(parts))
        given = None
    draft_spec, kind = None, "mtp" if model.mtp_layers > 0 else "eagle"
    if draft is not None:
        draft_spec = catalog.model(str(draft), fd)
        if draft_spec.vocab_size != model.vocab_size:
            raise InvalidRequestError(
                f"{fd}: {draft_spec.id} has a vocabulary of {draft_spec.vocab_size:,} tokens and "
                f"{model.id} one of {model.vocab_size:,}; a draft model must share the target's "
                "tokenizer")
        kind = "model"
    return SpecDecode(k, tuple(float(p) for p in probs), kind, draft_spec, given)


# --------------------------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------------------------


def head_model(model):
    """The target's one-layer draft head: one decoder layer of its own shapes (an MoE layer for
    MoE models, as DeepSeek-V3's MTP layer is), with the target's vocabulary for the LM head."""
    return replace(model, id=f"{model.id}:head", name=f"{model.name} draft head", num_layers=1,
                   first_dense_layers=0, mtp_layers=0, raw={})


class SpecStepModel(StepModel):
    """The step model of an instance that decodes speculatively: the target's operator groups
    (inherited), iterations with ``K + 1`` tokens per decode plus the draft's passes, and the
    memory the draft takes. ``draft`` is the draft's own :class:`StepModel` (no engine overhead
    of its own: its passes run inside the target's iteration)."""

    def __init__(self, target: StepModel, spec: SpecDecode, draft: StepModel):
        self.__dict__.update(target.__dict__)
        self.target = target
        self.spec = spec
        self.draft = draft
        self.decode_query = spec.tokens + 1
        self.tokens_per_step = spec.tokens_per_step

    def iteration(self, *, prefill_tokens=0, prefill_pairs=0, prefill_kv=0, prefill_seqs=0,
                  decode_batch=0, decode_ctx=0, decode_query=None) -> StepCost:
        """The target's iteration with :attr:`decode_query` tokens per decode, plus the draft:
        one pass over the prompt tokens and the ``B`` decodes, then ``K - 1`` passes over the
        decodes (``breakdown["draft"]``)."""
        q = self.decode_query if decode_query is None else decode_query
        main = StepModel.iteration(self, prefill_tokens=prefill_tokens, prefill_pairs=prefill_pairs,
                                   prefill_kv=prefill_kv, prefill_seqs=prefill_seqs,
                                   decode_batch=decode_batch, decode_ctx=decode_ctx, decode_query=q)
        first = self.draft.iteration(prefill_tokens=prefill_tokens, prefill_pairs=prefill_pairs,
                                     prefill_kv=prefill_kv, prefill_seqs=prefill_seqs,
                                     decode_batch=decode_batch, decode_ctx=decode_ctx)
        more = self.spec.tokens - 1
        rest = self.draft.iteration(decode_batch=decode_batch, decode_ctx=decode_ctx)
        t_draft = first.time_s + more * rest.time_s
        parts = dict(main.breakdown)
        parts["draft"] = t_draft
        return StepCost(time_s=main.time_s + t_draft, flops=main.flops + first.flops + more * rest.flops,
                        bytes=main.bytes + first.bytes + more * rest.bytes,
                        compute_s=main.compute_s + first.compute_s + more * rest.compute_s,
                        memory_s=main.memory_s + first.memory_s + more * rest.memory_s,
                        comm_s=main.comm_s + first.comm_s + more * rest.comm_s,
                        overhead_s=main.overhead_s, breakdown=parts)

    @property
    def draft_weight_bytes_per_gpu(self) -> float:
        """A head's layer (its embedding and LM head are the target's), or a whole draft model."""
        d = self.draft
        if self.spec.kind == "model":
            return d.weight_bytes_per_gpu
        m = d.model
        shared = m.vocab_size * m.hidden_size * ACTIVATION_BYTES / d.tp * (1 if m.tie_word_embeddings else 2)
        return d.weight_bytes_per_gpu - shared

    @property
    def weight_bytes_per_gpu(self) -> float:
        return self.target.weight_bytes_per_gpu + self.draft_weight_bytes_per_gpu

    @property
    def kv_bytes_per_token_per_gpu(self) -> float:
        return self.target.kv_bytes_per_token_per_gpu + self.draft.kv_bytes_per_token_per_gpu


def speculative_step_model(catalog, target: StepModel, spec: SpecDecode) -> SpecStepModel:
    """The :class:`SpecStepModel` of ``target`` under ``spec`` (built once per pair: the search
    and the curves cache by identity). The draft runs on the target's GPUs at its TP degree."""
    key = (id(target), spec)
    hit = _SPEC_MODELS.get(key)
    if hit is not None and hit[0] is target:
        return hit[1]
    from planner.perf.placement import check_parallel

    gpu = target.gpu
    if spec.draft is not None:
        dmodel = spec.draft
        check_parallel(dmodel, gpu, target.tp, 1, flag="--draft-model")
        dtype = dmodel.default_dtype
    else:
        dmodel, dtype = head_model(target.model), target.dtype
    intra = catalog.links[gpu.intra_node_link]
    moe = dmodel.is_moe
    draft = StepModel(dmodel, gpu, target.tp, 1, dtype=dtype, kv_dtype=target.kv_dtype,
                      ep=target.ep if moe else 1, dp=target.dp if moe else 1, intra_link=intra,
                      overhead_s=0.0, engine=target.engine)
    sm = SpecStepModel(target, spec, draft)
    if len(_SPEC_MODELS) >= 512:
        _SPEC_MODELS.clear()
    _SPEC_MODELS[key] = (target, sm)
    return sm


_SPEC_MODELS: dict = {}


# --------------------------------------------------------------------------------------------
# The simulator's tables
# --------------------------------------------------------------------------------------------


class SpecFastTimes:
    """:class:`planner.perf.FastTimes` for a :class:`SpecStepModel`: the target's tables (to
    ``max_tokens * (K + 1)`` tokens) and the draft's, combined as :meth:`SpecStepModel.iteration`
    combines them (``tests/test_perf.py`` pins the two together)."""

    def __init__(self, sm: SpecStepModel, max_tokens: int):
        self.q = sm.decode_query
        self.k = sm.spec.tokens
        self.target = FastTimes(sm, int(max_tokens) * self.q)
        self.draft = FastTimes(sm.draft, int(max_tokens))
        self.max_tokens = int(max_tokens)
        self.tokens_per_step = sm.tokens_per_step
        self.decode_query = self.q
        self.overhead_s = sm.overhead_s

    def time(self, pf_tokens: int, pf_pairs: float, pf_kv: float, pf_seqs: int,
             dec_batch: int, dec_ctx: float) -> float:
        t = self.target.time(pf_tokens, pf_pairs, pf_kv, pf_seqs, dec_batch, dec_ctx, self.q)
        t += self.draft.time(pf_tokens, pf_pairs, pf_kv, pf_seqs, dec_batch, dec_ctx)
        if dec_batch and self.k > 1:
            t += (self.k - 1) * self.draft.time(0, 0.0, 0.0, 0, dec_batch, dec_ctx)
        return t

    def runs(self, nb: int):
        """Closed forms of decode runs at batch ``B < nb`` (planner.sim.runs), as three
        functions ``span(B, X, n)``, ``iteration(B, X)``, ``reach(B, X, n, D)``: an iteration is
        ``a + max(f X, g (X + c)) + max(f2 X, g2 (X + c2))`` (target, then the draft's ``K``
        passes), and the context sum grows by ``B (1 + E[a])`` per iteration."""
        from planner.sim.runs import spec_iter, spec_reach, spec_span

        T, D, q, K = self.target, self.draft, self.q, self.k
        nb = min(nb, self.max_tokens + 1)
        # (decode-only iterations: the tables' decode-only terms, e.g. low-latency all-to-alls,
        # and under data-parallel attention the busiest rank's share)
        t_terms = [T.decode_terms(b, q) for b in range(nb)]
        d_terms = [D.decode_terms(b, 1) for b in range(nb)]
        A = [t[0] + K * d[0] for t, d in zip(t_terms, d_terms)]
        F1 = [t[1] for t in t_terms]
        G1 = [t[2] for t in t_terms]
        F2 = [K * d[1] for d in d_terms]
        G2 = [K * d[2] for d in d_terms]
        gain = self.tokens_per_step

        def span(B, X, n):
            return spec_span(A[B], F1[B], G1[B], B * q, F2[B], G2[B], B, X, B * gain, n)

        def iteration(B, X):
            return spec_iter(A[B], F1[B], G1[B], B * q, F2[B], G2[B], B, X)

        def reach(B, X, n, d):
            return spec_reach(A[B], F1[B], G1[B], B * q, F2[B], G2[B], B, X, B * gain, n, d)

        return span, iteration, reach


__all__ = ["DRAFT_KINDS", "SpecDecode", "SpecFastTimes", "SpecStepModel", "build", "head_model",
           "solve_equal_chain", "speculative_step_model"]
