"""The library surface, and the only facade: one function per command.

``recommend``, ``estimate``, ``evaluate_plan``, ``whatif``, ``simulate``, ``export``,
``calibrate``, ``kv_report``, ``step_report``, ``timeline``, ``validate`` (and
``catalog_entry``), besides the building blocks ``evaluate`` (metrics of a fixed deployment,
vectorised over request rates) and ``headroom``. :mod:`planner.inputs` turns option values into
the :class:`Inputs` and :class:`Deployment` they take; the records live in :mod:`planner.types`.
Plans for a day: ``load_profile``, ``plan_day``, ``evaluate_day``, ``simulate_day`` and
``whatif_day`` (:mod:`planner.day`).

The CLI calls these and renders what they return; nothing here prints. Results are plain
dataclasses and dicts in SI units; :mod:`planner.render` turns them into tables, JSON and YAML.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.catalog import Catalog, GPUSpec, ModelSpec, load_catalog
from planner.errors import InvalidRequestError
from planner.perf import StepModel, build_step_model, kv_link_for, kv_transfer_bytes  # noqa: F401  (kv_link_for re-exported)
from planner.serving.common import LaneResult, engine_side, request_latency
from planner.serving.common import step_model as _step_model
from planner.types import (  # noqa: F401  (re-exported: planner.api is the library's one facade)
    APPROACHES,
    DEFAULTS,
    PERCENTILES,
    SLO,
    Deployment,
    Inputs,
    Metrics,
    Plan,
    Pool,
)
from planner.workload import Workload, fixed

if TYPE_CHECKING:
    from planner.optimize import Recommendation
    from planner.perf.roofline import StepCost
    from planner.sim.stats import SimResult
    from planner.timeline import Timeline

SCHEMA_VERSION = 1

# ASCII digits, at most 9 of them (\d would take other scripts' digits; int() refuses 4,300+).
_SPEC = re.compile(r"^\s*([0-9]{1,9})\s*x\s*tp([0-9]{1,9})(?:dp([0-9]{1,9}))?(?:pp([0-9]{1,9}))?"
                   r"(?:ep([0-9]{1,9}))?(?:@([A-Za-z0-9_.\-]+))?\s*$")


def parse_spec(text: str, default_gpu: str, flag: str) -> tuple[int, int, int, str, int, int]:
    """``NxtpT[dpD][ppP][epE][@gpu]`` -> (instances, tp, pp, gpu, ep, dp). MoE only: ``epE``
    places whole experts on GPUs (``E`` equal to ``T``, or to ``T x D`` with ``dpD``); ``dpD``
    runs attention data-parallel on ``D`` ranks of ``T`` GPUs, the experts over all ``T x D``
    GPUs (``ep`` defaults to ``T x D`` then). Whether the model takes them is checked with the
    model (:func:`planner.perf.check_parallel`)."""
    from planner.units import shown

    m = _SPEC.match(str(text))
    if not m:
        raise InvalidRequestError(
            f"{flag}: cannot read {shown(text, 40)}; a deployment spec is NxtpT[dpD][ppP][epE][@gpu], "
            "e.g. 6xtp4, 2xtp8pp2@h200 or 1xtp1dp8ep8"
        )
    n, tp = int(m.group(1)), int(m.group(2))
    dp = int(m.group(3)) if m.group(3) else 1
    pp = int(m.group(4)) if m.group(4) else 1
    ep = int(m.group(5)) if m.group(5) else (tp * dp if dp > 1 else 1)
    if n < 1:
        raise InvalidRequestError(f"{flag}: {text!r}: the instance count must be at least 1")
    if tp < 1 or pp < 1 or dp < 1 or ep < 1:
        raise InvalidRequestError(f"{flag}: {text!r}: tp, dp, pp and ep must be at least 1")
    if dp == 1 and ep not in (1, tp):
        raise InvalidRequestError(f"{flag}: {text!r}: ep must equal tp ({tp}) or be left out")
    if dp > 1 and ep != tp * dp:
        raise InvalidRequestError(f"{flag}: {text!r}: with dp{dp} ep must be tp x dp ({tp * dp}) or be left out")
    if n > 100_000 or tp * dp * pp > 4096:
        raise InvalidRequestError(f"{flag}: {text!r}: more than 100,000 instances or 4,096 GPUs per instance")
    return n, tp, pp, (m.group(6) or default_gpu), ep, dp


# --------------------------------------------------------------------------------------------
# Evaluation of a deployment, vectorised over request rates
# --------------------------------------------------------------------------------------------


def step_model(inp: Inputs, pool: Pool) -> StepModel:
    """The step model of ``pool``'s instances (see :func:`planner.serving.common.step_model`)."""
    return _step_model(inp, pool)


def evaluate(inp: Inputs, dep: Deployment, qps, at_boundary: bool = False,
             percentiles=PERCENTILES) -> LaneResult:
    """The :class:`LaneResult` of ``dep`` at every rate in ``qps`` (1-D array), from the serving
    registry. ``at_boundary``: requests arrive at iteration boundaries (closed-loop clients
    without think time)."""
    from planner import serving

    return serving.evaluate(inp, dep, qps, at_boundary=at_boundary, percentiles=percentiles)


