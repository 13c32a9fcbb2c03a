"""Parsing of human units at the edge: durations (``200ms``, ``0.2s``, ``200``) and token sizes
(``2048``, ``2k``). Everything inside pdplan is SI: seconds, bytes, FLOP/s.

This is the one input layer: every number a user types (flags, distribution parameters,
``--request`` specs, ``--vary`` values) is read here, as ASCII only (Python's ``int()`` and
``float()`` would take other scripts' digits, ``1_000`` and ``infinity``), with its length checked
before any conversion (Python refuses integers of more than 4,300 digits), and held to the bounds
below, so nothing non-finite or absurd reaches the models. docs/errors.md ("Limits") lists them for users."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from planner.errors import InvalidRequestError

# --------------------------------------------------------------------------------------------
# Limits: every bound of the input layer, in one place (docs/errors.md, "Limits", explains them)
# --------------------------------------------------------------------------------------------

# Tokens in one sequence (--isl, --osl, --seq-len, --context, --prefill, --chunk-size, length
# distribution parameters, trace rows): 10M is the longest context any released model offers
# (Llama 4 Scout); no deployment can hold a longer request.
MAX_TOKENS = 10_000_000
# Request rate: 1e7 req/s is beyond every fleet on earth, so a larger one is surely a typo.
MAX_QPS = 10_000_000.0
# One request every 11.6 days: below it no capacity question is left, and a rate this small would
# otherwise lose its digits when a plan is written.
MIN_QPS = 1e-6
# Arrival burstiness (the CV of inter-arrival gaps; CV^2 = 100 is already a few huge bursts a day
# with silence in between; the Gamma renewal model means nothing beyond).
MAX_BURSTINESS = 10.0
# Below this CV arrivals are as regular as a clock to every queueing form here (the GI/M/1 root
# and the Cramer-Lundberg rate have reached their deterministic limits), so smaller values,
# 0 included, are read as this one: the answer is continuous and 1 / CV^2 stays finite.
MIN_BURSTINESS = 1e-6
# Length distributions (lognormal, gamma): CV 10 puts the median at a tenth of the mean already.
MAX_LENGTH_CV = 10.0
# Below this CV a length distribution rounds to the same token count (a 0.1% spread), so it is
# read as fixed (CV 0): the Gamma shape 1 / CV^2 would otherwise overflow.
MIN_LENGTH_CV = 1e-3
# Durations (SLOs, --think-time, arrival offsets, --tick): 1 us is below one GPU kernel launch,
# an hour is beyond any interactive SLO.
MIN_DURATION_S = 1e-6
MAX_DURATION_S = 3600.0
# Percentiles an SLO may be stated at (the serving models tabulate these).
PERCENTILES = (50, 90, 95, 99)
# Requests one simulation may run (simulate --requests, recommend --verify --requests): at
# 250,000 the sampling error of an attainment is under 0.1 percentage point, and the heaviest
# runs (disaggregated, or long-tailed lengths) take ~5 s and ~300 MB; more buys nothing but time.
MAX_SIM_REQUESTS = 250_000
# whatif: values of one --vary axis and cells of the whole grid (each cell is a recommendation,
# ~0.1-0.3 s; 256 cells is a 16x16 grid in under about a minute).
MAX_WHATIF_VALUES = 64
MAX_WHATIF_CELLS = 256
# timeline (real time): a column no narrower than the decode step / 1,000 (finer shows nothing
# new), and at most 10,000 columns (no terminal or file viewer shows more).
TICK_STEP_FRACTION = 1e-3
MAX_TIMELINE_COLUMNS = 10_000
# Speculative decoding (--spec-tokens): draft tokens proposed per step. Engines run 1 to about 8
# (vLLM num_speculative_tokens, SGLang speculative-num-steps); past 16 the chance that a whole
# draft is accepted is negligible at any acceptance rate measured, so a larger K is a typo.
MAX_SPEC_TOKENS = 16
# Any number longer than this many characters is refused before it is converted (the largest
# bound above has 8 digits; this keeps Python's 4,300-digit integer limit out of reach).
MAX_NUMBER_CHARS = 40
# Seeds: numpy takes any non-negative integer; 2^63 - 1 keeps them to one machine word in files.
MAX_SEED = 2**63 - 1

_NUMBER = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
_WHOLE = re.compile(r"^[-+]?[0-9]+$")
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|us|µs)?\s*$")
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*$")


def shown(text, limit: int = 24) -> str:
    """``repr`` of what the user typed, cut short (a 400-digit number is not worth echoing)."""
    t = str(text)
    return repr(t) if len(t) <= limit else repr(t[:limit]) + "... (" + f"{len(t):,} characters)"


def _ascii(text) -> str:
    t = str(text).strip()
    if not t.isascii():
        return ""
    return t


def _range_text(lo, hi, integer: bool, lo_open: bool = False) -> str:
    def f(v):
        if integer or float(v).is_integer() and abs(v) >= 1:
            return f"{int(v):,}"
        return f"{v:g}"

    return f"greater than {f(lo)} and at most {f(hi)}" if lo_open else f"from {f(lo)} to {f(hi)}"


def parse_number(text, flag: str, lo: float, hi: float, *, lo_open: bool = False,
                 what: str = "a number") -> float:
    """A finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), from ASCII text."""
    rng = _range_text(lo, hi, False, lo_open)
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        v = float(text)
    else:
        t = _ascii(text)
        if not _NUMBER.match(t):  # float() reads any length: an overlong one is inf
            raise InvalidRequestError(f"{flag}: {shown(text)} is not {what}; give one {rng}")
        v = float(t)
    if not math.isfinite(v) or v < lo or v > hi or (lo_open and v <= lo):
        raise InvalidRequestError(f"{flag}: must be {rng}, got {shown(text)}")
    return v


def parse_count(text, flag: str, lo: int, hi: int, what: str = "a whole number") -> int:
    """A whole number in ``[lo, hi]`` from ASCII digits (an optional sign, no exponent)."""
    if isinstance(text, int) and not isinstance(text, bool):
        v = text
    else:
        t = _ascii(text)
        if not _WHOLE.match(t):
            raise InvalidRequestError(
                f"{flag}: {shown(text)} is not {what}; give one {_range_text(lo, hi, True)}")
        digits = t.lstrip("+-").lstrip("0") or "0"
        if len(digits) > MAX_NUMBER_CHARS:
            raise InvalidRequestError(f"{flag}: must be {_range_text(lo, hi, True)}, got {shown(text)}")
        v = -int(digits) if t.startswith("-") else int(digits)
    if not lo <= v <= hi:
        raise InvalidRequestError(f"{flag}: must be {_range_text(lo, hi, True)}, got {shown(text)}")
    return v


def parse_duration(text, flag: str = "duration", minimum: float = MIN_DURATION_S) -> float:
    """Seconds from ``200ms``, ``0.2s``, ``150us`` or a bare number of milliseconds, from
    ``minimum`` (1 us) to an hour."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), "ms"
    else:
        t = _ascii(str(text).replace("\u00b5s", "us").replace("\u03bcs", "us"))  # micro sign, mu
        m = _DURATION.match(t)  # float() reads any length; an overlong one is inf, over an hour
        if not m:
            raise InvalidRequestError(
                f"{flag}: cannot read {shown(text)} as a duration; use e.g. 200ms, 0.2s or 200 (ms)"
            )
        value, unit = float(m.group(1)), (m.group(2) or "ms")
    seconds = value * {"ms": 1e-3, "s": 1.0, "us": 1e-6, "µs": 1e-6}[unit]
    if seconds <= 0 or seconds != seconds:
        raise InvalidRequestError(f"{flag}: must be a positive duration, got {shown(text)}")
    if seconds > MAX_DURATION_S:  # inf included
        raise InvalidRequestError(f"{flag}: {shown(text)} is over an hour; use e.g. 200ms or 2s")
    if seconds < minimum * (1 - 1e-9):
        raise InvalidRequestError(
            f"{flag}: {shown(text)} is under {minimum * 1e6:g} us, shorter than any GPU step; "
            "give a duration from 1us to 3600s")
    return seconds


