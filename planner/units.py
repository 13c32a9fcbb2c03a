"""Parsing of human units at the edge: durations (``200ms``, ``0.2s``, ``200``) and token sizes
(``2048``, ``2k``). Everything inside pdplan is SI: seconds, bytes, FLOP/s."""

from __future__ import annotations

import math
import re

from planner.errors import InvalidRequestError

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|us|µs)?\s*$")
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*$")


def parse_duration(text, flag: str = "duration") -> float:
    """Seconds from ``200ms``, ``0.2s``, ``150us`` or a bare number of milliseconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), "ms"
    else:
        m = _DURATION.match(str(text))
        if not m:
            raise InvalidRequestError(
                f"{flag}: cannot read {text!r} as a duration; use e.g. 200ms, 0.2s or 200 (ms)"
            )
        value, unit = float(m.group(1)), (m.group(2) or "ms")
    seconds = value * {"ms": 1e-3, "s": 1.0, "us": 1e-6, "µs": 1e-6}[unit]
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidRequestError(f"{flag}: must be a positive duration, got {text!r}")
    if seconds > 3600:
        raise InvalidRequestError(f"{flag}: {text!r} is over an hour; use e.g. 200ms or 2s")
    return seconds


def parse_size(text, flag: str = "size", maximum: int = 10_000_000) -> int:
    """Whole tokens from ``2048``, ``2k`` (2048) or ``1m`` (1,048,576)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = _SIZE.match(str(text))
        if not m:
            raise InvalidRequestError(
                f"{flag}: cannot read {text!r} as a size; use a whole number such as 2048 or 2k"
            )
        mult = {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
        raw = float(m.group(1)) * mult
        if raw != int(raw):
            raise InvalidRequestError(f"{flag}: {text!r} is not a whole number of tokens")
        value = int(raw)
    if value <= 0:
        raise InvalidRequestError(f"{flag}: must be a positive whole number, got {text!r}")
    if value > maximum:
        raise InvalidRequestError(f"{flag}: {text!r} is larger than the maximum {maximum:,}")
    return value


def fmt_ms(seconds: float | None, digits: int = 1) -> str:
    """Milliseconds for display; infinite or missing values read 'overloaded'."""
    if seconds is None or not math.isfinite(seconds):
        return "overloaded"
    ms = seconds * 1e3
    if ms >= 10_000:
        return f"{ms / 1e3:,.1f} s"
    return f"{ms:,.{digits}f} ms"
