"""The search: approaches x GPU types x TP/PP (x chunk size) x pool sizes -> the cheapest plan
that meets the SLO.

For each parallel configuration the serving model is evaluated on every pool size at once (one
vectorised call over the instance counts; latency falls as instances are added, so the first
size whose attainment reaches the percentile is the answer). The search needs only the
attainment (a CDF at the SLOs); percentiles are computed afterwards for the candidates that are
shown. Disaggregated pools are sized independently: the decode pool by TPOT and KV memory, the
prefill pool by TTFT including the KV transfer over the link the pair of configurations implies,
with the joint attainment the product of the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from planner.api import Inputs, Plan, estimate
from planner.api import engine_side as api_engine_side
from planner.api import headroom as api_headroom
from planner.errors import InvalidRequestError, NoFeasiblePlanError, PdplanError
from planner.perf import build_step_model, kv_link_for, link_capacity, shares_node
from planner.serving import chunked, disaggregated, unified
from planner.serving import lanes as lanes_model
from planner.serving.common import (
    APPROACHES,
    Deployment,
    Pool,
    calibration_for,
    lane_budget,
    shape_of,
    transfer_of,
    with_spec,
)
from planner.serving.lanes import StackedCurves

TP_CHOICES = (1, 2, 4, 8)
PP_CHOICES = (1, 2, 4)
# Data-parallel attention ranks searched for MoE models (experts over all tp x dp GPUs, so the
# larger ones are wide EP across nodes, as SGLang's and TensorRT-LLM's DeepSeek deployments).
DP_CHOICES = (2, 4, 8, 16, 32)
MAX_EP = 64
CHUNK_CHOICES = (256, 512, 1024, 2048, 4096, 8192)


@dataclass
class Candidate:
    """One sized configuration. ``score`` is the attainment shortfall ``target / attainment``
    (at most 1 when feasible). The percentiles are computed on first use (the search itself needs
    only the attainment)."""

    approach: str
    deployment: Deployment
    gpus: int
    cost: float
    feasible: bool
    score: float = math.inf
    percentiles: object = field(default=None, repr=False, compare=False)  # () -> (ttft, tpot)
    _pct: tuple | None = field(default=None, repr=False, compare=False)
    spec: bool = False  # sized with speculative decoding on
    headroom: float = math.nan  # max QPS within the SLO, where an on/off tie needed it

    def _load(self):
        if self._pct is None:
            self._pct = self.percentiles() if self.percentiles else (math.inf, math.inf)
        return self._pct

    @property
    def ttft(self) -> float:
        """TTFT at the SLO percentile (seconds)."""
        return self._load()[0]

    @property
    def tpot(self) -> float:
        """TPOT at the SLO percentile (seconds)."""
        return self._load()[1]


@dataclass
class SearchResult:
    best: dict  # approach -> Candidate (feasible) or None
    nearest: dict  # approach -> Candidate (best infeasible by score)
    evaluated: int = 0
    cloud: list = field(default_factory=list)  # every minimal-size candidate, for Pareto plots


@dataclass
class Recommendation:
    plan: Plan
    alternatives: list
    evaluated: int
    cloud: list


def _configs(inp: Inputs, gpu_ids, tps=TP_CHOICES, pps=PP_CHOICES):
    """Step models of every (gpu, tp, pp) that is legal and fits."""
    out = []
    for gid in gpu_ids:
        gpu = inp.catalog.gpu(gid)
        for tp in tps:
            if tp > gpu.gpus_per_node or not inp.model.valid_tp(tp):
                continue
            for pp in pps:
                if pp > 1 and inp.model.num_layers < pp:
                    continue
                # MoE: experts sharded inside each expert (ep 1) or whole experts per GPU
                # (ep = tp, all-to-all instead of the FFN all-reduce).
                eps = (1, tp) if inp.model.is_moe and tp > 1 else (1,)
                layouts = [(ep, 1) for ep in eps]
                if inp.model.is_moe and pp == 1:
                    layouts += [(tp * dp, dp) for dp in DP_CHOICES
                                if tp * dp <= MAX_EP and inp.model.num_experts % (tp * dp) == 0]
                for ep, dp in layouts:
                    sm = build_step_model(inp.catalog, inp.model, gpu, tp, pp, dtype=inp.dtype,
                                          kv_dtype=inp.kv_dtype, ep=ep, dp=dp, engine=inp.engine,
                                          calibration=calibration_for(inp, gpu.id))
                    sm = with_spec(inp, sm)  # speculative decoding, when the question has it
                    if sm.fits:
                        out.append(sm)
    # Pipeline parallelism only pays when tensor parallelism within a node cannot hold the
    # model: a PP configuration has the latency of its whole pass on fewer GPUs per stage, so
    # where a PP-free configuration fits it dominates. Keep PP only for GPU types that need it.
    need_pp = {sm.gpu.id for sm in out} - {sm.gpu.id for sm in out if sm.pp == 1}
    return [sm for sm in out if sm.pp == 1 or sm.gpu.id in need_pp]


def _size_search(evaluate_n, n_max: int):
    """Smallest n in [1, n_max] for which ``evaluate_n(array)`` says feasible.

    Every pool size is evaluated in one vectorised call (latency falls as instances are added,
    so the first feasible size is the answer). ``evaluate_n`` maps an int array of instance
    counts to (feasible mask, score array). Returns (n or None, score, n of the best score,
    candidates evaluated)."""
    sizes = np.arange(1, max(int(n_max), 1) + 1)
    ok, score = evaluate_n(sizes)
    return _first_feasible(sizes, ok, score)


def _first_feasible(sizes, ok, score):
    """:func:`_size_search`'s answer from the evaluated ``sizes``: (the first feasible size or
    None, its score, the size to report, candidates evaluated). The nearest miss when none is
    feasible: the best score, or the largest size when none is even stable."""
    if not ok.any():
        i = int(np.argmin(score)) if np.isfinite(score).any() else len(sizes) - 1
        return None, float(score[i]), int(sizes[i]), len(sizes)
    j = int(np.argmax(ok))
    return int(sizes[j]), float(score[j]), int(sizes[j]), len(sizes)


def _score(r, slo, cap: float = math.inf):
    """Feasible: stable and the joint attainment reaches the percentile. Returns (feasible,
    shortfall = target / attainment, which is at most 1 exactly when feasible). The search needs
    only the attainment, a CDF at the SLOs; percentiles are computed for the chosen sizes.
    ``cap``: sizes whose pools are this busy or busier count as missing it (recommend with a
    confidence margin keeps a plan in the load regime its margin was taken for)."""
    target = slo.percentile / 100.0
    att = np.where(r.stable & _under(r.utilization.values(), cap), np.asarray(r.attain, dtype=float), 0.0)
    with np.errstate(divide="ignore"):
        short = np.where(att > 0, target / np.maximum(att, 1e-300), np.inf)
    return att >= target - 1e-9, short


def _pct_score(r, slo):
    """The percentile-based score of a single evaluated size: how far the worse percentile is
    from its SLO (used to rank near misses and in messages)."""
    k = slo.key
    tt = float(np.asarray(r.ttft[k], dtype=float).reshape(-1)[0])
    tp = float(np.asarray(r.tpot[k], dtype=float).reshape(-1)[0])
    stable = bool(np.asarray(r.stable).reshape(-1)[0])
    return (max(tt / slo.ttft_s, tp / slo.tpot_s) if stable else np.inf), tt, tp


def search(inp: Inputs, gpu_ids, approaches=APPROACHES, max_gpus: int = 1024,
           tps=TP_CHOICES, pps=PP_CHOICES, chunks=CHUNK_CHOICES) -> SearchResult:
    qps = inp.workload.qps
    shape = shape_of(inp.workload, tail=False)
    cv = inp.workload.arrival_cv
    slo = inp.slo
    pct = (slo.percentile,)
    pair = (slo.ttft_s, slo.tpot_s)
    cap = _util_cap(inp)
    res = SearchResult({a: None for a in approaches}, {a: None for a in approaches})
    configs = _configs(inp, gpu_ids, tps, pps)
    if not configs:
        return res

    def consider(c: Candidate):
        c.spec = inp.spec is not None
        res.cloud.append(c)
        cur = res.best.get(c.approach) if c.feasible else res.nearest.get(c.approach)
        key = _key(c, inp)
        if cur is None or key < _key(cur, inp):
            if c.feasible:
                res.best[c.approach] = c
            else:
                res.nearest[c.approach] = c

    for sm in configs:
        g = sm.gpus
        n_max = max_gpus // g
        if n_max < 1:
            continue
        price = sm.gpu.price_per_hour * g
        sizes = np.arange(1, n_max + 1)

        def take(approach, chunk, found, ev, sm=sm, g=g, price=price):
            n, score, n_at, cnt = found
            res.evaluated += cnt
            n_use = n or n_at
            dep = Deployment(approach, (Pool("unified", sm.gpu.id, n_use, sm.tp, sm.pp, sm.ep, sm.dp),),
                             chunk_size=chunk)

            def pcts(ev=ev, n_use=n_use):
                return _pct_score(ev(np.array([n_use]), pct), slo)[1:]

            consider(Candidate(approach, dep, n_use * g, n_use * price, n is not None, score, pcts))

        # Every (approach, budget) of this layout: its curves, evaluated over all pool sizes in
        # one call per way of batching prompts (StackedCurves; unified lanes batch as chunked
        # ones whose prompts all enter whole).
        # (chunk: the per-rank budget the engine flag takes; a lane's is dp times it)
        keys: list = [("unified", None)] if "unified" in approaches else []
        keys += [("chunked", c) for c in chunks] if "chunked" in approaches else []
        budgets = {k: lane_budget(sm, k[1]) for k in keys if k[0] == "chunked"}
        curves = {k: (unified.curves(sm, shape) if k[0] == "unified" else chunked.ChunkCurves(sm, shape, budgets[k]))
                  for k in keys}
        groups: dict[bool, list] = {}
        for k in keys:
            groups.setdefault(curves[k].whole, []).append(k)
        found = {}
        for group in groups.values():
            stack = StackedCurves([curves[k] for k in group], [len(sizes)] * len(group))
            n_all = np.tile(sizes, len(group))
            r = lanes_model.lane_metrics(sm, shape, qps / (n_all * sm.lanes), 0, cv, stack,
                                         lanes=n_all * sm.lanes, percentiles=(), slo=pair)
            ok_all, score_all = _score(r, slo, cap)
            for k, ok, score in zip(group, stack.split_rows(np.broadcast_to(ok_all, n_all.shape)),
                                    stack.split_rows(score_all)):
                found[k] = _first_feasible(sizes, ok, score)
        for k in keys:
            def ev(n, pcts=(), sm=sm, curves_k=curves[k]):
                """The candidate's metrics at pool sizes ``n`` (its percentiles, once chosen)."""
                return lanes_model.lane_metrics(sm, shape, qps / (n * sm.lanes), curves_k.chunk, cv, curves_k,
                                                lanes=n * sm.lanes, percentiles=pcts, slo=pair)
            take(k[0], k[1], found[k], ev)

    if "disaggregated" in approaches:
        _search_disaggregated(inp, configs, shape, max_gpus, res, consider)
    return res