def _pick(arr, i):
    a = np.asarray(arr)
    return a.reshape(-1)[i] if a.ndim else a.item()


def metrics_at(r: LaneResult, qps: float, inp: Inputs, i: int = 0) -> Metrics:
    """The metrics of the ``i``-th rate of ``r`` (evaluated at ``qps``)."""
    g = lambda d: {k: float(_pick(v, i)) for k, v in d.items()}  # noqa: E731
    stable = bool(_pick(r.stable, i))
    sat = str(_pick(r.saturated, i)) or None
    return Metrics(
        ttft=g(r.ttft),
        tpot=g(r.tpot),
        itl_max_s=float(_pick(r.itl_max, i)),
        throughput_in_tok_s=qps * inp.workload.mean_isl if stable else 0.0,
        throughput_out_tok_s=qps * inp.workload.mean_osl if stable else 0.0,
        utilization=g(r.utilization),
        decode_batch=float(_pick(r.batch, i)),
        kv_used_tokens=float(_pick(r.kv_used, i)),
        kv_capacity_tokens=float(r.kv_capacity),
        stable=stable,
        saturated=sat,
        breakdown=g(r.breakdown),
        attainment=float(_pick(r.attain, i)),
        batch_cap=float(r.batch_cap),
        batch_cap_by=str(r.batch_cap_by),
        admission_wait_probability=float(_pick(r.admission_wait, i)),
    )


def meets_mask(r: LaneResult, slo: SLO):
    """Meets the SLO: the predicted share of requests within both the TTFT and the TPOT SLO
    (DistServe's attainment, phases taken as independent) is at least the percentile. This
    implies that both percentiles are within their SLOs."""
    return r.stable & (np.asarray(r.attain) >= slo.percentile / 100.0 - 1e-9)


def headroom(inp: Inputs, dep: Deployment, at: float | None = None) -> float:
    """The largest QPS at which ``dep`` still meets the SLO (0 if none). A fixed geometric grid
    (24 points a decade, 1e-4 to 1e5 QPS, so the answer does not depend on the rate asked) finds
    the last rate that meets it, then 65 evenly spaced rates up to the next grid point refine the
    answer to about 0.15%. ``at``: a rate known to meet the SLO (the one asked), added to the
    grid so that the answer is never below it."""
    grid = _HEADROOM_GRID
    if at is not None and grid[0] < at < grid[-1]:
        # (the answer is the last rate that meets the SLO, at least ``at``: the grid below it
        # cannot decide it and is not evaluated)
        grid = np.concatenate([[float(at)], grid[grid > at]])
    # (only the attainment decides: no percentiles are computed on these grids)
    ok = np.asarray(meets_mask(evaluate(inp, dep, grid, percentiles=()), inp.slo))
    if not ok.any():
        return headroom(inp, dep) if at is not None else 0.0
    last = len(ok) - 1 - int(np.argmax(ok[::-1]))
    if last == len(ok) - 1:
        return float(grid[-1])
    lo, hi = grid[last], grid[last + 1]
    fine = np.linspace(lo, hi, 65)
    okf = np.asarray(meets_mask(evaluate(inp, dep, fine, percentiles=()), inp.slo))
    return float(fine[okf][-1]) if okf.any() else float(lo)


_HEADROOM_GRID = 10.0 ** (np.arange(-96, 121) / 24.0)


def cost_per_hour(inp: Inputs, dep: Deployment) -> float:
    return sum(p.gpus * inp.catalog.gpu(p.gpu).price_per_hour for p in dep.pools)


def closed_loop(inp: Inputs, dep: Deployment) -> tuple[float, LaneResult]:
    """The throughput ``N`` closed-loop clients reach on ``dep``, and the metrics there
    (:func:`planner.serving.closed.solve`: the closed network's fixed point, saturation and
    cohorts)."""
    from planner.serving import closed

    sol = closed.solve(inp, dep)
    return sol.qps, sol.result


def estimate(inp: Inputs, dep: Deployment, with_headroom: bool = True) -> Plan:
    """Metrics of a fixed deployment at the workload's rate (or, for closed-loop clients, at the
    throughput they reach), the SLO check and the headroom. A calibration's per-request latency
    is added to the TTFTs (and taken off the TTFT SLO the engine must meet)."""
    if dep.approach not in APPROACHES:
        raise InvalidRequestError(f"--approach: unknown {dep.approach!r}; valid: {', '.join(APPROACHES)}")
    req = request_latency(inp)
    if req > 0:
        plan = estimate(engine_side(inp), dep, with_headroom)
        m = plan.metrics
        m.ttft = {k: v + req for k, v in m.ttft.items()}
        m.breakdown = dict(m.breakdown, ttft_request=req)
        plan.inputs = replace(plan.inputs, slo=inp.slo, calibration=inp.calibration)
        plan.reason = explain_single(plan)
        plan.ranges = likely_ranges(plan, _profile_residuals(inp))
        return plan
    if inp.workload.closed:
        lam, r = closed_loop(inp, dep)
        inp = replace(inp, workload=inp.workload.with_qps(lam))
    else:
        r = evaluate(inp, dep, [inp.workload.qps])
    m = metrics_at(r, inp.workload.qps, inp)
    ok = bool(np.asarray(meets_mask(r, inp.slo)).reshape(-1)[0])
    plan = Plan(inp, dep, m, ok, headroom(inp, dep, inp.workload.qps if ok else None) if with_headroom else math.nan,
                cost_per_hour(inp, dep), link=r.link)
    plan.decode_step, plan.layout = decode_step_at(inp, dep, m)
    plan.reason = explain_single(plan)
    plan.ranges = likely_ranges(plan, _profile_residuals(inp))
    return plan


