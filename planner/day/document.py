"""The ``day`` section of a plan document, both ways: what a day plan writes beside the busiest
period's plan (the profile, the scaling constraints, the schedule, GPU-hours and cost against
static peak provisioning, the autoscaling policy), and the schedule read back for ``pdplan
simulate PLAN --load-profile`` and the exporters. Documents hold finite numbers only, in SI
units (times in seconds) with their unit in the key where it is not seconds."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NoReturn

from planner.errors import InvalidRequestError

if TYPE_CHECKING:
    from planner.api import Inputs
    from planner.day.schedule import DayPlan, PeriodPlan
    from planner.serving.common import Deployment

DAY_SCHEMA = 1


def _r(x, digits: int = 4):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return round(v, digits) if math.isfinite(v) else None


def pools_of(dep: Deployment) -> dict:
    return {p.role: p.spec() for p in dep.pools}


def period_document(p: PeriodPlan, closed: bool) -> dict:
    dep = p.deployment
    d: dict = {"period": p.index, "start": p.label, "start_s": _r(p.start_s, 3), "duration_s": _r(p.duration_s, 3),
               ("concurrency" if closed else "qps"): _r(p.load, 4)}
    if dep is not None:
        d["approach"] = dep.approach
        d["pools"] = pools_of(dep)
        d["instances"] = {q.role: int(q.instances) for q in dep.pools}
        if dep.approach == "chunked":
            d["chunk_size"] = int(dep.chunk_size) if dep.chunk_size else None
        d["gpus"] = int(p.gpus)
        d["cost_per_hour"] = _r(p.cost_per_hour, 2)
    if p.plan is not None:
        m, key = p.plan.metrics, p.plan.inputs.slo.key
        if closed:
            d["qps"] = _r(p.qps, 4)
        d["utilization"] = {k: _r(v) for k, v in m.utilization.items()}
        d[f"ttft_{key}_ms"] = _r(m.ttft.get(key, math.nan) * 1e3, 3)
        d[f"tpot_{key}_ms"] = _r(m.tpot.get(key, math.nan) * 1e3, 3)
        d["meets_slo"] = bool(p.plan.meets_slo)
        d["attainment_steady"] = _r(p.attainment_steady)
        d["attainment"] = _r(p.attainment)
        if getattr(p.plan.inputs, "spec", None) is not None:
            d["speculative"] = True
    if p.lag is not None:
        w = p.lag
        lag = {"seconds": _r(w.seconds, 3), "pools": pools_of(w.deployment), "stable": bool(w.stable),
               "attainment": _r(w.attainment)}
        if not w.stable:
            lag.update({"late_s": _r(w.late_s, 3), "capacity_qps": _r(w.capacity_qps, 4),
                        "capacity_after_qps": _r(w.capacity_after_qps, 4), "ttft_slack_ms": _r(w.slack_s * 1e3, 3)})
        d["lag"] = lag
    if p.extra_gpu_hours:
        d["extra_gpu_hours"] = _r(p.extra_gpu_hours, 4)
    return d


def day_document(day: DayPlan) -> dict:
    """The ``day`` section (JSON/YAML-ready, a fixed key order)."""
    prof = day.profile
    span_h = prof.span_s / 3600.0
    st = day.static or {}
    doc: dict = {"schema": DAY_SCHEMA, "profile": prof.document(), "scaling": day.scaling.document(),
                 "objective": day.objective, "span_h": _r(span_h, 4),
                 "gpu_hours": _r(day.gpu_hours, 3), "cost": _r(day.cost, 2),
                 "attainment": _r(day.attainment), "target": _r(day.target),
                 "meets_target": bool(day.attainment >= day.target - 1e-9),
                 "max_scale_up_s": _r(day.max_scale_up_s(), 1),
                 "lagging_periods": [p.label for p in day.lagging]}
    if st:
        doc["static_peak"] = {"approach": st["deployment"].approach, "pools": pools_of(st["deployment"]),
                              "gpus": int(st["gpus"]), "gpu_hours": _r(st["gpu_hours"], 3), "cost": _r(st["cost"], 2)}
        doc["saving"] = {"gpu_hours": _r(st["gpu_hours"] - day.gpu_hours, 3), "cost": _r(st["cost"] - day.cost, 2),
                         "share": _r(1.0 - day.gpu_hours / st["gpu_hours"]) if st["gpu_hours"] else None}
    doc["approaches"] = {a: {"pools_at_peak": pools_of(v["deployment"]), "peak_gpus": int(v["peak_gpus"]),
                             "low_gpus": int(v["low_gpus"]), "gpu_hours": _r(v["gpu_hours"], 3),
                             "cost": _r(v["cost"], 2)} for a, v in day.approaches.items()}
    doc["schedule"] = [period_document(p, prof.closed) for p in day.periods]
    doc["autoscaling"] = {role: _policy_document(pol) for role, pol in day.autoscaling.items()}
    doc["searches"] = int(day.searches)
    doc["evaluated"] = int(day.evaluated)
    if day.notes:
        doc["notes"] = list(day.notes)
    return doc


def _policy_document(pol: dict) -> dict:
    return {"min_instances": int(pol["min_instances"]), "max_instances": int(pol["max_instances"]),
            "signal": pol["signal"], "target": _r(pol["target"], 6), "exact": bool(pol["exact"]),
            "matched": int(pol["matched"]), "periods": int(pol["periods"]), "over": int(pol["over"]),
            "extra": int(pol["extra"]), "range": [_r(x, 6) for x in pol["range"]],
            "guard": {"latency": pol["guard"]["latency"], "percentile": int(pol["guard"]["percentile"]),
                      "slo_s": _r(pol["guard"]["slo_s"], 6)},
            "candidates": {s: {"target": _r(f["target"], 6), "matched": int(f["matched"]), "exact": bool(f["exact"]),
                               "over": int(f["over"])} for s, f in pol["candidates"].items()}}


# --------------------------------------------------------------------------------------------
# Reading a plan's day back
# --------------------------------------------------------------------------------------------


def read_day(doc: dict, path: str, inputs: Inputs, dep: Deployment):
    """``(profile, scaling, deployments per period, speculation per period)`` of a plan's
    ``day`` section, checked; every problem names the plan file and the key."""
    from dataclasses import replace

    from planner.api import parse_spec
    from planner.day.profile import profile_from_document
    from planner.day.schedule import MODES, Scaling
    from planner.serving.common import APPROACHES, Deployment, Pool

    where = f"plan file {path}: day"

    def fail(key, what) -> NoReturn:
        raise InvalidRequestError(f"{where}.{key}: {what}")

    if not isinstance(doc, dict):
        raise InvalidRequestError(f"{where}: must be a mapping")
    if doc.get("schema") != DAY_SCHEMA:
        fail("schema", f"{doc.get('schema')!r} is not one this pdplan reads (version {DAY_SCHEMA})")
    prof = profile_from_document(doc.get("profile"), f"{where}.profile")
    sc = doc.get("scaling")
    if not isinstance(sc, dict):
        fail("scaling", "missing or not a mapping")
    mode = sc.get("mode")
    if mode not in MODES:
        fail("scaling.mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    up = sc.get("scale_up_s")
    if isinstance(up, bool) or not isinstance(up, (int, float)) or not 0 <= up <= 366 * 86400:
        fail("scaling.scale_up_s", f"must be a number of seconds, got {up!r}")

    def counts(key):
        v = sc.get(key) or {}
        if not isinstance(v, dict) or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in v.values()):
            fail(f"scaling.{key}", "must map pool roles to whole numbers of instances")
        return dict(v)

    scaling = Scaling(float(up), counts("min_instances"), counts("max_instances"),
                      bool(sc.get("allow_approach_change", False)), str(mode))
    sched = doc.get("schedule")
    if not isinstance(sched, list) or len(sched) != prof.periods:
        fail("schedule", f"must be a list of {prof.periods} periods (one per period of day.profile)")
    deps, specs = [], []
    for i, e in enumerate(sched):
        key = f"schedule[{i}]"
        if not isinstance(e, dict):
            fail(key, "must be a mapping")
        approach = e.get("approach")
        if approach not in APPROACHES:
            fail(f"{key}.approach", f"must be one of {', '.join(APPROACHES)}, got {approach!r}")
        pools_doc = e.get("pools")
        if not isinstance(pools_doc, dict) or not pools_doc:
            fail(f"{key}.pools", "must map pool roles to deployment specs (e.g. prefill: 6xtp4@h100-sxm)")
        pools = []
        for role, spec in pools_doc.items():
            if role not in ("unified", "prefill", "decode"):
                fail(f"{key}.pools", f"unknown role {role!r}")
            n, tp, pp, gpu, ep, dp = parse_spec(str(spec), inputs.gpu, f"{where}.{key}.pools.{role}")
            if gpu not in inputs.catalog.gpus:
                fail(f"{key}.pools.{role}", f"unknown GPU {gpu!r}")
            pools.append(Pool(role, gpu, n, tp, pp, ep, dp))
        want = ("unified",) if approach in ("unified", "chunked") else ("prefill", "decode")
        if sorted(p.role for p in pools) != sorted(want):
            fail(f"{key}.pools", f"{approach} needs exactly the pools {', '.join(want)}")
        chunk = e.get("chunk_size") if approach == "chunked" else None
        if approach == "chunked" and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            fail(f"{key}.chunk_size", f"must be a whole number of tokens, got {chunk!r}")
        pools.sort(key=lambda p: ("prefill", "decode", "unified").index(p.role))
        if approach == dep.approach:
            d = replace(dep, pools=tuple(pools), chunk_size=chunk)
        else:
            d = Deployment(approach, tuple(pools), chunk_size=chunk)
        deps.append(d)
        specs.append(bool(e.get("speculative", False)) and inputs.spec is not None)
    return prof, scaling, deps, specs


def simulation_document(day_periods: list, sim) -> dict:
    """Simulated against predicted attainment per period, and the day's."""
    rows = []
    for p in day_periods:
        s = sim.periods[p.index]
        rows.append({"period": p.index, "start": p.label, "load": _r(p.load), "predicted": _r(p.attainment),
                     "simulated": _r(s.attainment) if s is not None else None,
                     "requests": int(s.requests) if s is not None else 0,
                     "sampled": bool(s.sampled) if s is not None else False,
                     "parts": ([{k: (_r(v) if isinstance(v, float) else v) for k, v in part.items()} for part in s.parts]
                               if s is not None else [])})
    w = [p.requests for p in day_periods]
    pred = sum(wi * p.attainment for wi, p in zip(w, day_periods) if p.plan is not None) / max(sum(w), 1e-300)
    return {"seed": int(sim.seed), "requests": int(sim.requests), "simulated": int(sim.simulated),
            "wall_s": _r(sim.wall_s, 3), "attainment": {"predicted": _r(pred), "simulated": _r(sim.attainment)},
            "periods": rows}


__all__ = ["DAY_SCHEMA", "day_document", "period_document", "read_day", "simulation_document"]
