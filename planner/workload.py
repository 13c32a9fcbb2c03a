"""Traffic: request rate, arrival burstiness and the prompt / output length distributions.

Arrivals are Poisson at ``qps`` (``arrival_cv = 1``) or Gamma renewal with the given coefficient
of variation (``--burstiness CV``). Lengths are fixed, drawn from a named distribution
(``lognormal:mean=2048,cv=0.6``) or taken from a trace file (CSV or JSONL with input and output
token counts per request).

The analytic models never draw random numbers: they use :meth:`Workload.grid`, a deterministic
set of (ISL, OSL) pairs on quantile mid-points, so the same inputs always give the same plan.
The simulator samples with a seeded generator.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from planner.errors import InvalidRequestError
from planner.units import MAX_LENGTH_CV, MAX_TOKENS, MIN_BURSTINESS, MIN_LENGTH_CV

GRID_POINTS = 64
_DISTS = ("fixed", "lognormal", "uniform", "exponential", "gamma")


@dataclass(frozen=True)
class LengthDist:
    """A distribution of token counts (whole numbers >= 1)."""

    kind: str
    mean: float
    cv: float = 0.0
    low: float = 0.0
    high: float = 0.0

    @property
    def is_fixed(self) -> bool:
        return self.kind == "fixed" or self.cv == 0 and self.kind != "uniform"

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{int(self.mean)}"
        if self.kind == "uniform":
            return f"uniform:min={int(self.low)},max={int(self.high)}"
        if self.kind == "exponential":
            return f"exponential:mean={self.mean:g}"
        return f"{self.kind}:mean={self.mean:g},cv={self.cv:g}"

    def ppf(self, q):
        """Quantile function (continuous, before rounding). Uses scipy.special only: importing
        scipy.stats would cost more than a whole recommendation."""
        q = np.asarray(q, dtype=float)
        if self.kind == "fixed" or (self.cv == 0 and self.kind in ("lognormal", "gamma")):
            return np.full_like(q, self.mean)
        if self.kind == "uniform":
            return self.low + q * (self.high - self.low)
        if self.kind == "exponential":
            return -self.mean * np.log1p(-q)
        from scipy import special

        if self.kind == "gamma":
            k = 1.0 / self.cv**2
            return special.gammaincinv(k, q) * self.mean / k
        sigma2 = math.log1p(self.cv**2)
        mu = math.log(self.mean) - sigma2 / 2
        return np.exp(mu + math.sqrt(sigma2) * special.ndtri(q))

    def _round(self, x):
        return np.clip(np.rint(x), 1, MAX_TOKENS).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._round(self.ppf(rng.random(n)))

    def grid(self, n: int = GRID_POINTS) -> np.ndarray:
        return self._round(self.ppf((np.arange(n) + 0.5) / n))


def fixed(n: int) -> LengthDist:
    return LengthDist("fixed", float(n))


def parse_length_dist(text: str, flag: str) -> LengthDist:
    """``lognormal:mean=2048,cv=0.6``, ``uniform:min=128,max=4096``, ``exponential:mean=256``,
    ``gamma:mean=512,cv=1.5`` or ``fixed:2048``."""
    from planner.units import parse_number, parse_size

    kind, _, rest = str(text).partition(":")
    kind = kind.strip().lower()
    if kind not in _DISTS:
        from planner.errors import did_you_mean

        raise InvalidRequestError(
            f"{flag}: unknown distribution {kind!r}{did_you_mean(kind, _DISTS)}; valid: "
            "fixed:N, lognormal:mean=M,cv=C, gamma:mean=M,cv=C, exponential:mean=M, uniform:min=A,max=B"
        )
    if kind == "fixed":
        return fixed(parse_size(rest, flag))
    params = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = part.partition("=")
        if not eq:
            raise InvalidRequestError(f"{flag}: expected key=value in {text!r}, got {part!r}")
        key = key.strip().lower()
        if key in ("mean", "min", "max"):
            params[key] = float(parse_size(val, f"{flag}: {key}"))
        elif key == "cv":
            params[key] = parse_number(val, f"{flag}: cv", 0.0, MAX_LENGTH_CV)
        else:
            params[key] = math.nan  # reported as unknown below
    allowed = {"lognormal": {"mean", "cv"}, "gamma": {"mean", "cv"}, "exponential": {"mean"},
               "uniform": {"min", "max"}}[kind]
    missing, extra = allowed - set(params), set(params) - allowed
    if missing or extra:
        raise InvalidRequestError(
            f"{flag}: {kind} takes {', '.join(sorted(allowed))}; "
            + (f"missing {', '.join(sorted(missing))}" if missing else f"unknown {', '.join(sorted(extra))}")
        )
    for k, v in params.items():
        if not math.isfinite(v) or v < 0 or (k != "cv" and v <= 0):
            raise InvalidRequestError(f"{flag}: {k} must be positive and finite, got {v!r}")
    if kind == "uniform":
        if params["max"] < params["min"]:
            raise InvalidRequestError(f"{flag}: max must be at least min")
        return LengthDist("uniform", (params["min"] + params["max"]) / 2, low=params["min"], high=params["max"])
    if kind == "exponential":
        return LengthDist("exponential", params["mean"], cv=1.0)
    # A CV this small rounds to the same token count everywhere: read as fixed (CV 0), where the
    # Gamma shape 1 / CV^2 would overflow (planner.units.MIN_LENGTH_CV).
    cv = params["cv"] if params["cv"] >= MIN_LENGTH_CV else 0.0
    return LengthDist(kind, params["mean"], cv=cv)


@dataclass(frozen=True)
class Trace:
    """Per-request (input, output) token counts read from a file."""

    path: str
    isl: np.ndarray = field(compare=False, repr=False)
    osl: np.ndarray = field(compare=False, repr=False)


_IN_COLS = ("input_tokens", "isl", "input_length", "prompt_tokens", "input_len", "num_input_tokens")
_OUT_COLS = ("output_tokens", "osl", "output_length", "completion_tokens", "output_len", "num_output_tokens")


def load_trace(path: str) -> Trace:
    """Read a CSV (with a header) or JSONL trace; column names may be any of
    input_tokens/isl/prompt_tokens and output_tokens/osl/completion_tokens."""
    from planner.files import read_text

    p = Path(path).expanduser()
    text = read_text(p, f"--trace: {path}", "a CSV or JSONL file")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InvalidRequestError(f"--trace: {path} is empty")
    rows: list[tuple[int, dict]] = []
    if lines[0].lstrip().startswith("{"):
        for i, ln in enumerate(text.splitlines(), start=1):
            if not ln.strip():
                continue
            try:
                obj = json.loads(ln)
            except json.JSONDecodeError:
                raise InvalidRequestError(f"--trace: {path}: line {i}: not valid JSON") from None
            if not isinstance(obj, dict):
                raise InvalidRequestError(f"--trace: {path}: line {i}: expected a JSON object")
            rows.append((i, obj))
    else:
        reader = csv.DictReader(text.splitlines())
        for i, row in enumerate(reader, start=2):
            rows.append((i, row))
        if not rows:
            raise InvalidRequestError(f"--trace: {path}: has a header but no rows")
    keys = set(rows[0][1])
    in_col = next((c for c in _IN_COLS if c in keys), None)
    out_col = next((c for c in _OUT_COLS if c in keys), None)
    if in_col is None or out_col is None:
        raise InvalidRequestError(
            f"--trace: {path}: needs an input column ({', '.join(_IN_COLS[:3])}) and an output "
            f"column ({', '.join(_OUT_COLS[:3])}); found {', '.join(sorted(map(str, keys))) or 'none'}"
        )
    isl, osl = [], []
    for i, row in rows:
        for col, dest in ((in_col, isl), (out_col, osl)):
            v = row.get(col)
            try:
                f = float(v)
            except (TypeError, ValueError):
                raise InvalidRequestError(f"--trace: {path}: row {i}: {col}: not a number: {v!r}") from None
            if not math.isfinite(f) or f < 1 or f != int(f) or f > MAX_TOKENS:
                raise InvalidRequestError(
                    f"--trace: {path}: row {i}: {col}: must be a whole number from 1 to {MAX_TOKENS:,}, got {v!r}"
                )
            dest.append(int(f))
    return Trace(str(p), np.array(isl, dtype=np.int64), np.array(osl, dtype=np.int64))


@dataclass(frozen=True)
class Workload:
    """What arrives: ``qps`` requests per second with lengths ``isl`` / ``osl`` (or a trace)."""

    qps: float
    isl: LengthDist
    osl: LengthDist
    arrival_cv: float = 1.0
    trace: Trace | None = None
    # Closed loop: ``concurrency`` clients, each sending its next request ``think_s`` after its
    # previous one completes (how benchmark tools with --max-concurrency load an engine). ``qps``
    # is then the throughput those clients reach, which the serving model solves for.
    concurrency: int | None = None
    think_s: float = 0.0

    def with_qps(self, qps: float) -> Workload:
        return Workload(qps, self.isl, self.osl, self.arrival_cv, self.trace, self.concurrency,
                        self.think_s)

    @property
    def closed(self) -> bool:
        return self.concurrency is not None

    def describe(self) -> dict:
        d = {"qps": self.qps, "isl": self.isl.describe(), "osl": self.osl.describe()}
        if self.concurrency is not None:
            d["concurrency"] = self.concurrency
            if self.think_s:
                d["think_time_s"] = self.think_s
        if self.arrival_cv != 1.0:
            d["burstiness_cv"] = self.arrival_cv
        if self.trace is not None:
            d["trace"] = self.trace.path
        return d

    def grid(self, n: int = GRID_POINTS) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic (ISL, OSL) pairs that represent the workload for the analytic models.

        Independent lengths: ISL and OSL quantile mid-points paired in a shuffled but fixed order
        (a Latin-square design, so both marginals are exact and they are uncorrelated). Trace:
        the trace's own pairs (every k-th pair of the ISL-sorted trace when it is long)."""
        if self.trace is not None:
            t = self.trace
            order = np.argsort(t.isl, kind="stable")
            if len(order) > 4 * n:
                order = order[np.linspace(0, len(order) - 1, 4 * n).round().astype(int)]
            return t.isl[order], t.osl[order]
        isl = self.isl.grid(n)
        osl = self.osl.grid(n)
        if self.isl.is_fixed:
            isl = isl[:1].repeat(len(osl)) if not self.osl.is_fixed else isl[:1]
        if self.osl.is_fixed:
            osl = osl[:1].repeat(len(isl))
        if len(isl) == len(osl) and len(isl) > 1:
            osl = osl[np.random.default_rng(12345).permutation(len(osl))]
        return isl, osl

    @property
    def mean_isl(self) -> float:
        return float(np.mean(self.grid()[0]))

    @property
    def mean_osl(self) -> float:
        return float(np.mean(self.grid()[1]))

    def sample(self, n: int, rng: np.random.Generator):
        """Arrival times (seconds from 0) and lengths of ``n`` requests."""
        if self.arrival_cv == 1.0:
            gaps = rng.exponential(1.0 / self.qps, n)
        else:
            k = 1.0 / max(self.arrival_cv, MIN_BURSTINESS) ** 2
            gaps = rng.gamma(k, 1.0 / (self.qps * k), n)
        t = np.cumsum(gaps)
        if self.trace is not None:
            idx = rng.integers(0, len(self.trace.isl), n)
            return t, self.trace.isl[idx], self.trace.osl[idx]
        return t, self.isl.sample(n, rng), self.osl.sample(n, rng)
