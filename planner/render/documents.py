"""Documents: result objects as plain dicts for JSON and YAML, and their serialisation.

Nothing here computes a model quantity: values come from :mod:`planner.api` and friends in SI
units, and are only converted to human units (ms, GB), rounded and laid out. Documents are plain
dicts with a fixed key order, finite floats only (``inf``/``NaN`` become ``None``), so the same
plan always serialises to the same bytes.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import re
from typing import Any

from planner.types import CATALOG_TABLES

PERCENTILE_KEYS = ("mean", "p50", "p90", "p95", "p99")
# The version of the envelope of every command's --json/--format document (its top-level keys
# and the shape of each command's result); a plan's own schema_version is planner.api's.
DOCUMENT_SCHEMA_VERSION = 1
ROLE_KV = {"prefill": "kv_producer", "decode": "kv_consumer"}


# --------------------------------------------------------------------------------------------
# Small value helpers
# --------------------------------------------------------------------------------------------


def finite(x) -> float | None:
    """``x`` as a float, or ``None`` when it is missing, infinite or NaN."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def rnd(x, digits: int = 3) -> float | None:
    v = finite(x)
    return None if v is None else round(v, digits)


def ms(seconds, digits: int = 3) -> float | None:
    """Seconds -> milliseconds rounded to ``digits`` decimals (``None`` when not finite)."""
    v = finite(seconds)
    return None if v is None else round(v * 1e3, digits)


def whole(x) -> int | float | None:
    """An integral quantity (bytes, tokens) as an int when it is one."""
    v = finite(x)
    if v is None:
        return None
    return int(v) if v == int(v) and abs(v) < 2**63 else round(v, 3)


def count(x) -> int | None:
    """A count (tokens) rounded to a whole number."""
    v = finite(x)
    return None if v is None else int(round(v))


