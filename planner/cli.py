"""The ``pdplan`` command line: parse options, call the library, render the result.

Only click and the standard library are imported at module level so that ``pdplan --help``
starts fast (no numpy, scipy or rich); every command imports what it needs when it runs.
Errors the user can fix (:class:`planner.errors.PdplanError`) become one ``Error:`` line on
stderr with the error's exit code; anything else is a bug and says so (``--debug`` shows it).

Option groups are decorators (:func:`model_options`, :func:`workload_options`,
:func:`slo_options`, :func:`deployment_options`) and the matching builders
(:func:`build_inputs`, :func:`build_deployment`) turn the parsed values into library objects, so
new commands reuse the same flags, defaults and error messages.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import warnings
from typing import NoReturn

import click

from planner import __version__, units

WEIGHT_DTYPES = ("bf16", "fp8", "fp4", "int4")  # planner.catalog.WEIGHT_DTYPES (kept in sync by a test)
KV_DTYPES = ("bf16", "fp8")  # planner.catalog.KV_DTYPES
KV_TRANSFER_DTYPES = ("bf16", "fp8", "int4")  # planner.catalog.KV_TRANSFER_DTYPES
APPROACHES = ("unified", "chunked", "disaggregated")  # planner.serving.common.APPROACHES
PERCENTILES = tuple(str(p) for p in units.PERCENTILES)
DEFAULT_CHUNK = 2048
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# --------------------------------------------------------------------------------------------
# Errors: one line, the right exit code, no traceback unless --debug
# --------------------------------------------------------------------------------------------


class _UserError(click.ClickException):
    """A library error shown as ``Error: <message>`` with the library's exit code."""

    def __init__(self, message: str, exit_code: int = 2):
        # Bad input is one line; "no plan" (exit 3) keeps its lines: one per approach.
        text = str(message) if exit_code == 3 else " ".join(str(message).split("\n"))
        super().__init__(text)
        self.exit_code = exit_code  # type: ignore[misc, unused-ignore]  # click 8.5 declares it per class; ours varies


class PdplanGroup(click.Group):
    """Turns exceptions from any subcommand into click errors with the contract's exit codes."""

    def parse_args(self, ctx, args):
        # A bare `pdplan` shows the help and succeeds (click 8.2+ would exit 2 with no Error: line).
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        pending = getattr(ctx, "_protected_args", None)  # click 8.2+ (protected_args before)
        pending = ctx.protected_args if pending is None else pending
        asked = _document_format([*pending, *ctx.args])
        try:
            return self._invoke(ctx)
        except click.ClickException as exc:  # bad input, no plan, a bug: also as a document
            fmt = ctx.meta.get(FORMAT_KEY) or asked
            if fmt in ("json", "yaml"):
                emit_error(fmt, exc.format_message(), exc.exit_code)
            raise

    def _invoke(self, ctx):
        from planner.errors import PdplanError

        debug = bool(ctx.params.get("debug"))
        try:
            with warnings.catch_warnings():
                if not debug:  # numeric warnings of overloaded queues are not for users
                    warnings.simplefilter("ignore", RuntimeWarning)
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C: one line, exit 130 (no output file moved in)
            if debug:
                import traceback

                traceback.print_exc()
            _interrupted(exc)
        except BrokenPipeError:  # the reader of our output went away (`pdplan ... | head`)
            _quiet_stdout()
            raise click.exceptions.Exit(EXIT_PIPE) from None
        except PdplanError as exc:
            if debug:
                import traceback

                traceback.print_exc()
            raise _UserError(str(exc), getattr(exc, "exit_code", 2)) from None
        except Exception as exc:
            if debug:
                raise
            msg = " ".join(str(exc).split())
            raise _UserError(f"internal error: {type(exc).__name__}: {msg} "
                             "(run with --debug for the traceback)", 1) from None


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command
EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


EXIT_TERMINATED = 143  # 128 + SIGTERM


class _Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C so that temporary files are removed."""


def _interrupted(exc=None):
    term = isinstance(exc, _Terminated)
    try:
        click.echo("Terminated." if term else "Interrupted.", err=True)
    except (OSError, ValueError):
        pass
    raise click.exceptions.Exit(EXIT_TERMINATED if term else EXIT_INTERRUPTED)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail a second time."""
    import os

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (CliRunner)
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