def _profile_residuals(inp: Inputs) -> dict | None:
    """A calibration profile's leave-one-out residuals (what its likely ranges come from)."""
    prof = inp.profile
    return dict(prof.residuals) if prof is not None and getattr(prof, "residuals", None) else None


def likely_ranges(plan: Plan, profile_residuals: dict | None = None) -> dict:
    """The likely ranges of ``plan``'s metrics at the question's confidence, from the validation
    residuals of the same kind, GPU and load regime, or from ``profile_residuals`` (a calibration
    profile's leave-one-out log residuals per family; see :func:`planner.confidence.ranges`)."""
    from planner import confidence

    return confidence.plan_ranges(plan, profile_residuals=profile_residuals)


def decode_step_at(inp: Inputs, dep: Deployment, m: Metrics) -> tuple[dict, dict]:
    """The op-group breakdown of one decode iteration of the decoding pool's lane at the
    operating point (its mean batch per lane, at least one, and the mean decode context), and
    the layout facts of that pool: lanes per instance, KV capacity per attention rank."""
    from planner.serving.common import shape_of

    pool = next((p for p in dep.pools if p.role in ("decode", "unified")), dep.pools[0])
    sm = step_model(inp, pool)
    b = m.decode_batch if math.isfinite(m.decode_batch) and m.decode_batch > 0 else 1.0
    ctx = float(np.mean(shape_of(inp.workload).decode_context))
    cost = sm.decode(b, ctx)
    step = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in cost.breakdown.items()}
    layout = {"pool": pool.role, "lanes_per_instance": int(sm.lanes), "attention_ranks": int(sm.dp),
              "kv_capacity_tokens_per_rank": float(sm.kv_capacity_tokens / sm.dp),
              "kv_replicated_across_tp": bool(inp.model.is_mla and sm.tp > 1)}
    return step, layout


def explain_single(plan: Plan) -> str:
    m, slo = plan.metrics, plan.inputs.slo
    k = slo.key
    if not m.stable:
        return f"overloaded: the {m.saturated or 'deployment'} saturates first at {plan.inputs.workload.qps:g} QPS"
    if plan.meets_slo:
        return (f"meets both SLOs at P{slo.percentile}: TTFT {m.ttft[k] * 1e3:.0f} ms <= {slo.ttft_s * 1e3:.0f} ms, "
                f"TPOT {m.tpot[k] * 1e3:.1f} ms <= {slo.tpot_s * 1e3:.0f} ms")
    misses = []
    if m.ttft[k] > slo.ttft_s:
        misses.append(f"P{slo.percentile} TTFT {m.ttft[k] * 1e3:.0f} ms > {slo.ttft_s * 1e3:.0f} ms")
    if m.tpot[k] > slo.tpot_s:
        misses.append(f"P{slo.percentile} TPOT {m.tpot[k] * 1e3:.1f} ms > {slo.tpot_s * 1e3:.0f} ms")
    return "misses the SLO: " + "; ".join(misses)


# --------------------------------------------------------------------------------------------
# KV and step reports
# --------------------------------------------------------------------------------------------


@dataclass
class KVReport:
    model: ModelSpec
    seq_len: int
    kv_dtype: str
    bytes_per_token: float
    bytes: float
    transfer_s: dict  # link id -> seconds
    links: dict  # link id -> LinkSpec
    decode_step_s: float | None = None
    gpu: str | None = None
    batch: int | None = None
    slower_than_decode: list = field(default_factory=list)
    assumed: list = field(default_factory=list)  # the defaults filled in (model, KV dtype, ...)


