"""Plan files: reading a YAML plan back into inputs and a deployment, and writing files safely.

A plan file stands alone: it embeds the catalog entries it was computed with, so
``pdplan evaluate plan.yaml`` gives the same numbers on a machine whose catalog differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from planner.catalog import (
    KV_DTYPES,
    KV_TRANSFER_DTYPES,
    WEIGHT_DTYPES,
    Catalog,
    attach_kernels,
    load_catalog,
    parse_engine,
    parse_gpu,
    parse_link,
    parse_model,
    parse_transfer,
)
from planner.errors import CatalogError, InvalidRequestError
from planner.serving.common import APPROACHES, Deployment, Pool
from planner.units import (
    MAX_BURSTINESS,
    MAX_DURATION_S,
    MAX_QPS,
    MAX_TOKENS,
    MIN_BURSTINESS,
    MIN_DURATION_S,
    MIN_QPS,
    PERCENTILES,
    parse_size,
)

ROLES = {"unified": ("unified",), "chunked": ("unified",), "disaggregated": ("prefill", "decode")}


def _fail(path, key, what) -> NoReturn:
    raise InvalidRequestError(f"{path}: {key}: {what}")


def _num(path, d, key, *, integer=False, positive=True, required=True, ctx=""):
    label = f"{ctx}{key}"
    if key not in d or d[key] is None:
        if required:
            _fail(path, label, "missing")
        return None
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        _fail(path, label, f"must be a number, got {v!r}")
    if v != v or v in (float("inf"), float("-inf")):
        _fail(path, label, f"must be finite, got {v!r}")
    if integer and v != int(v):
        _fail(path, label, f"must be a whole number, got {v!r}")
    if positive and v <= 0:
        _fail(path, label, f"must be positive, got {v!r}")
    return int(v) if integer else float(v)


def _bounded(path, label, v, lo, hi):
    """The input layer's bounds (planner.units) on a number read from a plan."""
    if v is not None and not lo <= v <= hi:
        _fail(path, label, f"must be from {lo:g} to {hi:,g}, got {v!r}")


def read_plan(path: str) -> dict:
    from planner.api import SCHEMA_VERSION
    from planner.files import PLAN_MAX_BYTES, read_yaml

    doc = read_yaml(path, f"plan file {path}", "a YAML plan", max_bytes=PLAN_MAX_BYTES)
    if doc is None:
        raise InvalidRequestError(f"plan file {path} is empty")
    if isinstance(doc, dict) and "command" in doc and isinstance(doc.get("result"), dict) \
            and isinstance(doc["result"].get("plan"), dict):
        doc = doc["result"]["plan"]  # a saved `--json` output (the envelope of every command)
    elif isinstance(doc, dict) and "plan" in doc and isinstance(doc["plan"], dict) and "schema_version" not in doc:
        doc = doc["plan"]  # a `--json` output saved before the envelope (pdplan 0.1.0 dev)
    if not isinstance(doc, dict):
        raise InvalidRequestError(f"plan file {path}: expected a mapping (a pdplan plan), got {type(doc).__name__}")
    if "schema_version" not in doc:
        raise InvalidRequestError(f"plan file {path}: schema_version: missing (is this a pdplan plan?)")
    sv = doc["schema_version"]
    if not isinstance(sv, int) or isinstance(sv, bool):
        _fail(path, "schema_version", f"must be a whole number, got {sv!r}")
    if sv > SCHEMA_VERSION:
        _fail(path, "schema_version", f"{sv} was written by a newer pdplan; this one reads version {SCHEMA_VERSION}")
    if sv != SCHEMA_VERSION:
        _fail(path, "schema_version", f"{sv} is not supported; this pdplan reads version {SCHEMA_VERSION}")
    return doc


