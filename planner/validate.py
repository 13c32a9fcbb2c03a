"""Predicted versus published measurements (``pdplan validate``) and the efficiency fit.

The validation set is ``tests/data/measurements.yaml`` (shipped in the wheel as
``planner.validation``): published prefill latencies, decode step times, static-batch and
offline throughputs, each with its source. Every row is predicted from the roofline in
:mod:`planner.perf` with the catalog's default efficiencies; nothing here is fitted per row.

Kinds and how each is predicted:

* ``prefill``: one pass over ``batch`` prompts of ``isl`` tokens.
* ``decode_step``: one decode step of ``batch`` sequences at context ``isl + osl / 2``.
* ``static_throughput``: ``batch * osl`` tokens over (prefill + ``osl - 1`` decode steps at the
  mean context), per GPU when the unit says so.
* ``offline_throughput``: an engine at infinite request rate keeps ``B`` sequences in flight,
  ``B`` limited by KV memory and ``max_num_seqs``; each request costs its share of a batched
  prefill (prompts packed to an 8,192-token budget) plus ``osl`` decode steps shared by ``B``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from planner.catalog import (
    DTYPE_BYTES,
    Catalog,
    _builtin_dir,
    _load_yaml,
    load_catalog,
    parse_model,
)
from planner.errors import CatalogError
from planner.perf import build_step_model

KINDS = ("prefill", "decode_step", "static_throughput", "offline_throughput")
# Silicon kernel timings held out of the derivation of the efficiency constants
# (tests/data/kernels.yaml, written by benchmarks/derive_kernel_constants.py).
KERNEL_KINDS = ("kernel_gemm_bf16", "kernel_gemm_fp8", "kernel_gemm_fp4", "kernel_prefill_attention",
                "kernel_decode_attention", "kernel_moe")
# Whole passes summed from silicon kernel timings (tests/data/pass_grid.yaml, written by
# benchmarks/build_pass_grid.py): the step model's operator groups the tables cover.
PASS_KINDS = ("pass_prefill", "pass_decode")
PASS_GROUPS_NOT_MEASURED = ("elementwise", "overhead")
HEAD_DIM = 128  # the kernel tables' head dimension
OFFLINE_TOKEN_BUDGET = 8192


@dataclass
class Row:
    id: str
    kind: str
    model: str
    gpu: str
    dtype: str
    kv_dtype: str
    tp: int
    pp: int
    batch: int
    isl: int
    osl: int
    measured: float
    unit: str
    source: str
    trust: str
    predicted: float = math.nan
    error: float = math.nan  # (predicted - measured) / measured
    included: bool = True
    note: str = ""
    shape: dict = field(default_factory=dict)  # kernel rows: the kernel's shape
    engine: str = ""  # the engine the source ran (as the source names it)


@dataclass
class Report:
    rows: list
    summary: dict = field(default_factory=dict)


def data_dir() -> Path:
    return _builtin_dir("planner.validation", "tests/data")


def _read_set(path: Path):
    """A validation set file (a YAML list of rows)."""
    from planner.files import DATA_MAX_BYTES, read_yaml

    return read_yaml(path, str(path), "a validation set (a YAML list of rows)", CatalogError,
                     max_bytes=DATA_MAX_BYTES)


def load_rows(path: Path | None = None) -> tuple[list, dict]:
    """The measurement rows and the extra (validation-only) models."""
    d = data_dir()
    path = path or d / "measurements.yaml"
    data = _read_set(path)
    models = {}
    for p in sorted((d / "models").glob("*.yaml")):
        m = parse_model(p, _load_yaml(p))
        models[m.id] = m
    rows = []
    for e in data:
        rows.append(Row(
            id=str(e["id"]), kind=e["kind"], model=e["model"], gpu=e["gpu"], dtype=e["dtype"],
            kv_dtype=e["kv_dtype"], tp=int(e["tp"]), pp=int(e.get("pp", 1)), batch=int(e["batch"]),
            isl=int(e["isl"]), osl=int(e["osl"]), measured=float(e["measured"]), unit=e["unit"],
            source=str(e["source"]), trust=str(e.get("trust", "")), note=str(e.get("note") or ""),
            engine=str(e.get("engine") or "")))
    return rows, models


def engine_of(row: Row, cat: Catalog):
    """The engine profile of the engine a row's source ran: TensorRT-LLM's for its performance
    pages and blogs; none (the documented defaults) for the others (Splitwise's own engine)."""
    name = row.engine.lower()
    if ("trt" in name or "tensorrt" in name) and "trtllm" in cat.engines:
        return cat.engines["trtllm"]
    return None


def _model(cat: Catalog, extra: dict, name: str):
    return extra.get(name) or cat.models[name]


def predict(row: Row, cat: Catalog, extra: dict, gpus: dict | None = None) -> float:
    """The model's prediction of one row, in the row's unit."""
    from planner.serving.common import max_num_seqs

    model = _model(cat, extra, row.model)
    gpu = (gpus or cat.gpus)[row.gpu]
    sm = build_step_model(cat, model, gpu, row.tp, row.pp, dtype=row.dtype, kv_dtype=row.kv_dtype,
                          engine=engine_of(row, cat))
    ctx = row.isl + row.osl / 2.0
    if row.kind == "prefill":
        return float(sm.prefill_time(row.isl, 0, max(row.batch, 1))) * 1e3
    if row.kind == "decode_step":
        return float(sm.decode_time(max(row.batch, 1), ctx)) * 1e3
    n_gpu = row.tp * row.pp
    per_gpu = row.unit.endswith("per_gpu")
    if row.kind == "static_throughput":
        b: float = max(row.batch, 1)
        t = float(sm.prefill_time(row.isl, 0, b)) + (row.osl - 1) * float(sm.decode_time(b, ctx))
        tput = b * row.osl / t
        return tput / n_gpu if per_gpu else tput
    if row.kind == "offline_throughput":
        cap = sm.kv_capacity_tokens / (row.isl + row.osl)
        b = max(1.0, min(cap, float(max_num_seqs(sm))))
        seqs = max(1, OFFLINE_TOKEN_BUDGET // row.isl)
        pf = float(sm.prefill_time(row.isl, 0, seqs)) / seqs
        t = row.osl * float(sm.decode_time(b, ctx)) + b * pf
        tput = b * row.osl / t
        return tput / n_gpu if per_gpu else tput
    raise CatalogError(f"validation row {row.id}: unknown kind {row.kind!r}")


DATASETS = {"measurements": "measurements.yaml", "offline-grid": "offline_grid.yaml",
            "kernels": "kernels.yaml", "serving": "serving.yaml", "deepseek": "deepseek.yaml",
            "pass-grid": "pass_grid.yaml"}

# Published serving runs (tests/data/serving.yaml): one row per (operating point, metric).
SERVING_METRICS = {  # measured key -> (kind, predicted from)
    "ttft_ms_mean": ("serving_ttft_mean", ("ttft", "mean")),
    "ttft_ms_p50": ("serving_ttft_p50", ("ttft", "p50")),
    "ttft_ms_p90": ("serving_ttft_p90", ("ttft", "p90")),
    "ttft_ms_p99": ("serving_ttft_p99", ("ttft", "p99")),
    "tpot_ms_mean": ("serving_tpot_mean", ("tpot", "mean")),
    "itl_ms_mean": ("serving_tpot_mean", ("tpot", "mean")),  # mean ITL = mean TPOT
    "tpot_ms_p50": ("serving_tpot_p50", ("tpot", "p50")),
    "tpot_ms_p90": ("serving_tpot_p90", ("tpot", "p90")),
    "tpot_ms_p99": ("serving_tpot_p99", ("tpot", "p99")),
    "output_tok_s": ("serving_throughput", ("throughput", None)),
    # The rate the run held its published latency constraints at (MLPerf: the scheduled QPS of a
    # VALID Server run, each of P99 TTFT and P99 TPOT within its bound) against the largest rate
    # at which pdplan predicts both P99s within them: the planner's capacity answer.
    "max_qps_within_slo": ("serving_max_qps", ("max_qps", None)),
}
SERVING_KINDS = tuple(dict.fromkeys(k for k, _ in SERVING_METRICS.values()))
# The engine each source's runs used; the approach is the engine's default (TensorRT-LLM's
# in-flight batching without chunked context, vLLM's and SGLang's chunked prefill).
SERVING_ENGINES = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm"}


# What a row may say the run's engine was configured with, beyond the profile's defaults (from
# the submitter's own configuration files; each row's note names them).
ENGINE_SETTINGS = {"max_num_batched_tokens": int, "max_num_seqs": int, "memory_fraction": float,
                   "chunked_prefill": bool, "kv_admission": str, "kv_block_tokens": int,
                   "overlap_schedule": bool}


def _engine_settings(e: dict) -> dict:
    raw = e.get("engine_settings") or {}
    if not isinstance(raw, dict):
        raise CatalogError(f"serving row {e.get('id')}: engine_settings: must be a mapping")
    out = {}
    for k, v in raw.items():
        if k not in ENGINE_SETTINGS:
            raise CatalogError(f"serving row {e.get('id')}: engine_settings: unknown key {k!r}; "
                               f"valid: {', '.join(ENGINE_SETTINGS)}")
        out[k] = ENGINE_SETTINGS[k](v)
    if out.get("kv_admission", "incremental") not in ("incremental", "reserve_full"):
        raise CatalogError(f"serving row {e.get('id')}: engine_settings.kv_admission: incremental or reserve_full")
    return out


def load_serving_rows(path: Path) -> tuple[list, list]:
    """The serving set as one row per (operating point, metric), and the points that cannot be
    predicted with the reason (lengths not stated, an engine pdplan has no profile of, ...)."""
    data = _read_set(path)
    rows, skipped = [], []
    for e in data:
        why = None
        if e.get("isl") is None or e.get("osl") is None:
            why = "mean input/output lengths not stated in the source"
        elif e.get("load") not in ("poisson", "closed"):
            why = f"load {e.get('load')!r} (offline runs are the offline-throughput sets' job)"
        elif str(e.get("engine")) not in SERVING_ENGINES:
            why = f"engine {e.get('engine')!r} has no profile"
        elif e.get("tp") is None:
            # (a multi-GPU system predicted as one GPU would be "called unstable" for nothing)
            why = "parallel layout (TP, replicas) not stated in the source"
        if why:
            skipped.append((str(e["id"]), why))
            continue
        derived = set(e.get("derived_metrics") or ())  # lengths derived from these: no check
        metrics = dict(e.get("metrics") or {})
        slo = e.get("slo") or {}
        if (e.get("load") == "poisson" and e.get("sustained") and e.get("qps")
                and slo.get("ttft_ms_p99") and slo.get("tpot_ms_p99")):
            metrics["max_qps_within_slo"] = float(e["qps"])
        for key, value in metrics.items():
            if key not in SERVING_METRICS or value is None or key in derived:
                continue
            kind = SERVING_METRICS[key][0]
            rows.append(Row(
                id=f"{e['id']}:{key}", kind=kind, model=str(e["model"]), gpu=str(e["gpu"]),
                dtype=str(e.get("dtype") or ""), kv_dtype=str(e.get("kv_dtype") or ""),
                tp=int(e.get("tp") or 1), pp=int(e.get("pp") or 1), batch=int(e.get("concurrency") or 0),
                isl=int(e["isl"]), osl=int(e["osl"]), measured=float(value),
                unit={"serving_throughput": "tok_s", "serving_max_qps": "req_s"}.get(kind, "ms"),
                source=str(e["source"]),
                trust=str(e.get("trust", "")), note=str(e.get("note") or ""),
                shape={"engine": SERVING_ENGINES[str(e["engine"])], "load": e["load"],
                       "qps": e.get("qps"), "concurrency": e.get("concurrency"),
                       "replicas": int(e.get("replicas") or 1), "metric": key,
                       "dp": int(e.get("dp") or 1), "ep": int(e.get("ep") or 1),
                       "sustained": e.get("sustained"), "point": str(e["id"]),
                       "isl_cv": e.get("isl_cv"), "engine_settings": _engine_settings(e),
                       "slo": slo}))
    return rows, skipped


_SERVING_CACHE: dict = {}


def predict_serving(row: Row, cat: Catalog, extra: dict) -> float:
    """One published serving metric from the serving model at the run's load (the approach the
    engine runs by default, the lengths fixed at the published means)."""
    plan = serving_plan(row, cat, extra)
    what, stat = SERVING_METRICS[row.shape["metric"]][1]
    if what == "max_qps":
        return _max_qps_within(plan, row.shape["slo"])
    if what == "throughput":
        return plan.metrics.throughput_out_tok_s if plan.metrics.stable else 0.0
    v = getattr(plan.metrics, what)[stat]
    return float(v) * 1e3


def serving_plan(row: Row, cat: Catalog, extra: dict):
    """The estimated plan of a serving row's operating point (cached per point; the metrics
    :func:`predict_serving` reads, and the utilisation the confidence ranges bucket by)."""
    from planner import api
    from planner.serving.common import Deployment, Pool
    from planner.workload import LengthDist, Workload, fixed

    sh = row.shape
    key = (sh["point"],)
    if key not in _SERVING_CACHE:
        model = _model(cat, extra, row.model)
        engine = cat.engines[sh["engine"]]
        if sh.get("engine_settings"):  # the run's own configuration overrides the defaults
            g = cat.gpus[row.gpu]
            base = {"max_num_batched_tokens": engine.token_budget(g), "max_num_seqs": engine.max_seqs(g)}
            engine = replace(engine, large_gpu={}, **{**base, **sh["engine_settings"]})
        # (FP16 weights cost what BF16 ones do; a dtype the source does not state is the model's)
        dtype = {"fp16": "bf16"}.get(row.dtype, row.dtype)
        dtype = dtype if dtype in ("bf16", "fp8", "fp4", "int4") else model.default_dtype
        kv = row.kv_dtype if row.kv_dtype in ("bf16", "fp8") else (
            "fp8" if dtype in ("fp8", "fp4") and sh["engine"] == "trtllm" else model.default_kv_dtype)
        closed = sh["load"] == "closed"
        # Prompt lengths spread as the benchmark's dataset does where the source gives its CV
        # (lognormal with that mean and CV), else fixed at the mean; outputs at their mean.
        isl = (LengthDist("lognormal", float(row.isl), cv=float(sh["isl_cv"]))
               if sh.get("isl_cv") else fixed(row.isl))
        wl = Workload(float(sh["qps"] or 1.0), isl, fixed(row.osl),
                      concurrency=int(sh["concurrency"]) if closed else None)
        inp = api.Inputs(model, wl, api.SLO(1.0, 0.05), dtype, kv, cat, gpu=row.gpu, engine=engine)
        approach = "chunked" if engine.chunked_prefill else "unified"
        pool = Pool("unified", row.gpu, sh["replicas"], row.tp, row.pp, sh.get("ep", 1), sh.get("dp", 1))
        dep = Deployment(approach, (pool,), chunk_size=engine.token_budget(cat.gpus[row.gpu])
                         if approach == "chunked" else None)
        plan = api.estimate(inp, dep, with_headroom=False)
        if len(_SERVING_CACHE) > 512:
            _SERVING_CACHE.clear()
        _SERVING_CACHE[key] = plan
    return _SERVING_CACHE[key]


def _max_qps_within(plan, slo: dict) -> float:
    """The largest rate (of a geometric grid, 96 a decade from 1/20 to 20 times the run's, then 33
    even steps inside the bracket) at which the plan's deployment keeps P99 TTFT and P99 TPOT each
    within the run's published bound (0 if none)."""
    from planner import api

    inp, dep = plan.inputs, plan.deployment
    q0 = float(inp.workload.qps)
    t_max, p_max = float(slo["ttft_ms_p99"]) / 1e3, float(slo["tpot_ms_p99"]) / 1e3

    def ok(rates):
        r = api.evaluate(inp, dep, rates, percentiles=(99,))
        return (np.asarray(r.stable) & (np.asarray(r.ttft["p99"]) <= t_max)
                & (np.asarray(r.tpot["p99"]) <= p_max))

    grid = q0 * 10.0 ** (np.arange(-125, 126) / 96.0)
    good = ok(grid)
    if not good.any():
        return 0.0
    last = len(good) - 1 - int(np.argmax(good[::-1]))
    if last == len(good) - 1:
        return float(grid[-1])
    fine = np.linspace(grid[last], grid[last + 1], 33)
    gf = ok(fine)
    return float(fine[gf][-1]) if gf.any() else float(grid[last])


def load_kernel_rows(path: Path) -> list:
    """The held-out silicon kernel timings (``tests/data/kernels.yaml``) as rows."""
    data = _read_set(path)
    rows = []
    for i, e in enumerate(data):
        shape = {k: v for k, v in e.items() if k not in ("kind", "gpu", "source", "measured_us")}
        kv = str(e.get("kv_dtype", "bf16"))
        dt = {"kernel_gemm_fp8": "fp8", "kernel_gemm_fp4": "fp4"}.get(e["kind"]) or (
            "fp8" if e.get("dtype") == "fp8" else "bf16")
        rows.append(Row(id=f"{e['kind']}-{e['gpu']}-{i}", kind=e["kind"], model="(kernel)", gpu=e["gpu"],
                        dtype=dt, kv_dtype=kv, tp=1, pp=1,
                        batch=int(e.get("batch", e.get("m", e.get("tokens", 1)))),
                        isl=int(e.get("isl", e.get("context", 0))), osl=0, measured=float(e["measured_us"]),
                        unit="us", source=str(e["source"]), trust="A", shape=shape))
    return rows


def predict_kernel(row: Row, gpu) -> float:
    """One silicon kernel timing from the efficiency models alone (microseconds)."""
    from planner.perf import efficiency as eff

    e, sh = gpu.efficiency, row.shape
    if row.kind.startswith("kernel_gemm"):
        dt = row.dtype  # bf16, fp8, or fp4 as the step model runs it: NVFP4 weights on the FP8
        # constants at the FP4 peak, activations in FP8
        w = {"bf16": 2.0, "fp8": 1.0}.get(dt, DTYPE_BYTES.get(dt, 2.0))
        t = eff.gemm_time(sh["m"], sh["n"], sh["k"], peak=gpu.flops_for(dt),
                          hbm=gpu.hbm_bytes_per_s, sms=gpu.sm_count, g=e.gemm(dt), w_bytes=w,
                          a_bytes=min(w, 1.0) if dt == "fp4" else w, quantise=dt != "bf16")
    elif row.kind == "kernel_prefill_attention":
        b, s, h = sh["batch"], sh["isl"], sh["heads"]
        t = eff.prefill_attention_time(4.0 * b * h * HEAD_DIM * s * s / 2.0, s, b * h * math.ceil(s / 128),
                                       peak=gpu.peak_flops["bf16"], sms=gpu.sm_count, a=e.prefill)
    elif row.kind == "kernel_decode_attention":
        fp8 = row.kv_dtype == "fp8"
        t = eff.decode_attention_time(sh["batch"], sh["context"], sh["heads"], sh["kv_heads"], d=e.decode,
                                      hbm=gpu.hbm_bytes_per_s, fp8=fp8, head_dim=HEAD_DIM,
                                      kv_bytes=1.0 if fp8 else 2.0)
    elif row.kind == "kernel_moe":
        fp8 = row.dtype == "fp8" and "fp8" in gpu.peak_flops
        groups, rows = eff.moe_layout(float(sh["tokens"]), sh["experts"], sh["topk"], sh["moe_ep"])
        width = sh["width"] / sh["moe_tp"]
        perm = 2.0 * 2.0 * sh["tokens"] * sh["topk"] * sh["hidden"] * 2.0 / sh["moe_ep"]
        b = 1.0 if row.dtype == "fp8" else 2.0
        t = eff.moe_experts_time(rows, groups, 2 * width, width, sh["hidden"],
                                 peak=gpu.peak_flops["fp8" if fp8 else "bf16"], hbm=gpu.hbm_bytes_per_s,
                                 sms=gpu.sm_count, g=e.gemm(row.dtype), moe=e.moe, w_bytes=b, a_bytes=b,
                                 quantise=fp8, perm_bytes=perm)
    else:
        raise CatalogError(f"validation row {row.id}: unknown kind {row.kind!r}")
    return float(t) * 1e6


def load_pass_rows(path: Path) -> list:
    """The single-pass grid (``tests/data/pass_grid.yaml``) as rows; ``shape`` keeps the
    measured components and the table set (``tables``) each row was summed from."""
    rows = []
    for e in _read_set(path):
        rows.append(Row(id=str(e["id"]), kind=e["kind"], model=e["model"], gpu=e["gpu"], dtype="bf16",
                        kv_dtype="bf16", tp=int(e["tp"]), pp=1, batch=int(e["batch"]), isl=int(e["isl"] or e["context"]),
                        osl=0, measured=float(e["measured_ms"]), unit="ms", source=str(e["source"]),
                        trust="A", engine=str(e["tables"]),
                        shape={"context": int(e["context"]), "tables": str(e["tables"]),
                               "components_ms": dict(e["components_ms"])}))
    return rows


def pass_breakdown(row: Row, cat: Catalog) -> dict:
    """The step model's per-group milliseconds of one pass-grid row (all groups)."""
    sm = build_step_model(cat, cat.models[row.model], cat.gpus[row.gpu], row.tp, dtype="bf16",
                          kv_dtype="bf16")
    if row.kind == "pass_prefill":
        cost = sm.prefill(row.isl, 0, row.batch)
    else:
        cost = sm.decode(row.batch, row.shape["context"])
    return {k: float(v) * 1e3 for k, v in cost.breakdown.items()}


def predict_pass(row: Row, cat: Catalog) -> float:
    """One pass-grid row: the step model's time without the groups no kernel table measures."""
    parts = pass_breakdown(row, cat)
    return sum(v for k, v in parts.items() if k not in PASS_GROUPS_NOT_MEASURED)


# DeepSeek-class deployments (data-parallel attention, wide expert parallelism): published
# single-phase throughputs and end-to-end runs, tests/data/deepseek.yaml (its header has the
# schema and the exclusions). Kind -> unit.
EP_KINDS = {"ep_prefill_throughput": "tok_s", "ep_decode_throughput": "tok_s", "ep_decode_tpot": "ms",
            "ep_e2e_throughput": "tok_s"}


def load_deepseek_rows(path: Path) -> tuple[list, list]:
    """The DeepSeek-class set as rows, and the ones pdplan cannot express with the reason (a
    GPU or model not in the catalog, redundant experts, speculative decoding, lengths missing)."""
    data = _read_set(path)
    rows, skipped = [], []
    for e in data:
        kind = str(e.get("kind"))
        why = None
        if not e.get("expressible"):
            note = str(e.get("note") or "")
            why = note.split(".")[0] if note.startswith("Not expressible") else "not expressible in pdplan"
        elif e.get("mtp"):
            why = "speculative decoding (MTP): not in this set's predictions"
        elif kind not in EP_KINDS:
            why = f"kind {kind!r}"
        elif kind == "ep_prefill_throughput" and not e.get("isl"):
            why = "prompt length not stated"
        elif kind in ("ep_decode_throughput", "ep_decode_tpot") and not (e.get("batch_per_rank") and e.get("context")):
            why = "batch per rank or context not stated"
        elif kind == "ep_e2e_throughput" and not (e.get("isl") and e.get("osl") and e.get("concurrency")):
            why = "lengths or concurrency not stated"
        if why:
            skipped.append((str(e["id"]), why))
            continue
        rows.append(Row(
            id=str(e["id"]), kind=kind, model=str(e["model"]), gpu=str(e["gpu"]),
            dtype=str(e.get("dtype") or ""), kv_dtype=str(e.get("kv_dtype") or ""),
            tp=int(e.get("tp") or 1), pp=int(e.get("pp") or 1), batch=int(e.get("batch_per_rank") or 0),
            isl=int(e.get("isl") or 0), osl=int(e.get("osl") or 0), measured=float(e["measured"]),
            unit=EP_KINDS[kind], source=str(e["source"]), trust=str(e.get("trust", "")),
            note=str(e.get("note") or ""), engine=str(e.get("engine") or ""),
            shape={"dp": int(e.get("dp") or 1), "ep": int(e.get("ep") or 1),
                   "context": e.get("context"), "tokens_per_rank": e.get("tokens_per_rank"),
                   "concurrency": e.get("concurrency"), "overlap": e.get("overlap")}))
    return rows, skipped


def predict_deepseek(row: Row, cat: Catalog) -> float:
    """One DeepSeek-class measurement from the step model (single phases, every attention rank
    as loaded as the measurement states) or the closed-loop serving model (end to end)."""
    from planner import api
    from planner.serving.common import Deployment, Pool
    from planner.workload import Workload, fixed

    sh = row.shape
    model, gpu = cat.model(row.model), cat.gpus[row.gpu]
    dtype = row.dtype if row.dtype in ("bf16", "fp8", "fp4", "int4") else model.default_dtype
    kv = row.kv_dtype if row.kv_dtype in ("bf16", "fp8") else model.default_kv_dtype
    name = row.engine.lower()
    engine = cat.engines.get(name if name in cat.engines else "vllm")
    dp, ep = sh["dp"], sh["ep"]
    if row.kind == "ep_e2e_throughput":
        g = cat.gpus[row.gpu]
        assert engine is not None  # the built-in catalog has vllm
        over = {"max_num_seqs": row.batch or engine.max_seqs(g)}
        if sh.get("tokens_per_rank"):
            over["max_num_batched_tokens"] = int(sh["tokens_per_rank"])
        engine = replace(engine, large_gpu={}, **over)
        wl = Workload(1.0, fixed(row.isl), fixed(row.osl), concurrency=int(sh["concurrency"]))
        inp = api.Inputs(model, wl, api.SLO(60.0, 10.0), dtype, kv, cat, gpu=row.gpu, engine=engine)
        approach = "chunked" if engine.chunked_prefill else "unified"
        pool = Pool("unified", row.gpu, 1, row.tp, row.pp, ep, dp)
        dep = Deployment(approach, (pool,), chunk_size=engine.token_budget(g) if approach == "chunked" else None)
        plan = api.estimate(inp, dep, with_headroom=False)
        return plan.metrics.throughput_out_tok_s / pool.gpus if plan.metrics.stable else 0.0
    sm = build_step_model(cat, model, gpu, row.tp, row.pp, dtype=dtype, kv_dtype=kv, ep=ep, dp=dp, engine=engine)
    if row.kind == "ep_prefill_throughput":
        # Prompt tokens a rank carries per iteration as stated, else one prompt a rank.
        per_rank = max(int(sh.get("tokens_per_rank") or row.isl) // row.isl, 1)
        t = float(sm.prefill_time(row.isl, 0, per_rank * dp))
        return per_rank * row.isl / t / row.tp
    t = float(sm.decode_time(row.batch * dp, float(sh["context"])))
    if row.kind == "ep_decode_tpot":
        return t * 1e3
    return row.batch / t / row.tp


def run(catalog: Catalog | None = None, gpus: dict | None = None,
        dataset: str = "measurements") -> Report:
    """Predict every row of a validation set: ``measurements`` (the curated set the efficiency
    fit uses) or ``offline-grid`` (the rest of the TensorRT-LLM offline grids, out of sample)."""
    cat = catalog or load_catalog()
    skipped: list = []
    if dataset == "kernels":
        rows, extra = load_kernel_rows(data_dir() / DATASETS[dataset]), {}
    elif dataset == "serving":
        rows, skipped = load_serving_rows(data_dir() / DATASETS[dataset])
        extra = load_rows()[1]
        _SERVING_CACHE.clear()
    elif dataset == "deepseek":
        rows, skipped = load_deepseek_rows(data_dir() / DATASETS[dataset])
        extra = {}
    elif dataset == "pass-grid":
        rows, extra = load_pass_rows(data_dir() / DATASETS[dataset]), {}
    else:
        rows, extra = load_rows(data_dir() / DATASETS[dataset])
    out = []
    for r in rows:
        try:
            if r.kind in KERNEL_KINDS:
                p = predict_kernel(r, (gpus or cat.gpus)[r.gpu])
            elif r.kind in SERVING_KINDS:
                p = predict_serving(r, cat, extra)
            elif r.kind in EP_KINDS:
                p = predict_deepseek(r, cat)
            elif r.kind in PASS_KINDS:
                p = predict_pass(r, cat)
            else:
                p = predict(r, cat, extra, gpus)
        except Exception as exc:  # a row the model cannot express (e.g. does not fit)
            out.append(replace(r, included=False, note=f"not predicted: {exc}"))
            continue
        if not math.isfinite(p) or p <= 0:
            # called unstable (or nothing served): counted apart, not as an error
            out.append(replace(r, predicted=p, included=False,
                               note="called unstable" + (" (the engine sustained it)" if r.shape.get("sustained") else "")))
            continue
        out.append(replace(r, predicted=p, error=(p - r.measured) / r.measured))
    rep = Report(out, summarize(out))
    if dataset == "deepseek":
        rep.summary["points"] = len(rows) + len(skipped)
        rep.summary["points_predicted"] = len(rows)
        rep.summary["skipped"] = [{"id": i, "why": w} for i, w in skipped]
        # The target is judged where the setup is fully stated (trust A).
        rep.summary["fully_stated"] = _stats([r for r in out if r.included and np.isfinite(r.error)
                                              and r.trust == "A"])
    if dataset == "pass-grid":
        by_tab: dict = {}
        for r in out:
            if r.included and np.isfinite(r.error):
                by_tab.setdefault(f"{r.shape['tables']} {r.kind}", []).append(r)
        rep.summary["by_source_kind"] = {k: _stats(v) for k, v in sorted(by_tab.items())}
    if dataset == "serving":
        pts = {r.shape["point"]: r for r in out}
        rep.summary["points"] = len(pts) + len(skipped)
        rep.summary["points_predicted"] = len(pts)
        rep.summary["skipped"] = [{"id": i, "why": w} for i, w in skipped]
        unstable = sorted({r.shape["point"] for r in out if r.note.startswith("called unstable")})
        rep.summary["called_unstable"] = unstable
        rep.summary["called_unstable_sustained"] = sorted(
            {r.shape["point"] for r in out if r.note.startswith("called unstable") and r.shape.get("sustained")})
        by_src: dict = {}
        for r in out:
            if r.included and np.isfinite(r.error):
                by_src.setdefault(f"{r.id.split('-')[0]} {r.kind}", []).append(r)
        rep.summary["by_source_kind"] = {k: _stats(v) for k, v in sorted(by_src.items())}
    return rep


def _stats(sel):
    e = np.abs([r.error for r in sel])
    if not len(e):
        return {"count": 0}
    return {"count": int(len(e)), "median_abs_error": float(np.median(e)),
            "mean_abs_error": float(np.mean(e)), "p90_abs_error": float(np.percentile(e, 90)),
            "median_signed_error": float(np.median([r.error for r in sel]))}


def summarize(rows: list) -> dict:
    inc = [r for r in rows if r.included and np.isfinite(r.error)]
    stats = _stats
    s = stats(inc)
    kinds = [k for k in (*KINDS, *KERNEL_KINDS, *SERVING_KINDS, *EP_KINDS, *PASS_KINDS) if any(r.kind == k for r in rows)]
    s["by_kind"] = {k: stats([r for r in inc if r.kind == k]) for k in kinds}
    s["by_kind_gpu"] = {f"{k} {g}": stats(sel) for k in kinds for g in sorted({r.gpu for r in inc})
                        if (sel := [r for r in inc if r.kind == k and r.gpu == g])}
    s["by_gpu"] = {g: stats([r for r in inc if r.gpu == g]) for g in sorted({r.gpu for r in inc})}
    s["excluded"] = len(rows) - len(inc)
    return s


def as_dict(row: Row) -> dict:
    d = asdict(row)
    for k in ("predicted", "error"):
        if not np.isfinite(d[k]):
            d[k] = None
    return d


# --------------------------------------------------------------------------------------------
# Fitting the efficiency defaults
# --------------------------------------------------------------------------------------------

# The one end-to-end fitted constant of the step model: the per-iteration engine overhead
# (planner.perf.roofline.ITERATION_OVERHEAD_S), shared by every GPU, within these bounds.
OVERHEAD_BOUNDS_S = (0.0, 3e-3)


def group_of(row: Row) -> str:
    """Rows from one source and of one kind form a group; the fit weighs groups equally so
    that a large table from one engine does not drown the others."""
    return f"{row.id.split('-')[0]}/{row.kind}"


# Groups validated but not fitted: the Splitwise profile's decode steps carry a floor of 28-55 ms
# per step that does not move with batch or TP (TP4 -> TP8 at batch 1: no speed-up on either
# GPU), the signature of an engine without CUDA graphs or custom all-reduce. pdplan models an
# engine that has both (vLLM, SGLang, TensorRT-LLM today).
NOT_FITTED = {"SPLITWISE/decode_step", "SPLITWISE/prefill"}
def fit_overhead(catalog: Catalog | None = None) -> dict:
    """Fit the per-iteration overhead on the in-sample rows: minimise the group-balanced mean of
    ``|log(predicted / measured)|`` over ``OVERHEAD_BOUNDS_S`` (bounded scalar search)."""
    from scipy.optimize import minimize_scalar

    from planner.perf import roofline

    cat = catalog or load_catalog()
    rows, extra = load_rows()
    rows = [r for r in rows if group_of(r) not in NOT_FITTED]
    groups = sorted({group_of(r) for r in rows})
    saved = roofline.ITERATION_OVERHEAD_S

    def loss(x):
        roofline.ITERATION_OVERHEAD_S = float(x)
        errs = {k: [] for k in groups}
        try:
            for r in rows:
                try:
                    p = predict(r, cat, extra)
                except Exception:
                    continue
                errs[group_of(r)].append(abs(math.log(max(p, 1e-12) / r.measured)))
        finally:
            roofline.ITERATION_OVERHEAD_S = saved
        return float(np.mean([np.mean(v) for v in errs.values() if v]))

    lo, hi = OVERHEAD_BOUNDS_S
    res = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    return {"overhead_s": float(res.x), "bounds_s": [lo, hi], "loss": float(res.fun),
            "loss_at_catalog": loss(saved), "catalog_overhead_s": saved, "rows": len(rows),
            "distance_to_bounds_s": [float(res.x) - lo, hi - float(res.x)]}


# --------------------------------------------------------------------------------------------
# A user's calibration profile on its own results
# --------------------------------------------------------------------------------------------


def run_profile(catalog: Catalog | None, path: str) -> Report:
    """The benchmark results a profile was fitted on (the files it names, checked against their
    recorded hashes), each statistic predicted without the profile (``note``: "uncalibrated")
    and with it: two rows per statistic, kinds ``calibration_<statistic>``."""
    import hashlib

    from planner.calibrate import read_results
    from planner.calibrate.fit import Setup, observations, predict_result
    from planner.calibrate.profile import load_profile
    from planner.errors import InvalidRequestError

    cat = catalog or load_catalog()
    prof = load_profile(path)
    files = [d.get("file") for d in prof.data if isinstance(d, dict)]
    if not files:
        raise InvalidRequestError(f"--profile: {path}: names no result files (data:)")
    for d in prof.data:
        f = Path(str(d.get("file")))
        if not f.is_file():
            raise InvalidRequestError(f"--profile: {path}: data file {f} not found (run from where the "
                                      "profile was made, or recalibrate)")
        if d.get("sha256") and hashlib.sha256(f.read_bytes()).hexdigest() != d["sha256"]:
            raise InvalidRequestError(f"--profile: {path}: data file {f} changed since the profile was made "
                                      "(its sha256 differs)")
    results = read_results(files)
    model = cat.model(prof.model, "--profile model")
    setup = Setup(cat, model, prof.gpu, tp=prof.tp, engine=cat.engine(prof.engine, "--profile engine"))
    obs = observations(results)
    rows = []
    for cal, tag in ((None, "uncalibrated"), (prof.calibration, "calibrated")):
        preds = {}
        for o in obs:
            if id(o.result) not in preds:
                preds[id(o.result)] = predict_result(setup, o.result, cal)
            pv = preds[id(o.result)][(o.key, o.stat)]
            unit = "tok_s" if o.key == "output_tok_s" else "ms"
            k = 1.0 if unit == "tok_s" else 1e3
            r = Row(id=f"{'with' if cal is not None else 'without'} {Path(o.result.path).name}:{o.result.row}",
                    kind=f"calibration_{o.name}",
                    model=prof.model, gpu=prof.gpu, dtype=setup.dtype or model.default_dtype,
                    kv_dtype=setup.kv_dtype or model.default_kv_dtype, tp=prof.tp, pp=1,
                    batch=int(o.result.concurrency or 0), isl=int(round(o.result.isl)),
                    osl=int(round(o.result.osl)), measured=o.measured * k, unit=unit,
                    source=o.result.path, trust="user", note=tag)
            if math.isfinite(pv) and pv > 0:
                r = replace(r, predicted=pv * k, error=pv / o.measured - 1.0)
            else:
                r = replace(r, predicted=pv, included=False, note=tag + ", called unstable")
            rows.append(r)
    rep = Report(rows, summarize([r for r in rows if r.note.startswith("calibrated")]))
    rep.summary["uncalibrated"] = summarize([r for r in rows if r.note.startswith("uncalibrated")])
    rep.summary["by_source_kind"] = {
        f"{tag} profile": _stats([r for r in rows if r.note == ("calibrated" if tag == "with" else "uncalibrated")
                                  and r.included and np.isfinite(r.error)]) for tag in ("without", "with")}
    return rep
