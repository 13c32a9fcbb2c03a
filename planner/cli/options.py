"""Shared pieces of the commands: parameter types, option groups (decorators), the builders
that turn parsed values into library objects, and the one-document output of ``--json``.

Only click and the standard library are imported at module level (``pdplan --help`` imports
no numpy, scipy or rich); everything else is imported where it is used.
"""

from __future__ import annotations

import math
from typing import NoReturn

import click

from planner import units
from planner.types import (  # numpy-free: the choices --help lists, from their one home
    APPROACHES,
    KV_DTYPES,
    KV_TRANSFER_DTYPES,
    OBJECTIVES,
    WEIGHT_DTYPES,
)

PERCENTILES = tuple(str(p) for p in units.PERCENTILES)
DEFAULT_CHUNK = 2048
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(message: str) -> NoReturn:
    """Raise the library's bad-input error (exit 2) from option checks in this module."""
    from planner.errors import InvalidRequestError

    raise InvalidRequestError(message)



# --------------------------------------------------------------------------------------------
# Parameter types that need no imports
# --------------------------------------------------------------------------------------------


class PositiveFloat(click.ParamType):
    """A finite number greater than zero (or at least ``minimum``) and at most ``maximum``, read
    by the input layer (:func:`planner.units.parse_number`: ASCII only, bounds in
    :mod:`planner.units`)."""

    name = "float"

    def __init__(self, maximum: float = math.inf, minimum: float = 0.0, lo_open: bool = True):
        self.maximum, self.minimum, self.lo_open = maximum, minimum, lo_open

    def convert(self, value, param, ctx):
        from planner.errors import InvalidRequestError
        from planner.units import parse_number

        try:
            return parse_number(value, "", self.minimum, self.maximum, lo_open=self.lo_open)
        except InvalidRequestError as exc:
            self.fail(str(exc).removeprefix(": "), param, ctx)


class Whole(click.IntRange):
    """click's IntRange, reading ASCII digits only (``int()`` takes other scripts' digits) and
    refusing overlong ones before ``int()`` does (Python's 4,300-digit limit)."""

    def convert(self, value, param, ctx):
        if not isinstance(value, int):
            from planner.units import MAX_NUMBER_CHARS, shown

            t = str(value).strip()
            digits = t.lstrip("+-").lstrip("0")
            if not (t.isascii() and t.lstrip("+-").isdigit()):
                self.fail(f"{shown(value)} is not a whole number", param, ctx)
            if len(digits) > MAX_NUMBER_CHARS:
                self.fail(f"{shown(value)} is not in the range {self._describe_range()}", param, ctx)
        return super().convert(value, param, ctx)


POSITIVE = PositiveFloat()
QPS = PositiveFloat(maximum=units.MAX_QPS, minimum=units.MIN_QPS, lo_open=False)
# Coefficient of variation of inter-arrival gaps; 0 (clockwork arrivals) is allowed and values
# under units.MIN_BURSTINESS are read as it (see there).
CV = PositiveFloat(maximum=units.MAX_BURSTINESS, minimum=0.0, lo_open=False)


def _size(text, flag: str):
    """``2048`` or ``2k`` -> tokens; ``None`` stays ``None``."""
    if text is None:
        return None
    from planner.units import parse_size

    return parse_size(text, flag)


def _duration(text, flag: str):
    if text is None:
        return None
    from planner.units import parse_duration

    return parse_duration(text, flag)


# --------------------------------------------------------------------------------------------
# Option groups (decorators) and the builders that consume them
# --------------------------------------------------------------------------------------------