# Characters pdplan or its tables can print, and what they become where the terminal's encoding
# (LANG=C, PYTHONIOENCODING=ascii) has no room for them; anything else becomes "?".
ASCII_FALLBACK = {"\u2026": "...", "\u00d7": "x", "\u2264": "<=", "\u2265": ">=", "\u2014": "-",
                  "\u2013": "-", "\u2212": "-", "\u00b5": "u", "\u03bc": "u", "\u2588": "#",
                  "\u2500": "-", "\u2502": "|", "\u2192": "->", "\u00b1": "+/-", "\u2248": "~",
                  "\u00b7": ".", "\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'}


def _ascii_fallback(exc):
    """Encode-error handler ``pdplan-ascii``: one character at a time, an ASCII stand-in (a
    file name's undecodable byte goes back out as that byte)."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    ch = exc.object[exc.start]
    if "\udc80" <= ch <= "\udcff":
        return bytes([ord(ch) - 0xDC00]), exc.start + 1
    return ASCII_FALLBACK.get(ch, "?"), exc.start + 1


def _setup_streams() -> None:
    """Let stdout and stderr print what their encoding cannot hold (ASCII stand-ins), so output
    works under LANG=C or PYTHONIOENCODING=ascii as well as in a UTF-8 terminal."""
    import codecs

    codecs.register_error("pdplan-ascii", _ascii_fallback)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and getattr(stream, "errors", "strict") in ("strict", "surrogateescape", None):
            try:
                stream.reconfigure(errors="pdplan-ascii")
            except (AttributeError, ValueError, OSError):
                pass


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
# The group
# --------------------------------------------------------------------------------------------


@click.group("pdplan", cls=PdplanGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="pdplan")
@click.option("--debug", is_flag=True,
              help="Show the traceback of any error (internal errors, and user errors above their "
                   "one-line message) and numeric warnings.")
@click.option("--catalog", "catalog_dir", metavar="DIR", envvar="PDPLAN_CATALOG",
              type=click.Path(exists=True, file_okay=False),
              help="Directory of extra catalog entries (models/, gpus/, links/); they override "
                   "built-ins with the same id. Also PDPLAN_CATALOG.")
@click.pass_context
def cli(ctx, debug, catalog_dir):
    """Capacity planner for LLM inference: unified, chunked-prefill or disaggregated serving,
    sized to latency SLOs."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["catalog_dir"] = catalog_dir


def main(argv=None) -> None:
    """Console-script entry point (``pdplan``) and ``python -m planner``: the command, then
    Ctrl-C (exit 130, one line), a closed pipe (exit 141, silent) and streams whose encoding
    cannot hold every character handled here, outside any command."""
    import signal

    _setup_streams()

    def on_term(signum, frame):  # `kill`: unwind like Ctrl-C, so temporary files are removed
        raise _Terminated

    try:
        old_term = signal.signal(signal.SIGTERM, on_term)
    except (AttributeError, ValueError, OSError):  # no SIGTERM here, or not the main thread
        old_term = None
    try:
        cli.main(args=argv, prog_name="pdplan")
        code = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt as exc:
        try:
            _interrupted(exc)
        except click.exceptions.Exit as done:
            code = done.exit_code
    except BrokenPipeError:
        _quiet_stdout()
        code = EXIT_PIPE
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        code = EXIT_PIPE
    except (OSError, ValueError):
        pass
    sys.exit(code)


# --------------------------------------------------------------------------------------------
# estimate / simulate
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


@cli.command()
@common_options
@deployment_options
@PLAN_OUTPUT
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists; apply a --profile "
                                            "fitted on another model or GPU.")
@confidence_option
@click.pass_context
def estimate(ctx, as_json, output, **opts):
    """Metrics of one fixed deployment at a request rate, and the SLO check.

    \b
    Examples:
      pdplan estimate --approach unified --replicas 4xtp8 --qps 20
      pdplan estimate --approach chunked --replicas 4xtp8 --chunk-size 1024 --qps 20
      pdplan estimate --approach disaggregated --prefill 6xtp4 --decode 2xtp8 --qps 20
      pdplan estimate --approach unified --replicas 4xtp8 --qps 20 -o plan.yaml
    """
    from planner import api, render
    from planner.files import Outputs

    outs = Outputs()  # checked now, before any work
    out_file, to_stdout = plan_output(output, bool(opts.get("force")), as_json, outs)
    inputs = with_confidence(build_inputs(ctx, opts), opts)
    dep = build_deployment(ctx, inputs, opts)
    plan = api.estimate(inputs, dep)
    if to_stdout:
        render.print_assumed(render.stderr_console(), inputs.assumed)
        click.echo(render.to_yaml(render.plan_document(plan)).rstrip("\n"))
        return
    if out_file is not None:
        try:
            out_file.stage(render.to_yaml(render.plan_document(plan)))
            outs.commit()
        finally:
            outs.discard()
    if as_json:
        emit_json({"plan": render.plan_document(plan)})
        return
    con = render.stdout_console()
    render.print_assumed(con, inputs.assumed)
    render.show_plan(con, plan)
    if output is not None:
        con.print(f"wrote {escape_markup(output)}")


def _plans_module():
    if importlib.util.find_spec("planner.plans") is None:
        return None
    return importlib.import_module("planner.plans")


def _load_plan_file(path: str, opts: dict):
    """(Inputs, Deployment) from a plan YAML via ``planner.plans`` (only --qps may override)."""
    plans = _plans_module()
    if plans is None:
        fail("PLAN: plan files are read by `pdplan evaluate`/`simulate` once plan loading lands; "
             "give the deployment with --approach and --replicas or --prefill/--decode")
    extra = sorted(k for k, v in opts.items() if v is not None and v is not False and k != "qps")
    if extra:
        flag = "--" + extra[0].replace("_spec", "").replace("_", "-")
        fail(f"{flag}: not with a PLAN file; the plan fixes the deployment and inputs "
             "(only --qps, --requests, --seed and --json apply)")
    ctx = click.get_current_context(silent=True)
    root = (ctx.find_root().obj or {}) if ctx is not None else {}
    loaded = plans.load_plan(path, qps=opts.get("qps"), catalog_dir=root.get("catalog_dir"))
    return loaded[0], loaded[1]


@cli.command()
@click.argument("plan_file", metavar="[PLAN]", required=False)
@common_options
@deployment_options
@click.option("--requests", type=Whole(1, units.MAX_SIM_REQUESTS), default=20000, show_default=True,
              help="Requests to simulate.")
@click.option("--seed", type=Whole(0, units.MAX_SEED), default=0, show_default=True,
              help="Random seed of the arrivals and lengths.")
