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

from planner.catalog import Catalog, _builtin_dir, _load_yaml, load_catalog, parse_model
from planner.errors import CatalogError
from planner.perf import build_step_model

KINDS = ("prefill", "decode_step", "static_throughput", "offline_throughput")
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


@dataclass
class Report:
    rows: list
    summary: dict = field(default_factory=dict)


def data_dir() -> Path:
    return _builtin_dir("planner.validation", "tests/data")


def load_rows(path: Path | None = None) -> tuple[list, dict]:
    """The measurement rows and the extra (validation-only) models."""
    d = data_dir()
    path = path or d / "measurements.yaml"
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: cannot read the validation set ({exc})") from None
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
            source=str(e["source"]), trust=str(e.get("trust", "")), note=str(e.get("note") or "")))
    return rows, models


def _model(cat: Catalog, extra: dict, name: str):
    return extra.get(name) or cat.models[name]


def predict(row: Row, cat: Catalog, extra: dict, gpus: dict | None = None) -> float:
    """The model's prediction of one row, in the row's unit."""
    from planner.serving.common import max_num_seqs

    model = _model(cat, extra, row.model)
    gpu = (gpus or cat.gpus)[row.gpu]
    sm = build_step_model(cat, model, gpu, row.tp, row.pp, dtype=row.dtype, kv_dtype=row.kv_dtype)
    ctx = row.isl + row.osl / 2.0
    if row.kind == "prefill":
        return float(sm.prefill_time(row.isl, 0, max(row.batch, 1))) * 1e3
    if row.kind == "decode_step":
        return float(sm.decode_time(max(row.batch, 1), ctx)) * 1e3
    n_gpu = row.tp * row.pp
    per_gpu = row.unit.endswith("per_gpu")
    if row.kind == "static_throughput":
        b = max(row.batch, 1)
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


DATASETS = {"measurements": "measurements.yaml", "offline-grid": "offline_grid.yaml"}


def run(catalog: Catalog | None = None, gpus: dict | None = None,
        dataset: str = "measurements") -> Report:
    """Predict every row of a validation set: ``measurements`` (the curated set the efficiency
    fit uses) or ``offline-grid`` (the rest of the TensorRT-LLM offline grids, out of sample)."""
    cat = catalog or load_catalog()
    rows, extra = load_rows(data_dir() / DATASETS[dataset])
    out = []
    for r in rows:
        try:
            p = predict(r, cat, extra, gpus)
        except Exception as exc:  # a row the model cannot express (e.g. does not fit)
            out.append(replace(r, included=False, note=f"not predicted: {exc}"))
            continue
        out.append(replace(r, predicted=p, error=(p - r.measured) / r.measured))
    return Report(out, summarize(out))


def summarize(rows: list) -> dict:
    inc = [r for r in rows if r.included and np.isfinite(r.error)]

    def stats(sel):
        e = np.abs([r.error for r in sel])
        if not len(e):
            return {"count": 0}
        return {"count": int(len(e)), "median_abs_error": float(np.median(e)),
                "mean_abs_error": float(np.mean(e)), "p90_abs_error": float(np.percentile(e, 90)),
                "median_signed_error": float(np.median([r.error for r in sel]))}

    s = stats(inc)
    s["by_kind"] = {k: stats([r for r in inc if r.kind == k]) for k in KINDS}
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

FIT_PARAMS = ("compute_efficiency", "compute_half_tokens", "memory_efficiency", "comm_efficiency",
              "allreduce_hop_s", "step_overhead_s")
# Physically plausible ranges: the fit may not buy accuracy with an impossible efficiency.
_BOUNDS = {"compute_efficiency": (0.3, 0.85), "compute_half_tokens": (8.0, 128.0),
           "memory_efficiency": (0.6, 0.92), "comm_efficiency": (0.5, 0.9),
           "allreduce_hop_s": (0.5e-6, 6e-6), "step_overhead_s": (0.0, 100e-6)}


def group_of(row: Row) -> str:
    """Rows from one source and of one kind form a group; the fit weighs groups equally so
    that a large table from one engine does not drown the others."""
    return f"{row.id.split('-')[0]}/{row.kind}"


# Groups validated but not fitted: the Splitwise profile's decode steps carry a floor of 28-55 ms
# per step that does not move with batch or TP (TP4 -> TP8 at batch 1: no speed-up on either
# GPU), the signature of an engine without CUDA graphs or custom all-reduce. pdplan models an
# engine that has both (vLLM, SGLang, TensorRT-LLM today).
NOT_FITTED = {"SPLITWISE/decode_step"}
# All-reduce hop latencies come from measured NCCL sweeps, not from the fit (see the catalog).
FIXED = {"allreduce_hop_s"}


def fit_gpu(gpu_id: str, catalog: Catalog | None = None, iterations: int = 400) -> dict:
    """Fit the efficiency factors of one GPU on its rows: minimise the group-balanced mean of
    ``|log(predicted / measured)|`` (Nelder-Mead in a bounded, transformed space)."""
    from scipy.optimize import minimize

    cat = catalog or load_catalog()
    rows, extra = load_rows()
    rows = [r for r in rows if r.gpu == gpu_id and group_of(r) not in NOT_FITTED]
    if not rows:
        raise CatalogError(f"no validation rows for {gpu_id}")
    base = cat.gpus[gpu_id]
    groups = sorted({group_of(r) for r in rows})
    tp_rows = any(r.tp > 1 for r in rows)
    names = [p for p in FIT_PARAMS if (tp_rows or p not in ("comm_efficiency", "allreduce_hop_s"))
             and (p not in FIXED or base.intra_node_link.startswith("pcie"))]

    def to_gpu(x):
        vals = {}
        for n, xi in zip(names, x):
            lo, hi = _BOUNDS[n]
            vals[n] = lo + (hi - lo) / (1 + math.exp(-xi))
        return replace(base, **vals), vals

    def loss(x):
        g, _ = to_gpu(x)
        gpus = dict(cat.gpus)
        gpus[gpu_id] = g
        errs = {k: [] for k in groups}
        for r in rows:
            try:
                p = predict(r, cat, extra, gpus)
            except Exception:
                continue
            errs[group_of(r)].append(abs(math.log(max(p, 1e-12) / r.measured)))
        return float(np.mean([np.mean(v) for v in errs.values() if v]))

    def inv(n, v):
        lo, hi = _BOUNDS[n]
        f = min(max((v - lo) / (hi - lo), 1e-3), 1 - 1e-3)
        return math.log(f / (1 - f))

    x0 = [inv(n, getattr(base, n)) for n in names]
    res = minimize(loss, x0, method="Nelder-Mead", options={"maxiter": iterations, "xatol": 1e-3, "fatol": 1e-5})
    _, vals = to_gpu(res.x)
    return {"gpu": gpu_id, "params": vals, "loss": float(res.fun), "start_loss": loss(x0), "rows": len(rows)}