def clean(obj):
    """A JSON/YAML-safe copy: numpy scalars to Python, non-finite floats to None, tuples to
    lists, dataclasses to dicts, dates to ISO strings, anything else unknown to its string."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [clean(v) for v in items]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return clean(dataclasses.asdict(obj))
    if isinstance(obj, (_dt.date, _dt.datetime)):
        return obj.isoformat()
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar or 0-d array
        try:
            return clean(obj.item())
        except (TypeError, ValueError):
            pass
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy array
        return clean(obj.tolist())
    return str(obj)


def to_json(obj) -> str:
    """One JSON document (indent 2); non-finite numbers are already ``null``. A lone surrogate
    (an undecodable byte of a file name) is written as its ``\\udcXX`` escape, so the document
    stays UTF-8 text."""
    text = json.dumps(clean(obj), indent=2, allow_nan=False, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _no_surrogates(obj):
    """``obj`` with every lone surrogate (an undecodable byte of a file name) in its strings
    replaced by U+FFFD: YAML cannot carry one (libyaml refuses its escape), and a plan must load."""
    if isinstance(obj, str):
        return _SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {_no_surrogates(k): _no_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_surrogates(v) for v in obj]
    return obj


_SURROGATE = re.compile("[\ud800-\udfff]")


def to_yaml(obj) -> str:
    import yaml

    return yaml.safe_dump(_no_surrogates(clean(obj)), sort_keys=False, allow_unicode=True, width=100)


def envelope(command: str | None, result: Any = None, error: dict | None = None) -> dict:
    """The one shape of every command's ``--json``/``--format json|yaml`` document:
    ``{"pdplan_version", "command", "schema_version", "result"}``, where ``result`` is the
    command's own document; an error has ``"error": {"message", "exit_code", ...}`` in place of
    ``result`` (``evaluate --check`` has both: the plan, and the SLO miss its exit 3 reports)."""
    from planner import __version__

    doc: dict[str, Any] = {"pdplan_version": __version__, "command": command,
                           "schema_version": DOCUMENT_SCHEMA_VERSION}
    if result is not None or error is None:
        doc["result"] = result
    if error is not None:
        doc["error"] = error
    return doc


# --------------------------------------------------------------------------------------------
# Plan document
# --------------------------------------------------------------------------------------------


def _length(dist) -> int | str:
    """A fixed length as its integer; a distribution as the spec ``parse_length_dist`` reads."""
    if dist.kind == "fixed":
        return int(dist.mean)
    return dist.describe()


def inputs_document(inp, trace_rows: bool = True) -> dict:
    """``trace_rows``: embed a trace's rows (a plan that stands alone), else only its name, hash
    and size (the alternatives beside a plan, whose trace is the plan's)."""
    wl, slo = inp.workload, inp.slo
    # The rate and the burstiness as given (not rounded): a plan must load back to the same
    # inputs, and 6 decimals would turn --qps 1e-7 into 0.
    doc = {"model": inp.model.id, "gpu": inp.gpu, "qps": finite(wl.qps)}
    if wl.trace is not None:  # the trace's mean lengths, for people; the trace decides
        doc["isl"] = count(wl.mean_isl)
        doc["osl"] = count(wl.mean_osl)
        doc["trace"] = wl.trace.document()  # by content: the plan stands alone
        if not trace_rows:
            del doc["trace"]["lengths"]
            doc["trace"].pop("cached_tokens", None)
    else:
        doc["isl"] = _length(wl.isl)
        doc["osl"] = _length(wl.osl)
    doc["ttft_slo_ms"] = ms(slo.ttft_s)
    doc["tpot_slo_ms"] = ms(slo.tpot_s)
    doc["percentile"] = int(slo.percentile)
    doc["dtype"] = inp.dtype
    doc["kv_dtype"] = inp.kv_dtype
    if wl.arrival_cv != 1.0:
        doc["burstiness"] = finite(wl.arrival_cv)
    if wl.concurrency is not None:  # closed loop: qps is the throughput the clients reach
        doc["concurrency"] = int(wl.concurrency)
        if wl.think_s:
            doc["think_time_ms"] = ms(wl.think_s)
    doc.update(wl.prefix.document())  # prefix caching: prefix_tokens, prefix_hit_rate
    if getattr(inp, "spec", None) is not None:  # speculative decoding: what the plan runs
        doc["speculative"] = inp.spec.document()
    if getattr(inp, "confidence", None) is not None:  # the ranges' confidence (and recommend's margin)
        doc["confidence"] = finite(inp.confidence)
    if inp.assumed:
        doc["assumed"] = list(inp.assumed)
    return doc


def pool_document(pool, catalog=None) -> dict:
    """A pool's layout; with the catalog, also the nodes it needs and their GPU count (an
    instance larger than a node spans whole nodes: TP inside a node, PP and EP across)."""
    d = {"role": pool.role, "gpu": pool.gpu, "instances": int(pool.instances), "tp": int(pool.tp),
         "pp": int(pool.pp), "gpus": int(pool.gpus)}
    if catalog is not None and pool.gpu in catalog.gpus:
        gpn = int(catalog.gpus[pool.gpu].gpus_per_node)
        d["nodes"] = int(pool.nodes(gpn))
        d["gpus_per_node"] = gpn
    if getattr(pool, "dp", 1) != 1:
        d["dp"] = int(pool.dp)
    if getattr(pool, "ep", 1) != 1:
        d["ep"] = int(pool.ep)
    return d


def engine_hints(plan) -> dict:
    """vLLM flags that reproduce each pool of the plan (a starting point, not a launch script)."""
    dep, inp = plan.deployment, plan.inputs
    hints = {}
    for pool in dep.pools:
        flags = [f"--tensor-parallel-size {pool.tp}", f"--pipeline-parallel-size {pool.pp}"]
        if getattr(pool, "dp", 1) > 1:
            flags.append(f"--data-parallel-size {pool.dp}")
        if getattr(pool, "ep", 1) > 1:
            flags.append("--enable-expert-parallel")
        if inp.dtype == "fp8" and inp.model.default_dtype != "fp8":
            flags.append("--quantization fp8")
        if inp.kv_dtype == "fp8":
            flags.append("--kv-cache-dtype fp8")
        if dep.approach == "chunked":
            flags += ["--enable-chunked-prefill", f"--max-num-batched-tokens {dep.chunk_size}"]
        elif dep.approach == "unified":
            # Whole prompts, not split: a token budget of at least the longest prompt (vLLM
            # warns that --no-enable-chunked-prefill may crash; `pdplan export` does the same).
            from planner.serving.common import longest_prompt

            default = int(inp.engine.token_budget(inp.catalog.gpu(pool.gpu))) if inp.engine else 0
            flags.append(f"--max-num-batched-tokens {max(longest_prompt(inp.workload), default)}")
        spec = getattr(inp, "spec", None)
        if spec is not None and pool.role != "prefill" and spec.kind in ("mtp", "model"):
            # vLLM's SpeculativeConfig (--speculative-config JSON): the DeepSeek MTP method or a
            # draft model by its Hugging Face id
            cfg: dict[str, Any] = ({"method": "deepseek_mtp"} if spec.kind == "mtp"
                   else {"model": spec.draft.raw.get("hf_id", spec.draft.id)})
            cfg["num_speculative_tokens"] = int(spec.tokens)
            flags.append("--speculative-config '" + json.dumps(cfg) + "'")
        hint = {"engine": "vllm", "flags": flags}
        if dep.approach == "disaggregated" and pool.role in ROLE_KV:
            hint["kv_role"] = ROLE_KV[pool.role]
        hints[pool.role] = hint
    return hints


def engine_document(plan) -> dict:
    """The engine the plan assumes, at its version, with the settings pdplan's numbers use."""
    inp, dep = plan.inputs, plan.deployment
    e = inp.engine
    gpu = inp.catalog.gpus.get(dep.pools[0].gpu)
    doc = {"id": e.id, "version": e.version, "memory_policy": e.memory_policy,
           "memory_fraction": e.memory_fraction, "kv_block_tokens": e.kv_block_tokens,
           "kv_admission": e.kv_admission, "schedule": e.schedule}
    if gpu is not None:
        doc["max_num_seqs"] = e.max_seqs(gpu)
        doc["max_num_batched_tokens"] = (int(dep.chunk_size) if dep.approach == "chunked" and dep.chunk_size
                                         else e.token_budget(gpu))
    return doc


def _catalog_embed(plan) -> dict:
    """The catalog entries the plan uses, so that a plan file stands on its own."""
    inp, dep = plan.inputs, plan.deployment
    cat = inp.catalog
    gpus, links, kernels = {}, {}, {}
    for gid in [inp.gpu] + [p.gpu for p in dep.pools]:
        g = cat.gpus.get(gid)
        if g is None or gid in gpus:
            continue
        gpus[gid] = dict(g.raw)
        if g.kernel_raw:
            kernels[gid] = dict(g.kernel_raw)
        for lid in (g.intra_node_link, g.inter_node_link):
            if lid in cat.links and lid not in links:
                links[lid] = dict(cat.links[lid].raw)
    if plan.link and plan.link.get("id") in cat.links and plan.link["id"] not in links:
        links[plan.link["id"]] = dict(cat.links[plan.link["id"]].raw)
    models = {inp.model.id: dict(inp.model.raw)}
    spec = getattr(inp, "spec", None)
    if spec is not None and spec.draft is not None and spec.draft.raw:
        models[spec.draft.id] = dict(spec.draft.raw)
    out = {"models": models,
           "gpus": dict(sorted(gpus.items())), "links": dict(sorted(links.items()))}
    if inp.engine is not None and inp.engine.raw:
        out["engines"] = {inp.engine.id: dict(inp.engine.raw)}
    tid = (plan.link or {}).get("transfer")
    if dep.approach == "disaggregated" and tid in cat.transfers:
        out["kv_transfer"] = {tid: dict(cat.transfers[tid].raw)}
    if kernels:
        out["kernels"] = dict(sorted(kernels.items()))
    return out


def _breakdown_ms(breakdown: dict) -> dict:
    out = {}
    for k, v in breakdown.items():
        name = k[:-2] if k.endswith("_s") else k
        out[name] = ms(v)
    return out


def kv_cache_document(plan) -> dict:
    """The KV cache of the busiest lane: paged occupancy against capacity, the engine's policy,
    the batch cap it implies and what binds it."""
    m, e = plan.metrics, plan.inputs.engine
    doc: dict[str, Any] = {"used_tokens": count(m.kv_used_tokens), "capacity_tokens": count(m.kv_capacity_tokens)}
    if m.kv_capacity_tokens and math.isfinite(m.kv_used_tokens):
        doc["occupancy"] = rnd(m.kv_used_tokens / m.kv_capacity_tokens, 4)
    if e is not None:
        doc["admission"] = e.kv_admission
        doc["block_tokens"] = int(e.kv_block_tokens)
    if math.isfinite(m.batch_cap):
        doc["batch_cap"] = rnd(m.batch_cap, 2)
        doc["batch_cap_by"] = m.batch_cap_by or None
    doc["admission_wait_probability"] = rnd(m.admission_wait_probability, 4)
    lay = getattr(plan, "layout", None) or {}
    if lay.get("attention_ranks", 1) > 1 or lay.get("kv_replicated_across_tp"):
        doc["attention_ranks"] = int(lay["attention_ranks"])
        doc["capacity_tokens_per_rank"] = count(lay["kv_capacity_tokens_per_rank"])
        doc["replicated_across_tp"] = bool(lay["kv_replicated_across_tp"])
    return doc


def metrics_document(plan) -> dict:
    m = plan.metrics
    return {
        "ttft_ms": {k: ms(m.ttft.get(k)) for k in PERCENTILE_KEYS},
        "tpot_ms": {k: ms(m.tpot.get(k)) for k in PERCENTILE_KEYS},
        "itl_max_ms": ms(m.itl_max_s),
        "throughput_tokens_per_s": {"input": rnd(m.throughput_in_tok_s, 1),
                                    "output": rnd(m.throughput_out_tok_s, 1)},
        "max_qps_within_slo": rnd(plan.max_qps, 3),
        "cost_per_hour": rnd(plan.cost_per_hour, 2),
        "utilization": {k: rnd(v, 4) for k, v in m.utilization.items()},
        "decode_batch": rnd(m.decode_batch, 2),
        "kv_cache": kv_cache_document(plan),
        "breakdown_ms": _breakdown_ms(m.breakdown),
        "decode_step_ms": {k: ms(v) for k, v in getattr(plan, "decode_step", {}).items()},
        "stable": bool(m.stable),
        "saturated": m.saturated or None,
        **({"range": range_document(plan.ranges)} if getattr(plan, "ranges", None) else {}),
    }


def range_document(r: dict) -> dict:
    """The likely ranges beside the metrics they bound (``ttft_ms`` -> ``range.ttft_ms``, each
    statistic ``[low, high]``; null where the prediction is overloaded), their confidence and
    what each family's range was read from (planner.confidence)."""
    def pair(v, scale):
        lo, hi = (finite(x) for x in v)
        return None if lo is None or hi is None else [rnd(lo * scale, 3), rnd(hi * scale, 3)]

    return {"confidence": rnd(r["confidence"], 4),
            "ttft_ms": {k: pair(r["ttft_s"][k], 1e3) for k in PERCENTILE_KEYS if k in r["ttft_s"]},
            "tpot_ms": {k: pair(r["tpot_s"][k], 1e3) for k in PERCENTILE_KEYS if k in r["tpot_s"]},
            "throughput_tokens_per_s": {"output": pair(r["throughput_out_tok_s"], 1.0)},
            "basis": {k: dict(v) for k, v in r["basis"].items()}}


def margin_document(mg: dict) -> dict:
    """What sizing to the upper end of the likely range cost (recommend --confidence)."""
    return {"confidence": rnd(mg["confidence"], 4), "gpus": int(mg["gpus"]),
            "gpus_without": int(mg["gpus_without"]), "extra_gpus": int(mg["gpus"] - mg["gpus_without"]),
            "cost_per_hour": rnd(mg["cost_per_hour"], 2), "cost_per_hour_without": rnd(mg["cost_per_hour_without"], 2),
            "ttft_factor": rnd(mg["ttft_factor"], 4), "tpot_factor": rnd(mg["tpot_factor"], 4),
            "ttft_slo_sized_ms": ms(mg["ttft_slo_sized_s"]), "tpot_slo_sized_ms": ms(mg["tpot_slo_sized_s"]),
            "approach_without": mg["approach_without"], "pools_without": mg["plan_without"]}


def kv_transfer_document(link: dict, override: str | None = None) -> dict:
    doc = {
        "link": link.get("id"),
        "name": link.get("name"),
        "where": link.get("where"),
        "streams": link.get("streams"),
        "bytes_per_s": whole(link.get("bytes_per_s")),
        "dtype": link.get("dtype"),
        "overlap": bool(link.get("overlap")),
        "bytes_per_request": whole(link.get("bytes_per_request")),
        "exposed_ms": ms(link.get("exposed_s")),
    }
    if link.get("transfer"):  # the KV-transfer engine (plan loading reads it back)
        doc["engine"] = link.get("transfer")
        doc["efficiency"] = rnd(link.get("efficiency"), 4)
        doc["setup_ms"] = ms(link.get("setup_s"))
        doc["rate_bytes_per_s"] = whole(link.get("rate_bytes_per_s"))
    if override:
        doc["override"] = override  # the --link the user chose (plan loading reads it back)
    return doc


def plan_document(plan, trace_rows: bool = True) -> dict:
    """The DESIGN.md plan document of an :class:`planner.api.Plan` (JSON/YAML-ready)."""
    from planner.api import SCHEMA_VERSION

    dep = plan.deployment
    doc = {
        "schema_version": SCHEMA_VERSION,
        "inputs": inputs_document(plan.inputs, trace_rows),
        "approach": dep.approach,
        "total_gpus": int(dep.total_gpus),
        "pools": [pool_document(p, plan.inputs.catalog) for p in dep.pools],
    }
    eng = plan.inputs.engine
    if eng is not None:
        doc["engine"] = engine_document(plan)
    prof = getattr(plan.inputs, "profile", None)
    if prof is not None:
        doc["profile"] = prof.summary()
    if dep.approach == "chunked":
        doc["chunk_size"] = int(dep.chunk_size) if dep.chunk_size else None
    if dep.approach == "disaggregated" and plan.link:
        doc["kv_transfer"] = kv_transfer_document(plan.link, dep.link)
    doc["metrics"] = metrics_document(plan)
    doc["meets_slo"] = bool(plan.meets_slo)
    doc["reason"] = plan.reason
    if getattr(plan, "margin", None):
        doc["margin"] = margin_document(plan.margin)
    if getattr(plan, "speculation", None):
        doc["speculative_decoding"] = dict(plan.speculation)
    if plan.notes:
        doc["notes"] = list(plan.notes)
    doc["engine_hints"] = engine_hints(plan)
    doc["catalog"] = _catalog_embed(plan)
    if plan.verification:
        doc["verification"] = verification_document(plan.verification)
    return clean(doc)


def verification_document(v: dict) -> dict:
    """The simulator's verdict on a plan (``recommend --verify``; :func:`planner.optimize.verify`
    gives it in seconds) as the plan file keeps it."""
    return {"requests": v["requests"], "seed": v.get("seed"), "attainment": round(float(v["attainment"]), 4),
            "meets_slo": v["meets_slo"], "ttft_ms": {k: ms(x) for k, x in v["ttft"].items()},
            "tpot_ms": {k: ms(x) for k, x in v["tpot"].items()}, "preemptions": v["preemptions"],
            "analytic_gpus": v["analytic_gpus"], "instances_added": v["instances_added"]}


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


def _get(obj, name, default=None):
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def simulation_document(sim, seed: int | None = None, requested: int | None = None) -> dict:
    """``requests`` is the number simulated (``--requests``); ``counted`` those in the
    statistics (the simulator may drop a warm-up share)."""
    ttft, tpot = _get(sim, "ttft", {}) or {}, _get(sim, "tpot", {}) or {}
    doc = {
        "requests": requested if requested is not None else _get(sim, "requests"),
        "counted": _get(sim, "requests"),
        "seed": seed,
        "attainment": rnd(_get(sim, "attainment"), 4),
        "ttft_ms": {k: ms(ttft.get(k)) for k in PERCENTILE_KEYS},
        "tpot_ms": {k: ms(tpot.get(k)) for k in PERCENTILE_KEYS},
        "itl_max_ms": ms(_get(sim, "itl_max_s")),
        "throughput_tokens_per_s": {"input": rnd(_get(sim, "throughput_in_tok_s"), 1),
                                    "output": rnd(_get(sim, "throughput_out_tok_s"), 1)},
        "stable": bool(_get(sim, "stable")),
        "preemptions": _get(sim, "preemptions", 0),
        "preempted_share": rnd(_get(sim, "preempted_share", 0.0), 4),
        "duration_s": rnd(_get(sim, "duration_s"), 3),
        "wall_s": rnd(_get(sim, "wall_s"), 3),
    }
    if seed is None:
        del doc["seed"]
    return clean(doc)


# --------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------


def model_item(m) -> dict:
    return {
        "id": m.id, "name": m.name, "num_params": int(m.total_params),
        "active_params": int(m.active_params), "num_layers": m.num_layers,
        "hidden_size": m.hidden_size, "num_heads": m.num_heads, "num_kv_heads": m.num_kv_heads,
        "kv_bytes_per_token_bf16": whole(m.kv_bytes_per_token("bf16")),
        "moe": bool(m.is_moe), "mla": bool(m.is_mla),
        "default_dtype": m.default_dtype, "default_kv_dtype": m.default_kv_dtype,
    }


def gpu_item(g) -> dict:
    return {
        "id": g.id, "name": g.name,
        "bf16_flops_per_s": whole(g.peak_flops.get("bf16")),
        "fp8_flops_per_s": whole(g.peak_flops.get("fp8")),
        "fp4_flops_per_s": whole(g.peak_flops.get("fp4")),
        "hbm_bytes": whole(g.hbm_bytes), "hbm_bytes_per_s": whole(g.hbm_bytes_per_s),
        "gpus_per_node": g.gpus_per_node, "intra_node_link": g.intra_node_link,
        "inter_node_link": g.inter_node_link,
        "inter_node_bytes_per_s": whole(g.inter_node_bytes_per_s),
        "tdp_w": rnd(g.tdp_w, 1), "price_per_hour": rnd(g.price_per_hour, 4),
    }


def link_item(lk) -> dict:
    return {"id": lk.id, "name": lk.name, "bytes_per_s": whole(lk.bytes_per_s),
            "latency_s": rnd(lk.latency_s, 9)}


_ITEM = {"models": model_item, "gpus": gpu_item, "links": link_item}


def catalog_document(cat, tables=CATALOG_TABLES) -> dict:
    return clean({t: [_ITEM[t](e) for _, e in sorted(getattr(cat, t).items())] for t in tables})


def kernel_model_of(entry) -> str | None:
    """For a GPU: which kernel data its step model uses (measured tables or the analytic forms)."""
    if not hasattr(entry, "allreduce_table"):
        return None
    if entry.kernel_tables:
        return (f"measured all-reduce tables ({entry.kernel_tables}); GEMM and attention constants "
                "derived from silicon kernel tables")
    src = str(entry.sources.get("efficiency", ""))
    how = "borrowed constants" if "borrowed" in src else "constants from its catalog entry"
    return f"analytic model: no measured kernel tables; all-reduce from link bandwidth, {how}"


def model_summary(m) -> dict:
    """What the planner makes of a model: parameters, KV bytes per token at 1k and 32k tokens of
    context (its default KV dtype; sliding-window layers hold at most their window) and the
    stored dtype of each part."""
    kv = m.default_kv_dtype
    doc = {"params": int(m.total_params), "active_params": int(m.active_params),
           "kv_dtype": kv,
           "kv_bytes_per_token_at_1k": whole(m.kv_bytes_per_token(kv, 1024)),
           "kv_bytes_per_token_at_32k": whole(m.kv_bytes_per_token(kv, 32768)),
           "dtype": {"attention": m.part_dtype("attention", m.default_dtype),
                     **({"experts": m.part_dtype("experts", m.default_dtype)} if m.is_moe else {}),
                     ("dense_ffn" if not m.is_moe else "rest"): m.default_dtype,
                     "embeddings": "bf16"}}
    if m.window_layers:
        doc["sliding_window"] = {"layers": m.window_layers, "of_layers": m.attention_layers,
                                 "window_tokens": m.sliding_window}
    if m.no_attention_layers:
        doc["attention_free_layers"] = m.no_attention_layers
    if m.vision_params:
        doc["vision_params"] = int(m.vision_params)
    if m.quantization:
        doc["quantization"] = m.quantization
    return doc


def entry_document(kind: str, entry) -> dict:
    doc = {"kind": kind, "id": entry.id, "path": entry.path, "entry": dict(entry.raw),
           "kernel_model": kernel_model_of(entry)}
    if kind == "model":
        doc["summary"] = model_summary(entry)
    return clean(doc)


# --------------------------------------------------------------------------------------------
# KV report
# --------------------------------------------------------------------------------------------


def kv_document(rep) -> dict:
    doc = {
        "model": rep.model.id,
        "seq_len_tokens": int(rep.seq_len),
        "kv_dtype": rep.kv_dtype,
        "bytes_per_token": whole(rep.bytes_per_token),
        "bytes": whole(rep.bytes),
        "transfer_ms": {lid: ms(t) for lid, t in sorted(rep.transfer_s.items())},
    }
    if rep.decode_step_s is not None:
        doc["gpu"] = rep.gpu
        doc["batch"] = rep.batch
        doc["decode_step_ms"] = ms(rep.decode_step_s)
        doc["slower_than_decode"] = sorted(rep.slower_than_decode)
    return clean(doc)


# --------------------------------------------------------------------------------------------
# Step report
# --------------------------------------------------------------------------------------------


def step_document(rep) -> dict:
    """``pdplan step``: one forward pass (a :class:`planner.api.StepReport`)."""
    sm, cost, phase = rep.step_model, rep.cost, rep.phase
    tokens, batch, context = rep.tokens, rep.batch, rep.context
    doc = {
        "model": sm.model.id, "gpu": sm.gpu.id, "tp": sm.tp, "pp": sm.pp,
        "dtype": sm.dtype, "kv_dtype": sm.kv_dtype, "phase": phase,
    }
    if sm.dp > 1:
        doc["dp"] = sm.dp
    if sm.ep > 1:
        doc["ep"] = sm.ep
    if phase == "prefill":
        doc["tokens"] = tokens
    else:
        doc["batch"] = batch
        doc["context_tokens"] = context
    bound = cost.bound
    doc.update({
        "time_ms": ms(cost.time_s),
        "flops": whole(round(finite(cost.flops) or 0.0)),
        "bytes": whole(round(finite(cost.bytes) or 0.0)),
        "bound": str(bound.item() if hasattr(bound, "item") else bound),
        "compute_ms": ms(cost.compute_s),
        "memory_ms": ms(cost.memory_s),
        "comm_ms": ms(cost.comm_s),
        "overhead_ms": ms(cost.overhead_s),
        "breakdown_ms": {k: ms(v) for k, v in cost.breakdown.items()},
        "kv_capacity_tokens": count(sm.kv_capacity_tokens),
    })
    if sm.dp > 1:
        doc["kv_capacity_tokens_per_rank"] = count(sm.kv_capacity_tokens / sm.dp)
    return clean(doc)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

ROW_FIELDS = ("id", "kind", "model", "gpu", "dtype", "kv_dtype", "tp", "pp", "batch", "isl",
              "osl", "measured", "predicted", "unit", "error", "included", "source", "note")


def _row_dict(row) -> dict:
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        d = dataclasses.asdict(row)
    else:
        d = dict(row)
    out = {k: d[k] for k in ROW_FIELDS if k in d}
    out.update({k: v for k, v in d.items() if k not in out})
    if "error" in out:
        out["error"] = rnd(out["error"], 4)
    if "predicted" in out:
        out["predicted"] = rnd(out["predicted"], 4)
    return out


def validate_document(report) -> dict:
    return clean({"rows": [_row_dict(r) for r in _get(report, "rows", [])],
                  "summary": _get(report, "summary", {})})


# --------------------------------------------------------------------------------------------
# recommend / whatif
# --------------------------------------------------------------------------------------------


def candidate_document(c) -> dict:
    """A search candidate (used for the nearest misses of an infeasible request)."""
    return clean({"approach": c.approach, "total_gpus": int(c.gpus), "cost_per_hour": rnd(c.cost, 2),
                  "pools": [pool_document(p) for p in c.deployment.pools],
                  "chunk_size": c.deployment.chunk_size, "ttft_ms": ms(c.ttft), "tpot_ms": ms(c.tpot),
                  "meets_slo": bool(c.feasible)})


def recommend_document(rec) -> dict:
    return {"plan": plan_document(rec.plan),
            "alternatives": [plan_document(a, trace_rows=False) for a in rec.alternatives],
            "search": {"candidates_evaluated": int(rec.evaluated)}}


def whatif_document(rows, axes) -> dict:
    out = []
    for r in rows:
        d: dict[str, Any] = {"values": dict(r["values"])}
        if r["rec"] is not None:
            d["plan"] = plan_document(r["rec"].plan, trace_rows=False)
            d["alternatives"] = [plan_document(a, trace_rows=False) for a in r["rec"].alternatives]
        else:
            d["plan"] = None
            d["error"] = r["error"]
        out.append(d)
    return {"axes": list(axes), "rows": out}


# --------------------------------------------------------------------------------------------
# Timeline (pdplan timeline)
# --------------------------------------------------------------------------------------------


def _tl_value(tl, x, digits: int = 3):
    """A time of the timeline in its unit: whole ticks, or milliseconds."""
    if x is None:
        return None
    if tl.real:
        return ms(x, digits)
    v = finite(x)
    return None if v is None else (int(round(v)) if abs(v - round(v)) < 1e-9 else round(v, 3))


def timeline_document(tl) -> dict:
    """``pdplan timeline --json``: the cells of every row, the stall of every request."""
    real = tl.real
    suffix = "ms" if real else "ticks"
    doc = {"approach": tl.approach, "mode": "real" if real else "abstract",
           "unit": "ms" if real else "tick"}
    if tl.chunk_size is not None:
        doc["chunk_size"] = int(tl.chunk_size)
    if real:
        doc.update({k: v for k, v in tl.info.items() if k in ("model", "gpu", "tp", "dtype", "kv_dtype", "link")})
        doc["tick_ms"] = ms(tl.tick, 6)
    doc["requests"] = [{"request": i, "prompt_tokens": int(r.prompt), "output_tokens": int(r.output),
                        f"arrival_{suffix}": _tl_value(tl, r.arrival)}
                       for i, r in enumerate(tl.requests)]
    doc[f"column_starts_{suffix}"] = [_tl_value(tl, t) for t in tl.ticks]
    doc["rows"] = [{"request": row.request, "pool": row.pool, "cells": row.cells} for row in tl.rows]
    per = []
    for s in tl.stats:
        d = {"request": s.request, f"stalled_{suffix}": _tl_value(tl, s.stalled),
             f"worst_gap_{suffix}": _tl_value(tl, s.worst_gap),
             f"ttft_{suffix}": _tl_value(tl, s.ttft), f"finish_{suffix}": _tl_value(tl, s.finish)}
        if s.request in tl.transfer and real:
            d["kv_transfer_ms"] = ms(tl.transfer[s.request])
        per.append(d)
    eps = 1e-12
    doc["stall"] = {"unit": doc["unit"], "requests": per,
                    "stalled_requests": sum(1 for s in tl.stats if s.stalled > eps),
                    f"total_{suffix}": _tl_value(tl, sum(s.stalled for s in tl.stats))}
    doc["iterations"] = [{"pool": it.pool, f"start_{suffix}": _tl_value(tl, it.start),
                          f"end_{suffix}": _tl_value(tl, it.end),
                          "prefill": [[r, int(c)] for r, c, _ in it.pieces],
                          "decode": list(it.decodes)} for it in tl.iterations]
    return clean(doc)


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def calibration_document(report, profile) -> dict:
    """``pdplan calibrate --json``: the profile and the fit's errors per statistic."""
    doc = profile.document()
    doc["excluded"] = [{"file": r.path, "row": r.row, "why": "did not keep up with its request rate "
                        "(completed under 70% of it)"} for r in report.excluded]
    doc["rows"] = [{"file": o.result.path, "row": o.result.row, "statistic": o.name,
                    "measured": o.measured, "unit": "tok_s" if o.key.endswith("tok_s") else "s",
                    "error_uncalibrated": e[0], "error_calibrated": e[1],
                    "error_leave_one_out": e[2]}
                   for o, e in zip(report.observations, (report.errors[i] for i in range(len(report.observations))))]
    return clean(doc)