@PROFILE_FORCE
@click.pass_context
def simulate(ctx, plan_file, as_json, requests, seed, **opts):
    """Discrete-event check of a deployment (a plan file or estimate's options): analytic and
    simulated metrics side by side.

    \b
    Examples:
      pdplan simulate --approach unified --replicas 4xtp8 --qps 20
      pdplan simulate --prefill 6xtp4 --decode 2xtp8 --qps 20 --requests 5000
    """
    from planner import api, render

    if plan_file is not None:
        inputs, dep = _load_plan_file(plan_file, opts)
    else:
        inputs = build_inputs(ctx, opts)
        dep = build_deployment(ctx, inputs, opts)
    plan = api.estimate(inputs, dep)
    from planner.progress import Progress
    from planner.sim import simulate as run_simulation

    with Progress(f"simulating {requests:,} requests"):
        sim = run_simulation(inputs, dep, requests, seed)
    if as_json:
        emit_json({"plan": render.plan_document(plan),
                   "simulation": render.simulation_document(sim, seed, requests)})
        return
    con = render.stdout_console()
    render.print_assumed(con, inputs.assumed)
    render.show_plan(con, plan, title="simulate")
    render.show_simulation(con, plan, sim, requests)


# --------------------------------------------------------------------------------------------
# recommend / whatif / evaluate
# --------------------------------------------------------------------------------------------

OBJECTIVES = ("gpus", "cost")
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


@cli.command()
@common_options
@search_options
@confidence_option
@PLAN_OUTPUT
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists; apply a --profile "
                                            "fitted on another model or GPU.")
@click.option("--verify", is_flag=True,
              help="Check the plan with the discrete-event simulator; where it falls short, add "
                   "instances until the simulator agrees (the plan says so).")
@click.option("--requests", type=Whole(100, units.MAX_SIM_REQUESTS), default=20000, show_default=True,
              help="Requests simulated by --verify.")
@click.option("--seed", type=Whole(0, units.MAX_SEED), default=0, show_default=True, help="Seed for --verify.")
@click.option("--plot-file", "plot_file", metavar="FILE.png|FILE.svg",
              help="Draw the Pareto front of GPUs against TPOT (needs pip install '.[plot]').")
@click.pass_context
def recommend(ctx, as_json, approach, max_gpus, objective, output, force, verify, requests, seed,
              plot_file, **opts):
    """The approach, pool sizes and parallelism that meet the SLO with the fewest GPUs (or
    dollars), with the best plan of every other approach beside it.

    \b
    Examples:
      pdplan recommend --qps 80 --ttft-slo 200ms
      pdplan recommend --qps 20 --gpu h100-sxm,h200 --objective cost -o plan.yaml
      pdplan recommend --qps 80 --ttft-slo 200ms --verify
      pdplan recommend --qps 80 --ttft-slo 200ms --confidence 0.9
    """
    from planner import render
    from planner.errors import NoFeasiblePlanError
    from planner.files import Outputs
    from planner.optimize import recommend as run_recommend

    gpus = _gpu_list(ctx, opts)
    outs = Outputs()  # checked now, before any work; written together at the end
    out_file, to_stdout = plan_output(output, force, as_json, outs)
    if plot_file:
        from planner.plots import plot_output

        plot_out = plot_output(plot_file, force, outs)[1]
    opts["force"] = force
    inputs = with_confidence(build_inputs(ctx, opts), opts)
    gpus = gpus or [inputs.gpu]
    try:
        rec = run_recommend(inputs, gpus, _approaches(approach), max_gpus, objective)
    except NoFeasiblePlanError as exc:
        if as_json:
            emit_error(ctx.meta.get(FORMAT_KEY, "json"), str(exc), 3,
                       nearest=[render.candidate_document(c) for c in exc.nearest])
            click.echo(f"Error: {str(exc).splitlines()[0]}", err=True)  # the one line, as without --json
            ctx.exit(3)
        raise
    if verify:
        rec = _verify(rec, inputs, requests, seed, max_gpus)
    try:
        if plot_file:
            from planner.plots import pareto_plot

            pareto_plot(rec, plot_file, force=force, output=plot_out)
        if out_file is not None:
            out_file.stage(render.to_yaml(render.plan_document(rec.plan)))
        outs.commit()
    finally:
        outs.discard()
    if to_stdout:  # the plan's YAML is stdout's one document; what was assumed goes to stderr
        render.print_assumed(render.stderr_console(), inputs.assumed)
        click.echo(render.to_yaml(render.plan_document(rec.plan)).rstrip("\n"))
        if plot_file:
            click.echo(f"wrote {plot_file}", err=True)
        return
    if as_json:
        emit_json(render.recommend_document(rec))
        return
    con = render.stdout_console()
    render.print_assumed(con, inputs.assumed)
    render.show_recommendation(con, rec)
    if output is not None:
        con.print(f"wrote {escape_markup(output)}")
    if plot_file:
        con.print(f"wrote {plot_file}")


def _parse_vary(ctx, specs) -> list:
    """``AXIS=v1,v2`` -> [(axis, [values as given])]."""
    from planner.errors import did_you_mean

    axes: list[tuple[str, list]] = []
    for spec in specs:
        axis, eq, vals = spec.partition("=")
        axis = axis.strip().lower()
        if not eq:
            fail(f"--vary: expected AXIS=v1,v2,..., got {spec!r}")
        if axis not in WHATIF_AXES:
            fail(f"--vary: unknown axis {axis!r}{did_you_mean(axis, WHATIF_AXES)}; valid: {', '.join(WHATIF_AXES)}")
        values = [v.strip() for v in vals.split(",") if v.strip()]
        if not values:
            fail(f"--vary: {axis}: no values given")
        if len(values) > units.MAX_WHATIF_VALUES:
            fail(f"--vary: {axis}: at most {units.MAX_WHATIF_VALUES} values, got {len(values)}")
        if any(a == axis for a, _ in axes):
            fail(f"--vary: {axis} given twice")
        axes.append((axis, values))
    if not axes:
        fail("--vary: missing; e.g. --vary qps=10,20,40,80")
    if len(axes) > 2:
        fail("--vary: at most two axes")
    cells = math.prod(len(v) for _, v in axes)
    if cells > units.MAX_WHATIF_CELLS:
        fail(f"--vary: {' x '.join(str(len(v)) for _, v in axes)} = {cells:,} cells; at most "
             f"{units.MAX_WHATIF_CELLS:,} (each cell is a recommendation)")
    return axes


