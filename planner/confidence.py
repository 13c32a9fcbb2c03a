"""Likely ranges on predictions, from the validation residuals.

Every TTFT, TPOT and output-throughput prediction carries a range: where the measured value is
likely to lie, read off how far measurements of the same kind of prediction fell from pdplan's
predictions on the out-of-sample validation sets (``pdplan validate --set serving``,
``--set offline-grid``, ``--set deepseek``; the in-sample ``measurements`` set is left out because
the efficiency fit saw it).

The residual of a validation row is ``log(measured / predicted)``. Rows are grouped into cells by

* the metric family: ``ttft``, ``tpot`` or ``throughput`` (output tokens/s); all statistics of a
  family (mean, P50, P90, P99) share the cell;
* the GPU type, or ``any``;
* the load regime, or ``any``. For TTFT and TPOT: the predicted utilisation of the pool that
  serves the metric, ``low`` (< 0.5), ``mid`` (0.5 to 0.8) or ``high`` (>= 0.8). For throughput:
  ``open`` (open-loop arrivals: a stable deployment's predicted throughput is the offered load,
  and a measured one can only fall short of it) or ``closed`` (closed-loop clients, and the
  offline and DeepSeek-class end-to-end runs: the prediction is the engine's capacity).

A prediction uses the first cell of ``(family, gpu, regime)``, ``(family, gpu, any)``,
``(family, any, regime)``, ``(family, any, any)`` with at least :data:`MIN_COUNT` rows (20: the
5 % and 95 % quantiles of a 90 % range then each have at least one row beyond them).

At confidence ``c`` the range of a prediction ``p`` is ``[p * exp(q((1 - c) / 2)),
p * exp(q((1 + c) / 2))]``, ``q`` the cell's empirical quantile function (linear interpolation
between order statistics, numpy's default), widened where needed to include ``p`` itself (a
cell whose residuals are all of one sign would otherwise give a range that excludes the
prediction it is drawn around; widening only raises coverage).

The cells are derived once and shipped in ``tests/data/confidence.yaml`` (``planner.validation``
package data), with each cell's quantile function at the levels :data:`LEVELS`; the per-row
residuals they come from are in ``tests/data/confidence_residuals.yaml``. Both are written by
``python benchmarks/derive_confidence.py --write`` (it reruns the three validation sets). Reading
the cells at run time is one small YAML file, read once per process.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from planner.errors import CatalogError, InvalidRequestError

FAMILIES = ("ttft", "tpot", "throughput")
REGIMES = ("low", "mid", "high")  # TTFT and TPOT
LOOP_REGIMES = ("open", "closed")  # throughput
# Utilisation edges of the load regimes: below 0.5 queues are short (M/D/1 waits under half a
# service time); from 0.8 they grow steeply (the 1 / (1 - rho) factor passes 5).
REGIME_EDGES = (0.5, 0.8)
ANY = "any"
MIN_COUNT = 20
MIN_PROFILE_RESIDUALS = 5
DEFAULT_CONFIDENCE = 0.8
CONFIDENCE_BOUNDS = (0.5, 1.0)  # 0.5 <= c < 1
# Quantile levels stored per cell: the lower and upper quarter in steps of 0.01 (every
# confidence from 0.5 up needs only these; others interpolate linearly between them).
LEVELS = tuple(round(i / 100, 2) for i in range(0, 26)) + tuple(round(i / 100, 2) for i in range(75, 101))
TABLE_FILE = "confidence.yaml"
RESIDUALS_FILE = "confidence_residuals.yaml"
SCHEMA_VERSION = 1


def check_confidence(c, flag: str = "--confidence") -> float:
    """``c`` as a float if ``0.5 <= c < 1``, else :class:`InvalidRequestError`."""
    try:
        if isinstance(c, str) and not c.strip().isascii():  # float() reads other scripts' digits
            raise ValueError(c)
        v = float(c)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"{flag}: {c!r} is not a number; give a confidence from 0.5 to below 1, e.g. 0.9") from None
    lo, hi = CONFIDENCE_BOUNDS
    if not (math.isfinite(v) and lo <= v < hi):
        raise InvalidRequestError(f"{flag}: {c!r} is outside [0.5, 1); give a confidence from 0.5 to below 1, e.g. 0.9")
    return v


def regime_of(utilization: float) -> str:
    """The load regime of a predicted utilisation (``high`` where it is not finite)."""
    u = float(utilization)
    if not math.isfinite(u) or u >= REGIME_EDGES[1]:
        return "high"
    return "low" if u < REGIME_EDGES[0] else "mid"


def cell_keys(family: str, gpu: str, regime: str) -> list:
    """The cells a prediction may use, finest first."""
    return [f"{family}/{gpu}/{regime}", f"{family}/{gpu}/{ANY}", f"{family}/{ANY}/{regime}",
            f"{family}/{ANY}/{ANY}"]


def quantile(sorted_values, level: float) -> float:
    """The empirical quantile at ``level`` (0..1) of sorted values: linear interpolation between
    order statistics at positions ``level * (n - 1)`` (numpy's default method)."""
    n = len(sorted_values)
    pos = min(max(level, 0.0), 1.0) * (n - 1)
    i = int(math.floor(pos))
    j = min(i + 1, n - 1)
    return sorted_values[i] + (pos - i) * (sorted_values[j] - sorted_values[i])


def build_table(records, min_count: int = MIN_COUNT) -> dict:
    """Cells from residual records (dicts with ``family``, ``gpu``, ``regime``,
    ``log_residual``): cell key -> ``{"count": n, "q": quantiles at LEVELS}``, only cells with at
    least ``min_count`` rows."""
    groups: dict = {}
    for r in records:
        for key in cell_keys(r["family"], r["gpu"], r["regime"]):
            groups.setdefault(key, []).append(float(r["log_residual"]))
    out = {}
    for key in sorted(groups):
        v = sorted(groups[key])
        if len(v) >= min_count:
            out[key] = {"count": len(v), "q": [round(quantile(v, lv), 5) for lv in LEVELS]}
    return out


def _level_value(q: list, level: float) -> float:
    """A cell's quantile function (stored at LEVELS) at ``level``, interpolated linearly."""
    for k in range(len(LEVELS) - 1):
        a, b = LEVELS[k], LEVELS[k + 1]
        if a <= level <= b:
            if b - a > 0.5:  # the gap between the quarters is never asked for (c >= 0.5)
                break
            return q[k] + (level - a) / (b - a) * (q[k + 1] - q[k])
    raise InvalidRequestError(f"confidence level {level:g} is outside the stored quantile levels")


def _table_path():
    from planner.validate import data_dir

    return data_dir() / TABLE_FILE


@lru_cache(maxsize=4)
def load_table(path: str | None = None) -> dict:
    """The shipped cells (``tests/data/confidence.yaml``): cell key -> ``{"count", "q"}``."""
    from pathlib import Path

    from planner.files import read_yaml

    p = Path(path) if path else _table_path()
    doc = read_yaml(p, str(p), "the confidence table (planner/confidence.py)", CatalogError)
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise CatalogError(f"{p}: schema_version: expected {SCHEMA_VERSION}; regenerate it with "
                           "python benchmarks/derive_confidence.py --write")
    if [round(float(x), 2) for x in doc.get("levels") or ()] != list(LEVELS):
        raise CatalogError(f"{p}: levels: not the levels planner/confidence.py reads; regenerate it")
    cells = doc.get("cells")
    if not isinstance(cells, dict) or not cells:
        raise CatalogError(f"{p}: cells: missing or empty")
    out = {}
    for key, c in cells.items():
        if not isinstance(c, dict) or len(c.get("q") or ()) != len(LEVELS) or int(c.get("count", 0)) < 1:
            raise CatalogError(f"{p}: cells.{key}: needs count and {len(LEVELS)} quantiles")
        out[str(key)] = {"count": int(c["count"]), "q": [float(x) for x in c["q"]]}
    return out


def factors(family: str, gpu: str, regime: str, confidence: float = DEFAULT_CONFIDENCE,
            table: dict | None = None, residuals=None) -> tuple[float, float, dict]:
    """``(low, high, basis)``: the factors the prediction is multiplied by for the ends of its
    range at ``confidence`` (``low <= 1 <= high``), and where they came from.

    ``residuals``: log residuals ``log(measured / predicted)`` of this family from elsewhere (a
    calibration profile's leave-one-out residuals); used instead of the table when at least
    :data:`MIN_PROFILE_RESIDUALS` of them are finite."""
    if family not in FAMILIES:
        raise InvalidRequestError(f"confidence: unknown metric family {family!r}; valid: {', '.join(FAMILIES)}")
    c = check_confidence(confidence)
    lo_lv, hi_lv = (1.0 - c) / 2.0, (1.0 + c) / 2.0
    own = sorted(float(x) for x in (residuals or ()) if math.isfinite(float(x)))
    if len(own) >= MIN_PROFILE_RESIDUALS:
        lo, hi = quantile(own, lo_lv), quantile(own, hi_lv)
        basis = {"from": "profile", "count": len(own)}
    else:
        table = load_table() if table is None else table
        key = next((k for k in cell_keys(family, gpu, regime) if k in table), None)
        if key is None:
            raise CatalogError(f"confidence table: no cell for {family} (not even {family}/any/any); regenerate it "
                               "with python benchmarks/derive_confidence.py --write")
        cell = table[key]
        lo, hi = _level_value(cell["q"], lo_lv), _level_value(cell["q"], hi_lv)
        _, g, r = key.split("/")
        basis = {"from": "validation", "gpu": g, "regime": r, "count": cell["count"]}
    return min(math.exp(lo), 1.0), max(math.exp(hi), 1.0), basis


def _pool_of(utilization: dict, gpus: dict, roles) -> tuple[str, float]:
    role = next((r for r in roles if r in gpus), None) or next(iter(gpus))
    return gpus[role], float(utilization.get(role, math.inf))


def ranges(metrics, gpus: dict, confidence: float = DEFAULT_CONFIDENCE,
           profile_residuals: dict | None = None, table: dict | None = None,
           closed_loop: bool = False) -> dict:
    """The likely ranges of one prediction's metrics.

    ``metrics``: a :class:`planner.serving.common.Metrics` (``ttft``/``tpot`` dicts of seconds,
    ``throughput_out_tok_s``, ``utilization`` pool role -> fraction). ``gpus``: pool role
    (``unified``, ``prefill``, ``decode``) -> GPU id. TTFT is read in the cell of the pool that
    prefills (``prefill``, else ``unified``), TPOT of the pool that decodes, throughput of the
    decoding pool's GPU, ``open`` or ``closed`` as ``closed_loop`` says.

    ``profile_residuals``: optional ``{"ttft": [...], "tpot": [...], "throughput": [...]}`` of
    log residuals ``log(measured / predicted)`` (a calibration profile's leave-one-out
    residuals); a family with at least :data:`MIN_PROFILE_RESIDUALS` of them takes its
    quantiles from them instead of the table.

    Returns ``{"confidence": c, "ttft_s": {stat: [lo, hi]}, "tpot_s": {stat: [lo, hi]},
    "throughput_out_tok_s": [lo, hi], "basis": {family: {...}}}`` (SI units; an infinite or
    zero prediction has the range ``[value, value]``)."""
    c = check_confidence(confidence)
    util = dict(getattr(metrics, "utilization", None) or {})
    prof = profile_residuals or {}
    out: dict[str, Any] = {"confidence": c, "basis": {}}
    for fam, attr, roles in (("ttft", "ttft", ("prefill", "unified")), ("tpot", "tpot", ("decode", "unified")),
                             ("throughput", "throughput_out_tok_s", ("decode", "unified"))):
        gpu, u = _pool_of(util, gpus, roles)
        regime = ("closed" if closed_loop else "open") if fam == "throughput" else regime_of(u)
        lo, hi, basis = factors(fam, gpu, regime, c, table, prof.get(fam))
        out["basis"][fam] = {**basis, "regime_of_prediction": regime}
        value = getattr(metrics, attr)

        def span(v, lo=lo, hi=hi):
            v = float(v)
            return [v, v] if not math.isfinite(v) or v <= 0 else [v * lo, v * hi]

        if isinstance(value, dict):
            out[f"{attr}_s"] = {k: span(v) for k, v in value.items()}
        else:
            out[attr] = span(value)
    return out


def plan_ranges(plan, confidence: float | None = None, profile_residuals: dict | None = None) -> dict:
    """:func:`ranges` of an :class:`planner.api.Plan` (its pools' GPUs), at ``confidence`` (the
    question's, else :data:`DEFAULT_CONFIDENCE`)."""
    if confidence is None:
        confidence = getattr(plan.inputs, "confidence", None) or DEFAULT_CONFIDENCE
    gpus = {p.role: p.gpu for p in plan.deployment.pools}
    return ranges(plan.metrics, gpus, confidence, profile_residuals,
                  closed_loop=plan.inputs.workload.concurrency is not None)


# --------------------------------------------------------------------------------------------
# Honesty checks: the share of measured values inside their ranges
# --------------------------------------------------------------------------------------------


def inside(record: dict, table: dict, confidence: float = DEFAULT_CONFIDENCE) -> bool:
    """Whether a residual record's measured value lies inside the range ``table`` gives its
    prediction at ``confidence``."""
    lo, hi, _ = factors(record["family"], record["gpu"], record["regime"], confidence, table)
    e = float(record["log_residual"])
    return math.log(lo) - 1e-12 <= e <= math.log(hi) + 1e-12


def fold_of(point: str, folds: int) -> int:
    """The cross-validation fold of an operating point (a stable hash, so every metric of one
    run lands in the same fold)."""
    import zlib

    return zlib.crc32(str(point).encode()) % folds


def cross_validated(records: list, folds: int = 5, confidence: float = DEFAULT_CONFIDENCE,
                    min_count: int = MIN_COUNT, group: str = "point") -> list:
    """``[(record, inside)]``: each record judged against the cells derived from the other folds.
    ``group``: ``point`` (K-fold over operating points, ``folds`` of them) or ``source`` (leave
    one source out)."""
    if group == "source":
        keys = sorted({r["source"] for r in records})
        fold = {k: i for i, k in enumerate(keys)}
        assign = [fold[r["source"]] for r in records]
        folds = len(keys)
    else:
        assign = [fold_of(r["point"], folds) for r in records]
    out = []
    for f in range(folds):
        train = [r for r, a in zip(records, assign) if a != f]
        table = build_table(train, min_count)
        for r, a in zip(records, assign):
            if a == f:
                fam_ok = any(k.startswith(r["family"] + "/") for k in table)
                out.append((r, inside(r, table, confidence) if fam_ok else False))
    return out


# --------------------------------------------------------------------------------------------
# Deriving the residuals from the validation sets (benchmarks/derive_confidence.py)
# --------------------------------------------------------------------------------------------

# Validation kind -> (family, statistic); the sets the residuals come from are out of sample.
KIND_FAMILY = {
    "serving_ttft_mean": ("ttft", "mean"), "serving_ttft_p50": ("ttft", "p50"),
    "serving_ttft_p90": ("ttft", "p90"), "serving_ttft_p99": ("ttft", "p99"),
    "serving_tpot_mean": ("tpot", "mean"), "serving_tpot_p50": ("tpot", "p50"),
    "serving_tpot_p90": ("tpot", "p90"), "serving_tpot_p99": ("tpot", "p99"),
    "serving_throughput": ("throughput", "output"),
    "offline_throughput": ("throughput", "offline"),
    "ep_e2e_throughput": ("throughput", "output"),
    "ep_decode_tpot": ("tpot", "step"),
}
RESIDUAL_SETS = ("serving", "offline-grid", "deepseek")


def residual_records(catalog=None) -> list:
    """Rerun the out-of-sample validation sets and return one record per predicted row of a
    TTFT, TPOT or output-throughput kind: ``id, point, set, source, family, stat, gpu, regime,
    log_residual``. Serving rows take the regime of their operating point's predicted
    utilisation (``open``/``closed`` loop for throughput); offline and DeepSeek-class rows are
    engines at full batch (``high``, ``closed``)."""
    from planner import validate
    from planner.catalog import load_catalog

    cat = catalog or load_catalog()
    extra = validate.load_rows()[1]
    out = []
    for name in RESIDUAL_SETS:
        rep = validate.run(cat, dataset=name)
        for r in rep.rows:
            if r.kind not in KIND_FAMILY or not r.included or not (r.predicted > 0) or not (r.measured > 0):
                continue
            fam, stat = KIND_FAMILY[r.kind]
            if name == "serving":
                plan = validate.serving_plan(r, cat, extra)
                regime = regime_of(max(plan.metrics.utilization.values(), default=math.inf))
                if fam == "throughput":
                    regime = "closed" if r.shape["load"] == "closed" else "open"
                point = r.shape["point"]
            else:
                regime, point = ("closed" if fam == "throughput" else "high"), r.id
            out.append({"id": r.id, "point": point, "set": name, "source": r.id.split("-")[0],
                        "family": fam, "stat": stat, "gpu": r.gpu, "regime": regime,
                        "log_residual": round(math.log(r.measured / r.predicted), 6)})
    return out


RESIDUAL_COLUMNS = ("id", "point", "set", "source", "family", "stat", "gpu", "regime", "log_residual")


def load_residuals(path: str | None = None) -> list:
    """The per-row residual records shipped in ``tests/data/confidence_residuals.yaml``."""
    from pathlib import Path

    from planner.files import DATA_MAX_BYTES, read_yaml
    from planner.validate import data_dir

    p = Path(path) if path else data_dir() / RESIDUALS_FILE
    doc = read_yaml(p, str(p), "the confidence residuals", CatalogError, max_bytes=DATA_MAX_BYTES)
    if not isinstance(doc, dict) or tuple(doc.get("columns") or ()) != RESIDUAL_COLUMNS:
        raise CatalogError(f"{p}: columns: expected {', '.join(RESIDUAL_COLUMNS)}; regenerate it")
    return [dict(zip(RESIDUAL_COLUMNS, row)) for row in doc.get("rows") or ()]
