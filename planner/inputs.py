"""From what a user asked to the library's objects: :class:`~planner.types.Inputs` and
:class:`~planner.types.Deployment` from the values of the options (the CLI's, by their option
names: ``model``, ``qps``, ``isl``, ``ttft_slo``, ``replicas``, ``prefill_spec``...), as typed
(``"2k"``, ``"200ms"``) or already numbers.

Every default filled in is listed in ``Inputs.assumed`` (the CLI prints them), and every bad
value raises :class:`planner.errors.InvalidRequestError` naming the flag it came from, so that
the CLI only parses and renders. The option names are the ones :mod:`planner.cli.options`
declares (``common_options``, ``deployment_options``), and a library caller may pass the same
keys (missing keys are options not given).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NoReturn

from planner import units
from planner.errors import InvalidRequestError, did_you_mean
from planner.types import APPROACHES, DEFAULTS, SLO, Deployment, Inputs, Pool
from planner.units import fmt_seconds

if TYPE_CHECKING:
    from planner.catalog import Catalog, EngineSpec, ModelSpec
    from planner.workload import Workload

DEFAULT_CHUNK = 2048  # chunked prefill's token budget without an engine profile
WHATIF_AXES = ("qps", "concurrency", "isl", "osl", "ttft-slo", "tpot-slo", "gpu", "model", "engine",
               "prefix-tokens", "prefix-hit-rate", "peak")


def _fail(message: str) -> NoReturn:
    raise InvalidRequestError(message)


def parse_size_opt(text, flag: str) -> int | None:
    """``2048`` or ``2k`` -> tokens; ``None`` stays ``None``."""
    return None if text is None else units.parse_size(text, flag)


def parse_duration_opt(text, flag: str) -> float | None:
    """``200ms``, ``0.2s`` or ``200`` (ms) -> seconds; ``None`` stays ``None``."""
    return None if text is None else units.parse_duration(text, flag)


def _named(opts: dict, key: str, assumed: list) -> str:
    """The name the user gave for ``key``, or the documented default (then listed as assumed)."""

    name = opts.get(key)
    if name is None:
        name = DEFAULTS[key]
        assumed.append(f"{key} {name}")
    return name


def resolve_model(cat: Catalog, opts: dict, assumed: list) -> ModelSpec:
    return cat.model(_named(opts, "model", assumed), "--model")


def resolve_dtypes(model: ModelSpec, opts: dict, assumed: list) -> tuple[str, str]:
    dtype = opts.get("dtype")
    if dtype is None:
        dtype = model.default_dtype
        assumed.append(f"dtype {dtype}")
    kv_dtype = opts.get("kv_dtype")
    if kv_dtype is None:
        kv_dtype = model.default_kv_dtype
        assumed.append(f"KV {kv_dtype}")
    return dtype, kv_dtype


def resolve_engine(cat: Catalog, opts: dict, assumed: list) -> EngineSpec:
    return cat.engine(_named(opts, "engine", assumed), "--engine")


def resolve_gpu(cat: Catalog, opts: dict, assumed: list) -> str:
    name = _named(opts, "gpu", assumed)
    cat.gpu(name, "--gpu")
    return name


def build_workload(opts: dict, qps: float, assumed: list, warnings: list | None = None) -> Workload:
    """The :class:`planner.workload.Workload` of the traffic options; what the user gave that
    a trace overrides is said in ``warnings``."""
    from planner.workload import Workload, fixed, load_trace, parse_length_dist

    for a, b in (("isl", "isl_dist"), ("osl", "osl_dist")):
        if opts.get(a) is not None and opts.get(b) is not None:
            _fail(f"--{a.replace('_', '-')} and --{b.replace('_', '-')}: give one of them, not both")
    trace = load_trace(opts["trace"]) if opts.get("trace") else None
    if trace is not None:
        overridden = [f"--{k.replace('_', '-')}" for k in ("isl", "osl", "isl_dist", "osl_dist")
                      if opts.get(k) is not None]
        if overridden and warnings is not None:
            warnings.append(f"--trace overrides {', '.join(overridden)}")
    lengths = {}
    for key in ("isl", "osl"):
        if opts.get(f"{key}_dist") is not None:
            lengths[key] = parse_length_dist(opts[f"{key}_dist"], f"--{key}-dist")
        elif opts.get(key) is not None:
            lengths[key] = fixed(units.parse_size(opts[key], f"--{key}"))
        else:
            lengths[key] = fixed(DEFAULTS[key])
            if trace is None:
                assumed.append(f"{key} {DEFAULTS[key]}")
    cv = 1.0 if opts.get("burstiness") is None else max(float(opts["burstiness"]), units.MIN_BURSTINESS)
    conc = opts.get("concurrency")
    think = parse_duration_opt(opts.get("think_time"), "--think-time")
    if think is not None and conc is None:
        _fail("--think-time: only with --concurrency (closed-loop clients)")
    if conc is not None and opts.get("burstiness") is not None:
        _fail("--burstiness: only with --qps; closed-loop clients (--concurrency) send when served")
    wl = Workload(qps, lengths["isl"], lengths["osl"], arrival_cv=cv, trace=trace,
                  concurrency=conc, think_s=think or 0.0)
    return with_prefix(wl, opts, assumed)


def with_prefix(wl: Workload, opts: dict, assumed: list) -> Workload:
    """``wl`` with the prefix cache of --prefix-tokens / --prefix-hit-rate, checked (the
    workload names the flag and the valid range); the assumption is listed."""
    from dataclasses import replace

    from planner.workload import PrefixCache

    tokens, rate = opts.get("prefix_tokens"), opts.get("prefix_hit_rate")
    if tokens is None and rate is None:
        return wl
    top, what = wl.prefix_limit()
    n = 0
    if tokens is not None and str(tokens).strip() != "0":
        try:
            n = units.parse_size(tokens, "--prefix-tokens")
        except InvalidRequestError:
            _fail(f"--prefix-tokens: must be a whole number of tokens from 0 to {top:,} (shorter "
                  f"than {what}), got {units.shown(tokens)}")
    r = 0.0 if rate is None else units.parse_number(rate, "--prefix-hit-rate", 0.0, 1.0,
                                                    what="a share")
    wl = replace(wl, prefix=PrefixCache(int(n), float(r)))
    wl.check_prefix()
    if wl.prefix.on:
        assumed.append(wl.prefix.describe())
    return wl


def build_slo(opts: dict, assumed: list, ttft_default: float | None = None) -> SLO:
    ttft = parse_duration_opt(opts.get("ttft_slo"), "--ttft-slo")
    if ttft is None:
        ttft = DEFAULTS["ttft_slo"] if ttft_default is None else ttft_default
        assumed.append(f"TTFT SLO {fmt_seconds(ttft)}")
    tpot = parse_duration_opt(opts.get("tpot_slo"), "--tpot-slo")
    if tpot is None:
        tpot = DEFAULTS["tpot_slo"]
        assumed.append(f"TPOT SLO {fmt_seconds(tpot)}")
    if opts.get("percentile") is None:
        pct = int(DEFAULTS["percentile"])
        assumed.append(f"P{pct}")
    else:
        pct = int(opts["percentile"])
    return SLO(ttft, tpot, pct)


def build_inputs(cat: Catalog, opts: dict, *, require_qps: bool = True,
                 default_qps: float | None = None, ttft_default: float | None = None,
                 warnings: list | None = None) -> Inputs:
    """:class:`planner.types.Inputs` from the options of ``planner.cli.options.common_options``
    (model, traffic, SLOs, KV transfer, speculative decoding, ``--profile``); the defaults it had
    to assume are listed in ``Inputs.assumed`` (in the order the options are documented)."""
    assumed: list = []
    model = resolve_model(cat, opts, assumed)
    gpu = resolve_gpu(cat, opts, assumed)
    qps = opts.get("qps")
    if qps is not None and opts.get("concurrency") is not None:
        _fail("--qps and --concurrency: give one of them: an open-loop request rate or a number of "
              "closed-loop clients")
    if qps is None:
        if require_qps and default_qps is None and opts.get("concurrency") is None:
            _fail("--qps: missing; give the request rate in requests per second (e.g. --qps 20) or "
                  "closed-loop clients (e.g. --concurrency 64)")
        qps = default_qps if default_qps is not None else 1.0
    wl = build_workload(opts, qps, assumed, warnings)
    slo = build_slo(opts, assumed, ttft_default)
    dtype, kv_dtype = resolve_dtypes(model, opts, assumed)
    engine = resolve_engine(cat, opts, assumed)
    xfer = cat.kv_transfer(opts["kv_transfer"], "--kv-transfer") if opts.get("kv_transfer") else None
    spec = build_spec(cat, model, opts, assumed)
    inp = Inputs(model, wl, slo, dtype, kv_dtype, cat, gpu=gpu, assumed=assumed, engine=engine,
                 kv_transfer=xfer, spec=spec)
    apply_profile(inp, opts)
    return inp


def apply_profile(inp: Inputs, opts: dict) -> None:
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


def build_spec(cat: Catalog, model: ModelSpec, opts: dict, assumed: list) -> Any:
    """:class:`planner.perf.speculative.SpecDecode` from :func:`spec_options` (None when off);
    the default draft of a model without MTP layers is an assumption, and listed as one."""
    from planner.perf import speculative

    spec = speculative.build(opts.get("spec_tokens"), opts.get("acceptance"),
                             opts.get("draft_model"), model, cat)
    if spec is not None and spec.kind == "eagle":
        assumed.append(f"draft: an EAGLE-style one-layer head ({model.id} ships no MTP layers)")
    return spec


def check_pool(inputs: Inputs, pool: Pool, flag: str) -> None:
    """Fail early, naming ``flag``, when a pool's GPU, parallelism or memory fit is wrong."""
    from planner.errors import DoesNotFitError
    from planner.perf import check_parallel
    from planner.serving.common import step_model

    gpu = inputs.catalog.gpu(pool.gpu, flag)
    check_parallel(inputs.model, gpu, pool.tp, pool.pp, flag, ep=pool.ep, dp=pool.dp)
    sm = step_model(inputs, pool)
    try:
        sm.require_fit()
    except DoesNotFitError as exc:
        raise DoesNotFitError(f"{flag}: {exc}") from None