def complete_ids(kind: str):
    """Shell completion (click's ``shell_complete``) of catalog ids: ``models``, ``gpus``,
    ``links``, ``engines``, ``transfers`` or ``all``, from the built-in catalog and ``--catalog``
    / PDPLAN_CATALOG. ``--gpu a,b`` completes the last id of its list; a model given as a path
    (``./config.json``) completes as a file. Nothing is printed on a broken catalog."""

    def complete(ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        if kind in ("models", "all") and incomplete.startswith((".", "/", "~")):
            return [CompletionItem(incomplete, type="file")]
        try:
            from planner.catalog import load_catalog

            root = ctx.find_root()
            cat = load_catalog(root.params.get("catalog_dir"))
            kinds = ("models", "gpus", "links") if kind == "all" else (kind,)
            names = sorted({n for k in kinds for n in getattr(cat, k)})
        except Exception:  # completion must never fail loudly
            return []
        head, sep, last = incomplete.rpartition(",") if kind == "gpus" else ("", "", incomplete)
        return [CompletionItem(head + sep + n) for n in names if n.startswith(last)]

    return complete


def _stack(*decorators):
    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


OUTPUT_FORMATS = ("table", "json", "yaml")
FORMAT_KEY = "pdplan.format"  # ctx.meta (shared by the group and its command): the chosen format


def output_format(as_json: bool, fmt: str | None) -> str:
    """``--json`` and ``--format`` -> one of OUTPUT_FORMATS (``--json`` is ``--format json``)."""
    if as_json and fmt not in (None, "json"):
        fail(f"--json/--format: --json means --format json, not with --format {fmt}; give one of them")
    return "json" if as_json else (fmt or "table")


def json_flag(f):
    """--json alone (calibrate, whose --format names the result files' format)."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON document on stdout (warnings go to stderr).")(f)


def json_option(f):
    """--json and --format table|json|yaml. The command sees ``as_json`` (true for json and
    yaml: one document on stdout); :func:`emit_json` writes it in the chosen format."""
    import functools

    @functools.wraps(f)
    def run(*args, **kwargs):
        fmt = output_format(kwargs.pop("as_json"), kwargs.pop("out_format"))
        click.get_current_context().meta[FORMAT_KEY] = fmt
        return f(*args, as_json=fmt != "table", **kwargs)

    run = click.option("--format", "out_format", type=click.Choice(OUTPUT_FORMATS),
                       help="Output: tables for people, or one JSON or YAML document on stdout "
                            "[default: table].")(run)
    return json_flag(run)


def _document_format(args) -> str | None:
    """The document format the command line asks for (``--json``, ``--format json|yaml``), read
    from the raw arguments: for errors raised before the options are parsed."""
    args = list(args)
    for i, a in enumerate(args):
        if a == "--":
            break
        if a == "--json":
            return "json"
        value = a.partition("=")[2] if a.startswith("--format=") else (
            args[i + 1] if a == "--format" and i + 1 < len(args) else None)
        if value in ("json", "yaml"):
            return value
    return None


def emit_error(fmt: str, message: str, exit_code: int, **extra) -> None:
    """``{"error": {"message", "exit_code", ...}}`` on stdout, for a ``--json``/``--format``
    consumer (the ``Error:`` line still goes to stderr)."""
    from planner.render import to_json, to_yaml

    doc = {"error": {"message": str(message), "exit_code": int(exit_code), **extra}}
    try:
        click.echo(to_yaml(doc).rstrip("\n") if fmt == "yaml" else to_json(doc))
    except (OSError, ValueError):  # stdout gone: the Error: line on stderr still says it
        pass


def model_options(f):
    """--model, --gpu, --dtype, --kv-dtype, --engine."""
    return _stack(
        click.option("--model", "model", metavar="NAME|config.json", shell_complete=complete_ids("models"),
                     help="Model id from the catalog, or a Hugging Face config.json path "
                          "[default: llama-3.1-70b]."),
        click.option("--gpu", "gpu", metavar="NAME", shell_complete=complete_ids("gpus"),
                     help="GPU id from the catalog [default: h100-sxm]."),
        click.option("--dtype", type=click.Choice(WEIGHT_DTYPES),
                     help="Weight dtype [default: the model's default_dtype]."),
        click.option("--kv-dtype", "kv_dtype", type=click.Choice(KV_DTYPES),
                     help="KV-cache dtype [default: the model's default_kv_dtype]."),
        click.option("--engine", "engine", metavar="NAME", shell_complete=complete_ids("engines"),
                     help="Serving engine profile: vllm, sglang, trtllm or one from --catalog "
                          "[default: vllm, or the --profile's engine]."),
        click.option("--profile", "profile", metavar="FILE",
                     help="A calibration profile (pdplan calibrate -o FILE): its fitted constants "
                          "apply to every prediction on its GPU, and plans embed it."),
    )(f)


def workload_options(f):
    """--qps, --isl, --osl, --isl-dist, --osl-dist, --trace, --burstiness, --concurrency,
    --think-time, --prefix-tokens, --prefix-hit-rate."""
    return _stack(
        click.option("--qps", type=QPS, help="Request rate, requests per second (1e-6 to 1e7)."),
        click.option("--isl", metavar="N", help="Input (prompt) length in tokens, e.g. 2048 or 2k "
                                                "[default: 2048]."),
        click.option("--osl", metavar="N", help="Output length in tokens [default: 256]."),
        click.option("--isl-dist", "isl_dist", metavar="DIST",
                     help="Prompt-length distribution instead of --isl, e.g. "
                          "lognormal:mean=2048,cv=0.6 or uniform:min=128,max=4096."),
        click.option("--osl-dist", "osl_dist", metavar="DIST",
                     help="Output-length distribution instead of --osl, e.g. exponential:mean=256."),
        click.option("--trace", metavar="FILE",
                     help="CSV or JSONL with input/output token counts per request "
                          "(overrides the lengths), optionally cached_tokens: prompt tokens "
                          "found in the prefix cache."),
        click.option("--burstiness", type=CV, metavar="CV",
                     help="Coefficient of variation of inter-arrival gaps, 0 (regular) to 10 "
                          "[default: 1 = Poisson]."),
        click.option("--concurrency", type=Whole(1, 1_000_000), metavar="N",
                     help="Closed loop instead of --qps: N clients, each sending its next request "
                          "when its previous one completes (as benchmark tools' "
                          "--max-concurrency does)."),
        click.option("--think-time", "think_time", metavar="DURATION",
                     help="With --concurrency: pause of a client between a response and its "
                          "next request [default: 0]."),
        click.option("--prefix-tokens", "prefix_tokens", metavar="N",
                     help="Prefix caching: a shared prefix of N tokens (a system prompt) at the "
                          "start of every prompt, cached once per instance: prefills compute "
                          "only the rest and its KV is held once, not per sequence "
                          "[default: 0]."),
        click.option("--prefix-hit-rate", "prefix_hit_rate", metavar="R",
                     help="Prefix caching: share (0 to 1) of each prompt's tokens after the "
                          "shared prefix found in the cache (earlier turns of a conversation); "
                          "their KV stays per sequence [default: 0]."),
    )(f)


def slo_options(f):
    """--ttft-slo, --tpot-slo, --percentile."""
    return _stack(
        click.option("--ttft-slo", "ttft_slo", metavar="DURATION",
                     help="Time-to-first-token target: 200ms, 0.2s or 200 (ms) [default: 1s]."),
        click.option("--tpot-slo", "tpot_slo", metavar="DURATION",
                     help="Time-per-output-token target [default: 50ms]."),
        click.option("--percentile", type=click.Choice(PERCENTILES),
                     help="Percentile the SLOs apply to [default: 90]."),
    )(f)


def transfer_option(f):
    """--kv-transfer: the KV-transfer engine of disaggregated deployments."""
    return click.option(
        "--kv-transfer", "kv_transfer", metavar="NAME", shell_complete=complete_ids("transfers"),
        help="KV-transfer engine of disaggregated pools: nixl-ucx, mooncake-rdma, mooncake-tcp "
             "or one from --catalog [default: the serving engine's: mooncake-rdma for sglang, "
             "nixl-ucx for vllm and trtllm].")(f)


def spec_options(f):
    """--spec-tokens, --acceptance, --draft-model: speculative decoding."""
    return _stack(
        click.option("--spec-tokens", "spec_tokens", metavar="K",
                     help="Speculative decoding: draft tokens proposed per step, 1 to "
                          f"{units.MAX_SPEC_TOKENS} (needs --acceptance). estimate/simulate run "
                          "with it; recommend/whatif turn it on where it pays."),
        click.option("--acceptance", "acceptance", metavar="A|P1,..,PK",
                     help="With --spec-tokens K: the mean accepted draft tokens per step (0 to "
                          "K), or K per-position probabilities (each draft token accepted given "
                          "the ones before it were), e.g. 0.8 or 0.8,0.7,0.6."),
        click.option("--draft-model", "draft_model", metavar="NAME", shell_complete=complete_ids("models"),
                     help="A separate draft model from the catalog [default: the model's MTP "
                          "head where it ships one, else an EAGLE-style one-layer head]."),
    )(f)


def confidence_option(f):
    """--confidence: the likely ranges' confidence (recommend also sizes to it)."""
    return click.option(
        "--confidence", "confidence", metavar="C",
        help="Confidence of the likely ranges shown beside TTFT, TPOT and throughput, 0.5 to "
             "below 1 [default: 0.8]. recommend also sizes so that the SLO holds at the upper "
             "end of the range, and says how many GPUs that margin costs.")(f)


def with_confidence(inputs, opts: dict):
    """``inputs`` with ``--confidence`` checked and set (unchanged without it)."""
    if opts.get("confidence") is not None:
        from planner.confidence import check_confidence

        inputs.confidence = check_confidence(opts["confidence"])
    return inputs


def common_options(f):
    """Everything a question about a workload takes: model, traffic, SLOs, the KV-transfer
    engine, speculative decoding and --json."""
    return _stack(model_options, workload_options, slo_options, transfer_option, spec_options,
                  json_option)(f)


def deployment_options(f):
    """A fixed deployment: --approach with --replicas/--chunk-size or --prefill/--decode."""
    return _stack(
        click.option("--approach", type=click.Choice(APPROACHES),
                     help="Serving approach [default: disaggregated with --prefill/--decode, "
                          "chunked with --chunk-size, else unified]."),
        click.option("--replicas", metavar="SPEC",
                     help="Unified/chunked instances as NxtpT[dpD][ppP][epE][@gpu], e.g. 4xtp8, or "
                          "1xtp1dp8ep8 (MoE: data-parallel attention on 8 ranks, experts over 8 GPUs)."),
        click.option("--chunk-size", "chunk_size", metavar="N",
                     help="Chunked prefill token budget per iteration, decodes included "
                          "[default: the engine's, e.g. vLLM 8192 on an H100, 2048 on an A100]."),
        click.option("--prefill", "prefill_spec", metavar="SPEC",
                     help="Disaggregated prefill pool, e.g. 6xtp4, 2xtp8@h200 or 4xtp1dp8ep8."),
        click.option("--decode", "decode_spec", metavar="SPEC",
                     help="Disaggregated decode pool, e.g. 2xtp8 or 1xtp1dp32ep32 (wide EP across nodes)."),
        click.option("--link", metavar="NAME", shell_complete=complete_ids("links"),
                     help="KV-transfer link override (a catalog link id)."),
        click.option("--kv-overlap/--no-kv-overlap", "kv_overlap", default=None,
                     help="Overlap the KV transfer with the prefill layer by layer [default: on]."),
        click.option("--kv-transfer-dtype", "kv_transfer_dtype", type=click.Choice(KV_TRANSFER_DTYPES),
                     help="Dtype the KV cache travels in [default: the KV dtype]."),
    )(f)


def catalog_of(ctx: click.Context):
    from planner.catalog import load_catalog

    obj = ctx.find_root().obj or {}
    return load_catalog(obj.get("catalog_dir"))


def _named(opts: dict, key: str, assumed: list) -> str:
    """The name the user gave for ``key``, or the documented default (then listed as assumed)."""
    from planner.api import DEFAULTS

    name = opts.get(key)
    if name is None:
        name = DEFAULTS[key]
        assumed.append(f"{key} {name}")
    return name


def resolve_model(cat, opts: dict, assumed: list):
    return cat.model(_named(opts, "model", assumed), "--model")


def resolve_dtypes(model, opts: dict, assumed: list) -> tuple[str, str]:
    dtype = opts.get("dtype")
    if dtype is None:
        dtype = model.default_dtype
        assumed.append(f"dtype {dtype}")
    kv_dtype = opts.get("kv_dtype")
    if kv_dtype is None:
        kv_dtype = model.default_kv_dtype
        assumed.append(f"KV {kv_dtype}")
    return dtype, kv_dtype


def resolve_engine(cat, opts: dict, assumed: list):
    return cat.engine(_named(opts, "engine", assumed), "--engine")


def resolve_gpu(cat, opts: dict, assumed: list) -> str:
    name = _named(opts, "gpu", assumed)
    cat.gpu(name, "--gpu")
    return name


def build_workload(opts: dict, qps: float, assumed: list):
    """The :class:`planner.workload.Workload` of the traffic options."""
    from planner.api import DEFAULTS
    from planner.workload import Workload, fixed, load_trace, parse_length_dist

    for a, b in (("isl", "isl_dist"), ("osl", "osl_dist")):
        if opts.get(a) is not None and opts.get(b) is not None:
            fail(f"--{a.replace('_', '-')} and --{b.replace('_', '-')}: give one of them, not both")
    trace = load_trace(opts["trace"]) if opts.get("trace") else None
    if trace is not None:
        overridden = [f"--{k.replace('_', '-')}" for k in ("isl", "osl", "isl_dist", "osl_dist")
                      if opts.get(k) is not None]
        if overridden:
            from planner.render import warn

            warn(f"--trace overrides {', '.join(overridden)}")
    lengths = {}
    for key in ("isl", "osl"):
        if opts.get(f"{key}_dist") is not None:
            lengths[key] = parse_length_dist(opts[f"{key}_dist"], f"--{key}-dist")
        elif opts.get(key) is not None:
            lengths[key] = fixed(_size(opts[key], f"--{key}"))
        else:
            lengths[key] = fixed(DEFAULTS[key])
            if trace is None:
                assumed.append(f"{key} {DEFAULTS[key]}")
    cv = 1.0 if opts.get("burstiness") is None else max(float(opts["burstiness"]), units.MIN_BURSTINESS)
    conc = opts.get("concurrency")
    think = _duration(opts.get("think_time"), "--think-time")
    if think is not None and conc is None:
        fail("--think-time: only with --concurrency (closed-loop clients)")
    if conc is not None and opts.get("burstiness") is not None:
        fail("--burstiness: only with --qps; closed-loop clients (--concurrency) send when served")
    wl = Workload(qps, lengths["isl"], lengths["osl"], arrival_cv=cv, trace=trace,
                  concurrency=conc, think_s=think or 0.0)
    return with_prefix(wl, opts, assumed)


def with_prefix(wl, opts: dict, assumed: list):
    """``wl`` with the prefix cache of --prefix-tokens / --prefix-hit-rate, checked (the
    workload names the flag and the valid range); the assumption is listed."""
    from dataclasses import replace

    from planner.errors import InvalidRequestError
    from planner.workload import PrefixCache

    tokens, rate = opts.get("prefix_tokens"), opts.get("prefix_hit_rate")
    if tokens is None and rate is None:
        return wl
    top, what = wl.prefix_limit()
    n = 0
    if tokens is not None and str(tokens).strip() != "0":
        try:
            n = _size(tokens, "--prefix-tokens")
        except InvalidRequestError:
            fail(f"--prefix-tokens: must be a whole number of tokens from 0 to {top:,} (shorter "
                 f"than {what}), got {units.shown(tokens)}")
    r = 0.0 if rate is None else units.parse_number(rate, "--prefix-hit-rate", 0.0, 1.0,
                                                    what="a share")
    wl = replace(wl, prefix=PrefixCache(int(n), float(r)))
    wl.check_prefix()
    if wl.prefix.on:
        assumed.append(wl.prefix.describe())
    return wl


def build_slo(opts: dict, assumed: list, ttft_default: float | None = None):
    from planner.api import DEFAULTS, SLO
    from planner.render import fmt_seconds

    ttft = _duration(opts.get("ttft_slo"), "--ttft-slo")
    if ttft is None:
        ttft = DEFAULTS["ttft_slo"] if ttft_default is None else ttft_default
        assumed.append(f"TTFT SLO {fmt_seconds(ttft)}")
    tpot = _duration(opts.get("tpot_slo"), "--tpot-slo")
    if tpot is None:
        tpot = DEFAULTS["tpot_slo"]
        assumed.append(f"TPOT SLO {fmt_seconds(tpot)}")
    if opts.get("percentile") is None:
        pct = int(DEFAULTS["percentile"])
        assumed.append(f"P{pct}")
    else:
        pct = int(opts["percentile"])
    return SLO(ttft, tpot, pct)


def build_inputs(ctx: click.Context, opts: dict, *, require_qps: bool = True,
                 default_qps: float | None = None, ttft_default: float | None = None):
    """:class:`planner.api.Inputs` from :func:`common_options`; the defaults it had to assume
    are listed in ``Inputs.assumed`` (in the order the options are documented)."""
    from planner.api import Inputs

    cat = catalog_of(ctx)
    assumed: list = []
    model = resolve_model(cat, opts, assumed)
    gpu = resolve_gpu(cat, opts, assumed)
    qps = opts.get("qps")
    if qps is not None and opts.get("concurrency") is not None:
        fail("--qps and --concurrency: give one of them: an open-loop request rate or a number of "
             "closed-loop clients")
    if qps is None:
        if require_qps and default_qps is None and opts.get("concurrency") is None:
            fail("--qps: missing; give the request rate in requests per second (e.g. --qps 20) or "
                 "closed-loop clients (e.g. --concurrency 64)")
        qps = default_qps if default_qps is not None else 1.0
    wl = build_workload(opts, qps, assumed)
    slo = build_slo(opts, assumed, ttft_default)
    dtype, kv_dtype = resolve_dtypes(model, opts, assumed)
    engine = resolve_engine(cat, opts, assumed)
    xfer = cat.kv_transfer(opts["kv_transfer"], "--kv-transfer") if opts.get("kv_transfer") else None
    spec = build_spec(cat, model, opts, assumed)
    inp = Inputs(model, wl, slo, dtype, kv_dtype, cat, gpu=gpu, assumed=assumed, engine=engine,
                 kv_transfer=xfer, spec=spec)
    apply_profile(inp, opts)
    return inp


def apply_profile(inp, opts: dict) -> None:
    """Load ``--profile`` into ``inp`` (its calibration, on the GPUs it applies to); without
    ``--engine`` the profile's engine is the one assumed."""
    path = opts.get("profile")
    if not path:
        return
    from planner.calibrate.profile import check_applies, load_profile

    prof = load_profile(path)
    gpus = opts.get("gpu_list") or [inp.gpu]
    inp.calibration_gpus = check_applies(prof, inp.model.id, gpus, bool(opts.get("force")))
    inp.profile, inp.calibration = prof, prof.calibration
    if opts.get("engine") is None and prof.engine in inp.catalog.engines:
        inp.engine = inp.catalog.engines[prof.engine]
        inp.assumed[:] = [a for a in inp.assumed if not a.startswith("engine ")]
        inp.assumed.append(f"engine {prof.engine} (the profile's)")


def build_spec(cat, model, opts: dict, assumed: list):
    """:class:`planner.perf.speculative.SpecDecode` from :func:`spec_options` (None when off);
    the default draft of a model without MTP layers is an assumption, and listed as one."""
    from planner.perf import speculative

    spec = speculative.build(opts.get("spec_tokens"), opts.get("acceptance"),
                             opts.get("draft_model"), model, cat)
    if spec is not None and spec.kind == "eagle":
        assumed.append(f"draft: an EAGLE-style one-layer head ({model.id} ships no MTP layers)")
    return spec


def check_pool(inputs, pool, flag: str) -> None:
    """Fail early, naming ``flag``, when a pool's GPU, parallelism or memory fit is wrong."""
    from planner.api import step_model
    from planner.errors import DoesNotFitError
    from planner.perf import check_parallel

    gpu = inputs.catalog.gpu(pool.gpu, flag)
    check_parallel(inputs.model, gpu, pool.tp, pool.pp, flag, ep=pool.ep, dp=pool.dp)
    sm = step_model(inputs, pool)
    try:
        sm.require_fit()
    except DoesNotFitError as exc:
        raise DoesNotFitError(f"{flag}: {exc}") from None


def build_deployment(ctx: click.Context, inputs, opts: dict):
    """:class:`planner.serving.common.Deployment` from :func:`deployment_options`."""
    from planner.api import parse_spec
    from planner.serving.common import Deployment, Pool

    approach = opts.get("approach")
    disagg_given = opts.get("prefill_spec") is not None or opts.get("decode_spec") is not None
    if approach is None:
        if disagg_given:
            approach = "disaggregated"
        elif opts.get("chunk_size") is not None:
            approach = "chunked"
        elif opts.get("replicas") is not None:
            approach = "unified"
        else:
            fail("--approach: missing; choose one of unified, chunked, disaggregated "
                 "(with --replicas, or --prefill and --decode)")
        inputs.assumed.append(f"approach {approach}")
    gpu = inputs.gpu
    kv_only = [("--link", opts.get("link") is not None),
               ("--kv-overlap/--no-kv-overlap", opts.get("kv_overlap") is not None),
               ("--kv-transfer-dtype", opts.get("kv_transfer_dtype") is not None),
               ("--kv-transfer", opts.get("kv_transfer") is not None)]
    if approach in ("unified", "chunked"):
        if disagg_given:
            flag = "--prefill" if opts.get("prefill_spec") is not None else "--decode"
            fail(f"{flag}: only for --approach disaggregated; use --replicas with --approach {approach}")
        for flag, given in kv_only:
            if given:
                fail(f"{flag}: only for --approach disaggregated")
        if opts.get("replicas") is None:
            fail(f"--replicas: missing; --approach {approach} needs e.g. --replicas 4xtp8")
        chunk = None
        if approach == "chunked":
            chunk = _size(opts.get("chunk_size"), "--chunk-size")
            if chunk is None:
                g0 = inputs.catalog.gpu(parse_spec(opts["replicas"], gpu, "--replicas")[3], "--replicas")
                chunk = inputs.engine.token_budget(g0) if inputs.engine is not None else DEFAULT_CHUNK
                inputs.assumed.append(f"chunk {chunk}")
        elif opts.get("chunk_size") is not None:
            fail("--chunk-size: only for --approach chunked")
        n, tp, pp, g, ep, dp = parse_spec(opts["replicas"], gpu, "--replicas")
        pool = Pool("unified", g, n, tp, pp, ep, dp)
        check_pool(inputs, pool, "--replicas")
        return Deployment(approach, (pool,), chunk_size=chunk)
    # disaggregated
    if opts.get("replicas") is not None:
        fail("--replicas: only for --approach unified or chunked; use --prefill and --decode")
    if opts.get("chunk_size") is not None:
        fail("--chunk-size: only for --approach chunked")
    pools = []
    for role, key in (("prefill", "prefill_spec"), ("decode", "decode_spec")):
        if opts.get(key) is None:
            fail(f"--{role}: missing; --approach disaggregated needs --prefill and --decode, "
                 "e.g. --prefill 6xtp4 --decode 2xtp8")
        n, tp, pp, g, ep, dp = parse_spec(opts[key], gpu, f"--{role}")
        pool = Pool(role, g, n, tp, pp, ep, dp)
        check_pool(inputs, pool, f"--{role}")
        pools.append(pool)
    link = opts.get("link")
    if link is not None:
        inputs.catalog.link(link, "--link")
    overlap = True if opts.get("kv_overlap") is None else bool(opts["kv_overlap"])
    return Deployment("disaggregated", tuple(pools), link=link, kv_overlap=overlap,
                      kv_transfer_dtype=opts.get("kv_transfer_dtype"))


def escape_markup(text) -> str:
    """A file name as rich prints it literally (``[x]`` is not markup)."""
    from rich.markup import escape

    return escape(str(text))


def emit_json(doc) -> None:
    """The command's one document on stdout: JSON, or YAML under ``--format yaml``."""
    from planner.render import to_json, to_yaml

    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get(FORMAT_KEY) == "yaml":
        click.echo(to_yaml(doc).rstrip("\n"))
    else:
        click.echo(to_json(doc))


# --------------------------------------------------------------------------------------------
# Options shared by the plan commands
# --------------------------------------------------------------------------------------------


PROFILE_FORCE = click.option("--force", is_flag=True,
                             help="Apply a --profile fitted on another model or GPU.")
PLAN_OUTPUT = click.option("-o", "--output", metavar="FILE|-",
                           help="Write the plan as YAML to FILE (mode 0666 less the umask: 0644 "
                                "under the usual 022), or to stdout with -o - (then nothing else "
                                "goes there).")


def plan_output(output, force: bool, as_json: bool, outs):
    """``-o FILE`` -> (the Output, False); ``-o -`` -> (None, True): the plan's YAML is stdout's
    one document; no ``-o`` -> (None, False)."""
    if output is None:
        return None, False
    if output == "-":
        if as_json:
            fail("-o -: the plan's YAML would share stdout with the --json/--format document; "
                 "give -o FILE, or --format yaml alone")
        return None, True
    return outs.add(output, "-o", force), False



WHATIF_AXES = ("qps", "concurrency", "isl", "osl", "ttft-slo", "tpot-slo", "gpu", "model", "engine",
               "prefix-tokens", "prefix-hit-rate")


def search_options(f):
    """--approach (auto), --max-gpus, --objective: what recommend and whatif search over."""
    return _stack(
        click.option("--approach", type=click.Choice(("auto",) + APPROACHES), default="auto",
                     show_default=True, help="Restrict the search to one approach."),
        click.option("--max-gpus", "max_gpus", type=Whole(1, 100_000), default=1024,
                     show_default=True, help="Largest total GPU count considered."),
        click.option("--objective", type=click.Choice(OBJECTIVES), default="gpus", show_default=True,
                     help="Minimise GPUs (ties: cost, then headroom) or dollars per hour."),
    )(f)


def _gpu_list(ctx, opts: dict) -> list:
    """``--gpu a,b``: several GPU types to search (pools may mix them)."""
    raw = opts.get("gpu")
    if raw is None or "," not in raw:
        return []
    names = [g.strip() for g in raw.split(",") if g.strip()]
    if not names:
        fail("--gpu: empty list; give one or more GPU ids separated by commas")
    cat = catalog_of(ctx)
    for g in names:
        cat.gpu(g, "--gpu")
    opts["gpu"] = names[0]
    opts["gpu_list"] = names
    return names


def _approaches(approach: str):
    return APPROACHES if approach in (None, "auto") else (approach,)


def _verify(rec, inputs, requests: int, seed: int, max_gpus: int):
    """recommend --verify: the simulator checks the plan (and sizes it up where the analytic
    model was optimistic); the verdict is kept in the plan's document form."""
    from planner.optimize import verify
    from planner.progress import Progress
    from planner.render import ms

    with Progress(f"verifying: simulating {requests:,} requests"):
        rec = verify(inputs, rec, requests, seed, max_gpus)
    v = rec.plan.verification
    rec.plan.verification = {
        "requests": v["requests"], "seed": seed, "attainment": round(float(v["attainment"]), 4),
        "meets_slo": v["meets_slo"], "ttft_ms": {k: ms(x) for k, x in v["ttft"].items()},
        "tpot_ms": {k: ms(x) for k, x in v["tpot"].items()}, "preemptions": v["preemptions"],
        "analytic_gpus": v["analytic_gpus"], "instances_added": v["instances_added"]}
    return rec
