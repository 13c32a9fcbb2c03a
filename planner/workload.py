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


@dataclass(frozen=True)
class PrefixCache:
    """What the engine's prefix cache holds for this traffic: the one place every approach, the
    simulator and the reference scheduler read it from (docs/methodology.md, "Prefix caching").

    ``tokens`` (``--prefix-tokens``): a prefix shared by every request (a system prompt), the
    first ``tokens`` of each prompt; after its first use it stays cached on every instance and
    its KV blocks are held once per instance, not per sequence. ``hit_rate``
    (``--prefix-hit-rate``): the share of the rest of each prompt (the tokens after the shared
    prefix) also found in the cache, as a request's own earlier turns are; those blocks belong
    to the sequence (per-sequence KV) and a disaggregated prefill must still send them.

    Per request of ``L`` prompt tokens: ``shared = min(tokens, L)`` (a prompt shorter than the
    prefix is its first ``L`` tokens), ``cached = shared + floor(hit_rate (L - shared))`` (or,
    from a trace, its ``cached_tokens``, raised to ``shared``), at most ``L - 1``: the last
    prompt token is always computed, since its logits give the first output token (engines
    recompute it on a full hit). Prefill computes ``L - cached`` tokens after ``cached``."""

    tokens: int = 0
    hit_rate: float = 0.0

    @property
    def on(self) -> bool:
        return self.tokens > 0 or self.hit_rate > 0

    def shared(self, isl) -> np.ndarray:
        """Shared-prefix tokens of prompts of ``isl`` tokens (held once per instance)."""
        return np.minimum(np.asarray(isl, dtype=np.int64), int(self.tokens))

    def cached(self, isl, given=None) -> np.ndarray:
        """Prompt tokens found in the cache for prompts of ``isl`` tokens; ``given``: a trace's
        per-request counts (the shared prefix is in every prompt, so they are raised to it)."""
        isl = np.asarray(isl, dtype=np.int64)
        sh = self.shared(isl)
        if given is not None:
            c = np.maximum(np.asarray(given, dtype=np.int64), sh)
        else:
            c = sh + np.floor(self.hit_rate * (isl - sh) + 1e-9).astype(np.int64)
        return np.clip(c, 0, np.maximum(isl - 1, 0))

    def document(self) -> dict:
        """What a plan records (only what was given)."""
        d: dict[str, float] = {}
        if self.tokens:
            d["prefix_tokens"] = int(self.tokens)
        if self.hit_rate:
            d["prefix_hit_rate"] = float(self.hit_rate)
        return d

    def describe(self) -> str:
        """One phrase for the assumptions line."""
        parts = []
        if self.tokens:
            parts.append(f"a {self.tokens:,}-token shared prefix cached once per instance")
        if self.hit_rate:
            rest = " of the rest" if self.tokens else ""
            parts.append(f"{self.hit_rate:.0%}{rest} of each prompt found in the cache")
        return "prefix cache: " + ", ".join(parts)


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
    """Per-request (input, output) token counts read from a file (or from a plan that embeds
    them), kept sorted by (ISL, OSL): the order of a trace's rows carries no meaning (the
    analytic models use the sorted pairs, the simulator draws rows at random), so a trace and
    the same rows embedded in a plan give the same numbers. ``sha256`` is the hash of the file
    it was read from (of the pairs when built from arrays); traces compare by it."""

    path: str = field(compare=False)
    isl: np.ndarray = field(compare=False, repr=False)
    osl: np.ndarray = field(compare=False, repr=False)
    sha256: str = ""
    # Per request, prompt tokens the engine found in its prefix cache (a ``cached_tokens``
    # column); None when the trace has none.
    cached: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        isl = np.asarray(self.isl, dtype=np.int64)
        osl = np.asarray(self.osl, dtype=np.int64)
        cached = None if self.cached is None else np.asarray(self.cached, dtype=np.int64)
        if cached is not None:
            order = np.lexsort((cached, osl, isl))  # rows ordered as (ISL, OSL, cached)
            if len(order) > 1 and np.any(order[1:] < order[:-1]):
                isl, osl, cached = isl[order], osl[order], cached[order]
        else:
            key = isl * (MAX_TOKENS + 1) + osl  # one integer per row, ordered as (ISL, OSL)
            if len(key) > 1 and np.any(key[1:] < key[:-1]):
                key = np.sort(key)
                isl, osl = key // (MAX_TOKENS + 1), key % (MAX_TOKENS + 1)
        object.__setattr__(self, "isl", isl)
        object.__setattr__(self, "osl", osl)
        object.__setattr__(self, "cached", cached)
        if not self.sha256:
            import hashlib

            raw = self.isl.astype("<i8").tobytes() + self.osl.astype("<i8").tobytes()
            if cached is not None:
                raw += cached.astype("<i8").tobytes()
            object.__setattr__(self, "sha256", hashlib.sha256(raw).hexdigest())

    def document(self) -> dict:
        """What a plan records: the file's name (for people), its hash, the row count and the
        rows themselves (:func:`encode_lengths`; a ``cached_tokens`` column as
        :func:`encode_counts`), so the plan needs no trace file to evaluate."""
        doc = {"file": Path(self.path).name, "sha256": self.sha256, "requests": int(len(self.isl)),
               "lengths": encode_lengths(self.isl, self.osl)}
        if self.cached is not None:
            doc["cached_tokens"] = encode_counts(self.cached)
        return doc