_SPAN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|sec|m|min|h|hr|d)\s*$", re.IGNORECASE)
_SPAN_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0, "d": 86400.0}
MAX_SPAN_S = 366 * 86400.0  # a load profile's period or a scale-up time: at most a year


def parse_span(text, flag: str, lo: float = 0.0, hi: float = MAX_SPAN_S, lo_open: bool = True) -> float:
    """Seconds from a span of wall-clock time with its unit: ``90s``, ``5m`` (or ``5min``),
    ``1.5h``, ``1d``, ``500ms``. A bare number is refused (durations elsewhere read a bare number
    as milliseconds, which for a scale-up time or a period would surprise)."""
    t = _ascii(text)
    m = _SPAN.match(t) if len(t) <= MAX_NUMBER_CHARS else None
    if not m:
        raise InvalidRequestError(
            f"{flag}: cannot read {shown(text)} as a span of time; give it with a unit, e.g. 90s, 5m or 1h")
    v = float(m.group(1)) * _SPAN_UNITS[m.group(2).lower()]
    if not (v > lo if lo_open else v >= lo) or v > hi or v != v:
        low = f"more than {lo:g} s" if lo_open else f"at least {lo:g} s"
        raise InvalidRequestError(f"{flag}: must be {low} and at most {hi:g} s, got {shown(text)}")
    return v