def kv_report(catalog: Catalog, model: ModelSpec | str | None, seq_len: int | str,
              kv_dtype: str | None = None, gpu: GPUSpec | str | None = None, batch: int | None = None,
              tp: int | None = None, dtype: str | None = None) -> KVReport:
    """The KV cache of one ``seq_len``-token sequence (``2048`` or ``"2k"``) and its transfer
    time over every link; with ``gpu``, compared with a decode step of ``batch`` sequences at
    that context on the smallest TP that fits (or ``tp``). ``model`` is a spec, a catalog id or
    a config.json path (None: the default model); what is left out is filled in and listed in
    ``assumed``."""
    from planner.inputs import resolve_model
    from planner.units import parse_size

    assumed: list[str] = []
    spec = model if isinstance(model, ModelSpec) else resolve_model(catalog, {"model": model}, assumed)
    n = parse_size(seq_len, "--seq-len")
    if gpu is None:
        for flag, v in (("--batch", batch), ("--tp", tp), ("--dtype", dtype)):
            if v is not None:
                raise InvalidRequestError(f"{flag}: only with --gpu (the decode step it is compared with)")
    if kv_dtype is None:
        kv_dtype = spec.default_kv_dtype
        assumed.append(f"KV {kv_dtype}")
    gpu_spec = catalog.gpu(gpu, "--gpu") if isinstance(gpu, str) else gpu
    if gpu_spec is not None:
        if batch is None:
            assumed.append("batch 1")
        if dtype is None:
            dtype = spec.default_dtype
            assumed.append(f"dtype {dtype}")
    if spec.window_layers:  # sliding-window layers: KV per token at this sequence length
        spec = replace(spec, kv_context_tokens=float(n))
    nbytes = float(kv_transfer_bytes(spec, n, kv_dtype))
    transfer = {lid: float(link.transfer_time(nbytes)) for lid, link in sorted(catalog.links.items())}
    rep = KVReport(spec, n, kv_dtype, spec.kv_bytes_per_token(kv_dtype), nbytes, transfer,
                   dict(catalog.links), assumed=assumed)
    if gpu_spec is not None:
        b = batch or 1
        tp = tp or smallest_fitting_tp(catalog, spec, gpu_spec, dtype, kv_dtype)
        sm = build_step_model(catalog, spec, gpu_spec, tp, 1, dtype=dtype, kv_dtype=kv_dtype)
        sm.require_fit()
        rep.decode_step_s = float(sm.decode_time(b, n))
        rep.gpu, rep.batch = f"{gpu_spec.id} tp{tp}", b
        rep.slower_than_decode = [lid for lid, t in transfer.items() if t > rep.decode_step_s]
    return rep


def smallest_fitting_tp(catalog: Catalog, model: ModelSpec, gpu: GPUSpec, dtype, kv_dtype) -> int:
    for tp in (1, 2, 4, 8):
        if tp > gpu.gpus_per_node or not model.valid_tp(tp):
            continue
        sm = build_step_model(catalog, model, gpu, tp, 1, dtype=dtype, kv_dtype=kv_dtype)
        if sm.fits:
            return tp
    raise InvalidRequestError(
        f"--gpu: {model.id} does not fit one {gpu.id} node at any TP; use --dtype fp8 or a larger GPU"
    )


def default_inputs(catalog_dir: str | None = None, **kw) -> Inputs:
    """Inputs with the documented defaults (used by tests and benchmarks)."""
    cat = load_catalog(catalog_dir)
    model = cat.model(kw.get("model", DEFAULTS["model"]))
    wl = Workload(kw.get("qps", 10.0), fixed(kw.get("isl", DEFAULTS["isl"])),
                  fixed(kw.get("osl", DEFAULTS["osl"])))
    slo = SLO(kw.get("ttft_slo", DEFAULTS["ttft_slo"]), kw.get("tpot_slo", DEFAULTS["tpot_slo"]),
              kw.get("percentile", DEFAULTS["percentile"]))
    return Inputs(model, wl, slo, kw.get("dtype") or model.default_dtype,
                  kw.get("kv_dtype") or model.default_kv_dtype, cat, gpu=kw.get("gpu", DEFAULTS["gpu"]),
                  engine=cat.engine(kw.get("engine", DEFAULTS["engine"])))


__all__ = ["Inputs", "SLO", "Plan", "Deployment", "Pool", "KVReport", "StepReport", "Simulation",
           "calibrate", "catalog_entry", "default_inputs", "estimate", "evaluate", "evaluate_day",
           "evaluate_plan", "export", "fit_overhead", "headroom", "kv_report", "load_profile",
           "parse_spec", "plan_day", "recommend", "simulate", "simulate_day", "step_report",
           "timeline", "validate", "whatif", "whatif_day"]


# --------------------------------------------------------------------------------------------
# What-if grids
# --------------------------------------------------------------------------------------------

# Cells of a what-if grid are independent recommendations: grids of at least this many cells
# run on several processes (forked, so the catalog and the step-model caches are shared);
# PDPLAN_WORKERS=1 runs them in this process.
WHATIF_PARALLEL_CELLS = 8
_WHATIF_JOB: tuple | None = None


def whatif(cells: list, approaches, max_gpus: int, objective: str, on_cell=None) -> list:
    """One recommendation per cell, in order. ``cells``: ``(values, inputs, gpu ids)``. Returns
    rows ``{"values", "rec", "error", "nearest"}`` (``rec`` None where no plan fits).
    ``on_cell(i)`` is called as cell ``i`` completes (progress)."""
    global _WHATIF_JOB
    workers = _workers(len(cells))
    _WHATIF_JOB = (cells, tuple(approaches), max_gpus, objective)
    try:
        if workers <= 1:
            rows = []
            for i in range(len(cells)):
                rows.append(_whatif_cell(i))
                if on_cell:
                    on_cell(i + 1)
            return rows
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(workers, initializer=_quiet_worker)
        try:
            rows = []
            for row in pool.imap(_whatif_cell, range(len(cells)), chunksize=max(1, len(cells) // (4 * workers))):
                rows.append(row)
                if on_cell:
                    on_cell(len(rows))
            pool.close()
            return rows
        finally:
            pool.terminate()
            pool.join()
    finally:
        _WHATIF_JOB = None


def _workers(n: int) -> int:
    import os

    env = os.environ.get("PDPLAN_WORKERS")
    if env and env.strip().isdigit():
        return max(1, min(int(env), n))
    if n < WHATIF_PARALLEL_CELLS or not hasattr(os, "fork"):
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8, n))


