"""Benchmark-result readers for ``pdplan calibrate``: one :class:`BenchResult` per benchmark run.

Each reader follows the schema its tool writes, read in the tool's own source (the versions
named below); nothing here imports those tools. Everything comes out in SI units (seconds,
tokens, requests per second); ``metrics`` holds only what the file states.

* ``vllm``: ``vllm bench serve --save-result [--save-detailed] [--append-result]``, one JSON
  object (several, one a line, with ``--append-result``). Schema: vllm 0.11.0
  ``vllm/benchmarks/serve.py`` (``benchmark()`` builds the result dict, ``main()`` adds
  ``date`` as ``%Y%m%d-%H%M%S``, ``model_id``, ``request_rate`` ("inf" as a string),
  ``burstiness``, ``max_concurrency``; ``mean_/median_/std_/p<N>_{ttft,tpot,itl,e2el}_ms`` for
  the ``--percentile-metrics`` chosen (default ttft,tpot,itl) at ``--metric-percentiles``
  (default 99); ``--save-detailed`` keeps ``input_lens``, ``output_lens``, ``ttfts`` and
  ``itls`` in seconds and ``errors``).
* ``sglang``: ``python -m sglang.bench_serving --output-file x.jsonl``, one JSON object a line
  (appended per run). Schema: sglang 0.5.3 ``sglang/bench_serving.py`` (``benchmark()``:
  ``request_rate`` (a float, ``Infinity`` for inf, or "trace"), ``max_concurrency``,
  ``completed``, ``total_input_tokens``, ``total_output_tokens``,
  ``mean_/median_/std_/p99_{ttft,tpot,itl}_ms``, ``p95_itl_ms``,
  ``mean_/median_/std_/p99_e2e_latency_ms``; ``--output-details`` adds the per-request lists).
  It names no model and no date.
* ``genai-perf``: ``profile_export_genai_perf.json``. Schema: genai-perf 0.0.16
  ``genai_perf/export_data/json_exporter.py`` and ``metrics/statistics.py``: one object per
  metric (``time_to_first_token``, ``inter_token_latency``, ``request_latency``,
  ``output_token_throughput``, ``request_throughput``, ``input_sequence_length``,
  ``output_sequence_length``, ``request_count``) with ``unit``, ``avg`` and ``p1``..``p99``,
  plus ``input_config`` (``model_names``; ``perf_analyzer.stimulus`` =
  ``{"concurrency": N}`` or ``{"request_rate": X}``; older releases flat ``model``,
  ``concurrency``, ``request_rate``).
* ``aiperf``: ``profile_export_aiperf.json``. Schema: aiperf 0.13.0
  ``aiperf/common/models/export_models.py`` (``JsonExportData`` schema_version 1.4: the same
  per-metric objects as genai-perf, plus ``benchmark_duration`` (unit "sec"),
  ``error_request_count``, ``inter_chunk_latency``, ``aiperf_version``, ``start_time``) and
  ``aiperf/config/config.py`` / ``config/phases.py`` for ``input_config`` (``models.items[].name``;
  ``phases[]`` with ``type`` concurrency|poisson|gamma|constant|..., ``concurrency``, ``rate``);
  older releases' ``input_config.endpoint.model_names`` and ``loadgen`` are read too.
* ``guidellm``: ``guidellm benchmark --output-path x.json``. Schema: guidellm 0.8.1
  ``guidellm/benchmark/schemas/report.py`` (``GenerativeBenchmarksReport``:
  ``config.backend.model``, ``benchmarks[]``), ``benchmark/schemas/benchmark.py`` and
  ``metrics.py`` (each benchmark's ``config.strategy`` with ``type_`` synchronous|concurrent
  (``streams``)|throughput|constant|poisson (``rate``) and ``max_concurrency``;
  ``scheduler_metrics`` start/end times;
  ``metrics.request_totals`` and per-metric ``successful`` distribution summaries with ``mean``,
  ``median``, ``percentiles.p50/p90/p99``) and ``guidellm/scheduler/strategies.py``.
* ``csv``: pdplan's own columns, documented in docs/calibrate.md (:data:`CSV_COLUMNS`).

What the tools call their latencies, in pdplan's names: ``tpot_s`` is the per-request mean
time per output token after the first, (end-to-end - TTFT) / (output tokens - 1): vLLM's and
SGLang's TPOT, genai-perf's and AIPerf's ``inter_token_latency`` and GuideLLM's
``inter_token_latency_ms``. ``itl_s`` is the gap between consecutive tokens (chunks) over all
tokens: vLLM's and SGLang's ITL and AIPerf's ``inter_chunk_latency``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone

from planner.errors import InvalidRequestError

FORMATS = ("vllm", "sglang", "aiperf", "genai-perf", "guidellm", "csv")
# A --save-detailed vLLM run keeps every request's token gaps and generated text: tens of
# thousands of requests reach tens of MB, so the cap is the trace reader's.
RESULT_MAX_BYTES = 64 * 1024 * 1024
EXPECTED = "a benchmark result file (" + ", ".join(FORMATS) + ")"
STATS = ("mean", "p50", "p90", "p99")
METRICS = ("ttft_s", "tpot_s", "itl_s", "e2e_s")

# The CSV columns (docs/calibrate.md, "Result files pdplan reads").
CSV_LATENCY = tuple(f"{m}_ms_{s}" for m in ("ttft", "tpot", "itl", "e2e") for s in STATS)
CSV_COLUMNS = ("model", "gpu", "tp", "engine", "engine_version", "isl", "osl", "qps",
               "concurrency", "completed", "failed", "duration_s", "date", *CSV_LATENCY,
               "output_tok_s", "request_s")
CSV_REQUIRED = ("isl", "osl", "completed")


@dataclass(frozen=True)
class BenchResult:
    """One benchmark run as pdplan reads it (SI units; see the module docstring)."""

    path: str
    row: int
    format: str
    model: str | None
    engine: str | None
    engine_version: str | None
    gpu: str | None
    tp: int | None
    qps: float | None
    concurrency: int | None
    isl: float
    osl: float
    completed: int
    failed: int
    duration_s: float | None
    metrics: dict
    per_request: dict | None
    date: str | None
    sha256: str


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def read_results(paths, fmt: str | None = None) -> list[BenchResult]:
    """Every benchmark in ``paths`` (a path or a list of them), in file order. ``fmt`` forces
    one of :data:`FORMATS`; by default each file's format is told from its content
    (:func:`detect_format`). Any problem is one InvalidRequestError naming the file and row."""
    from planner.files import decode_text, read_bytes

    if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__"):
        paths = [paths]
    if fmt is not None and fmt not in FORMATS:
        from planner.errors import unknown_name

        raise unknown_name("result format", fmt, FORMATS, "--format")
    out: list[BenchResult] = []
    for path in paths:
        path = str(path)
        raw = read_bytes(path, path, EXPECTED, max_bytes=RESULT_MAX_BYTES)
        sha = hashlib.sha256(raw).hexdigest()
        text = decode_text(raw, path, EXPECTED)
        del raw
        if not text.strip():
            raise InvalidRequestError(f"{path} is empty; expected {EXPECTED}")
        kind = fmt or detect_format(text, path)
        out.extend(_READERS[kind](text, path, sha))
    return out


def detect_format(text: str, path: str) -> str:
    """The format of a result file from its content (its keys or CSV header), never its name."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if not first.lstrip().startswith(("{", "[")):
        header = [h.strip().lower() for h in next(csv.reader([first]), [])]
        if set(CSV_REQUIRED) <= set(header):
            return "csv"
        raise _unknown(path, "neither JSON nor a CSV with pdplan's columns "
                             f"({', '.join(CSV_REQUIRED)} at least)")
    records = _json_records(text, path)
    obj = records[0][1]
    fmt = _detect_object(obj)
    if fmt is None:
        keys = ", ".join(sorted(str(k) for k in obj)[:8]) if isinstance(obj, dict) else ""
        raise _unknown(path, f"its keys ({keys}) match none of them" if keys
                       else "it is not a JSON object")
    return fmt


def _unknown(path: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"{path}: not a benchmark result pdplan knows ({why}); known "
                               f"formats: {', '.join(FORMATS)}")


def _detect_object(obj) -> str | None:
    if not isinstance(obj, dict):
        return None
    keys = set(obj)
    if isinstance(obj.get("benchmarks"), list):
        return "guidellm"
    cfg = obj.get("input_config")
    cfg = cfg if isinstance(cfg, dict) else {}
    per_metric = {"time_to_first_token", "request_latency", "request_throughput",
                  "output_token_throughput"} & keys
    if "aiperf_version" in keys or ({"loadgen", "phases", "models"} & set(cfg) and per_metric) \
            or ({"benchmark_duration", "error_request_count"} & keys and per_metric):
        return "aiperf"
    if per_metric and ("input_config" in keys or "time_to_first_token" in keys):
        return "genai-perf"
    if {"total_output_tokens_retokenized", "mean_e2e_latency_ms", "random_input_len",
            "accept_length"} & keys:
        return "sglang"
    if {"model_id", "tokenizer_id", "burstiness", "endpoint_type"} & keys:
        return "vllm"
    if "completed" in keys and any(k.endswith("_ttft_ms") for k in keys):
        return "vllm"  # the two tools share these keys and are read alike
    return None


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------


def _bounded_int(s: str) -> int:
    from planner.files import MAX_INT_DIGITS

    if len(s.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer with more than {MAX_INT_DIGITS} digits")
    return int(s)


def _parse(text: str, label: str):
    """The JSON ``text`` with :func:`planner.files.parse_json`'s limits, except that NaN and
    Infinity are read (SGLang writes ``Infinity`` for an unlimited request rate, both tools
    ``NaN`` for the statistics of a run whose requests all failed); the statistics are checked
    key by key afterwards, so the error names the key."""
    from planner.files import parse_json

    try:
        return parse_json(text, label)
    except InvalidRequestError as strict:
        if "not a finite number" not in str(strict):
            raise
        try:
            return json.loads(text, parse_int=_bounded_int)
        except (ValueError, RecursionError):
            raise strict from None


def _json_records(text: str, path: str) -> list[tuple[int, object]]:
    """(row, object) pairs: the whole file as one JSON document, or one object a line (JSONL;
    the row is the line number)."""
    stripped = text.strip()
    if "\n" not in stripped:
        return [(1, _parse(stripped, path))]
    try:
        return [(1, _parse(stripped, path))]
    except InvalidRequestError as whole:
        lines = [(i, ln) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
        if not all(ln.lstrip().startswith("{") for _, ln in lines):
            raise whole from None
        return [(i, _parse(ln, f"{path}: line {i}")) for i, ln in lines]


def _mapping(d: dict, key: str) -> dict:
    """``d[key]`` when it is a mapping, else an empty one (missing or of another type)."""
    v = d.get(key)
    return v if isinstance(v, dict) else {}


def _where(path: str, row: int) -> str:
    return f"{path}: row {row}"


def _number(obj: dict, key: str, where: str, *, required: bool = False, integer: bool = False,
            name: str | None = None):
    """``obj[key]`` as a finite, non-negative number (None when absent and not required)."""
    name = name or key
    v = obj.get(key) if isinstance(obj, dict) else None
    if v is None:
        if required:
            raise InvalidRequestError(f"{where}: {name} is missing")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidRequestError(f"{where}: {name} must be a number, got {v!r:.40}")
    if math.isnan(v):
        raise InvalidRequestError(f"{where}: {name} is NaN")
    if math.isinf(v):
        raise InvalidRequestError(f"{where}: {name} is infinite")
    if v < 0:
        raise InvalidRequestError(f"{where}: {name} is negative ({v:g})")
    if integer:
        if v != int(v):
            raise InvalidRequestError(f"{where}: {name} must be a whole number, got {v:g}")
        return int(v)
    return float(v)


def _text(obj: dict, key: str) -> str | None:
    v = obj.get(key)
    return v.strip() if isinstance(v, str) and v.strip() else None


def _rate(v, key: str, where: str) -> float | None:
    """A request rate: a positive number, ``inf`` (number or "inf" string), or None."""
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "trace")):
        return None
    if isinstance(v, str) and v.strip().lower() in ("inf", "infinity"):
        return math.inf
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v <= 0:
        raise InvalidRequestError(f"{where}: {key} must be a positive number or inf, "
                                  f"got {v!r:.40}")
    return float(v)


def _count(v, key: str, where: str) -> int | None:
    """A concurrency (a whole number of at least 1) or None."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or v < 1 or v != int(v):
        raise InvalidRequestError(f"{where}: {key} must be a whole number of at least 1, "
                                  f"got {v!r:.40}")
    return int(v)


def _check_completed(completed: int, failed: int, where: str) -> None:
    if completed == 0:
        raise InvalidRequestError(f"{where}: no completed requests ({failed:,} failed); a run "
                                  "with errors only cannot be fitted")


def _mean_length(total, completed: int, lens, key: str, where: str) -> float:
    if total is not None:
        return total / completed
    if lens:
        return sum(lens) / len(lens)
    raise InvalidRequestError(f"{where}: {key} is missing (and no per-request lengths)")


# --------------------------------------------------------------------------------------------
# vLLM and SGLang (one JSON object per run)
# --------------------------------------------------------------------------------------------

# pdplan metric -> (the tool's middle name in mean_<name>_ms, ...)
_SERVE_NAMES = {"ttft_s": ("ttft",), "tpot_s": ("tpot",), "itl_s": ("itl",),
                "e2e_s": ("e2el", "e2e_latency", "latency")}  # "latency": 2024 benchmark_serving.py


def _serve_metrics(obj: dict, where: str) -> dict:
    metrics: dict = {}
    for ours, names in _SERVE_NAMES.items():
        stats = {}
        for name in names:
            for stat, key in (("mean", f"mean_{name}_ms"), ("p50", f"median_{name}_ms"),
                              ("p50", f"p50_{name}_ms"), ("p90", f"p90_{name}_ms"),
                              ("p99", f"p99_{name}_ms")):
                v = _number(obj, key, where)
                if v is not None and stat not in stats:
                    stats[stat] = v / 1000.0
            for key in (f"std_{name}_ms", *(k for k in obj if k.startswith("p")
                                               and k.endswith(f"_{name}_ms"))):
                _number(obj, key, where)  # every stated statistic is checked
        if stats:
            metrics[ours] = stats
    for ours, key in (("output_tok_s", "output_throughput"), ("request_s", "request_throughput")):
        v = _number(obj, key, where)
        if v is not None:
            metrics[ours] = v
    return metrics


def _float_list(v, key: str, where: str) -> list[float]:
    if not isinstance(v, list):
        raise InvalidRequestError(f"{where}: {key} must be a list")
    out = []
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) \
                or x < 0:
            raise InvalidRequestError(f"{where}: {key}[{i}] must be a finite number >= 0, "
                                      f"got {x!r:.40}")
        out.append(float(x))
    return out


def _serve_per_request(obj: dict, where: str):
    """The per-request lists of a detailed run, successful requests only (a failed request has
    a non-empty ``errors`` entry), or None without them."""
    if not any(k in obj for k in ("ttfts", "itls", "input_lens", "output_lens")):
        return None
    lists: dict[str, list] = {}
    for key in ("input_lens", "output_lens", "ttfts"):
        if key in obj:
            lists[key] = _float_list(obj[key], key, where)
    if "itls" in obj:
        itls = obj["itls"]
        if not isinstance(itls, list):
            raise InvalidRequestError(f"{where}: itls must be a list of lists")
        lists["itls"] = [_float_list(x, f"itls[{i}]", where) for i, x in enumerate(itls)]
    n = {len(v) for v in lists.values()}
    errors = obj.get("errors")
    if isinstance(errors, list):
        n.add(len(errors))
    if len(n) > 1:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in lists.items())
        raise InvalidRequestError(f"{where}: the per-request lists differ in length ({sizes})")
    ok = [i for i in range(n.pop()) if not (isinstance(errors, list) and errors[i])]
    per = {}
    for key, ours in (("ttfts", "ttft_s"), ("itls", "itl_s"), ("input_lens", "input_lens"),
                      ("output_lens", "output_lens")):
        if key in lists:
            per[ours] = [lists[key][i] for i in ok]
    return per


def _vllm_date(v) -> str | None:
    if not isinstance(v, str):
        return None
    for fmt in ("%Y%m%d-%H%M%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(v.strip(), fmt).isoformat()
        except ValueError:
            continue
    return None


def _read_serve(text: str, path: str, sha: str, fmt: str) -> list[BenchResult]:
    out = []
    for row, obj in _json_records(text, path):
        where = _where(path, row)
        if not isinstance(obj, dict):
            raise InvalidRequestError(f"{where}: expected a JSON object")
        per = _serve_per_request(obj, where)
        errors = obj.get("errors")
        completed = _number(obj, "completed", where, required=True, integer=True)
        if isinstance(errors, list):
            failed = sum(1 for e in errors if e)
        else:
            prompts = _number(obj, "num_prompts", where, integer=True)
            failed = max(prompts - completed, 0) if prompts is not None else 0
        _check_completed(completed, failed, where)
        isl = _mean_length(_number(obj, "total_input_tokens", where), completed,
                           per and per.get("input_lens"), "total_input_tokens", where)
        osl = _mean_length(_number(obj, "total_output_tokens", where), completed,
                           per and per.get("output_lens"), "total_output_tokens", where)
        rate = _rate(obj.get("request_rate"), "request_rate", where)
        conc = _count(obj.get("max_concurrency"), "max_concurrency", where)
        qps = None if (conc is not None and rate in (None, math.inf)) else rate
        out.append(BenchResult(
            path=path, row=row, format=fmt,
            model=_text(obj, "model_id") or _text(obj, "model"),
            engine=None, engine_version=None, gpu=None, tp=None,
            qps=qps, concurrency=conc, isl=isl, osl=osl, completed=completed, failed=failed,
            duration_s=_number(obj, "duration", where), metrics=_serve_metrics(obj, where),
            per_request=per, date=_vllm_date(obj.get("date")), sha256=sha))
    return out


def _read_vllm(text, path, sha):
    return _read_serve(text, path, sha, "vllm")


def _read_sglang(text, path, sha):
    return _read_serve(text, path, sha, "sglang")


# --------------------------------------------------------------------------------------------
# genai-perf and AIPerf (one object per metric)
# --------------------------------------------------------------------------------------------

_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0}
# pdplan metric -> the tools' metric names (genai-perf 0.0.16 / aiperf 0.13.0)
_PERF_NAMES = {"ttft_s": "time_to_first_token", "tpot_s": "inter_token_latency",
               "itl_s": "inter_chunk_latency", "e2e_s": "request_latency"}


def _metric_obj(obj: dict, name: str, where: str) -> dict | None:
    m = obj.get(name)
    if m is None:
        return None
    if not isinstance(m, dict):
        raise InvalidRequestError(f"{where}: {name} must be an object with unit and avg")
    return m


def _perf_stats(obj: dict, name: str, where: str) -> dict | None:
    m = _metric_obj(obj, name, where)
    if m is None:
        return None
    unit = str(m.get("unit", "ms")).strip().lower()
    if unit not in _TIME_UNITS:
        raise InvalidRequestError(f"{where}: {name}.unit must be one of "
                                  f"{', '.join(_TIME_UNITS)}, got {m.get('unit')!r:.40}")
    scale = _TIME_UNITS[unit]
    stats = {}
    for stat, key in (("mean", "avg"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99")):
        v = _number(m, key, where, name=f"{name}.{key}")
        if v is not None:
            stats[stat] = v * scale
    for key in m:
        if key not in ("unit", "avg", "p50", "p90", "p99") and isinstance(m[key], (int, float)):
            _number(m, key, where, name=f"{name}.{key}")
    return stats or None


def _avg(obj: dict, name: str, where: str) -> float | None:
    m = _metric_obj(obj, name, where)
    return None if m is None else _number(m, "avg", where, name=f"{name}.avg")


def _perf_load(cfg: dict, where: str) -> tuple[float | None, int | None]:
    """(qps, concurrency) from genai-perf's or AIPerf's input_config."""
    phases = cfg.get("phases")
    if isinstance(phases, list):  # aiperf 0.13: the profiling phase
        runs = [p for p in phases if isinstance(p, dict) and p.get("kind") != "warmup"
                and p.get("name") != "warmup" and not p.get("exclude_from_results")]
        if runs:
            p = runs[-1]
            conc = _count(p.get("concurrency"), "input_config.phases.concurrency", where)
            if p.get("type") == "concurrency":
                return None, conc if conc is not None else 1
            return _rate(p.get("rate"), "input_config.phases.rate", where), conc
    for section in ("loadgen", "perf_analyzer"):  # older aiperf; genai-perf 0.0.16
        sub = cfg.get(section)
        if isinstance(sub, dict):
            sub = sub.get("stimulus", sub) if section == "perf_analyzer" else sub
            if isinstance(sub, dict):
                rate = _rate(sub.get("request_rate"), f"input_config.{section}.request_rate",
                             where)
                conc = _count(sub.get("concurrency"), f"input_config.{section}.concurrency",
                              where)
                if rate is not None or conc is not None:
                    return (rate if conc is None or rate not in (None, math.inf) else None), conc
    rate = _rate(cfg.get("request_rate"), "input_config.request_rate", where)
    conc = _count(cfg.get("concurrency"), "input_config.concurrency", where)
    return (rate if conc is None else None), conc


def _perf_model(cfg: dict) -> str | None:
    models = cfg.get("models")
    if isinstance(models, dict) and isinstance(models.get("items"), list) and models["items"]:
        first = models["items"][0]
        if isinstance(first, dict) and isinstance(first.get("name"), str):
            return first["name"]
    for holder in (cfg, _mapping(cfg, "endpoint")):
        for key in ("model_names", "model"):
            v = holder.get(key)
            if isinstance(v, list) and v and isinstance(v[0], str):
                return v[0]
            if isinstance(v, str) and v.strip():
                return v.strip()
    return None


def _read_perf(text: str, path: str, sha: str, fmt: str) -> list[BenchResult]:
    obj = _parse(text, path)
    where = _where(path, 1)
    if not isinstance(obj, dict):
        raise InvalidRequestError(f"{where}: expected a JSON object")
    cfg = _mapping(obj, "input_config")
    count = _avg(obj, "request_count", where)
    if count is None:
        raise InvalidRequestError(f"{where}: request_count is missing")
    completed = int(round(count))
    errors = _avg(obj, "error_request_count", where)
    failed = int(round(errors)) if errors is not None else 0
    _check_completed(completed, failed, where)
    isl = _avg(obj, "input_sequence_length", where)
    osl = _avg(obj, "output_sequence_length", where)
    if isl is None or osl is None:
        missing = "input_sequence_length" if isl is None else "output_sequence_length"
        raise InvalidRequestError(f"{where}: {missing} is missing")
    metrics: dict = {}
    for ours, name in _PERF_NAMES.items():
        stats = _perf_stats(obj, name, where)
        if stats:
            metrics[ours] = stats
    for ours, name in (("output_tok_s", "output_token_throughput"),
                       ("request_s", "request_throughput")):
        v = _avg(obj, name, where)
        if v is not None:
            metrics[ours] = v
    duration = None
    dm = _metric_obj(obj, "benchmark_duration", where)
    if dm is not None:
        d = _number(dm, "avg", where, name="benchmark_duration.avg")
        unit = str(dm.get("unit", "sec")).strip().lower()
        duration = d * _TIME_UNITS.get(unit, 1.0) if d is not None else None
    qps, conc = _perf_load(cfg, where)
    date = obj.get("start_time") if isinstance(obj.get("start_time"), str) else None
    return [BenchResult(
        path=path, row=1, format=fmt, model=_perf_model(cfg), engine=None, engine_version=None,
        gpu=None, tp=None, qps=qps, concurrency=conc, isl=isl, osl=osl, completed=completed,
        failed=failed, duration_s=duration, metrics=metrics, per_request=None, date=date,
        sha256=sha)]


def _read_genai_perf(text, path, sha):
    return _read_perf(text, path, sha, "genai-perf")


def _read_aiperf(text, path, sha):
    return _read_perf(text, path, sha, "aiperf")


# --------------------------------------------------------------------------------------------
# GuideLLM (a report of several benchmarks)
# --------------------------------------------------------------------------------------------

# pdplan metric -> (GuideLLM metric, seconds per its unit)
_GUIDELLM_NAMES = {"ttft_s": ("time_to_first_token_ms", 1e-3),
                   "tpot_s": ("inter_token_latency_ms", 1e-3),
                   "e2e_s": ("request_latency", 1.0)}


def _successful(metrics: dict, name: str, where: str) -> dict | None:
    m = metrics.get(name)
    if m is None:
        return None
    s = m.get("successful") if isinstance(m, dict) else None
    if not isinstance(s, dict):
        raise InvalidRequestError(f"{where}: metrics.{name}.successful must be a distribution "
                                  "summary (mean, median, percentiles)")
    return s


def _guidellm_stats(metrics: dict, name: str, scale: float, where: str) -> dict | None:
    s = _successful(metrics, name, where)
    if s is None:
        return None
    key = f"metrics.{name}.successful"
    stats = {}
    for stat, holder, k in (("mean", s, "mean"), ("p50", s, "median")):
        v = _number(holder, k, where, name=f"{key}.{k}")
        if v is not None:
            stats[stat] = v * scale
    pct = s.get("percentiles")
    if isinstance(pct, dict):
        for k in pct:
            v = _number(pct, k, where, name=f"{key}.percentiles.{k}")
            if k in ("p50", "p90", "p99") and v is not None:
                stats.setdefault(k, v * scale)
    return stats or None


def _guidellm_load(strategy: dict, where: str) -> tuple[float | None, int | None]:
    kind = strategy.get("type_", strategy.get("type"))
    cap = _count(strategy.get("max_concurrency"), "strategy.max_concurrency", where)
    if kind == "synchronous":
        return None, 1
    if kind == "concurrent":
        return None, _count(strategy.get("streams"), "strategy.streams", where)
    if kind == "throughput":
        return math.inf, cap
    if kind in ("constant", "poisson", "async"):
        return _rate(strategy.get("rate"), "strategy.rate", where), cap
    raise InvalidRequestError(f"{where}: strategy type {kind!r:.40} is not one pdplan reads; "
                              "known: synchronous, concurrent, throughput, constant, poisson")


def _iso_from_unix(v) -> str | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
        try:
            return datetime.fromtimestamp(v, tz=timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _read_guidellm(text: str, path: str, sha: str) -> list[BenchResult]:
    report = _parse(text, path)
    if not isinstance(report, dict) or not isinstance(report.get("benchmarks"), list):
        raise InvalidRequestError(f"{path}: a GuideLLM report needs a benchmarks list")
    if not report["benchmarks"]:
        raise InvalidRequestError(f"{path}: the GuideLLM report has no benchmarks")
    cfg = _mapping(report, "config")
    backend = _mapping(cfg, "backend")
    model = _text(backend, "model") or _text(cfg, "model")
    out = []
    for row, bench in enumerate(report["benchmarks"], start=1):
        where = _where(path, row)
        if not isinstance(bench, dict) or not isinstance(bench.get("metrics"), dict):
            raise InvalidRequestError(f"{where}: a benchmark needs a metrics object")
        metrics_in = bench["metrics"]
        bcfg = _mapping(bench, "config")
        strategy = bcfg.get("strategy")
        if not isinstance(strategy, dict):
            raise InvalidRequestError(f"{where}: config.strategy is missing")
        totals = metrics_in.get("request_totals")
        if not isinstance(totals, dict):
            raise InvalidRequestError(f"{where}: metrics.request_totals is missing")
        completed = _number(totals, "successful", where, required=True, integer=True,
                            name="metrics.request_totals.successful")
        failed = _number(totals, "errored", where, integer=True,
                         name="metrics.request_totals.errored") or 0
        _check_completed(completed, failed, where)
        lengths = []
        for name in ("prompt_token_count", "output_token_count"):
            s = _successful(metrics_in, name, where)
            if s is None:
                raise InvalidRequestError(f"{where}: metrics.{name} is missing")
            lengths.append(_number(s, "mean", where, required=True,
                                   name=f"metrics.{name}.successful.mean"))
        metrics: dict = {}
        for ours, (name, scale) in _GUIDELLM_NAMES.items():
            stats = _guidellm_stats(metrics_in, name, scale, where)
            if stats:
                metrics[ours] = stats
        for ours, name in (("output_tok_s", "output_tokens_per_second"),
                           ("request_s", "requests_per_second")):
            s = _successful(metrics_in, name, where)
            v = None if s is None else _number(s, "mean", where,
                                               name=f"metrics.{name}.successful.mean")
            if v is not None:
                metrics[ours] = v
        sched = _mapping(bench, "scheduler_metrics")
        start = _number(sched, "measure_start_time", where,
                        name="scheduler_metrics.measure_start_time")
        end = _number(sched, "measure_end_time", where, name="scheduler_metrics.measure_end_time")
        duration = end - start if start is not None and end is not None and end > start else None
        qps, conc = _guidellm_load(strategy, where)
        out.append(BenchResult(
            path=path, row=row, format="guidellm", model=model, engine=None,
            engine_version=None, gpu=None, tp=None, qps=qps, concurrency=conc,
            isl=lengths[0], osl=lengths[1], completed=completed, failed=failed,
            duration_s=duration, metrics=metrics, per_request=None,
            date=_iso_from_unix(sched.get("start_time")), sha256=sha))
    return out


# --------------------------------------------------------------------------------------------
# CSV (pdplan's own columns)
# --------------------------------------------------------------------------------------------


def _csv_number(cell: str, col: str, where: str, integer: bool = False):
    try:
        v = float(cell)
    except ValueError:
        raise InvalidRequestError(f"{where}: {col} must be a number, got {cell!r:.40}") from None
    return _number({col: v}, col, where, integer=integer)


def _read_csv(text: str, path: str, sha: str) -> list[BenchResult]:
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader)
        while not any(h.strip() for h in header):
            header = next(reader)
        names = [h.strip().lower() for h in header]
        for col in names:
            if col not in CSV_COLUMNS:
                from planner.errors import did_you_mean

                raise InvalidRequestError(
                    f"{path}: unknown column {col!r}{did_you_mean(col, CSV_COLUMNS)}; valid "
                    f"columns: {', '.join(CSV_COLUMNS)}")
        dup = next((c for c in names if names.count(c) > 1), None)
        if dup:
            raise InvalidRequestError(f"{path}: column {dup!r} appears twice")
        missing = [c for c in CSV_REQUIRED if c not in names]
        if missing:
            raise InvalidRequestError(f"{path}: missing column(s) {', '.join(missing)}; "
                                      f"required: {', '.join(CSV_REQUIRED)}")
        if "qps" not in names and "concurrency" not in names:
            raise InvalidRequestError(f"{path}: needs a qps or a concurrency column")
        out, row = [], 0
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            row += 1
            where = _where(path, row)
            if len(cells) > len(names):
                raise InvalidRequestError(f"{where}: {len(cells)} cells for {len(names)} columns")
            rec = {n: (cells[i].strip() if i < len(cells) else "") for i, n in enumerate(names)}
            out.append(_csv_record(rec, path, row, where, sha))
    except csv.Error as exc:
        raise InvalidRequestError(f"{path}: line {reader.line_num}: malformed CSV "
                                  f"({' '.join(str(exc).split())})") from None
    except StopIteration:
        raise InvalidRequestError(f"{path} is empty; expected {EXPECTED}") from None
    if not out:
        raise InvalidRequestError(f"{path}: has a header but no rows")
    return out


def _csv_record(rec: dict, path: str, row: int, where: str, sha: str) -> BenchResult:
    def num(col, integer=False):
        cell = rec.get(col, "")
        return _csv_number(cell, col, where, integer) if cell else None

    qps_cell, conc_cell = rec.get("qps", ""), rec.get("concurrency", "")
    if bool(qps_cell) == bool(conc_cell):
        got = "both" if qps_cell else "neither"
        raise InvalidRequestError(f"{where}: give exactly one of qps (open loop) and "
                                  f"concurrency (closed loop); it has {got}")
    qps = conc = None
    if qps_cell:
        if qps_cell.lower() in ("inf", "infinity"):
            qps = math.inf
        else:
            qps = num("qps")
            if qps == 0:
                raise InvalidRequestError(f"{where}: qps must be above 0 (or inf)")
    else:
        conc = num("concurrency", integer=True)
        if conc == 0:
            raise InvalidRequestError(f"{where}: concurrency must be at least 1")
    for col in CSV_REQUIRED:
        if not rec.get(col):
            raise InvalidRequestError(f"{where}: {col} is empty")
    completed = num("completed", integer=True)
    failed = num("failed", integer=True) or 0
    _check_completed(completed, failed, where)
    isl, osl = num("isl"), num("osl")
    tp = num("tp", integer=True)
    if tp == 0:
        raise InvalidRequestError(f"{where}: tp must be at least 1")
    metrics: dict = {}
    for m in ("ttft", "tpot", "itl", "e2e"):
        stats = {s: num(f"{m}_ms_{s}") / 1000.0 for s in STATS if rec.get(f"{m}_ms_{s}")}
        if stats:
            metrics[f"{m}_s"] = stats
    for col in ("output_tok_s", "request_s"):
        v = num(col)
        if v is not None:
            metrics[col] = v
    date = rec.get("date") or None
    if date is not None:
        try:
            date = (datetime.fromisoformat(date).isoformat() if "T" in date or " " in date
                    else datetime.strptime(date, "%Y-%m-%d").date().isoformat())
        except ValueError:
            raise InvalidRequestError(f"{where}: date must be an ISO date or date-time "
                                      f"(2025-06-30 or 2025-06-30T14:05:00), got {date!r:.40}"
                                      ) from None
    return BenchResult(
        path=path, row=row, format="csv", model=rec.get("model") or None,
        engine=(rec.get("engine") or "").lower() or None,
        engine_version=rec.get("engine_version") or None, gpu=rec.get("gpu") or None, tp=tp,
        qps=qps, concurrency=conc, isl=isl, osl=osl, completed=completed, failed=failed,
        duration_s=num("duration_s"), metrics=metrics, per_request=None, date=date, sha256=sha)


_READERS = {"vllm": _read_vllm, "sglang": _read_sglang, "aiperf": _read_aiperf,
            "genai-perf": _read_genai_perf, "guidellm": _read_guidellm, "csv": _read_csv}