def parse_size(text, flag: str = "size", maximum: int = MAX_TOKENS) -> int:
    """Whole tokens from ``2048``, ``2k`` (2048) or ``1m`` (1,048,576), from 1 to ``maximum``."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        t = _ascii(text)
        m = _SIZE.match(t) if len(t) <= MAX_NUMBER_CHARS else None
        if not m:
            if t and len(t) > MAX_NUMBER_CHARS and _SIZE.match(t):
                raise InvalidRequestError(
                    f"{flag}: {shown(text)} is larger than the maximum {maximum:,}")
            raise InvalidRequestError(
                f"{flag}: cannot read {shown(text)} as a size; use a whole number such as 2048 or 2k"
            )
        mult = {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
        try:
            raw = Decimal(m.group(1)) * mult  # exact: no float rounding, no overflow
        except InvalidOperation:
            raise InvalidRequestError(f"{flag}: cannot read {shown(text)} as a size") from None
        if raw > maximum:
            raise InvalidRequestError(f"{flag}: {shown(text)} is larger than the maximum {maximum:,}")
        if raw != raw.to_integral_value():
            raise InvalidRequestError(f"{flag}: {shown(text)} is not a whole number of tokens")
        value = int(raw)
    if value <= 0:
        raise InvalidRequestError(f"{flag}: must be a positive whole number, got {shown(text)}")
    if value > maximum:
        raise InvalidRequestError(f"{flag}: {shown(text)} is larger than the maximum {maximum:,}")
    return value


def fmt_ms(seconds: float | None, digits: int = 1) -> str:
    """Milliseconds for display; infinite or missing values read 'overloaded'."""
    if seconds is None or not math.isfinite(seconds):
        return "overloaded"
    ms = seconds * 1e3
    if ms >= 10_000:
        return f"{ms / 1e3:,.1f} s"
    return f"{ms:,.{digits}f} ms"


def fmt_seconds(seconds) -> str:
    """A duration for people: '1 s', '200 ms', '12.5 ms' ('n/a' when missing or not finite)."""
    try:
        v = float(seconds)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(v):
        return "n/a"
    if v >= 1 and v == int(v):
        return f"{int(v)} s"
    return f"{v * 1e3:g} ms"