_IN_COLS = ("input_tokens", "isl", "input_length", "prompt_tokens", "input_len", "num_input_tokens")
_OUT_COLS = ("output_tokens", "osl", "output_length", "completion_tokens", "output_len", "num_output_tokens")
# Prompt tokens found in the prefix cache, per request (OpenAI-style usage reports them as
# prompt_tokens_details.cached_tokens, vLLM's RequestOutput as num_cached_tokens).
_CACHED_COLS = ("cached_tokens", "num_cached_tokens")
COUNTS_ENCODING = "zlib+base64 of int32 LE: one count per row, in the order of the sorted rows"
LENGTHS_ENCODING = "zlib+base64 of int32 LE: ISL deltas, then OSL deltas, of the (ISL, OSL)-sorted rows"


def encode_lengths(isl: np.ndarray, osl: np.ndarray) -> str:
    """The sorted (ISL, OSL) rows as one ASCII string (:data:`LENGTHS_ENCODING`): a few bytes per
    request, since sorted lengths differ little from row to row."""
    import base64
    import zlib

    d = np.concatenate([np.diff(isl, prepend=0), np.diff(osl, prepend=0)]).astype("<i4")
    return base64.b64encode(zlib.compress(d.tobytes(), 6)).decode("ascii")


def encode_counts(counts: np.ndarray) -> str:
    """One whole number per row as an ASCII string (:data:`COUNTS_ENCODING`)."""
    import base64
    import zlib

    return base64.b64encode(zlib.compress(np.asarray(counts).astype("<i4").tobytes(), 6)).decode("ascii")


def decode_counts(text, isl: np.ndarray, label: str) -> np.ndarray:
    """The per-row counts of :func:`encode_counts`, checked: one per row, each from 0 to that
    row's prompt length."""
    import base64
    import binascii
    import zlib

    if not isinstance(text, str):
        raise InvalidRequestError(f"{label}.cached_tokens: not a string")
    want = 4 * len(isl)
    try:
        raw = zlib.decompressobj().decompress(base64.b64decode(text.encode("ascii"), validate=True), want + 1)
    except (ValueError, binascii.Error, zlib.error, UnicodeEncodeError):
        raise InvalidRequestError(f"{label}.cached_tokens: not encoded counts ({COUNTS_ENCODING})") from None
    if len(raw) != want:
        raise InvalidRequestError(f"{label}.cached_tokens: holds {len(raw) // 4:,} rows, expected "
                                  f"requests = {len(isl):,}")
    c = np.frombuffer(raw, dtype="<i4").astype(np.int64)
    if c.min() < 0 or np.any(c > isl):
        raise InvalidRequestError(f"{label}.cached_tokens: counts must be whole numbers from 0 to "
                                  "the row's input tokens")
    return c


