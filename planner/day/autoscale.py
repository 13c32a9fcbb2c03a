"""Autoscaling thresholds that reproduce a day's schedule from signals a deployment can observe,
and the KEDA ScaledObjects that carry them into the exports.

The autoscaler modelled is the Kubernetes HPA's (KEDA drives one): with a per-instance target
``T`` for a metric whose pods' values sum to ``M``, it asks for ``ceil(M / T)`` instances,
within ``[min, max]`` (kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/,
"Algorithm details": ``desiredReplicas = ceil[currentReplicas * currentMetricValue /
desiredMetricValue]``; KEDA's prometheus trigger uses ``threshold`` as that per-replica target
by default, keda.sh/docs/2.17/scalers/prometheus/). For every pool and candidate signal the
analytic model gives the per-instance value ``v_k`` at the schedule's ``n_k`` instances in each
period, so ``M_k = n_k v_k``. The schedule is reproduced exactly where

    n_k - 1 < M_k / T <= n_k   for every period k, i.e.   max_k v_k <= T < min_k M_k / (n_k - 1)

(periods held at the minimum only bound ``T`` from below). Where that interval is empty, the
threshold is the largest that never asks for fewer instances than the schedule (some periods
then get more), and the plan says in how many periods it matches. Signals (per instance):

* ``prompt_tokens_per_s`` (unified, prefill pools): prompt tokens computed per second, a load
  signal whose sum over instances does not depend on their number;
* ``waiting_requests`` (unified, prefill): prompts waiting for their prefill (Little's law on the
  model's mean queueing time);
* ``running_requests`` (unified, decode): sequences in the running batch;
* ``kv_cache_usage`` (unified, decode): the share of the KV cache in use.

The signal that reproduces the schedule in the most periods drives the pool; a guard trigger
on the SLO's latency (TTFT for unified and prefill pools, TPOT for decode; ``metricType:
Value``, so it adds instances in proportion to how far the percentile is over its SLO) catches
what the load signal misses. Metric names are the engines' own Prometheus metrics.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from planner.day.schedule import counts_of, shape_of

if TYPE_CHECKING:
    from planner.day.schedule import DayPlan

SIGNALS = {
    "prompt_tokens_per_s": ("unified", "prefill"),
    "waiting_requests": ("unified", "prefill"),
    "running_requests": ("unified", "decode"),
    "kv_cache_usage": ("unified", "decode"),
}
PREFERENCE = ("prompt_tokens_per_s", "running_requests", "kv_cache_usage", "waiting_requests")

# Per engine: the Prometheus metric of each signal (a counter's rate for prompt tokens), and the
# latency histograms of the guards.
# vLLM: vllm/v1/metrics/loggers.py (vllm-project/vllm, read at 005a810b): vllm:prompt_tokens
#   (counter, exported with _total), vllm:num_requests_running, vllm:num_requests_waiting,
#   vllm:kv_cache_usage_perc (0-1), vllm:time_to_first_token_seconds,
#   vllm:time_per_output_token_seconds (histograms).
# SGLang: python/sglang/srt/metrics/collector.py (sgl-project/sglang, read at 00ae9c15):
#   sglang:prompt_tokens_total, sglang:num_running_reqs, sglang:num_queue_reqs,
#   sglang:token_usage, sglang:time_to_first_token_seconds, sglang:inter_token_latency_seconds.
METRICS = {
    "vllm": {"prompt_tokens_per_s": "vllm:prompt_tokens_total", "running_requests": "vllm:num_requests_running",
             "waiting_requests": "vllm:num_requests_waiting", "kv_cache_usage": "vllm:kv_cache_usage_perc",
             "ttft": "vllm:time_to_first_token_seconds", "tpot": "vllm:time_per_output_token_seconds"},
    "sglang": {"prompt_tokens_per_s": "sglang:prompt_tokens_total", "running_requests": "sglang:num_running_reqs",
               "waiting_requests": "sglang:num_queue_reqs", "kv_cache_usage": "sglang:token_usage",
               "ttft": "sglang:time_to_first_token_seconds", "tpot": "sglang:inter_token_latency_seconds"},
}
RATE_WINDOW = "2m"  # the PromQL range of rates and latency quantiles
PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"  # kube-prometheus's service; check it
KEDA_API = "keda.sh/v1alpha1"
POLLING_S, COOLDOWN_S = 15, 300  # KEDA's pollingInterval (its default, 30, halved) and a 5-min scale-down


def _values(day: DayPlan, role: str, signal: str, ks: list) -> np.ndarray:
    """Per-instance value of ``signal`` for the pool ``role`` in the periods ``ks``."""
    out = []
    for k in ks:
        p = day.periods[k]
        plan, dep = p.plan, p.deployment
        pool = dep.pool(role)
        n = pool.instances
        m = plan.metrics
        wl = plan.inputs.workload
        qps = float(wl.qps)
        if signal == "prompt_tokens_per_s":
            cached, _ = wl.prefix_grid()
            isl, _ = wl.grid()
            v = qps * float(np.mean(isl - cached)) / n
        elif signal == "waiting_requests":
            v = qps * float(m.breakdown.get("ttft_queue_s", 0.0)) / n
        elif signal == "running_requests":
            v = float(m.decode_batch) * pool.lanes_per_instance
        else:
            v = float(m.kv_used_tokens) / float(m.kv_capacity_tokens) if m.kv_capacity_tokens else math.nan
        out.append(v)
    return np.asarray(out, dtype=float)


def threshold(v: np.ndarray, n: np.ndarray, low: int, high: float) -> dict:
    """The per-instance target that reproduces ``n`` from per-instance values ``v`` (module
    docstring), and how well it does: ``{"target", "exact", "matched", "over", "extra"}``."""
    M = v * n
    lo = float(np.max(v))
    grows = n > low
    hi = float(np.min(M[grows] / (n[grows] - 1))) if grows.any() else math.inf
    exact = lo < hi
    if exact:
        t = (lo + hi) / 2.0 if math.isfinite(hi) else lo
    else:
        t = hi * (1.0 - 1e-6)  # never fewer than the schedule
    want = np.clip(np.ceil(M / t - 1e-9), low, high)
    return {"target": t, "exact": bool(exact), "matched": int(np.sum(want == n)),
            "over": int(np.sum(want > n)), "extra": int(np.max(want - n)) if len(n) else 0,
            "range": [float(np.min(v)), float(np.max(v))]}


def policy(day: DayPlan) -> dict:
    """Per pool of the deployment the plan carries (its busiest period's shape): min and max
    instances, the signal that drives it with its target, the guard, and every candidate
    signal's fit. Periods on another shape (approach changes) are left out and counted."""
    peak = day.peak
    shape = shape_of(peak.deployment)
    ks = [p.index for p in day.periods if p.plan is not None and shape_of(p.deployment) == shape]
    if not ks:
        return {}
    slo = day.inputs.slo
    out = {}
    for pool in peak.deployment.pools:
        role = pool.role
        n = np.array([counts_of(day.periods[k].deployment)[role] for k in ks], dtype=float)
        low, high = day.scaling.low(role), day.scaling.high(role)
        fits = {}
        for sig, roles in SIGNALS.items():
            if role not in roles:
                continue
            v = _values(day, role, sig, ks)
            if not np.all(np.isfinite(v)) or np.max(v) <= 0:
                continue
            fits[sig] = threshold(v, n, low, high)
        if not fits:
            continue
        best = max(fits, key=lambda s: (fits[s]["matched"], -fits[s]["over"], -PREFERENCE.index(s)))
        guard = ("ttft", slo.ttft_s) if role in ("unified", "prefill") else ("tpot", slo.tpot_s)
        all_n = [counts_of(p.deployment)[role] for p in day.periods if shape_of(p.deployment) == shape]
        out[role] = {"min_instances": int(min(all_n)), "max_instances": int(max(all_n)),
                     "signal": best, **fits[best],
                     "guard": {"latency": guard[0], "percentile": int(slo.percentile), "slo_s": float(guard[1])},
                     "candidates": fits, "periods": len(ks), "other_shape_periods": day.profile.periods - len(ks)
                     - sum(1 for p in day.periods if p.plan is None)}
    return out


# --------------------------------------------------------------------------------------------
# KEDA ScaledObjects for the exporters
# --------------------------------------------------------------------------------------------


def query(engine: str, signal: str, selector: str) -> str:
    """The PromQL of a signal summed over a pool's pods (``selector``: label matchers)."""
    m = METRICS[engine][signal]
    if signal == "prompt_tokens_per_s":
        return f"sum(rate({m}{{{selector}}}[{RATE_WINDOW}]))"
    return f"sum({m}{{{selector}}})"


def latency_query(engine: str, which: str, percentile: int, selector: str) -> str:
    m = METRICS[engine][which]
    return (f"histogram_quantile({percentile / 100:g}, sum(rate({m}_bucket{{{selector}}}[{RATE_WINDOW}])) "
            "by (le))")


def cron_triggers(day_doc: dict, role: str) -> list:
    """Scheduled scaling: one KEDA cron trigger per period (its instances, from the scale-up
    time before it to its end; keda.sh/docs/2.17/scalers/cron/), in the profile's clock time.
    Only for periods in whole minutes that fit in a day."""
    prof = day_doc["profile"]
    lead = float(day_doc["scaling"]["scale_up_s"])
    out = []
    t0 = float(prof.get("start_of_day_s", 0.0))
    for per in day_doc["schedule"]:
        n = (per.get("instances") or {}).get(role)
        if n is None:
            continue
        a = (t0 + float(per["start_s"]) - lead) % 86400.0
        b = (t0 + float(per["start_s"]) + float(per["duration_s"])) % 86400.0
        if abs(a / 60 - round(a / 60)) > 1e-9 or abs(b / 60 - round(b / 60)) > 1e-9:
            return []
        def cron(t):
            mins = int(round(t / 60)) % 1440
            return f"{mins % 60} {mins // 60} * * *"
        out.append({"type": "cron", "metadata": {"timezone": "Etc/UTC", "start": cron(a), "end": cron(b),
                                                 "desiredReplicas": str(int(n))}})
    return out


def scaled_object(name: str, target: dict, engine: str, role: str, pol: dict, selector: str,
                  day_doc: dict) -> dict:
    """A KEDA ScaledObject (keda.sh/v1alpha1) for one pool: its min/max, the load trigger with
    the plan's target, the latency guard, and under scheduled scaling the cron triggers."""
    sig = pol["signal"]
    g = pol["guard"]
    triggers = []
    if day_doc["scaling"]["mode"] == "scheduled":
        triggers += cron_triggers(day_doc, role)
    triggers.append({"type": "prometheus", "metadata": {
        "serverAddress": PROMETHEUS, "query": query(engine, sig, selector), "threshold": _num(pol["target"])}})
    triggers.append({"type": "prometheus", "metricType": "Value", "metadata": {
        "serverAddress": PROMETHEUS, "query": latency_query(engine, g["latency"], g["percentile"], selector),
        "threshold": _num(g["slo_s"])}})
    return {"apiVersion": KEDA_API, "kind": "ScaledObject", "metadata": {"name": name},
            "spec": {"scaleTargetRef": target, "minReplicaCount": int(pol["min_instances"]),
                     "maxReplicaCount": int(pol["max_instances"]), "pollingInterval": POLLING_S,
                     "cooldownPeriod": COOLDOWN_S, "triggers": triggers}}


def _num(x: float) -> str:
    """A threshold as KEDA reads it (a string): 4 significant digits, no exponent."""
    v = float(x)
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def notes(day_doc: dict, engine: str, roles=None) -> list:
    """Header notes of an export that carries ScaledObjects (for the pools ``roles``, or all)."""
    sc = day_doc["scaling"]
    out = [f"KEDA ScaledObjects reproduce the plan's schedule ({sc['mode']} scaling, scale-up "
           f"{sc['scale_up_s']:g} s): KEDA installed, Prometheus scraping the {engine} pods at {PROMETHEUS} "
           "(change serverAddress and the pod selectors to your setup)"]
    for role, pol in (day_doc.get("autoscaling") or {}).items():
        if roles is not None and role not in roles:
            continue
        fit = (f"reproduces the schedule in all {pol['periods']} periods" if pol["exact"] else
               f"matches the schedule in {pol['matched']} of {pol['periods']} periods (more instances in "
               f"{pol['over']}, at most {pol['extra']} more)")
        out.append(f"{role}: scales on {pol['signal']} per instance, target {_num(pol['target'])}: {fit}")
    return out


def supported(engine: str) -> bool:
    return engine in METRICS


def for_source(src) -> tuple[dict | None, list]:
    """The plan's ``day`` section when the exporters can carry its autoscaling (the engine's
    metrics are named here), and the header notes to add either way."""
    day = (src.doc or {}).get("day")
    if not isinstance(day, dict) or not day.get("autoscaling"):
        return None, []
    e = src.engine.id
    if not supported(e):
        return None, [f"the plan's day schedule is not exported as autoscaling: pdplan names no Prometheus "
                      f"metrics of {e} (it does for {', '.join(METRICS)}); scale the pools by the plan's "
                      "day.schedule"]
    return day, notes(day, e)


def pod_selector(name: str) -> str:
    """PromQL label matchers of the pods a Deployment, LeaderWorkerSet or Dynamo component
    ``name`` runs (their names start with it; the ``pod`` label as kube-prometheus sets it)."""
    return f'pod=~"{name}-.*"'


__all__ = ["METRICS", "SIGNALS", "cron_triggers", "for_source", "latency_query", "notes", "pod_selector", "policy",
           "query", "scaled_object", "supported", "threshold"]