def _apply(opts: dict, axis: str, value: str) -> dict:
    o = dict(opts)
    key = {"ttft-slo": "ttft_slo", "tpot-slo": "tpot_slo", "prefix-tokens": "prefix_tokens",
           "prefix-hit-rate": "prefix_hit_rate"}.get(axis, axis)
    if axis == "qps":
        o["qps"] = units.parse_number(value, "--vary: qps", units.MIN_QPS, units.MAX_QPS)
        o["concurrency"] = None
    elif axis == "concurrency":
        o["concurrency"] = units.parse_count(value, "--vary: concurrency", 1, 1_000_000,
                                             "a whole number of clients")
        o["qps"] = None
    elif axis in ("isl", "osl"):
        o[key] = value
        o[f"{key}_dist"] = None
    else:
        o[key] = value
    return o


@cli.command()
@common_options
@search_options
@click.option("--vary", "vary", multiple=True, metavar="AXIS=v1,v2,...",
              help="Axis to vary (qps, concurrency, isl, osl, ttft-slo, tpot-slo, gpu, model, "
                   "engine, prefix-tokens, prefix-hit-rate); once for a "
                   "table, twice for a grid of winning approaches.")
@click.option("--plot", is_flag=True, help="Draw TTFT and TPOT against the axis in the terminal.")
@click.option("--plot-file", "plot_file", metavar="FILE.png|FILE.svg",
              help="Write the same plot as an image (needs pip install '.[plot]').")
@click.option("--force", is_flag=True, help="Overwrite the --plot-file if it exists; apply a "
                                            "--profile fitted on another model or GPU.")
@click.pass_context
def whatif(ctx, as_json, approach, max_gpus, objective, vary, plot, plot_file, force, **opts):
    """How the recommendation moves with traffic, prompt length, SLOs, GPU or model.

    \b
    Examples:
      pdplan whatif --vary qps=10,20,40,80 --ttft-slo 500ms
      pdplan whatif --vary qps=5,20,80 --vary isl=512,2048,8192 --ttft-slo 1s
    """
    from planner import render

    axes = _parse_vary(ctx, vary)
    if plot_file:
        from planner.plots import plot_output

        plot_out = plot_output(plot_file, force)[1]
    if len(axes) == 2 and (plot or plot_file):
        fail("--plot/--plot-file: only with one --vary axis")
    if (opts.get("qps") is None and opts.get("concurrency") is None
            and not any(a in ("qps", "concurrency") for a, _ in axes)):
        fail("--qps: missing; give the request rate (or --concurrency) or vary it with --vary qps=...")
    combos = [[(axes[0][0], v)] for v in axes[0][1]]
    if len(axes) == 2:
        combos = [[(axes[0][0], a), (axes[1][0], b)] for a in axes[0][1] for b in axes[1][1]]
    from planner import api
    from planner.progress import Progress

    cells, assumed = [], None
    for combo in combos:
        o = dict(opts)
        for axis, value in combo:
            o = _apply(o, axis, value)
        gpus = _gpu_list(ctx, o)
        o["force"] = force
        inputs = build_inputs(ctx, o)
        if assumed is None:  # the defaults, less the axes being varied
            assumed = [a for a in inputs.assumed
                       if not any(a.lower().startswith(ax.split("-")[0]) for ax, _ in axes)]
        cells.append((dict(combo), inputs, gpus or [inputs.gpu]))
    with Progress("what-if", total=len(cells)) as progress:
        rows = api.whatif(cells, _approaches(approach), max_gpus, objective, on_cell=progress.update)
    if plot_file:
        from planner.plots import whatif_plot

        try:
            whatif_plot(rows, axes[0][0], plot_file, force=force, output=plot_out)
            plot_out.commit()
        finally:
            plot_out.discard()
    if as_json:
        emit_json(render.whatif_document(rows, [a for a, _ in axes]))
        return
    con = render.stdout_console()
    render.print_assumed(con, assumed or [])
    render.show_whatif(con, rows, [a for a, _ in axes])
    if plot:
        render.show_whatif_plot(con, rows, axes[0][0])
    if plot_file:
        con.print(f"wrote {plot_file}")


@cli.command()
@click.argument("plan_file", metavar="PLAN")
@click.option("--qps", type=QPS, help="Re-evaluate at this request rate instead of the plan's.")
@click.option("--check", is_flag=True,
              help="Exit 3, with one Error: line saying which target, when the plan misses its "
                   "SLO at its rate (or --qps): for CI and scripts.")