MAX_TRACE_ROWS = 20_000_000


def decode_lengths(text, requests, label: str) -> tuple[np.ndarray, np.ndarray]:
    """The (ISL, OSL) arrays of :func:`encode_lengths`' string, checked: ``requests`` rows, every
    length a whole number from 1 to ``MAX_TOKENS``."""
    import base64
    import binascii
    import zlib

    if isinstance(requests, bool) or not isinstance(requests, int) or not 1 <= requests <= MAX_TRACE_ROWS:
        raise InvalidRequestError(f"{label}.requests: must be a whole number from 1 to "
                                  f"{MAX_TRACE_ROWS:,}, got {requests!r}")
    if not isinstance(text, str):
        raise InvalidRequestError(f"{label}.lengths: missing or not a string")
    want = 8 * requests
    try:
        packed = base64.b64decode(text.encode("ascii"), validate=True)
        z = zlib.decompressobj()
        raw = z.decompress(packed, want + 1)  # never more than the rows promised
    except (ValueError, binascii.Error, zlib.error, UnicodeEncodeError):
        raise InvalidRequestError(f"{label}.lengths: not an encoded trace ({LENGTHS_ENCODING})") from None
    if len(raw) != want:
        raise InvalidRequestError(f"{label}.lengths: holds {len(raw) // 8:,} rows, expected "
                                  f"requests = {requests:,}")
    d = np.frombuffer(raw, dtype="<i4").astype(np.int64)
    isl, osl = np.cumsum(d[:requests]), np.cumsum(d[requests:])
    if isl.min() < 1 or osl.min() < 1 or isl.max() > MAX_TOKENS or osl.max() > MAX_TOKENS:
        raise InvalidRequestError(f"{label}.lengths: lengths must be whole numbers from 1 to {MAX_TOKENS:,}")
    return isl, osl


def trace_from_document(doc, label: str) -> Trace:
    """The :class:`Trace` a plan embeds (``inputs.trace`` as written by :meth:`Trace.document`)."""
    if not isinstance(doc, dict):
        raise InvalidRequestError(f"{label}: must be a mapping with sha256, requests and lengths")
    sha = doc.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise InvalidRequestError(f"{label}.sha256: must be 64 hexadecimal digits, got {sha!r}")
    isl, osl = decode_lengths(doc.get("lengths"), doc.get("requests"), label)
    cached = decode_counts(doc["cached_tokens"], isl, label) if doc.get("cached_tokens") is not None else None
    name = doc.get("file")
    return Trace(str(name) if isinstance(name, str) and name else "trace", isl, osl, sha256=sha,
                 cached=cached)


def _length_value(v, col: str, where: str, path, lo: int = 1) -> int:
    """A token count from a trace cell: a whole number from ``lo`` (1) to ``MAX_TOKENS``."""
    n = None
    if isinstance(v, int) and not isinstance(v, bool):
        n = v
    elif isinstance(v, (str, float)) and not isinstance(v, bool):
        try:
            n = int(v) if isinstance(v, str) else None
        except ValueError:
            pass
        if n is None:
            try:
                f = float(v)
            except (ValueError, OverflowError):
                raise InvalidRequestError(f"--trace: {path}: {where}: {col}: not a number: {_short(v)}") from None
            n = int(f) if math.isfinite(f) and f == int(f) else -1
    else:
        raise InvalidRequestError(f"--trace: {path}: {where}: {col}: not a number: {_short(v)}")
    if not lo <= n <= MAX_TOKENS:
        raise InvalidRequestError(
            f"--trace: {path}: {where}: {col}: must be a whole number from {lo} to {MAX_TOKENS:,}, got {_short(v)}"
        )
    return n


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _columns(keys, path) -> tuple[str, str]:
    keys = [k for k in keys if isinstance(k, str)]
    in_col = next((c for c in _IN_COLS if c in keys), None)
    out_col = next((c for c in _OUT_COLS if c in keys), None)
    if in_col is None or out_col is None:
        found = ", ".join(sorted(_short(k)[1:-1] for k in keys)[:12]) or "none"
        raise InvalidRequestError(
            f"--trace: {path}: needs an input column ({', '.join(_IN_COLS[:3])}) and an output "
            f"column ({', '.join(_OUT_COLS[:3])}); found {found}"
        )
    return in_col, out_col