def _quiet_worker() -> None:
    """Workers leave Ctrl-C to the parent, which stops them."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler would print a traceback


def _whatif_cell(i: int) -> dict:
    from planner.errors import NoFeasiblePlanError
    from planner.optimize import recommend

    assert _WHATIF_JOB is not None  # whatif() sets it before any worker runs
    cells, approaches, max_gpus, objective = _WHATIF_JOB
    values, inputs, gpus = cells[i]
    try:
        rec = recommend(inputs, gpus, approaches, max_gpus, objective, headroom=False)
        return {"values": values, "rec": replace(rec, cloud=[]), "error": None}
    except NoFeasiblePlanError as exc:
        return {"values": values, "rec": None, "error": str(exc).split("\n")[0],
                "nearest": [_portable(c) for c in exc.nearest]}


def _portable(c):
    """A candidate with its percentiles computed, without the closure (it crosses processes)."""
    pct = c._load()
    return replace(c, percentiles=None, _pct=pct)


def calibrate(catalog: Catalog, paths, *, model: str | None = None, gpu: str | None = None,
              tp: int | None = None, replicas: int = 1, engine: str | None = None,
              dtype: str | None = None, kv_dtype: str | None = None, fmt: str | None = None,
              constants: str | Sequence[str] | None = None, loo: bool = True):
    """Read benchmark results, fit the calibration constants (:mod:`planner.calibrate.fit`;
    ``constants``: which, see :func:`fit_constants`; default every one the data can pin) and
    return ``(report, profile, results)``. What the files state (model, GPU, TP, engine) fills
    what the arguments leave out; a result for another model than ``model`` is an error."""
    constants = fit_constants(constants)
    from planner.calibrate import read_results
    from planner.calibrate.fit import Setup, fit
    from planner.calibrate.profile import from_fit

    results = read_results(paths, fmt)
    stated = {r.model for r in results if r.model}
    if model is None:
        hits = {m.id for m in catalog.models.values() for s in stated if _same_model(m, s)}
        if len(hits) != 1:
            raise InvalidRequestError("--model: missing; the results name "
                                      + (", ".join(sorted(stated)) or "no model")
                                      + " (give the catalog id, e.g. --model llama-3.1-8b)")
        model = hits.pop()
    spec = catalog.model(model, "--model")
    for r in results:
        if r.model and not _same_model(spec, r.model):
            raise InvalidRequestError(f"{r.path}: row {r.row}: results for model {r.model!r}, not "
                                      f"--model {spec.id} ({(spec.raw or {}).get('hf_id') or spec.id})")
    gpu = gpu or next((r.gpu for r in results if r.gpu), None)
    if gpu is None:
        raise InvalidRequestError("--gpu: missing; the results do not name the GPU (e.g. --gpu h100-sxm)")
    g = catalog.gpu(gpu, "--gpu")
    tp = tp or next((r.tp for r in results if r.tp), None) or 1
    eng_id = engine or next((r.engine for r in results if r.engine in catalog.engines), None) or DEFAULTS["engine"]
    eng = catalog.engine(eng_id, "--engine")
    from planner.perf import check_parallel

    check_parallel(spec, g, tp, 1, "--tp")
    setup = Setup(catalog, spec, g.id, tp=int(tp), replicas=int(replicas), engine=eng,
                  dtype=dtype or spec.default_dtype, kv_dtype=kv_dtype or spec.default_kv_dtype)
    for r in results:
        if r.gpu and r.gpu != g.id or r.tp and r.tp != int(tp):
            raise InvalidRequestError(f"{r.path}: row {r.row}: measured on {r.gpu or g.id} tp{r.tp or tp}, "
                                      f"not --gpu {g.id} --tp {tp}; calibrate one deployment at a time")
    report = fit(results, setup, constants=constants, loo=loo)
    return report, from_fit(report, results, setup, eng.id), results


def _same_model(spec: ModelSpec, name: str) -> bool:
    """A results file's model name (an HF id, a path, a served-model name) is ``spec``: the
    last path part, without a ``Meta-`` prefix or an ``-Instruct``/``-Chat`` suffix, equals the
    catalog id's or its Hugging Face id's."""
    def norm(x: str) -> str:
        t = str(x).strip().rstrip("/").lower().split("/")[-1]
        for pre in ("meta-",):
            t = t[len(pre):] if t.startswith(pre) else t
        for suf in ("-instruct", "-chat", "-it"):
            t = t[: -len(suf)] if t.endswith(suf) else t
        return t

    ids = {spec.id, str((spec.raw or {}).get("hf_id") or "")} - {""}
    return norm(name) in {norm(i) for i in ids}


def export(plan_path: str, target: str, out_dir: str = ".", force: bool = False,
           catalog_dir: str | None = None) -> list[str]:
    """Write the engine configs or manifests of a plan file for ``target`` (vllm, sglang,
    trtllm, dynamo, llm-d, k8s) into ``out_dir`` and return the paths written; see
    :mod:`planner.export`. Existing files are replaced only with ``force``."""
    from planner.export import export as _export

    return _export(plan_path, target, out_dir, force=force, catalog_dir=catalog_dir)


# --------------------------------------------------------------------------------------------
# The commands' calls: recommend, simulate, evaluate_plan, step_report, timeline, validate
# --------------------------------------------------------------------------------------------


def recommend(inputs: Inputs, gpus: Sequence[str] | None = None,
              approaches: Sequence[str] = APPROACHES, max_gpus: int = 1024, objective: str = "gpus",
              *, verify: bool = False, requests: int = 20000, seed: int = 0) -> Recommendation:
    """The cheapest plan that meets the SLO among ``gpus`` (GPU ids; pools may mix them; default
    the inputs' GPU) and ``approaches``, within ``max_gpus``, minimising GPUs or dollars
    (``objective`` ``"gpus"``/``"cost"``), with the best plan of every other approach beside it
    (:func:`planner.optimize.recommend`). ``verify``: the discrete-event simulator checks the plan
    with ``requests`` requests and sizes it up where the analytic model was optimistic
    (:func:`planner.optimize.verify`; ``plan.verification`` has its verdict, SI units). Raises
    :class:`planner.errors.NoFeasiblePlanError` (with the nearest misses) when nothing fits."""
    from planner.optimize import recommend as search
    from planner.optimize import verify as check

    rec = search(inputs, list(gpus or [inputs.gpu]), tuple(approaches), max_gpus, objective)
    if verify:
        rec = check(inputs, rec, requests, seed, max_gpus)
    return rec


@dataclass
class Simulation:
    """A deployment through the discrete-event simulator, beside its analytic estimate."""

    plan: Plan  # the analytic estimate (api.estimate)
    result: SimResult  # the simulator's percentiles, attainment, throughput (SI units)
    requests: int  # requests simulated (the statistics may drop a warm-up share)
    seed: int


def simulate(inputs: Inputs, deployment: Deployment, requests: int = 20000, seed: int = 0) -> Simulation:
    """The analytic estimate of ``deployment`` and the discrete-event simulation of the same
    policies with ``requests`` requests drawn with ``seed`` (:func:`planner.sim.simulate`)."""
    plan = estimate(inputs, deployment)
    from planner.sim import simulate as run

    return Simulation(plan, run(inputs, deployment, requests, seed), int(requests), int(seed))


def evaluate_plan(path: str, qps: float | None = None, catalog_dir: str | None = None) -> Plan:
    """A plan file's metrics recomputed from the file alone (the catalog entries it embeds), at
    its own rate or at ``qps``, with the headroom (``pdplan evaluate``). At its own rate the plan
    keeps the file's ``reason`` (the search's sentence)."""
    from planner.plans import load_plan

    inputs, dep, doc = load_plan(path, qps=qps, catalog_dir=catalog_dir)
    plan = estimate(inputs, dep)
    if qps is None and isinstance(doc.get("reason"), str):
        plan.reason = doc["reason"]
    return plan


@dataclass
class StepReport:
    """One static forward pass on one instance (``pdplan step``)."""

    step_model: StepModel
    cost: StepCost  # time, FLOPs, bytes, what bounds it, op-group breakdown (SI units)
    phase: str  # "prefill" | "decode"
    tokens: int | None = None  # prefill: prompt tokens
    batch: int | None = None  # decode: sequences per attention rank
    context: int | None = None  # decode: mean context, tokens
    assumed: list = field(default_factory=list)


def step_report(catalog: Catalog, *, model: str | None = None, gpu: str | None = None,
                tp: int | None = None, pp: int = 1, dp: int = 1, ep: int | None = None,
                dtype: str | None = None, kv_dtype: str | None = None, engine: str | None = None,
                profile: str | None = None, force: bool = False,
                prefill_tokens: int | str | None = None, decode_batch: int | None = None,
                context: int | str | None = None) -> StepReport:
    """The time, FLOPs and bytes of one prefill of ``prefill_tokens`` tokens, or of one decode
    step of ``decode_batch`` sequences at mean ``context`` (give one), on one instance of
    ``model`` on ``gpu`` at ``tp`` (default: the smallest that fits one node), ``pp``, ``dp``
    attention ranks and ``ep``; ``profile``: a calibration profile's constants (``force``: even
    one fitted on another model or GPU). Sizes are tokens or text such as ``"2k"``."""
    from planner.errors import DoesNotFitError
    from planner.inputs import resolve_dtypes, resolve_engine, resolve_gpu, resolve_model
    from planner.perf import check_parallel
    from planner.units import parse_size

    if (prefill_tokens is None) == (decode_batch is None):
        raise InvalidRequestError("--prefill/--decode: give exactly one of --prefill N or --decode B --context L")
    if decode_batch is not None and context is None:
        raise InvalidRequestError("--context: missing; --decode B needs the mean context, e.g. --context 2176")
    if prefill_tokens is not None and context is not None:
        raise InvalidRequestError("--context: only with --decode")
    opts = {"model": model, "gpu": gpu, "dtype": dtype, "kv_dtype": kv_dtype, "engine": engine}
    assumed: list[str] = []
    spec = resolve_model(catalog, opts, assumed)
    g = catalog.gpu(resolve_gpu(catalog, opts, assumed), "--gpu")
    dtype, kv_dtype = resolve_dtypes(spec, opts, assumed)
    if tp is None:
        tp = smallest_fitting_tp(catalog, spec, g, dtype, kv_dtype)
        assumed.append(f"tp {tp}")
    eng = resolve_engine(catalog, opts, assumed)
    if ep is None:
        ep = tp * dp if dp > 1 else 1
    check_parallel(spec, g, tp, pp, "--tp/--dp/--ep", ep=ep, dp=dp)
    cal = None
    if profile:
        from planner.calibrate.profile import check_applies, load_profile

        prof = load_profile(profile)
        check_applies(prof, spec.id, [g.id], bool(force))
        cal = prof.calibration
    sm = build_step_model(catalog, spec, g, tp, pp, dtype=dtype, kv_dtype=kv_dtype, engine=eng,
                          ep=ep, dp=dp, calibration=cal)
    try:
        sm.require_fit()
    except DoesNotFitError as exc:
        raise DoesNotFitError(f"--tp: {exc}") from None
    if prefill_tokens is not None:
        n = parse_size(prefill_tokens, "--prefill")
        # With --dp every attention rank carries the same (the ranks step together).
        return StepReport(sm, sm.prefill(n, seqs=dp), "prefill", tokens=n, assumed=assumed)
    assert decode_batch is not None and context is not None  # checked above
    ctx_len = parse_size(context, "--context")
    return StepReport(sm, sm.decode(decode_batch * dp, ctx_len), "decode", batch=decode_batch,
                      context=ctx_len, assumed=assumed)


def timeline(catalog: Catalog, approach: str = "unified", *, chunk_size: int | str | None = None,
             requests: Sequence[str] = (), model: str | None = None, gpu: str | None = None,
             tp: int | None = None, dtype: str | None = None, kv_dtype: str | None = None,
             tick: float | str | None = None) -> tuple[Timeline, list[str]]:
    """The interference picture (``pdplan timeline``): ``requests`` (``"LEN[:OUT[@ARRIVAL]]"``
    each; default a short request decoding when a long one arrives) scheduled iteration by
    iteration under ``approach`` by the reference scheduler, in abstract ticks, or in real time
    on the step model of ``model`` on ``gpu`` at ``tp`` once any of those is given. Returns the
    :class:`planner.timeline.Timeline` and the defaults it assumed."""
    from planner import timeline as tlm
    from planner.units import parse_duration, parse_size

    real = any(v is not None for v in (model, gpu, tp, dtype, kv_dtype))
    if tick is not None and not real:
        raise InvalidRequestError("--tick: only in real time (with --model, --gpu or --tp)")
    clock: Any = tlm.TokenClock()
    info: dict = {}
    assumed: list[str] = []
    if real:
        from planner.errors import DoesNotFitError
        from planner.inputs import resolve_dtypes, resolve_gpu, resolve_model

        spec = resolve_model(catalog, {"model": model}, assumed)
        g = catalog.gpu(resolve_gpu(catalog, {"gpu": gpu}, assumed), "--gpu")
        dtype, kv_dtype = resolve_dtypes(spec, {"dtype": dtype, "kv_dtype": kv_dtype}, assumed)
        if tp is None:
            tp = smallest_fitting_tp(catalog, spec, g, dtype, kv_dtype)
            assumed.append(f"tp {tp}")
        sm = build_step_model(catalog, spec, g, tp, 1, dtype=dtype, kv_dtype=kv_dtype)
        try:
            sm.require_fit()
        except DoesNotFitError as exc:
            raise DoesNotFitError(f"--tp: {exc}") from None
        link, streams = None, 1
        if approach == "disaggregated":
            link, streams, where = kv_link_for(catalog, g, g, Pool("prefill", g.id, 1, tp),
                                               Pool("decode", g.id, 1, tp), None)
            info["link"] = f"{link.id} ({where}, {streams} streams, overlapped with the prefill)"
        clock = tlm.StepClock(sm, link, streams, spec.kv_bytes_per_token(kv_dtype))
        info.update(model=spec.id, gpu=g.id, tp=tp, dtype=dtype, kv_dtype=kv_dtype)
    chunk = None if chunk_size is None else parse_size(chunk_size, "--chunk-size")
    if approach == "chunked" and chunk is None:
        chunk = tlm.DEFAULT_CHUNK_REAL if real else tlm.DEFAULT_CHUNK_ABSTRACT
        assumed.append(f"chunk {chunk}")
    reqs = None
    if requests:
        reqs = []
        for text in requests:
            prompt, out, arrival = tlm.parse_request(text, real)
            reqs.append(tlm.Request(prompt, out, arrival or 0.0))
    tick_s = None if tick is None else parse_duration(tick, "--tick")
    tl = tlm.build(approach, reqs, clock, chunk, tick=tick_s, info=info)
    if not requests:
        def at(a: float) -> str:
            return f"{a * 1e3:.1f}ms" if a and real else f"{a:g}"

        assumed.append("requests " + " and ".join(f"{r.prompt}:{r.output}@{at(r.arrival)}"
                                                  for r in tl.requests))
    return tl, assumed


def validate(catalog: Catalog, dataset: str = "measurements", profile: str | None = None) -> Any:
    """Predicted versus published measurements (``pdplan validate``): the rows of ``dataset``
    (measurements, offline-grid, kernels, pass-grid, serving, deepseek) with their relative
    errors and a summary, or a calibration profile's own benchmark results predicted with and
    without it (:mod:`planner.validate`)."""
    from planner import validate as validation

    if profile:
        return validation.run_profile(catalog, profile)
    return validation.run(catalog, dataset=dataset)


def fit_overhead(catalog: Catalog) -> dict:
    """The per-iteration engine overhead refitted on the measurements, with its bounds and the
    loss at the catalog's value and at the fit (``pdplan validate --fit``)."""
    from planner import validate as validation

    return validation.fit_overhead(catalog)