@json_option
@click.pass_context
def evaluate(ctx, plan_file, qps, check, as_json):
    """Recompute a plan file's metrics from the file alone (the catalog entries it embeds), at
    its own rate or at --qps, and report the headroom.

    \b
    Examples:
      pdplan recommend --qps 80 --ttft-slo 200ms -o plan.yaml && pdplan evaluate plan.yaml
      pdplan evaluate plan.yaml --qps 120
      pdplan evaluate plan.yaml --qps 120 --check
    """
    from planner import api, render
    from planner.plans import load_plan

    inputs, dep, doc = load_plan(plan_file, qps=qps,
                                 catalog_dir=(ctx.find_root().obj or {}).get("catalog_dir"))
    plan = api.estimate(inputs, dep)
    if qps is None and isinstance(doc.get("reason"), str):
        plan.reason = doc["reason"]
    missed = None
    if check and not plan.meets_slo:
        wl = inputs.workload
        load = (f"{wl.concurrency} concurrent clients" if wl.concurrency is not None
                else f"{wl.qps:g} QPS")
        missed = f"--check: {plan_file} misses its SLO at {load}: {str(plan.reason).splitlines()[0]}"
    if as_json:
        out = {"plan": render.plan_document(plan)}
        if missed:  # one document: the plan, and the error that the exit code reports
            out["error"] = {"message": missed, "exit_code": 3}
        emit_json(out)
    else:
        con = render.stdout_console()
        render.show_plan(con, plan, title=f"evaluate {plan_file}")
    if missed:
        click.echo(f"Error: {missed}", err=True)
        ctx.exit(3)


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------

EXPORT_TARGETS = ("vllm", "sglang", "trtllm", "dynamo", "llm-d", "k8s")


@cli.command()
@click.argument("plan_file", metavar="PLAN")
@click.option("--target", required=True, type=click.Choice(EXPORT_TARGETS),
              help="What to write: engine configs (vllm, sglang, trtllm; for a plan made for that "
                   "engine), a Dynamo graph, llm-d Helm values or Kubernetes manifests.")
@click.option("-o", "--output", "out_dir", metavar="DIR", default=".", show_default=True,
              help="Directory to write into (created if missing).")
@click.option("--force", is_flag=True, help="Replace files that exist.")
@json_option
@click.pass_context
def export(ctx, plan_file, target, out_dir, force, as_json):
    """Write a plan file as engine configs and deployment manifests: the parallelism, token
    budget, sequence cap, memory fraction, KV dtype, quantization and KV transfer the plan's
    numbers assume, for the engine version the plan names. Each file starts with what to check
    before deploying.

    \b
    Examples:
      pdplan recommend --qps 80 --ttft-slo 200ms -o plan.yaml && pdplan export plan.yaml --target vllm -o out/
      pdplan export plan.yaml --target k8s -o k8s/
    """
    from planner import api

    paths = api.export(plan_file, target, out_dir, force=force,
                       catalog_dir=(ctx.find_root().obj or {}).get("catalog_dir"))
    if as_json:
        emit_json({"target": target, "files": paths})
        return
    for p in paths:
        click.echo(p)


# --------------------------------------------------------------------------------------------
# catalog
# --------------------------------------------------------------------------------------------

CATALOG_TABLES = ("models", "gpus", "links")


@cli.command()
@click.argument("what", required=False, type=click.Choice(CATALOG_TABLES + ("show",)))
@click.argument("name", required=False, shell_complete=complete_ids("all"))
@json_option
@click.pass_context
def catalog(ctx, what, name, as_json):
    """List the catalog (models, gpus, links; all three by default) or show one entry.

    \b
    Examples:
      pdplan catalog
      pdplan catalog gpus --json
      pdplan catalog show h100-sxm
    """
    from planner import render

    cat = catalog_of(ctx)
    if what == "show":
        if not name:
            fail("catalog show: missing NAME; e.g. pdplan catalog show h100-sxm")
        if name.endswith(".json") or os.sep in name or name.startswith("."):
            entry, kind = cat.model(name, "catalog show"), "model"  # a Hugging Face config.json
        else:
            entry = cat.get(name)
            kind = ("model" if name in cat.models and cat.models[name] is entry
                    else "gpu" if name in cat.gpus and cat.gpus[name] is entry else "link")
        if as_json:
            emit_json(render.entry_document(kind, entry))
        else:
            render.show_entry(render.stdout_console(), kind, entry)
        return
    if name is not None:
        fail(f"catalog: unexpected argument {name!r}; to show one entry use `pdplan catalog show NAME`")
    tables = (what,) if what else CATALOG_TABLES
    if as_json:
        emit_json(render.catalog_document(cat, tables))
    else:
        render.show_catalog(render.stdout_console(), cat, tables)


# --------------------------------------------------------------------------------------------
# kv / step
# --------------------------------------------------------------------------------------------


@cli.command()
@click.option("--model", metavar="NAME|config.json", shell_complete=complete_ids("models"),
              help="Model id or a Hugging Face config.json [default: llama-3.1-70b].")
@click.option("--seq-len", "seq_len", metavar="N", required=True,
              help="Tokens in the sequence (prompt plus output so far), e.g. 2048 or 8k.")
@click.option("--kv-dtype", "kv_dtype", type=click.Choice(KV_DTYPES),
              help="KV-cache dtype [default: the model's].")
@click.option("--gpu", metavar="NAME", shell_complete=complete_ids("gpus"),
              help="Compare with a decode step on this GPU.")
@click.option("--batch", type=Whole(1, 1_000_000), help="Decode batch (with --gpu) [default: 1].")
@click.option("--tp", type=Whole(1, 1024),
              help="Tensor parallelism of the decode instance (with --gpu) [default: the smallest that fits].")
@click.option("--dtype", type=click.Choice(WEIGHT_DTYPES),
              help="Weight dtype of the decode instance [default: the model's].")