def catalog_from_plan(path: str, doc: dict, catalog_dir: str | None = None) -> Catalog:
    """The embedded catalog entries, over the built-in catalog (with ``--catalog`` /
    ``PDPLAN_CATALOG``'s entries) for anything not embedded."""
    base = load_catalog(catalog_dir)
    cat = Catalog(dict(base.models), dict(base.gpus), dict(base.links), dict(base.engines),
                  dict(base.transfers))
    emb = doc.get("catalog") or {}
    if not isinstance(emb, dict):
        _fail(path, "catalog", "must be a mapping of models, gpus and links")
    for key, parser, table in (("models", parse_model, cat.models), ("gpus", parse_gpu, cat.gpus),
                               ("links", parse_link, cat.links), ("engines", parse_engine, cat.engines),
                               ("kv_transfer", parse_transfer, cat.transfers)):
        entries = emb.get(key) or {}
        if not isinstance(entries, dict):
            _fail(path, f"catalog.{key}", "must be a mapping of id -> entry")
        for eid, data in entries.items():
            if not isinstance(data, dict):
                _fail(path, f"catalog.{key}.{eid}", "must be a mapping")
            try:
                entry = parser(Path(f"{path}: catalog.{key}.{eid}"), data)
            except CatalogError as exc:
                raise InvalidRequestError(str(exc)) from None
            table[entry.id] = entry
    kernels = emb.get("kernels") or {}
    if not isinstance(kernels, dict):
        _fail(path, "catalog.kernels", "must be a mapping of GPU id -> kernel tables")
    for gid, data in kernels.items():
        if not isinstance(data, dict):
            _fail(path, f"catalog.kernels.{gid}", "must be a mapping")
        try:
            attach_kernels(cat, Path(f"{path}: catalog.kernels.{gid}"), data)
        except CatalogError as exc:
            raise InvalidRequestError(str(exc)) from None
    return cat


def _plan_trace(path: str, doc, load_trace):
    """The trace a plan embeds (``inputs.trace``: file name, sha256, rows); plans written before
    traces were embedded name a file, read relative to the working directory or the plan."""
    from planner.workload import trace_from_document

    if isinstance(doc, dict):
        return trace_from_document(doc, f"{path}: inputs.trace")
    if not isinstance(doc, str):
        _fail(path, "inputs.trace", f"must be an embedded trace (a mapping), got {type(doc).__name__}")
    p = Path(doc).expanduser()
    if not p.is_absolute() and not p.exists() and (Path(path).expanduser().parent / p).exists():
        p = Path(path).expanduser().parent / p
    return load_trace(str(p))


def _plan_prefix(path: str, inp: dict):
    """The prefix cache a plan assumed (``inputs.prefix_tokens``, ``inputs.prefix_hit_rate``;
    plans written before prefix caching have neither: none)."""
    from planner.workload import PrefixCache

    tokens = _num(path, inp, "prefix_tokens", integer=True, positive=False, required=False,
                  ctx="inputs.") or 0
    rate = _num(path, inp, "prefix_hit_rate", positive=False, required=False, ctx="inputs.") or 0.0
    _bounded(path, "inputs.prefix_tokens", tokens, 0, MAX_TOKENS)
    _bounded(path, "inputs.prefix_hit_rate", rate, 0.0, 1.0)
    return PrefixCache(int(tokens), float(rate))