def catalog_entry(catalog: Catalog, name: str) -> tuple[str, Any]:
    """``(kind, entry)`` of one catalog entry: a model, GPU or link by its id, or a Hugging Face
    config.json by its path (a name ending in ``.json``, starting with ``.`` or holding a path
    separator), imported as a model."""
    import os

    if name.endswith(".json") or os.sep in name or name.startswith("."):
        return "model", catalog.model(name, "catalog show")
    entry = catalog.get(name)
    kind = ("model" if name in catalog.models and catalog.models[name] is entry
            else "gpu" if name in catalog.gpus and catalog.gpus[name] is entry else "link")
    return kind, entry


def fit_constants(names: str | Sequence[str] | None) -> list[str] | None:
    """The calibration constants to fit, checked: ``"compute,memory"`` or a list of names
    (None: every one the data can pin)."""
    if names is None:
        return None
    from planner.calibrate.fit import CONSTANTS

    valid = [c[0] for c in CONSTANTS]
    given = names.split(",") if isinstance(names, str) else list(names)
    picked = [n.strip() for n in given if n.strip()]
    bad = [n for n in picked if n not in valid]
    if bad or not picked:
        shown = bad[0] if bad else (names if isinstance(names, str) else ",".join(names))
        raise InvalidRequestError(f"--fit: unknown constant {shown!r}; valid: {', '.join(valid)}")
    return picked