@json_option
@click.pass_context
def kv(ctx, model, seq_len, kv_dtype, gpu, batch, tp, dtype, as_json):
    """KV-cache size of one sequence and its transfer time over every link.

    \b
    Examples:
      pdplan kv --model llama-3.1-70b --seq-len 2048
      pdplan kv --seq-len 8k --kv-dtype fp8 --gpu h100-sxm --batch 64
    """
    from planner import api, render

    cat = catalog_of(ctx)
    assumed: list = []
    spec = resolve_model(cat, {"model": model}, assumed)
    n = _size(seq_len, "--seq-len")
    if gpu is None:
        for flag, v in (("--batch", batch), ("--tp", tp), ("--dtype", dtype)):
            if v is not None:
                fail(f"{flag}: only with --gpu (the decode step it is compared with)")
    if kv_dtype is None:
        kv_dtype = spec.default_kv_dtype
        assumed.append(f"KV {kv_dtype}")
    gpu_spec = cat.gpu(gpu, "--gpu") if gpu is not None else None
    if gpu_spec is not None:
        if batch is None:
            assumed.append("batch 1")
        if dtype is None:
            dtype = spec.default_dtype
            assumed.append(f"dtype {dtype}")
    rep = api.kv_report(cat, spec, n, kv_dtype, gpu=gpu_spec, batch=batch, tp=tp, dtype=dtype)
    message = render.kv_warning(rep)
    if message:
        render.warn(message)
    if as_json:
        emit_json(render.kv_document(rep))
        return
    con = render.stdout_console()
    render.print_assumed(con, assumed)
    render.show_kv(con, rep)


@cli.command()
@model_options
@click.option("--tp", type=Whole(1, 1024),
              help="Tensor parallelism [default: the smallest that fits one node].")
@click.option("--pp", type=Whole(1, 1024), default=1, show_default=True,
              help="Pipeline parallelism.")
@click.option("--dp", type=Whole(1, 1024), default=1, show_default=True,
              help="Data-parallel attention ranks of --tp GPUs each (MoE models; the experts "
                   "spread over all tp x dp GPUs).")
@click.option("--ep", type=Whole(1, 4096),
              help="Expert parallelism (MoE models): tp, or tp x dp with --dp [default: 1, or "
                   "tp x dp with --dp].")
@click.option("--prefill", "prefill_tokens", metavar="N",
              help="Prefill of one N-token prompt (per attention rank with --dp).")
@click.option("--decode", "decode_batch", type=Whole(1, 1_000_000), metavar="B",
              help="One decode step of B sequences (per attention rank with --dp; needs --context).")
@click.option("--context", metavar="L", help="Mean context of the decoding sequences, e.g. 2176.")
@json_option
@PROFILE_FORCE
@click.pass_context
def step(ctx, tp, pp, dp, ep, prefill_tokens, decode_batch, context, as_json, **opts):
    """One static forward pass on one instance: time, FLOPs, bytes and what bounds it.

    \b
    Examples:
      pdplan step --model llama-3.1-70b --gpu h100-sxm --tp 8 --prefill 2048
      pdplan step --tp 8 --decode 64 --context 2176 --json
      pdplan step --model deepseek-v3 --gpu h200 --tp 1 --dp 8 --decode 32 --context 3000
    """
    from planner import api, render
    from planner.errors import DoesNotFitError
    from planner.perf import build_step_model, check_parallel

    if (prefill_tokens is None) == (decode_batch is None):
        fail("--prefill/--decode: give exactly one of --prefill N or --decode B --context L")
    if decode_batch is not None and context is None:
        fail("--context: missing; --decode B needs the mean context, e.g. --context 2176")
    if prefill_tokens is not None and context is not None:
        fail("--context: only with --decode")
    cat = catalog_of(ctx)
    assumed: list = []
    model = resolve_model(cat, opts, assumed)
    gpu = cat.gpu(resolve_gpu(cat, opts, assumed), "--gpu")
    dtype, kv_dtype = resolve_dtypes(model, opts, assumed)
    if tp is None:
        tp = api.smallest_fitting_tp(cat, model, gpu, dtype, kv_dtype)
        assumed.append(f"tp {tp}")
    engine = resolve_engine(cat, opts, assumed)
    if ep is None:
        ep = tp * dp if dp > 1 else 1
    check_parallel(model, gpu, tp, pp, "--tp/--dp/--ep", ep=ep, dp=dp)
    cal = None
    if opts.get("profile"):
        from planner.calibrate.profile import check_applies, load_profile

        prof = load_profile(opts["profile"])
        check_applies(prof, model.id, [gpu.id], bool(opts.get("force")))
        cal = prof.calibration
    sm = build_step_model(cat, model, gpu, tp, pp, dtype=dtype, kv_dtype=kv_dtype, engine=engine,
                          ep=ep, dp=dp, calibration=cal)
    try:
        sm.require_fit()
    except DoesNotFitError as exc:
        raise DoesNotFitError(f"--tp: {exc}") from None
    if prefill_tokens is not None:
        n = _size(prefill_tokens, "--prefill")
        # With --dp every attention rank carries the same (the ranks step together).
        doc = render.step_document(sm, sm.prefill(n, seqs=dp), "prefill", tokens=n)
    else:
        ctx_len = _size(context, "--context")
        doc = render.step_document(sm, sm.decode(decode_batch * dp, ctx_len), "decode",
                                   batch=decode_batch, context=ctx_len)
    if as_json:
        emit_json(doc)
        return
    con = render.stdout_console()
    render.print_assumed(con, assumed)
    render.show_step(con, doc)


# --------------------------------------------------------------------------------------------
# calibrate
# --------------------------------------------------------------------------------------------


@cli.command()
@click.argument("results", nargs=-1, required=True, metavar="RESULTS...")
@click.option("--model", "model", metavar="NAME", shell_complete=complete_ids("models"),
              help="Model id from the catalog [default: the one the results name].")
@click.option("--gpu", "gpu", metavar="NAME", shell_complete=complete_ids("gpus"),
              help="GPU the results were measured on [default: a CSV's gpu column].")