def load_plan(path: str, qps: float | None = None, catalog_dir: str | None = None):
    """(Inputs, Deployment, document) from a plan file; ``qps`` overrides the plan's rate."""
    from planner.api import SLO, Inputs
    from planner.workload import LengthDist, Workload, fixed, load_trace, parse_length_dist

    doc = read_plan(path)
    cat = catalog_from_plan(path, doc, catalog_dir)
    inp = doc.get("inputs")
    if not isinstance(inp, dict):
        _fail(path, "inputs", "missing or not a mapping")
    model_id = inp.get("model")
    if not isinstance(model_id, str) or model_id not in cat.models:
        _fail(path, "inputs.model", f"unknown model {model_id!r}")
    model = cat.models[model_id]

    def lengths(key) -> LengthDist:
        v = inp.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_TOKENS:
            return fixed(v)
        if isinstance(v, str):
            where = f"{path}: inputs.{key}"
            return parse_length_dist(v, where) if ":" in v else fixed(parse_size(v, where))
        _fail(path, f"inputs.{key}", f"must be a token count or a distribution, got {v!r}")

    rate = qps if qps is not None else _num(path, inp, "qps", ctx="inputs.")
    trace = _plan_trace(path, inp.get("trace"), load_trace) if inp.get("trace") else None
    cv = _num(path, inp, "burstiness", required=False, ctx="inputs.") or 1.0
    conc = _num(path, inp, "concurrency", integer=True, required=False, ctx="inputs.")
    think = (_num(path, inp, "think_time_ms", required=False, ctx="inputs.") or 0.0) / 1e3
    if qps is not None:  # --qps over a closed-loop plan: an open-loop question
        conc = None
    _bounded(path, "inputs.qps", rate if qps is None else None, MIN_QPS, MAX_QPS)
    _bounded(path, "inputs.burstiness", cv, 0.0, MAX_BURSTINESS)
    _bounded(path, "inputs.concurrency", conc, 1, 1_000_000)
    _bounded(path, "inputs.think_time_ms", think * 1e3, 0.0, MAX_DURATION_S * 1e3)
    cv = max(cv, MIN_BURSTINESS)
    wl = Workload(rate, lengths("isl"), lengths("osl"), cv, trace, concurrency=conc,
                  think_s=think if conc else 0.0, prefix=_plan_prefix(path, inp))
    pct = inp.get("percentile")
    if isinstance(pct, bool) or pct not in PERCENTILES:  # 90.0 == 90: read as the int key p90
        _fail(path, "inputs.percentile", f"must be one of 50, 90, 95, 99, got {pct!r}")
    pct = int(pct)
    slo = SLO(_num(path, inp, "ttft_slo_ms", ctx="inputs.") / 1e3,
              _num(path, inp, "tpot_slo_ms", ctx="inputs.") / 1e3, pct)
    for key, v in (("ttft_slo_ms", slo.ttft_s), ("tpot_slo_ms", slo.tpot_s)):
        _bounded(path, f"inputs.{key}", v * 1e3, MIN_DURATION_S * 1e3, MAX_DURATION_S * 1e3)
    dtype, kv_dtype = inp.get("dtype"), inp.get("kv_dtype")
    if dtype not in WEIGHT_DTYPES:
        _fail(path, "inputs.dtype", f"must be one of {', '.join(WEIGHT_DTYPES)}, got {dtype!r}")
    if kv_dtype not in KV_DTYPES:
        _fail(path, "inputs.kv_dtype", f"must be one of {', '.join(KV_DTYPES)}, got {kv_dtype!r}")
    approach = doc.get("approach")
    if approach not in APPROACHES:
        _fail(path, "approach", f"must be one of {', '.join(APPROACHES)}, got {approach!r}")
    pools_raw = doc.get("pools")
    if not isinstance(pools_raw, list) or not pools_raw:
        _fail(path, "pools", "missing or empty")
    pools = []
    for i, pr in enumerate(pools_raw):
        ctx = f"pools[{i}]."
        if not isinstance(pr, dict):
            _fail(path, f"pools[{i}]", "must be a mapping")
        role = pr.get("role")
        if role not in ROLES[approach]:
            _fail(path, f"{ctx}role", f"must be one of {', '.join(ROLES[approach])} for {approach}, got {role!r}")
        gpu = pr.get("gpu")
        if not isinstance(gpu, str) or gpu not in cat.gpus:
            _fail(path, f"{ctx}gpu", f"unknown GPU {gpu!r}")
        pools.append(Pool(role, gpu, _num(path, pr, "instances", integer=True, ctx=ctx),
                          _num(path, pr, "tp", integer=True, ctx=ctx),
                          _num(path, pr, "pp", integer=True, ctx=ctx, required=False) or 1,
                          _num(path, pr, "ep", integer=True, ctx=ctx, required=False) or 1,
                          _num(path, pr, "dp", integer=True, ctx=ctx, required=False) or 1))
    if sorted(p.role for p in pools) != sorted(ROLES[approach]):
        _fail(path, "pools", f"{approach} needs exactly the pools {', '.join(ROLES[approach])}")
    chunk = None
    if approach == "chunked":
        chunk = _num(path, doc, "chunk_size", integer=True)
    kv = doc.get("kv_transfer") or {}
    link = kv.get("override") if isinstance(kv, dict) else None
    tdtype = kv.get("dtype") if isinstance(kv, dict) else None
    if tdtype is not None and tdtype not in KV_TRANSFER_DTYPES:
        _fail(path, "kv_transfer.dtype", f"must be one of {', '.join(KV_TRANSFER_DTYPES)}, got {tdtype!r}")
    overlap = kv.get("overlap", True) if isinstance(kv, dict) else True
    dep = Deployment(approach, tuple(pools), chunk_size=chunk, link=link, kv_overlap=bool(overlap),
                     kv_transfer_dtype=tdtype if tdtype != kv_dtype else None)
    gpu_default = pools[0].gpu
    engine = None
    if "engine" in doc:  # plans before engine profiles carry none: the default engine applies
        e = doc.get("engine")
        eid = e.get("id") if isinstance(e, dict) else None
        if not isinstance(eid, str) or eid not in cat.engines:
            _fail(path, "engine.id", f"unknown engine {eid!r}; known: {', '.join(sorted(cat.engines))}")
        engine = cat.engines[eid]
    try:
        wl.check_prefix()
    except InvalidRequestError as exc:  # named as the plan's keys, not the flags
        msg = str(exc).replace("--prefix-tokens", "inputs.prefix_tokens").replace(
            "--prefix-hit-rate", "inputs.prefix_hit_rate")
        raise InvalidRequestError(f"{path}: {msg}") from None
    xfer = None
    if isinstance(kv, dict) and kv.get("engine") is not None:  # plans before transfer engines: the default
        tid = kv.get("engine")
        if not isinstance(tid, str) or tid not in cat.transfers:
            _fail(path, "kv_transfer.engine",
                  f"unknown KV-transfer engine {tid!r}; known: {', '.join(sorted(cat.transfers))}")
        xfer = cat.transfers[tid]
    spec = _plan_spec(path, inp.get("speculative"), model, cat)
    inputs = Inputs(model, wl, slo, dtype, kv_dtype, cat, gpu=gpu_default, engine=engine,
                    kv_transfer=xfer, spec=spec)
    if doc.get("profile") is not None:
        _plan_profile(path, doc["profile"], inputs)
    if inp.get("confidence") is not None:  # the likely ranges' confidence the plan was made at
        from planner.confidence import check_confidence

        c = inp["confidence"]
        if isinstance(c, bool) or not isinstance(c, (int, float)):
            _fail(path, "inputs.confidence", f"must be a number from 0.5 to below 1, got {c!r}")
        try:
            inputs.confidence = check_confidence(c, "inputs.confidence")
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"{path}: {exc}") from None
    return inputs, dep, doc


