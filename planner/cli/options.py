"""Shared pieces of the commands: parameter types, option groups (decorators), the glue to the
library (the catalog of ``--catalog``, :func:`planner.inputs.build_inputs`) and the one-document
output of ``--json``/``--format``.

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


# --------------------------------------------------------------------------------------------
# Option groups (decorators) and the glue to the library
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


def emit_error(fmt: str, message: str, exit_code: int, command: str | None = None, **extra) -> None:
    """The envelope with ``"error": {"message", "exit_code", ...}`` on stdout, for a
    ``--json``/``--format`` consumer (the ``Error:`` line still goes to stderr). ``command``:
    the command that failed (default: the running one; None before one was chosen)."""
    from planner.render import envelope, to_json, to_yaml

    if command is None:
        ctx = click.get_current_context(silent=True)
        command = ctx.command.name if ctx is not None and ctx.parent is not None else None
    doc = envelope(command, error={"message": str(message), "exit_code": int(exit_code), **extra})
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


def catalog_dir_of(ctx: click.Context) -> str | None:
    """The group's ``--catalog DIR`` (or PDPLAN_CATALOG)."""
    return (ctx.find_root().obj or {}).get("catalog_dir")


def catalog_of(ctx: click.Context):
    """The catalog the command runs on: the built-in one with ``--catalog DIR`` overlaid."""
    from planner.catalog import load_catalog

    return load_catalog(catalog_dir_of(ctx))


def inputs_of(ctx: click.Context, opts: dict, **kw):
    """:func:`planner.inputs.build_inputs` on the command's catalog (``kw``: its keywords); what
    it warns about goes to stderr."""
    from planner.inputs import build_inputs

    said: list[str] = []
    inputs = build_inputs(catalog_of(ctx), opts, warnings=said, **kw)
    warn_all(said)
    return inputs


def warn_all(messages) -> None:
    """Each message once, as a warning line on stderr."""
    if messages:
        from planner.render import warn

        for message in dict.fromkeys(messages):
            warn(message)


def escape_markup(text) -> str:
    """A file name as rich prints it literally (``[x]`` is not markup)."""
    from rich.markup import escape

    return escape(str(text))


def emit_json(result, error: dict | None = None) -> None:
    """The command's one document on stdout, ``result`` in the envelope every command shares
    (:func:`planner.render.envelope`: ``pdplan_version``, ``command``, ``schema_version``,
    ``result``; ``error`` beside it where the command also reports one): JSON, or YAML under
    ``--format yaml``."""
    from planner.render import envelope, to_json, to_yaml

    ctx = click.get_current_context(silent=True)
    doc = envelope(ctx.command.name if ctx is not None else None, result, error)
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