def build_deployment(inputs: Inputs, opts: dict) -> Deployment:
    """The :class:`~planner.types.Deployment` of ``planner.cli.options.deployment_options``
    (``approach``, ``replicas``, ``chunk_size``, ``prefill_spec``, ``decode_spec``, ``link``,
    ``kv_overlap``, ``kv_transfer_dtype``), each pool checked against the model and its GPU."""
    from planner.api import parse_spec

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
            _fail("--approach: missing; choose one of unified, chunked, disaggregated "
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
            _fail(f"{flag}: only for --approach disaggregated; use --replicas with --approach {approach}")
        for flag, given in kv_only:
            if given:
                _fail(f"{flag}: only for --approach disaggregated")
        if opts.get("replicas") is None:
            _fail(f"--replicas: missing; --approach {approach} needs e.g. --replicas 4xtp8")
        chunk = None
        if approach == "chunked":
            chunk = parse_size_opt(opts.get("chunk_size"), "--chunk-size")
            if chunk is None:
                g0 = inputs.catalog.gpu(parse_spec(opts["replicas"], gpu, "--replicas")[3], "--replicas")
                chunk = inputs.engine.token_budget(g0) if inputs.engine is not None else DEFAULT_CHUNK
                inputs.assumed.append(f"chunk {chunk}")
        elif opts.get("chunk_size") is not None:
            _fail("--chunk-size: only for --approach chunked")
        n, tp, pp, g, ep, dp = parse_spec(opts["replicas"], gpu, "--replicas")
        pool = Pool("unified", g, n, tp, pp, ep, dp)
        check_pool(inputs, pool, "--replicas")
        return Deployment(approach, (pool,), chunk_size=chunk)
    # disaggregated
    if opts.get("replicas") is not None:
        _fail("--replicas: only for --approach unified or chunked; use --prefill and --decode")
    if opts.get("chunk_size") is not None:
        _fail("--chunk-size: only for --approach chunked")
    pools = []
    for role, key in (("prefill", "prefill_spec"), ("decode", "decode_spec")):
        if opts.get(key) is None:
            _fail(f"--{role}: missing; --approach disaggregated needs --prefill and --decode, "
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


def with_confidence(inputs: Inputs, opts: dict) -> Inputs:
    """``inputs`` with ``--confidence`` checked and set (unchanged without it)."""
    if opts.get("confidence") is not None:
        from planner.confidence import check_confidence

        inputs.confidence = check_confidence(opts["confidence"])
    return inputs


def gpu_list(cat: Catalog, opts: dict) -> list[str]:
    """``--gpu a,b``: several GPU types to search (pools may mix them), each checked; ``opts``
    then holds the first as ``gpu`` and all of them as ``gpu_list``. ``[]`` for one GPU."""
    raw = opts.get("gpu")
    if raw is None or "," not in raw:
        return []
    names = [g.strip() for g in raw.split(",") if g.strip()]
    if not names:
        _fail("--gpu: empty list; give one or more GPU ids separated by commas")
    for g in names:
        cat.gpu(g, "--gpu")
    opts["gpu"] = names[0]
    opts["gpu_list"] = names
    return names


def approaches_of(approach: str | None) -> tuple[str, ...]:
    """``--approach auto`` (or none) -> every approach; else that one."""
    return APPROACHES if approach in (None, "auto") else (approach,)


def parse_vary(specs) -> list[tuple[str, list[str]]]:
    """``AXIS=v1,v2`` -> [(axis, [values as given])]."""
    axes: list[tuple[str, list]] = []
    for spec in specs:
        axis, eq, vals = spec.partition("=")
        axis = axis.strip().lower()
        if not eq:
            _fail(f"--vary: expected AXIS=v1,v2,..., got {spec!r}")
        if axis not in WHATIF_AXES:
            _fail(f"--vary: unknown axis {axis!r}{did_you_mean(axis, WHATIF_AXES)}; valid: {', '.join(WHATIF_AXES)}")
        values = [v.strip() for v in vals.split(",") if v.strip()]
        if not values:
            _fail(f"--vary: {axis}: no values given")
        if len(values) > units.MAX_WHATIF_VALUES:
            _fail(f"--vary: {axis}: at most {units.MAX_WHATIF_VALUES} values, got {len(values)}")
        if any(a == axis for a, _ in axes):
            _fail(f"--vary: {axis} given twice")
        axes.append((axis, values))
    if not axes:
        _fail("--vary: missing; e.g. --vary qps=10,20,40,80")
    if len(axes) > 2:
        _fail("--vary: at most two axes")
    cells = math.prod(len(v) for _, v in axes)
    if cells > units.MAX_WHATIF_CELLS:
        _fail(f"--vary: {' x '.join(str(len(v)) for _, v in axes)} = {cells:,} cells; at most "
              f"{units.MAX_WHATIF_CELLS:,} (each cell is a recommendation)")
    return axes


def apply_axis(opts: dict, axis: str, value: str) -> dict:
    """A copy of ``opts`` with the what-if ``axis`` set to ``value`` (as given)."""
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


def whatif_cells(cat: Catalog, opts: dict, axes: list[tuple[str, list[str]]], *, force: bool = False,
                 warnings: list | None = None) -> tuple[list, list[str]]:
    """The cells of a what-if grid, ``(values, inputs, gpu ids)`` each (what
    :func:`planner.api.whatif` takes), for every combination of the ``axes`` values
    (:func:`parse_vary`), and the defaults the grid assumed, less the axes being varied."""
    if (opts.get("qps") is None and opts.get("concurrency") is None
            and not any(a in ("qps", "concurrency") for a, _ in axes)):
        _fail("--qps: missing; give the request rate (or --concurrency) or vary it with --vary qps=...")
    combos = [[(axes[0][0], v)] for v in axes[0][1]]
    if len(axes) == 2:
        combos = [[(axes[0][0], a), (axes[1][0], b)] for a in axes[0][1] for b in axes[1][1]]
    cells: list = []
    assumed: list[str] | None = None
    for combo in combos:
        o = dict(opts)
        for axis, value in combo:
            o = apply_axis(o, axis, value)
        gpus = gpu_list(cat, o)
        o["force"] = force
        inputs = build_inputs(cat, o, warnings=warnings)
        if assumed is None:  # the defaults, less the axes being varied
            assumed = [a for a in inputs.assumed
                       if not any(a.lower().startswith(ax.split("-")[0]) for ax, _ in axes)]
        cells.append((dict(combo), inputs, gpus or [inputs.gpu]))
    return cells, assumed or []


def load_plan_file(path: str, opts: dict, catalog_dir: str | None = None) -> tuple[Inputs, Deployment]:
    """(Inputs, Deployment) of a plan file (:func:`planner.plans.load_plan`); of the options in
    ``opts`` only ``qps`` may be given besides it (the plan fixes the deployment and inputs)."""
    from planner.plans import load_plan

    extra = sorted(k for k, v in opts.items() if v is not None and v is not False and k != "qps")
    if extra:
        flag = "--" + extra[0].replace("_spec", "").replace("_", "-")
        _fail(f"{flag}: not with a PLAN file; the plan fixes the deployment and inputs "
              "(only --qps, --requests, --seed and --json apply)")
    loaded = load_plan(path, qps=opts.get("qps"), catalog_dir=catalog_dir)
    return loaded[0], loaded[1]


# --------------------------------------------------------------------------------------------
# Plans for a day (planner.day): the scaling options, and the schedule a simulated day replays
# --------------------------------------------------------------------------------------------


def day_scaling(day_opts: dict, assumed: list):
    """:class:`planner.day.schedule.Scaling` from ``--scale-up-time`` (default 5 minutes, then
    listed in ``assumed``), ``--min/--max-instances``, ``--allow-approach-change`` and
    ``--scaling``."""
    from planner.day.profile import fmt_span
    from planner.day.schedule import DEFAULT_SCALE_UP_S, Scaling, parse_instances

    text = day_opts.get("scale_up_time")
    if text is None:
        up = DEFAULT_SCALE_UP_S
        assumed.append(f"scale-up time {fmt_span(DEFAULT_SCALE_UP_S)}")
    else:
        up = units.parse_span(text, "--scale-up-time", lo=0.0, lo_open=False)
    return Scaling(up, parse_instances(day_opts.get("min_instances"), "--min-instances"),
                   parse_instances(day_opts.get("max_instances"), "--max-instances"),
                   bool(day_opts.get("allow_approach_change")), day_opts.get("scaling") or "reactive")


def held_all_day(dep: Deployment, profile):
    """(scaling, deployments, specs) of one deployment held through every period."""
    from planner.day.schedule import Scaling

    return Scaling(0.0), [dep] * profile.periods, None


def day_schedule_of_plan(path: str, profile, catalog_dir: str | None = None):
    """(inputs, scaling, deployments, specs) a simulated day replays from a plan file: its day
    section's schedule (whose periods must be the profile's), or its one deployment held all
    day (``inputs.assumed`` says so)."""
    from planner.day.document import read_day
    from planner.day.profile import fmt_span
    from planner.plans import load_plan

    inputs, dep, doc = load_plan(path, catalog_dir=catalog_dir)
    if doc.get("day") is None:
        inputs.assumed.append("the plan's deployment held all day (it has no schedule)")
        return (inputs, *held_all_day(dep, profile))
    planned, scaling, deps, specs = read_day(doc["day"], path, inputs, dep)
    if planned.periods != profile.periods or abs(planned.period_s - profile.period_s) > 1e-6:
        _fail(f"--load-profile: {profile.periods} periods of {fmt_span(profile.period_s)}; the plan's "
              f"schedule has {planned.periods} of {fmt_span(planned.period_s)} (give a profile with "
              "the same periods)")
    return inputs, scaling, deps, specs