def _cached_column(keys) -> str | None:
    """The trace's column of per-request cached prompt tokens, if it has one."""
    keys = [k for k in keys if isinstance(k, str)]
    return next((c for c in _CACHED_COLS if c in keys), None)


def _check_cached(isl, cached, col: str, path, rows=None) -> None:
    """Cached tokens are part of the prompt: at most its input tokens, row by row."""
    bad = np.nonzero(np.asarray(cached) > np.asarray(isl))[0]
    if bad.size:
        i = int(bad[0])
        where = f"row {rows[i]}" if rows is not None else f"data row {i + 1}"
        raise InvalidRequestError(
            f"--trace: {path}: {where}: {col}: must be from 0 to the row's input tokens "
            f"({int(isl[i]):,}), got {int(cached[i]):,}")


def _plain_csv(raw: bytes, header_lines: int, ci: int, co: int, cc: int | None = None):
    """The two (three, with a cached-tokens column ``cc``) columns of a plain CSV (no quotes;
    every cell of them a count in range) in one pass of numpy's parser, or None: then the
    row-by-row reader runs and names the row."""
    import io

    if b'"' in raw:
        return None
    cols = (ci, co) if cc is None else (ci, co, cc)
    try:
        a = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=header_lines, usecols=cols,
                       dtype=np.int64, ndmin=2, comments=None, encoding="utf-8")
    except (ValueError, IndexError, OverflowError, UnicodeDecodeError):
        return None
    if a.shape[0] == 0 or a[:, :2].min() < 1 or a[:, :2].max() > MAX_TOKENS:
        return None
    if cc is not None and (a[:, 2].min() < 0 or np.any(a[:, 2] > a[:, 0])):
        return None
    return a[:, 0].copy(), a[:, 1].copy(), (a[:, 2].copy() if cc is not None else None)


def _lines(text: str):
    """The lines of ``text`` (with their line ends), one at a time: no copy of the whole."""
    pos, n = 0, len(text)
    while pos < n:
        j = text.find("\n", pos)
        j = n if j < 0 else j + 1
        yield text[pos:j]
        pos = j