# --------------------------------------------------------------------------------------------
# A day: load profiles, schedules, the simulated day (planner.day)
# --------------------------------------------------------------------------------------------


def load_profile(text: str, period=None, flag: str = "--load-profile"):
    """A :class:`planner.day.profile.LoadProfile` from a named shape
    (``diurnal:peak=120,trough=30,peak_hour=14``), a table of periods (CSV/JSONL) or a request
    trace binned into periods of ``period`` (seconds, or a span such as ``"15m"``)."""
    from planner.day.profile import load_profile as _load

    return _load(text, period, flag)


def plan_day(inp: Inputs, profile, gpu_ids, approaches=APPROACHES, max_gpus: int = 1024,
             objective: str = "gpus", scaling=None, on_search=None):
    """The day's schedule (:class:`planner.day.schedule.DayPlan`): per period the pools that
    meet the SLO, under ``scaling`` (:class:`planner.day.schedule.Scaling`), with GPU-hours and
    cost against static peak provisioning, attainment with the scale-up lag and the
    autoscaling thresholds that reproduce it (:func:`planner.day.schedule.plan_day`)."""
    from planner.day.schedule import plan_day as _plan

    return _plan(inp, profile, gpu_ids, approaches, max_gpus, objective, scaling, on_search)


def evaluate_day(inp: Inputs, profile, deployments: list, scaling=None, specs=None) -> list:
    """The analytic day of a given schedule (one deployment per period): per period its
    metrics, lag window and attainment (:func:`planner.day.schedule.evaluate_day`)."""
    from planner.day.schedule import Scaling
    from planner.day.schedule import evaluate_day as _eval

    return _eval(inp, profile, deployments, scaling or Scaling(), specs)