def _key(c: Candidate, inp: Inputs):
    if c.feasible:
        return (c.gpus, c.cost, c.score) if _objective(inp) == "gpus" else (c.cost, c.gpus, c.score)
    return (c.score, c.gpus)


def _under(utils, cap: float):
    """Where every utilisation array in ``utils`` is below ``cap`` (all true without a cap)."""
    if not math.isfinite(cap):
        return True
    ok: Any = True  # a boolean array once a utilisation is in
    for u in utils:
        ok = ok & (np.asarray(u, dtype=float) < cap)
    return ok


def _util_cap(inp: Inputs) -> float:
    return getattr(inp, "util_cap", math.inf)


def _objective(inp: Inputs) -> str:
    return getattr(inp, "objective", "gpus")


def _search_disaggregated(inp, configs, shape, max_gpus, res, consider):
    """Size the decode pool by TPOT (and KV memory), then the prefill pool by TTFT with the
    KV transfer the pair implies. With independent phases the joint attainment is the product
    ``F_ttft * F_tpot``: each decode size leaves the prefill pool the share ``target / F_tpot``,
    so a few decode sizes (just meeting the target, and with more margin) are tried."""
    slo, qps, cv = inp.slo, inp.workload.qps, inp.workload.arrival_cv
    cap = _util_cap(inp)
    xfer = transfer_of(inp)
    k = slo.key
    pct = (slo.percentile,)
    target = slo.percentile / 100.0
    margins = (target, (1 + target) / 2, 1 - (1 - target) / 10)
    decode = []
    for sm in configs:
        g = sm.gpus
        sizes = np.arange(1, max(max_gpus // g, 1) + 1)
        r = disaggregated.decode_pool(sm, shape, qps, sizes, percentiles=(), tpot_slo=slo.tpot_s)
        res.evaluated += len(sizes)
        f = np.where(r["stable"] & _under([r["utilization"]], cap), np.asarray(r["attain"], dtype=float), 0.0)
        picks = sorted({int(sizes[np.argmax(f >= m)]) for m in margins if (f >= m).any()})
        ok = bool(picks)
        if not ok:  # the nearest miss: the size with the best attainment (else half the budget)
            picks = [int(sizes[int(np.argmax(f))]) if f.max() > 0 else max(1, len(sizes) // 2)]
        for nd in picks:
            decode.append((sm, nd, float(f[nd - 1]), ok))
    feasible_d = sorted([d for d in decode if d[3]], key=lambda d: (d[1] * d[0].gpus, -d[2]))
    chosen = feasible_d[:6] or sorted(decode, key=lambda d: -d[2])[:1]
    # Keep the best decode pool of each kind of layout (data-parallel attention or not), so that
    # both kinds are paired with prefill pools and the plan can say what the other one needs.
    for kind in (False, True):
        best_kind = next((d for d in feasible_d if (d[0].dp > 1) == kind), None)
        if best_kind is not None and best_kind not in chosen:
            chosen.append(best_kind)
    prefill_profiles: dict = {}
    for smd, nd, f_p, d_ok in chosen:
        for smp in configs:
            g = smp.gpus
            n_max = (max_gpus - nd * smd.gpus) // g
            if n_max < 1:
                continue
            pd_ = Pool("decode", smd.gpu.id, nd, smd.tp, smd.pp, smd.ep, smd.dp)
            sizes = np.arange(1, n_max + 1)
            # The link depends on the prefill pool's size (one node or not): evaluate every size
            # with the link it implies.
            f_t = np.zeros(len(sizes))
            groups, profs = {}, {}
            for n in (1, n_max):
                link, streams, where = kv_link_for(inp.catalog, smp.gpu, smd.gpu,
                                                   Pool("prefill", smp.gpu.id, n, smp.tp, smp.pp, smp.ep, smp.dp), pd_, None)
                groups[where] = (link, streams)
            for where, (link, streams) in groups.items():
                if len(groups) > 1:  # the sizes that share a node with the decode pool, or not
                    near = shares_node(smp.gpu, smd.gpu, sizes * smp.gpus, pd_.gpus)
                    sel = near if where == "same-node" else ~near
                else:
                    sel = np.ones(len(sizes), dtype=bool)
                pkey = (id(smp), link, streams)  # (the same prefill layout pairs with several decode pools)
                if pkey not in prefill_profiles:
                    prefill_profiles[pkey] = disaggregated.PrefillProfile(
                        smp, shape, link, streams, inp.model.kv_bytes_per_token(inp.kv_dtype), True, xfer)
                prof = prefill_profiles[pkey]
                dlink = (nd, link_capacity(link, smd.gpus, xfer))
                r = disaggregated.prefill_pool(prof, qps, sizes[sel], cv, percentiles=(),
                                               ttft_slo=slo.ttft_s, decode_link=dlink)
                profs[where] = (prof, sel, dlink)
                f_t[sel] = np.where(r["stable"] & _under([r["utilization"]], cap),
                                    np.asarray(r["attain"], dtype=float), 0.0)
            res.evaluated += len(sizes)
            need = target / max(f_p, 1e-9)
            ok = (f_t >= need - 1e-9) & d_ok & (need <= 1.0)
            if ok.any():
                i = int(np.argmax(ok))
            else:
                i = int(np.argmax(f_t)) if f_t.max() > 0 else len(sizes) - 1
            np_use = int(sizes[i])
            prof, _, dlink = next(v for v in profs.values() if v[1][i])
            dep = Deployment("disaggregated", (Pool("prefill", smp.gpu.id, np_use, smp.tp, smp.pp, smp.ep, smp.dp),
                                               Pool("decode", smd.gpu.id, nd, smd.tp, smd.pp, smd.ep, smd.dp)))
            att = f_t[i] * f_p
            sc = (target / att) if att > 0 else math.inf
            cost = sum(p.gpus * inp.catalog.gpu(p.gpu).price_per_hour for p in dep.pools)

            def pcts(prof=prof, np_use=np_use, smd=smd, nd=nd, dlink=dlink):
                one = disaggregated.prefill_pool(prof, qps, np.array([np_use]), cv, percentiles=pct,
                                                 ttft_slo=slo.ttft_s, decode_link=dlink)
                dec = disaggregated.decode_pool(smd, shape, qps, np.array([nd]), percentiles=pct,
                                                tpot_slo=slo.tpot_s)
                return (float(np.asarray(one["ttft"][k]).reshape(-1)[0]),
                        float(np.asarray(dec["tpot"][k]).reshape(-1)[0]))

            consider(Candidate("disaggregated", dep, dep.total_gpus, cost, bool(ok.any()), sc, pcts))


# --------------------------------------------------------------------------------------------
# recommend()
# --------------------------------------------------------------------------------------------


def recommend(inp: Inputs, gpu_ids, approaches=APPROACHES, max_gpus: int = 1024,
              objective: str = "gpus", headroom: bool = True) -> Recommendation:
    """The cheapest plan that meets the SLO (fewest GPUs, or dollars). With ``inp.confidence``
    set, the SLO must hold at the upper end of the likely range at that confidence
    (:func:`recommend_with_margin`)."""
    if getattr(inp, "confidence", None) is not None:
        return recommend_with_margin(inp, gpu_ids, approaches, max_gpus, objective, headroom)
    return _recommend(inp, gpu_ids, approaches, max_gpus, objective, headroom)


# The load regimes recommend_with_margin sizes in: (utilisation cap of every pool, the regimes a
# plan under it may be in). Under 0.5 only the low regime's factors apply, under 0.8 the larger
# of low and mid, without a cap the largest of all; each search is then right by construction.
_MARGIN_REGIMES = ((0.5, ("low",)), (0.8, ("low", "mid")), (math.inf, ("low", "mid", "high")))


def recommend_with_margin(inp: Inputs, gpu_ids, approaches=APPROACHES, max_gpus: int = 1024,
                          objective: str = "gpus", headroom: bool = True) -> Recommendation:
    """Size so that the SLO percentile's upper range end meets the SLO, for TTFT and TPOT.

    The likely range of a prediction ``p`` ends at ``p * f``, ``f`` the upper factor of its
    validation cell (:mod:`planner.confidence`) at ``inp.confidence``; a plan that meets the
    SLOs divided by ``(f_ttft, f_tpot)`` has its upper ends within the SLOs if its own cells'
    factors are no larger. The factors depend on the plan's GPU and load regime, which the
    sizing moves (more instances, less busy pools), so the search runs once per regime cap of
    :data:`_MARGIN_REGIMES`: every pool under 0.5 utilisation with the low regime's factors,
    under 0.8 with the larger of the low and mid ones, and uncapped with the largest of all;
    with several GPU types asked, once for each type alone at its factors and once for all of
    them at the largest. Each search's plan holds at its own factors by construction; the
    cheapest of them is the answer. The plain search's answer is kept to say
    what the margin costs (``plan.margin``)."""
    from planner import confidence as conf
    from planner.api import SLO

    c = conf.check_confidence(inp.confidence)
    slo = inp.slo
    plain = _recommend(inp, gpu_ids, approaches, max_gpus, objective, headroom=False)
    fac: tuple[float, ...]
    rec, fac, tight, evaluated = plain, (1.0, 1.0), inp, plain.evaluated
    if not _holds_upper(plain.plan, slo):
        gpus = list(dict.fromkeys(gpu_ids))
        # each GPU type alone at its own factors, and all of them (pools may mix) at the largest
        subsets = [[g] for g in gpus] + ([gpus] if len(gpus) > 1 else [])
        found, misses = [], []
        for (cap, regimes), sub in ((m, g) for m in _MARGIN_REGIMES for g in subsets):
            fac = tuple(max(conf.factors(f, g, r, c)[1] for g in sub for r in regimes) for f in ("ttft", "tpot"))
            tight = replace(inp, slo=SLO(slo.ttft_s / fac[0], slo.tpot_s / fac[1], slo.percentile))
            tight.util_cap = cap
            try:
                r = _recommend(tight, sub, approaches, max_gpus, objective, headroom=False)
            except NoFeasiblePlanError as exc:
                misses.append((exc, tight, fac))
                continue
            evaluated += r.evaluated
            if _holds_upper(r.plan, slo):  # (by construction; the estimate confirms it)
                found.append((r, tight, fac))
        if not found:
            miss, tight, fac = misses[-1] if misses else (None, tight, fac)
            raise NoFeasiblePlanError(
                f"at {c:.0%} confidence the SLO must hold at the upper end of the likely range, so the "
                f"search targets P{slo.percentile} TTFT {_ms(tight.slo.ttft_s)} and TPOT "
                f"{_ms(tight.slo.tpot_s)} ({fac[0]:.2f}x and {fac[1]:.2f}x under the SLOs) at any load, or less "
                f"tight ones at lower utilisation; without the margin {plain.plan.total_gpus} GPUs meet the SLOs. "
                + (str(miss) if miss else ""), nearest=miss.nearest if miss else []) from None
        key = (lambda f: (f[0].plan.total_gpus, f[0].plan.cost_per_hour)) if objective == "gpus" else \
            (lambda f: (f[0].plan.cost_per_hour, f[0].plan.total_gpus))
        rec, tight, fac = min(found, key=key)

    def restored(p):  # the plans against the SLOs asked (the margin is in their sizes)
        q = estimate(replace(p.inputs, slo=slo), p.deployment, with_headroom=headroom)
        q.speculation = p.speculation
        return q

    plan = restored(rec.plan)
    alternatives = [restored(a) for a in rec.alternatives]
    plan.margin = {"confidence": c, "gpus": plan.total_gpus, "gpus_without": plain.plan.total_gpus,
                   "cost_per_hour": plan.cost_per_hour, "cost_per_hour_without": plain.plan.cost_per_hour,
                   "ttft_factor": fac[0], "tpot_factor": fac[1],
                   "ttft_slo_sized_s": tight.slo.ttft_s, "tpot_slo_sized_s": tight.slo.tpot_s,
                   "plan_without": _pools(plain.plan.deployment), "approach_without": plain.plan.approach}
    plan.reason = (f"sized at {c:.0%} confidence (P{slo.percentile} TTFT and TPOT within their SLOs at the upper "
                   f"end of the likely range: the search targeted {_ms(tight.slo.ttft_s)} and "
                   f"{_ms(tight.slo.tpot_s)}); " + rec.plan.reason)
    return Recommendation(plan, alternatives, evaluated, rec.cloud)


def _holds_upper(plan: Plan, slo) -> bool:
    """Whether a plan's upper range ends at the SLO percentile are within the SLOs."""
    r = plan.ranges or {}
    k = slo.key
    return (plan.meets_slo and r.get("ttft_s", {}).get(k, [0, math.inf])[1] <= slo.ttft_s * (1 + 1e-9)
            and r.get("tpot_s", {}).get(k, [0, math.inf])[1] <= slo.tpot_s * (1 + 1e-9))


def sizing_inputs(inp: Inputs, objective: str = "gpus") -> Inputs:
    """The inputs the search sizes with for the question ``inp``: the engine's side of the SLO
    (a calibration's per-request latency off the TTFT SLO; the plans are then estimated with the
    question as asked) and, for closed-loop clients, the open-loop rate they generate at least.

    N closed-loop clients generate at least lam = N / (Z + TTFT_SLO + E[OSL - 1] TPOT_SLO) on a
    deployment that serves every request within the SLOs' sum (a faster one sees more, but its
    clients then wait less: the closed-loop mean response stays within that sum). The search
    sizes for that rate; the winners are evaluated with the clients themselves."""
    side = api_engine_side(inp)
    side.objective = objective
    if not side.workload.closed:
        return side
    wl, slo = side.workload, side.slo
    assert wl.concurrency is not None  # closed
    resp = slo.ttft_s + max(wl.mean_osl - 1.0, 0.0) * slo.tpot_s
    sizing = replace(side, workload=replace(wl, qps=wl.concurrency / (wl.think_s + resp), concurrency=None))
    sizing.objective, sizing.util_cap = objective, _util_cap(side)
    return sizing


def _recommend(inp: Inputs, gpu_ids, approaches=APPROACHES, max_gpus: int = 1024,
               objective: str = "gpus", headroom: bool = True) -> Recommendation:
    if objective not in ("gpus", "cost"):
        raise InvalidRequestError(f"--objective: unknown {objective!r}; valid: gpus, cost")
    inp.objective = objective
    full = inp
    sr, both = search_speculation(sizing_inputs(inp, objective), gpu_ids, approaches, max_gpus)
    inp = full
    inp_off = _without_spec(inp)

    def inputs_of(c):
        return inp if c.spec else inp_off
    feasible = [c for c in sr.best.values() if c is not None]
    if not feasible:
        raise NoFeasiblePlanError(no_plan_message(inp, sr, gpu_ids, max_gpus),
                                  nearest=[c for c in sr.nearest.values() if c is not None])
    # The best plan of every approach, with its headroom; the winner has the fewest GPUs (or
    # dollars), then the lower cost (or fewer GPUs), then the most headroom.
    # Headroom is computed for every plan when asked, and otherwise (what-if grids) only where
    # it decides (a tie in GPUs and cost) and for the winner, so both rank the same way.
    plans, cands = {}, {}
    for a in approaches:
        c = sr.best.get(a) or sr.nearest.get(a)
        if c is not None:
            plans[a], cands[a] = estimate(inputs_of(c), c.deployment, with_headroom=headroom), c

    def first(a):
        c = cands[a]
        return (c.gpus, c.cost) if objective == "gpus" else (c.cost, c.gpus)

    ok = [a for a in plans if sr.best.get(a) is not None]
    top = min(first(a) for a in ok)
    tied = [a for a in ok if first(a) == top]
    for a in tied:
        if not math.isfinite(plans[a].max_qps):
            p = plans[a]
            p.max_qps = api_headroom(inputs_of(cands[a]), cands[a].deployment,
                                     inp.workload.qps if p.meets_slo else None)
    best = min(tied, key=lambda a: (-plans[a].max_qps, cands[a].score))
    winner, plan = cands[best], plans[best]
    alternatives = [plans[a] for a in approaches if a in plans and a != best]
    plan.reason = explain_choice(inp, plan, winner, sr, plans)
    if both is not None:
        plan.speculation = explain_speculation(inp, inp_off, plan, winner, both)
    return Recommendation(plan, alternatives, sr.evaluated, sr.cloud)


# --------------------------------------------------------------------------------------------
# Speculative decoding: searched on and off
# --------------------------------------------------------------------------------------------


def _without_spec(inp: Inputs) -> Inputs:
    if inp.spec is None:
        return inp
    off = replace(inp, spec=None)
    off.objective = _objective(inp)
    off.util_cap = _util_cap(inp)
    return off


def search_speculation(inp: Inputs, gpu_ids, approaches=APPROACHES, max_gpus: int = 1024):
    """:func:`search` as asked; with speculative decoding offered (``inp.spec``), every
    configuration is sized both with it and without, and each approach keeps the better of the
    two (fewer GPUs or dollars, then the larger attainment margin; a tie in both is settled by
    headroom in :func:`recommend`'s ranking). Returns (the merged result, ``(on, off)`` results or
    None when speculation was not offered)."""
    if inp.spec is None:
        return search(inp, gpu_ids, approaches, max_gpus), None
    on = search(inp, gpu_ids, approaches, max_gpus)
    off = search(_without_spec(inp), gpu_ids, approaches, max_gpus)
    res = SearchResult({a: None for a in approaches}, {a: None for a in approaches},
                       on.evaluated + off.evaluated, on.cloud + off.cloud)
    for a in approaches:
        for table in ("best", "nearest"):
            cs = [c for c in (getattr(off, table).get(a), getattr(on, table).get(a)) if c is not None]
            if cs:
                getattr(res, table)[a] = _pick_on_off(cs, inp)
        if res.best[a] is not None:
            res.nearest[a] = None
    return res, (on, off)


def _pick_on_off(cs: list, inp: Inputs) -> Candidate:
    """The better of an approach's candidates without (first) and with speculation: by the
    search's key; on a tie in GPUs and cost, the one with more headroom (off when equal)."""
    best = min(cs, key=lambda c: _key(c, inp)[:2] if c.feasible else _key(c, inp))
    if len(cs) == 2 and all(c.feasible for c in cs) and _key(cs[0], inp)[:2] == _key(cs[1], inp)[:2]:
        off_inp = _without_spec(inp)
        for c in cs:
            c.headroom = api_headroom(inp if c.spec else off_inp, c.deployment)
        best = cs[1] if cs[1].headroom > cs[0].headroom else cs[0]
    return best


def explain_speculation(inp: Inputs, inp_off: Inputs, plan: Plan, winner: Candidate, both) -> dict:
    """Whether the recommended plan decodes speculatively, and why, in one sentence: its TPOT
    with and without speculation on the chosen deployment, and what the best plan of the other
    choice (any approach) needs."""
    on, off = both
    k = inp.slo.key
    rival = off if winner.spec else on
    others = [c for c in rival.best.values() if c is not None]
    other = min(others, key=lambda c: _key(c, inp)) if others else None
    dep = winner.deployment
    here = float(plan.metrics.tpot[k])
    try:
        alt = estimate(inp_off if winner.spec else inp, dep, with_headroom=False)
        there = float(alt.metrics.tpot[k])
    except PdplanError:  # the draft's weights do not fit this deployment
        alt, there = None, math.inf
    b = plan.metrics.decode_batch if winner.spec else (alt.metrics.decode_batch if alt else math.nan)
    tp_on, tp_off = (here, there) if winner.spec else (there, here)
    at = f" at batch {b:.0f}" if math.isfinite(b) else ""
    assert inp.spec is not None  # (both: speculation was offered)
    desc = f"{inp.spec.tokens_per_step:.2f} tokens per step"
    change = (f"P{inp.slo.percentile} TPOT {_ms(tp_off)} -> {_ms(tp_on)}{at} ({desc})"
              if alt is not None else f"the draft does not fit {_pools(dep)}")
    name = "off" if winner.spec else "on"
    if other is None:
        then = f"{name}, no plan meets the SLO within the GPU limit"
    else:
        best = f"{other.approach} {_pools(other.deployment)}"
        if other.gpus != winner.gpus or other.cost != winner.cost:
            more = other.gpus - winner.gpus
            what = (f"{more} more GPU{'s' if more > 1 else ''}" if more > 0
                    else f"${other.cost - winner.cost:,.0f}/h more")
            then = f"{name}, the best plan needs {what} ({best}, {other.gpus} GPUs)"
        else:
            mine = plan.max_qps if math.isfinite(plan.max_qps) else api_headroom(inp if winner.spec else inp_off, dep)
            theirs = other.headroom if math.isfinite(other.headroom) else api_headroom(
                inp_off if winner.spec else inp, other.deployment)
            then = (f"{name}, the best plan ties at {other.gpus} GPUs ({best}) with less headroom "
                    f"(max {theirs:,.1f} QPS against {mine:,.1f})")
    lead = "speculative decoding on" if winner.spec else "speculative decoding off: on"
    return {"on": bool(winner.spec), "why": f"{lead}, {change}; {then}." if not winner.spec
            else f"{lead}: {change}; {then}.", "tpot_on_ms": _round_ms(tp_on),
            "tpot_off_ms": _round_ms(tp_off),
            "gpus_on": winner.gpus if winner.spec else (other.gpus if other else None),
            "gpus_off": (other.gpus if other else None) if winner.spec else winner.gpus}


def _ms(x: float) -> str:
    return f"{x * 1e3:.1f} ms" if math.isfinite(x) else "overloaded"


def _round_ms(x: float):
    return round(x * 1e3, 3) if math.isfinite(x) else None


def _pools(dep: Deployment) -> str:
    return " + ".join(p.spec() for p in dep.pools)


def explain_choice(inp: Inputs, plan: Plan, winner: Candidate, sr: SearchResult,
                   plans: dict | None = None) -> str:
    """One sentence naming the constraint that decided."""
    slo, k = inp.slo, inp.slo.key
    parts = []
    for a, c in sr.best.items():
        if a == winner.approach:
            continue
        if c is None:
            miss = sr.nearest.get(a)
            if miss is None:
                parts.append(f"{a} has no configuration that fits")
                continue
            why = _why_miss(miss, slo)
            parts.append(f"{a} cannot meet the SLO within the GPU limit ({why})")
        elif c.gpus > winner.gpus or (c.gpus == winner.gpus and c.cost > winner.cost):
            parts.append(f"{a} needs {c.gpus} GPUs (${c.cost:,.0f}/h){_binding(c, slo)}")
        else:
            other = (plans or {}).get(a)
            room = (f" (max {other.max_qps:,.1f} QPS against {plan.max_qps:,.1f})"
                    if other is not None and math.isfinite(other.max_qps) and math.isfinite(plan.max_qps)
                    else "")
            parts.append(f"{a} ties at {c.gpus} GPUs but loses on "
                         + ("cost" if c.cost > winner.cost else "headroom" + room))
    m = plan.metrics
    if (all(p.instances == 1 for p in winner.deployment.pools)
            and max(winner.ttft / slo.ttft_s, winner.tpot / slo.tpot_s) < 0.8):
        why = " (the smallest deployment that holds the model; load is not what sizes it)"
    else:
        why = _binding(winner, slo, own=True)
    head = (f"{winner.approach} meets P{slo.percentile} TTFT {m.ttft[k] * 1e3:.0f} ms and TPOT "
            f"{m.tpot[k] * 1e3:.1f} ms with {winner.gpus} GPUs{why}")
    if winner.approach == "disaggregated":
        head += _ratio(plan, slo)
    head += _layout_note(inp, winner, sr)
    return head + ("; " + "; ".join(parts) if parts else "") + "."


def _ratio(plan: Plan, slo) -> str:
    """The P:D ratio and what sized each side: the decode pool (one of the few smallest that
    hold TPOT and KV memory, each leaving the prefill pool a share of the joint attainment) and
    the prefill pool, the fewest that then hold TTFT."""
    dep, m, k = plan.deployment, plan.metrics, slo.key
    p, d = dep.pool("prefill"), dep.pool("decode")
    util = m.utilization
    kv = m.kv_used_tokens / m.kv_capacity_tokens if m.kv_capacity_tokens else math.nan
    return (f"; P:D = {p.instances}:{d.instances} instances ({p.gpus}:{d.gpus} GPUs): decode "
            f"{d.instances}x {_layout(d)} holds P{slo.percentile} TPOT ({m.tpot[k] * 1e3:.1f} of "
            f"{slo.tpot_s * 1e3:.0f} ms, batch {m.decode_batch:.0f} per lane, KV {kv * 100:.0f}% full) and "
            f"prefill {p.instances}x {_layout(p)} is the fewest that then hold TTFT "
            f"({m.ttft[k] * 1e3:.0f} of {slo.ttft_s * 1e3:.0f} ms, {util.get('prefill', math.nan) * 100:.0f}% busy)")


def _layout(pool: Pool) -> str:
    """``tp8``, ``tp1dp8ep8``: the parallel layout of one instance of ``pool``."""
    return pool.spec().split("x", 1)[1].split("@", 1)[0]


def _layout_note(inp: Inputs, winner: Candidate, sr: SearchResult) -> str:
    """For MoE models: why the chosen layout uses data-parallel attention (or not), against the
    best plan of the same approach on the other kind of layout."""
    if not inp.model.is_moe:
        return ""
    from planner.api import step_model

    def uses_dp(c):
        return any(p.dp > 1 for p in c.deployment.pools)

    mine = uses_dp(winner)
    others = [c for c in sr.cloud if c.feasible and c.approach == winner.approach and uses_dp(c) != mine]
    alt = min(others, key=lambda c: (c.gpus, c.cost), default=None)
    pool = max(winner.deployment.pools, key=lambda p: p.dp)
    kv = step_model(inp, pool).kv_capacity_tokens
    if mine:
        rep = Pool(pool.role, pool.gpu, 1, pool.tp * pool.dp, 1) if pool.tp * pool.dp <= 8 else None
        cmp = ""
        if rep is not None:
            try:
                sm = step_model(inp, rep)
                if sm.fits:
                    cmp = (f" against {sm.kv_capacity_tokens:,.0f} at tp{rep.tp}, where "
                           + ("the MLA latent is replicated on every TP rank" if inp.model.is_mla
                              else "every rank holds a share of every sequence"))
            except InvalidRequestError:
                cmp = ""
        text = (f"; layout {_layout(pool)}: data-parallel attention keeps each sequence's KV cache on one "
                f"rank ({kv:,.0f} KV tokens per instance{cmp}) and spreads the experts over {pool.ep} GPUs")
        if alt is not None:
            text += f"; without it {winner.approach} needs {alt.gpus} GPUs"
        else:
            text += f"; the search found no {winner.approach} plan without it that meets the SLO"
        return text
    if alt is not None and (alt.gpus, alt.cost) > (winner.gpus, winner.cost):
        return (f"; layout {_layout(pool)}: data-parallel attention layouts need {alt.gpus} GPUs "
                f"({', '.join(sorted({_layout(p) for p in alt.deployment.pools}))})")
    return ""


def _binding(c: Candidate, slo, own: bool = False) -> str:
    rt, rp = c.ttft / slo.ttft_s, c.tpot / slo.tpot_s
    which = "TTFT" if rt >= rp else "TPOT"
    if own:
        return f" (sized by {which}: at {max(rt, rp) * 100:.0f}% of its SLO)"
    if c.approach == "unified" and which == "TPOT":
        return " because prefill stalls push TPOT toward its SLO"
    return f" to hold {which} within its SLO"


def _why_miss(c: Candidate, slo) -> str:
    if not (math.isfinite(c.ttft) or math.isfinite(c.tpot)):
        return "overloaded even at the largest size"
    bits = []
    if c.ttft > slo.ttft_s:
        bits.append(f"best P{slo.percentile} TTFT {c.ttft * 1e3:,.0f} ms" if math.isfinite(c.ttft)
                    else "TTFT unbounded (overloaded)")
    if c.tpot > slo.tpot_s:
        bits.append(f"best P{slo.percentile} TPOT {c.tpot * 1e3:,.1f} ms" if math.isfinite(c.tpot)
                    else "TPOT unbounded (overloaded)")
    return ", ".join(bits) or "both percentiles within the SLOs, but too few requests meet both at once"


def _feasible(inp: Inputs, gpu_ids, max_gpus: int) -> bool:
    """Whether the search finds any plan for ``inp`` (a suggestion's check)."""
    try:
        sr = search(inp, gpu_ids, APPROACHES, max_gpus)
    except PdplanError:
        return False
    return any(c is not None for c in sr.best.values())


def no_plan_message(inp: Inputs, sr: SearchResult, gpu_ids, max_gpus) -> str:
    slo = inp.slo
    lines = [f"no deployment meets P{slo.percentile} TTFT <= {slo.ttft_s * 1e3:g} ms and TPOT <= "
             f"{slo.tpot_s * 1e3:g} ms at {inp.workload.qps:g} QPS within {max_gpus} GPUs"]
    for a, c in sr.nearest.items():
        if c is None:
            lines.append(f"{a}: no configuration fits the GPU memory")
            continue
        lines.append(f"{a}: nearest miss {c.deployment.pools[0].spec()}"
                     + (f" + {c.deployment.pools[1].spec()}" if len(c.deployment.pools) > 1 else "")
                     + f" ({c.gpus} GPUs): {_why_miss(c, slo)}")
    # Every suggestion is checked: the search is run again with it, and only those that give a
    # plan are offered (a suggestion that would still leave nothing feasible is not help).
    hints = []
    isl, osl = inp.workload.grid()
    longest = float(np.max(isl + osl))
    configs = _configs(inp, gpu_ids)
    room = max((sm.kv_capacity_tokens_per_lane for sm in configs), default=0.0)
    if longest > room:
        hints.append(f"shorter requests: the longest ({longest:,.0f} tokens) does not fit the KV "
                     f"cache of any instance ({room:,.0f} tokens at most)")
    finite = [c for c in sr.nearest.values()
              if c is not None and (math.isfinite(c.ttft) or math.isfinite(c.tpot))]
    if finite:
        best = min(finite, key=lambda c: max(c.ttft / slo.ttft_s, c.tpot / slo.tpot_s))
        new_slo = replace(slo, ttft_s=max(slo.ttft_s, best.ttft * 1.05), tpot_s=max(slo.tpot_s, best.tpot * 1.05))
        if new_slo != slo and _feasible(replace(inp, slo=new_slo), gpu_ids, max_gpus):
            parts = [f"a TTFT SLO of {new_slo.ttft_s * 1e3:.0f} ms"] if new_slo.ttft_s > slo.ttft_s else []
            parts += [f"a TPOT SLO of {new_slo.tpot_s * 1e3:.0f} ms"] if new_slo.tpot_s > slo.tpot_s else []
            hints.append(" and ".join(parts))
    if max_gpus < 100_000 and _feasible(inp, gpu_ids, max_gpus * 4):
        hints.append(f"more GPUs (--max-gpus {max_gpus * 4})")
    elif _feasible(replace(inp, workload=inp.workload.with_qps(inp.workload.qps / 2)), gpu_ids, max_gpus):
        hints.append(f"half the rate ({inp.workload.qps / 2:g} QPS)")
    if inp.dtype == "bf16" and _feasible(replace(inp, dtype="fp8"), gpu_ids, max_gpus):
        hints.append("--dtype fp8")
    others = sorted((g for g in inp.catalog.gpus if g not in gpu_ids),
                    key=lambda g: -inp.catalog.gpus[g].hbm_bytes)
    ok = [g for g in others[:4] if _feasible(inp, [g], max_gpus)]
    if ok:
        hints.append("another GPU type (--gpu " + ",".join(ok[:3]) + ")")
    if not hints:
        hints.append("none of a 5% looser SLO, 4x the GPUs, half the rate, FP8 weights or another GPU "
                     "type alone gives a plan")
    lines.append("what would help: " + "; ".join(hints))
    return "\n".join(lines)


__all__ = ["recommend", "search", "search_speculation", "sizing_inputs", "Recommendation", "Candidate",
           "SearchResult"]


# --------------------------------------------------------------------------------------------
# Sizing checked by the simulator (recommend --verify)
# --------------------------------------------------------------------------------------------

VERIFY_STEPS = 8  # most instances added, one at a time, before the simulator's verdict stands


def simulate_plan(inp: Inputs, dep: Deployment, requests: int, seed: int) -> dict:
    """The simulator's verdict on ``dep``: attainment, whether it meets the percentile, and the
    percentiles it measured (seconds)."""
    from planner.sim import simulate

    sim = simulate(inp, dep, requests, seed)
    target = inp.slo.percentile / 100.0
    return {"requests": int(sim.requests), "seed": seed, "attainment": float(sim.attainment),
            "meets_slo": bool(sim.stable and sim.attainment >= target), "stable": bool(sim.stable),
            "ttft": dict(sim.ttft), "tpot": dict(sim.tpot), "preemptions": int(sim.preemptions)}


def _grow(dep: Deployment, verdict: dict, slo) -> Deployment:
    """One more instance where the simulator says the plan falls short: the prefill pool for
    TTFT, the decode pool for TPOT (the larger shortfall, relative to its SLO)."""
    k = slo.key
    if dep.approach != "disaggregated":
        role = "unified"
    else:
        t_short = verdict["ttft"].get(k, math.inf) / slo.ttft_s
        p_short = verdict["tpot"].get(k, math.inf) / slo.tpot_s
        role = "prefill" if t_short >= p_short else "decode"
    pools = tuple(replace(p, instances=p.instances + 1) if p.role == role else p for p in dep.pools)
    return replace(dep, pools=pools)


def verify(inp: Inputs, rec: Recommendation, requests: int, seed: int, max_gpus: int,
           steps: int = VERIFY_STEPS) -> Recommendation:
    """Check the recommended plan in the simulator, and where the analytic model was optimistic
    (the simulator's attainment falls short of the percentile), add instances one at a time to
    the pool that falls short until the simulator agrees, within ``steps`` and ``max_gpus``. The
    plan then says how many GPUs the analytic sizing had and why it changed."""
    plan = rec.plan
    if getattr(plan.inputs, "spec", None) is None:
        inp = _without_spec(inp)  # the search left speculative decoding off: simulate it off
    analytic_gpus = plan.total_gpus
    dep = plan.deployment
    verdict = simulate_plan(inp, dep, requests, seed)
    first = verdict
    added = 0
    while not verdict["meets_slo"] and added < steps:
        bigger = _grow(dep, verdict, inp.slo)
        if bigger.total_gpus > max_gpus:
            break
        dep, added = bigger, added + 1
        verdict = simulate_plan(inp, dep, requests, seed)
    if added:
        sized = estimate(inp, dep)
        sized.speculation = plan.speculation
        sized.notes = list(plan.notes) + [
            f"sized up by simulation from {analytic_gpus} to {sized.total_gpus} GPUs: the analytic "
            f"model was optimistic here (simulated attainment {first['attainment'] * 100:.1f}% at "
            f"{analytic_gpus} GPUs, {verdict['attainment'] * 100:.1f}% at {sized.total_gpus}; "
            f"needs {inp.slo.percentile}%)"]
        if not verdict["meets_slo"]:
            sized.notes.append(f"the simulator still finds it short after {added} more instances")
        rec = replace(rec, plan=sized)
        plan = sized
    plan.verification = {**verdict, "analytic_gpus": analytic_gpus, "instances_added": added}
    return rec