def load_trace(path: str) -> Trace:
    """Read a CSV (with a header) or JSONL trace; column names may be any of
    input_tokens/isl/prompt_tokens and output_tokens/osl/completion_tokens, and an optional
    cached_tokens (or num_cached_tokens) column gives each request's prompt tokens found in the
    prefix cache (0 to its input tokens). At most
    :data:`planner.files.TRACE_MAX_BYTES` of file; the plan records it by content."""
    import hashlib
    from array import array

    from planner.files import TRACE_MAX_BYTES, decode_text, parse_json, read_bytes

    p = Path(path).expanduser()
    label = f"--trace: {path}"
    raw = read_bytes(p, label, "a CSV or JSONL trace", max_bytes=TRACE_MAX_BYTES)
    sha = hashlib.sha256(raw).hexdigest()
    text = decode_text(raw, label, "a CSV or JSONL file")
    first = next((ln for ln in _lines(text) if ln.strip()), None)
    if first is None:
        raise InvalidRequestError(f"--trace: {path} is empty")
    isl, osl, cached, rows = array("q"), array("q"), array("q"), []
    cc_col = None
    if first.lstrip().startswith("{"):
        del raw
        cols = None
        for i, ln in enumerate(_lines(text), start=1):
            if not ln.strip():
                continue
            obj = parse_json(ln, f"--trace: {path}: line {i}")
            if not isinstance(obj, dict):
                raise InvalidRequestError(f"--trace: {path}: line {i}: expected a JSON object")
            if cols is None:
                cols = _columns(obj, path)
                cc_col = _cached_column(obj)
            isl.append(_length_value(obj.get(cols[0]), cols[0], f"row {i}", path))
            osl.append(_length_value(obj.get(cols[1]), cols[1], f"row {i}", path))
            if cc_col is not None:
                cached.append(_length_value(obj.get(cc_col), cc_col, f"row {i}", path, lo=0))
                rows.append(i)
    else:
        reader = csv.reader(_lines(text))
        try:
            header = next(reader)
            while not any(h.strip() for h in header):  # blank lines before the header
                header = next(reader)
            names = [h.strip() for h in header]
            in_col, out_col = _columns(names, path)
            cc_col = _cached_column(names)
            ci, co = names.index(in_col), names.index(out_col)
            cc = names.index(cc_col) if cc_col is not None else None
            fast = _plain_csv(raw, reader.line_num, ci, co, cc)
            del raw
            if fast is not None:
                return Trace(str(p), fast[0], fast[1], sha256=sha, cached=fast[2])
            for row in reader:
                if not row or not any(c.strip() for c in row):
                    continue
                where = f"row {reader.line_num}"
                isl.append(_length_value(row[ci] if ci < len(row) else None, in_col, where, path))
                osl.append(_length_value(row[co] if co < len(row) else None, out_col, where, path))
                if cc is not None and cc_col is not None:  # (set together)
                    cached.append(_length_value(row[cc] if cc < len(row) else None, cc_col, where,
                                                path, lo=0))
                    rows.append(reader.line_num)
        except csv.Error as exc:
            raise InvalidRequestError(f"--trace: {path}: line {reader.line_num}: malformed CSV "
                                      f"({' '.join(str(exc).split())})") from None
        if not isl:
            raise InvalidRequestError(f"--trace: {path}: has a header but no rows")
    isl_a = np.frombuffer(isl, dtype=np.int64)
    cached_a = None
    if cc_col is not None:
        cached_a = np.frombuffer(cached, dtype=np.int64)
        _check_cached(isl_a, cached_a, cc_col, path, rows)
    return Trace(str(p), isl_a, np.frombuffer(osl, dtype=np.int64), sha256=sha, cached=cached_a)


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
    # Prefix caching (--prefix-tokens, --prefix-hit-rate; a trace's cached_tokens column).
    prefix: PrefixCache = PrefixCache()

    def with_qps(self, qps: float) -> Workload:
        from dataclasses import replace

        return replace(self, qps=qps)

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
        d.update(self.prefix.document())
        return d

    @property
    def trace_cached(self) -> bool:
        """The trace carries per-request cached-token counts."""
        return self.trace is not None and self.trace.cached is not None

    def _trace_rows(self, n: int) -> np.ndarray:
        t = self.trace
        assert t is not None  # only asked of a trace workload
        order = np.argsort(t.isl, kind="stable")
        if len(order) > 4 * n:
            order = order[np.linspace(0, len(order) - 1, 4 * n).round().astype(int)]
        return order

    def prefix_grid(self, n: int = GRID_POINTS) -> tuple[np.ndarray, np.ndarray]:
        """Per pair of :meth:`grid`: prompt tokens found in the cache and, of those, the shared
        prefix's (:class:`PrefixCache`)."""
        isl, _ = self.grid(n)
        t = self.trace
        given = (t.cached[self._trace_rows(n)]  # (trace_cached:)
                 if t is not None and t.cached is not None else None)
        return self.prefix.cached(isl, given), self.prefix.shared(isl)

    def grid(self, n: int = GRID_POINTS) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic (ISL, OSL) pairs that represent the workload for the analytic models.

        Independent lengths: ISL and OSL quantile mid-points paired in a shuffled but fixed order
        (a Latin-square design, so both marginals are exact and they are uncorrelated). Trace:
        the trace's own pairs (every k-th pair of the ISL-sorted trace when it is long)."""
        if self.trace is not None:
            t = self.trace
            order = self._trace_rows(n)
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

    def isl_tail(self, horizon: int) -> float:
        """The longest prompt among ``horizon`` requests: the ``1 - 1/horizon`` quantile of the
        ISL distribution (a trace's longest prompt)."""
        if self.trace is not None:
            return float(np.max(self.trace.isl))
        return float(self.isl._round(self.isl.ppf(1.0 - 1.0 / max(int(horizon), 2))))

    @property
    def mean_isl(self) -> float:
        return float(np.mean(self.grid()[0]))

    @property
    def mean_osl(self) -> float:
        return float(np.mean(self.grid()[1]))

    def sample(self, n: int, rng: np.random.Generator):
        """Arrival times (seconds from 0) and lengths of ``n`` requests."""
        return self.sample_requests(n, rng)[:3]

    def sample_requests(self, n: int, rng: np.random.Generator):
        """Arrival times, lengths and cached prompt tokens (:class:`PrefixCache`) of ``n``
        requests; the same draws as :meth:`sample`."""
        if self.arrival_cv == 1.0:
            gaps = rng.exponential(1.0 / self.qps, n)
        else:
            k = 1.0 / max(self.arrival_cv, MIN_BURSTINESS) ** 2
            gaps = rng.gamma(k, 1.0 / (self.qps * k), n)
        t = np.cumsum(gaps)
        if self.trace is not None:
            idx = rng.integers(0, len(self.trace.isl), n)
            isl = self.trace.isl[idx]
            given = self.trace.cached[idx] if self.trace.cached is not None else None
            return t, isl, self.trace.osl[idx], self.prefix.cached(isl, given)
        isl = self.isl.sample(n, rng)
        return t, isl, self.osl.sample(n, rng), self.prefix.cached(isl)

    def check_prefix(self) -> None:
        """Bad prefix-caching input: one error naming the flag and the valid range.

        The shared prefix must be shorter than the prompt (for a distribution or a trace: than
        the mean prompt; a drawn prompt shorter than the prefix is taken as its first tokens,
        all cached but the last); the hit rate is a share, from 0 to 1, and does not combine
        with a trace that gives each request's cached tokens."""
        p = self.prefix
        if not (isinstance(p.hit_rate, (int, float)) and 0.0 <= p.hit_rate <= 1.0):
            raise InvalidRequestError(f"--prefix-hit-rate: must be from 0 to 1, got {p.hit_rate!r}")
        if p.tokens < 0:
            raise InvalidRequestError(f"--prefix-tokens: must be a whole number of tokens from 0 "
                                      f"up to the prompt length, got {p.tokens}")
        if p.hit_rate and self.trace_cached:
            raise InvalidRequestError(
                "--prefix-hit-rate: not with a trace that carries cached_tokens (the trace gives "
                "each request's cache hits); leave one of them out")
        if not p.tokens:
            return
        top, what = self.prefix_limit()
        if p.tokens > top:
            raise InvalidRequestError(f"--prefix-tokens: must be from 0 to {top:,} (shorter than "
                                      f"{what}), got {p.tokens:,}")

    def prefix_limit(self) -> tuple[int, str]:
        """The longest shared prefix this traffic takes, and what bounds it: shorter than the
        prompt (--isl), the mean prompt of a distribution, or a trace's mean prompt."""
        if self.trace is not None:
            mean, what = float(np.mean(self.trace.isl)), "the trace's mean prompt"
        elif self.isl.is_fixed:
            mean, what = float(self.isl.mean), "the prompt, --isl"
        else:
            mean, what = float(np.mean(self.isl.grid())), "the mean prompt of --isl-dist"
        return max(math.ceil(mean) - 1, 0), f"{what}: {mean:,.0f} tokens"