def simulate_day(inp: Inputs, profile, deployments: list, scaling=None, requests: int = 20000,
                 seed: int = 0, specs=None, on_period=None):
    """The schedule through the discrete-event simulator, instances added and removed with the
    scale-up delay: attainment per period (:func:`planner.day.simulate.simulate_day`)."""
    from planner.day.schedule import Scaling
    from planner.day.simulate import simulate_day as _sim

    return _sim(inp, profile, deployments, scaling or Scaling(), requests, seed, specs, on_period)


def whatif_day(inp: Inputs, profile, peaks: list, gpu_ids, approaches=APPROACHES, max_gpus: int = 1024,
               objective: str = "gpus", scaling=None, on_cell=None) -> list:
    """One day plan per peak rate (the profile scaled or re-shaped so its busiest period is at
    it): rows ``{"values": {"peak": v}, "day", "error"}`` (``day`` None where none fits)."""
    from planner.errors import NoFeasiblePlanError

    rows = []
    for i, (label, peak) in enumerate(peaks):
        prof = profile.scaled(float(peak))
        try:
            rows.append({"values": {"peak": label}, "day": plan_day(inp, prof, gpu_ids, approaches, max_gpus,
                                                                    objective, scaling), "error": None})
        except NoFeasiblePlanError as exc:
            rows.append({"values": {"peak": label}, "day": None, "error": str(exc).split("\n")[0]})
        if on_cell:
            on_cell(i + 1)
    return rows