def _plan_profile(path: str, prof, inputs) -> None:
    """A plan's embedded calibration profile (its fitted constants) back onto ``inputs``."""
    from planner.calibrate.fit import CONSTANTS
    from planner.calibrate.profile import Profile

    if not isinstance(prof, dict) or not isinstance(prof.get("constants"), dict):
        _fail(path, "profile.constants", "missing or not a mapping")
    bounds = {c[0]: (c[1], c[2]) for c in CONSTANTS}
    values = {}
    for k, v in prof["constants"].items():
        if k not in bounds:
            _fail(path, f"profile.constants.{k}", f"unknown; valid: {', '.join(bounds)}")
        lo, hi = bounds[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            _fail(path, f"profile.constants.{k}", f"must be a number within [{lo:g}, {hi:g}], got {v!r}")
        values[k] = float(v)
    gpu = prof.get("gpu")
    if not isinstance(gpu, str):
        _fail(path, "profile.gpu", "missing")
    p = Profile(model=str(prof.get("model") or inputs.model.id), gpu=gpu, engine=str(prof.get("engine") or ""),
                tp=int(prof.get("tp") or 1), values=values, fitted=tuple(values), path=prof.get("path"),
                sha256=prof.get("sha256"))
    inputs.profile, inputs.calibration, inputs.calibration_gpus = p, p.calibration, (gpu,)


def _plan_spec(path: str, doc, model, cat):
    """A plan's ``inputs.speculative`` (tokens, acceptance, draft), read by the same rules as
    ``--spec-tokens``/``--acceptance``/``--draft-model``; None when absent."""
    from planner.perf import speculative

    if doc is None:
        return None
    if not isinstance(doc, dict):
        _fail(path, "inputs.speculative", f"must be a mapping of tokens, acceptance and draft, got {doc!r}")
    where = f"{path}: inputs.speculative."
    draft = doc.get("draft")
    if draft is not None and not isinstance(draft, str):
        _fail(path, "inputs.speculative.draft", f"must be a model id, mtp or eagle, got {draft!r}")
    spec = speculative.build(doc.get("tokens"), doc.get("acceptance"),
                             None if draft in ("mtp", "eagle", None) else draft, model, cat,
                             flags={"tokens": where + "tokens", "acceptance": where + "acceptance",
                                    "draft": where + "draft"})
    if spec is not None and draft in ("mtp", "eagle") and spec.kind != draft:
        _fail(path, "inputs.speculative.draft", f"{model.id} has {'no ' if draft == 'mtp' else ''}MTP "
              f"layers, so its draft head is {spec.kind}, not {draft}")
    return spec


def write_atomic(path: str, text: str, force: bool = False, flag: str = "-o") -> None:
    """Write ``text`` to ``path`` through a temporary file moved into place (see
    :class:`planner.files.Output`: the mode a new file gets, or the replaced file's under
    ``force``; a symlink written through; an exclusive create without ``force``)."""
    from planner.files import write_file

    write_file(path, text, flag=flag, force=force)