@click.option("--tp", type=Whole(1, 1024), help="Tensor parallelism of the measured instance [default: 1].")
@click.option("--replicas", type=Whole(1, 100_000), default=1, show_default=True,
              help="Instances behind the benchmarked endpoint.")
@click.option("--engine", "engine", metavar="NAME", shell_complete=complete_ids("engines"),
              help="Engine that served the runs: vllm, sglang, trtllm [default: the results', else vllm].")
@click.option("--dtype", type=click.Choice(WEIGHT_DTYPES), help="Weight dtype [default: the model's].")
@click.option("--kv-dtype", "kv_dtype", type=click.Choice(KV_DTYPES), help="KV-cache dtype [default: the model's].")
@click.option("--format", "fmt", type=click.Choice(("vllm", "sglang", "aiperf", "genai-perf", "guidellm", "csv")),
              help="Result file format [default: detected from the content].")
@click.option("--fit", "fit_names", metavar="NAMES",
              help="Constants to fit, comma-separated: compute, memory, request_ms, overhead_ms, comm "
                   "[default: every one the data can pin].")
@click.option("--no-loo", "no_loo", is_flag=True, help="Skip the leave-one-out refits (faster; no ranges).")
@click.option("-o", "--output", metavar="FILE", help="Write the profile (YAML) to FILE.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@json_flag
@click.pass_context
def calibrate(ctx, results, model, gpu, tp, replicas, engine, dtype, kv_dtype, fmt, fit_names, no_loo,
              output, force, as_json):
    """Fit pdplan's constants to your own benchmark results and write a profile for --profile.

    \b
    Examples:
      pdplan calibrate run_qps*.json --gpu h100-sxm --model llama-3.1-8b -o profile.yaml
      pdplan estimate --approach chunked --replicas 1xtp1 --qps 6 --profile profile.yaml
    """
    from planner import api, render
    from planner.calibrate.fit import CONSTANTS

    names = None
    if fit_names:
        valid = [c[0] for c in CONSTANTS]
        names = [n.strip() for n in fit_names.split(",") if n.strip()]
        bad = [n for n in names if n not in valid]
        if bad or not names:
            fail(f"--fit: unknown constant {(bad or [fit_names])[0]!r}; valid: {', '.join(valid)}")
    from planner.files import Outputs
    from planner.progress import Progress

    if as_json:  # --json alone here (no json_option): tell the progress bar and the error path
        ctx.meta[FORMAT_KEY] = "json"
    outs = Outputs()  # checked now, before the fit; written at the end
    out_file = outs.add(output, "-o", force) if output is not None else None
    with Progress(f"calibrating on {len(results)} result file(s)"):
        report, profile, res = api.calibrate(catalog_of(ctx), list(results), model=model, gpu=gpu, tp=tp,
                                             replicas=replicas, engine=engine, dtype=dtype,
                                             kv_dtype=kv_dtype, fmt=fmt, constants=names,
                                             loo=not no_loo)
    doc = render.calibration_document(report, profile)
    try:
        if out_file is not None:
            out_file.stage(render.to_yaml(profile.document()))
        outs.commit()
    finally:
        outs.discard()
    if as_json:
        emit_json(doc)
        return
    render.show_calibration(render.stdout_console(), report, profile, output)


# --------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------


@cli.command()
@click.option("--set", "dataset",
              type=click.Choice(("measurements", "offline-grid", "kernels", "pass-grid", "serving",
                                 "deepseek")),
              default="measurements", show_default=True,
              help="Validation set: the curated measurements (the overhead fit uses them), the "
                   "rest of the TensorRT-LLM offline grids (out of sample), held-out silicon "
                   "kernel timings (GEMM, attention, MoE; out of sample), whole passes summed "
                   "from silicon kernel timings (the vLLM tables out of sample), published "
                   "serving runs, or DeepSeek-class runs with data-parallel attention and wide "
                   "expert parallelism (out of sample).")
@click.option("--fit", "fit", is_flag=True,
              help="Refit the per-iteration engine overhead (the step model's one fitted constant) "
                   "on the measurements and print it with its bounds (takes ~10 s).")
@click.option("--profile", "profile", metavar="FILE",
              help="A calibration profile: its own benchmark results (the files it names), "
                   "predicted with and without it.")
@json_option
@click.pass_context
def validate(ctx, dataset, fit, profile, as_json):
    """Predicted versus published measurements, with the relative error of each row."""
    from planner import render
    from planner import validate as validation
    from planner.progress import Progress

    if fit:
        with Progress("fitting the per-iteration overhead"):
            res = validation.fit_overhead(catalog_of(ctx))
        if as_json:
            emit_json(res)
            return
        con = render.stdout_console()
        lo, hi = res["bounds_s"]
        con.print(f"per-iteration overhead fitted on {res['rows']} rows: {res['overhead_s'] * 1e3:.3f} ms "
                  f"(bounds {lo * 1e3:g}-{hi * 1e3:g} ms; loss {res['loss_at_catalog']:.4f} at the "
                  f"catalog's {res['catalog_overhead_s'] * 1e3:.3f} ms -> {res['loss']:.4f}, group-balanced "
                  "mean |log(predicted/measured)|)")
        return
    with Progress(f"validating {profile or dataset}"):
        if profile:
            report = validation.run_profile(catalog_of(ctx), profile)
        else:
            report = validation.run(catalog_of(ctx), dataset=dataset)
    if as_json:
        emit_json(render.validate_document(report))
        return
    render.show_validate(render.stdout_console(), report)



# --------------------------------------------------------------------------------------------
# timeline
# --------------------------------------------------------------------------------------------


@cli.command()
@click.option("--approach", type=click.Choice(APPROACHES), default="unified", show_default=True,
              help="Serving policy to draw.")
@click.option("--chunk-size", "chunk_size", metavar="N",
              help="Chunked: prompt tokens per iteration (the running decodes ride along) "
                   "[default: 2; 2048 in real time].")
@click.option("--request", "requests", multiple=True, metavar="LEN[:OUT[@ARRIVAL]]",
              help="A request: prompt tokens, output tokens [default: 8] and arrival (ticks; a "
                   "duration such as 150ms in real time) [default: 0]. Repeat it, e.g. --request 2 "
                   "--request 6. Default: a short request (2:12, real time 512:32) already decoding "
                   "when a long one (8:4, real time 8192:4) arrives.")
@click.option("--model", metavar="NAME|config.json", shell_complete=complete_ids("models"),
              help="Draw in real time (ms) for this model; with --gpu/--tp "
                   "[default: abstract ticks; llama-3.1-70b once --gpu or --tp is given].")
@click.option("--gpu", metavar="NAME", shell_complete=complete_ids("gpus"),
              help="GPU of the real-time picture [default: h100-sxm].")
@click.option("--tp", type=Whole(1, 1024),
              help="Tensor parallelism of the real-time picture [default: the smallest that fits].")
@click.option("--dtype", type=click.Choice(WEIGHT_DTYPES),
              help="Weight dtype of the real-time picture [default: the model's].")
@click.option("--kv-dtype", "kv_dtype", type=click.Choice(KV_DTYPES),
              help="KV-cache dtype of the real-time picture [default: the model's].")
@click.option("--tick", metavar="DURATION",
              help="Real time: what one column stands for, e.g. 5ms [default: the timeline fits "
                   "80 columns].")
@json_option
@click.pass_context
def timeline(ctx, approach, chunk_size, requests, model, gpu, tp, dtype, kv_dtype, tick, as_json):
    """The interference picture: a few requests scheduled iteration by iteration, drawn tick by
    tick (rows = requests, columns = ticks): P prefill, D decode, x stalled (decoding but no
    token this tick), - waiting, . not arrived or finished.

    Without a model one tick is one token processed (a prefill of L tokens takes L ticks, a
    decode iteration of the batch one tick, a chunked iteration of c prompt tokens c + 1 ticks).
    With --model/--gpu/--tp the same schedule runs on the roofline step times and columns are
    milliseconds.

    \b
    Examples:
      pdplan timeline --approach unified
      pdplan timeline --approach chunked --chunk-size 2
      pdplan timeline --approach disaggregated --request 2:12 --request 8:4@3
      pdplan timeline --approach chunked --model llama-3.1-70b --gpu h100-sxm --tp 8
    """
    from planner import render
    from planner import timeline as tlm

    real = any(v is not None for v in (model, gpu, tp, dtype, kv_dtype))
    if tick is not None and not real:
        fail("--tick: only in real time (with --model, --gpu or --tp)")
    clock, info, assumed = tlm.TokenClock(), {}, []
    if real:
        from planner import api
        from planner.errors import DoesNotFitError
        from planner.perf import build_step_model
        from planner.serving.common import Pool

        cat = catalog_of(ctx)
        spec = resolve_model(cat, {"model": model}, assumed)
        g = cat.gpu(resolve_gpu(cat, {"gpu": gpu}, assumed), "--gpu")
        dtype, kv_dtype = resolve_dtypes(spec, {"dtype": dtype, "kv_dtype": kv_dtype}, assumed)
        if tp is None:
            tp = api.smallest_fitting_tp(cat, spec, g, dtype, kv_dtype)
            assumed.append(f"tp {tp}")
        sm = build_step_model(cat, spec, g, tp, 1, dtype=dtype, kv_dtype=kv_dtype)
        try:
            sm.require_fit()
        except DoesNotFitError as exc:
            raise DoesNotFitError(f"--tp: {exc}") from None
        link, streams = None, 1
        if approach == "disaggregated":
            link, streams, where = api.kv_link_for(cat, g, g, Pool("prefill", g.id, 1, tp),
                                                   Pool("decode", g.id, 1, tp), None)
            info["link"] = f"{link.id} ({where}, {streams} streams, overlapped with the prefill)"
        clock = tlm.StepClock(sm, link, streams, spec.kv_bytes_per_token(kv_dtype))
        info.update(model=spec.id, gpu=g.id, tp=tp, dtype=dtype, kv_dtype=kv_dtype)
    chunk = _size(chunk_size, "--chunk-size")
    if approach == "chunked" and chunk is None:
        chunk = tlm.DEFAULT_CHUNK_REAL if real else tlm.DEFAULT_CHUNK_ABSTRACT
        assumed.append(f"chunk {chunk}")
    reqs = None
    if requests:
        reqs = []
        for text in requests:
            prompt, out, arrival = tlm.parse_request(text, real)
            reqs.append(tlm.Request(prompt, out, arrival or 0.0))
    tl = tlm.build(approach, reqs, clock, chunk, tick=_duration(tick, "--tick"), info=info)
    if not requests:
        def at(a: float) -> str:
            return f"{a * 1e3:.1f}ms" if a and real else f"{a:g}"

        assumed.append("requests " + " and ".join(f"{r.prompt}:{r.output}@{at(r.arrival)}"
                                                  for r in tl.requests))
    if as_json:
        doc = render.timeline_document(tl)
        if assumed:
            doc["assumed"] = assumed
        emit_json(doc)
        return
    con = render.stdout_console()
    render.print_assumed(con, assumed)
    render.show_timeline(con, tl)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
