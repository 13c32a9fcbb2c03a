"""Load profiles: the traffic of a day (or of any span) as equal periods, each with its own
request rate or closed-loop concurrency, and optionally its own prompt and output lengths and
arrival burstiness.

Three sources (``--load-profile``):

* a named shape, ``diurnal:peak=120,trough=30,peak_hour=14`` (24 one-hour periods of a
  cosine day) or ``constant:qps=50``. A shape is piecewise-constant by definition: each period
  takes the curve's **highest** rate within it, so a plan sized for the period holds
  throughout it (the peak period plans for the peak itself);
* a table, CSV or JSONL, one row per period: a time column (``time``, ``hour``, ``minute``,
  ``time_s``) and a rate (``qps``) or a concurrency (``concurrency``) column, optionally
  ``isl``, ``osl`` (mean tokens of the period) and ``burstiness`` (CV of the gaps between
  arrivals). Rows must be sorted, equally spaced, with no gaps or duplicates;
* a request trace with timestamps (the Azure LLM inference trace's ``TIMESTAMP,
  ContextTokens,GeneratedTokens``, or ``arrival_s`` / ``timestamp`` with pdplan's trace
  columns), binned into periods of ``--profile-period`` (default 1 h; 5 min for a trace shorter
  than 2 h). A period's rate is its request count over its length, its lengths are its own
  requests' (a trace of the period) and its burstiness is measured: the coefficient of
  variation of the gaps between its arrivals.

A profile that spans exactly a day is cyclic: its first period follows its last (the day
repeats), which matters for the scale-up at midnight. Nothing here knows about GPUs.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np

from planner.errors import InvalidRequestError
from planner.units import MAX_BURSTINESS, MAX_QPS, MAX_TOKENS, parse_span, shown

DAY_S = 86400.0
MAX_PERIODS = 10_000
MIN_PERIOD_S = 1.0
DEFAULT_TRACE_PERIOD_S = 3600.0
SHORT_TRACE_PERIOD_S = 300.0  # for traces shorter than 2 h
SHAPES = ("diurnal", "constant")
_SHAPE_PARAMS = {"diurnal": ("peak", "trough", "peak_hour", "periods", "period"),
                 "constant": ("qps", "periods", "period")}

# Column names a profile table may use (lower case; the first found wins).
TIME_COLS = ("time", "time_s", "start", "start_s", "hour", "minute", "timestamp")
RATE_COLS = ("qps", "rate", "rps", "requests_per_s", "request_rate")
CONC_COLS = ("concurrency", "clients")
ISL_COLS = ("isl", "input_tokens", "prompt_tokens", "mean_isl")
OSL_COLS = ("osl", "output_tokens", "completion_tokens", "mean_osl")
CV_COLS = ("burstiness", "cv", "arrival_cv")
# Per-request traces: an arrival time and the lengths (Azure: TIMESTAMP, ContextTokens,
# GeneratedTokens; github.com/Azure/AzurePublicDataset, AzureLLMInferenceDataset2023.md).
ARRIVAL_COLS = ("timestamp", "arrival_s", "arrival_time", "time_s", "time")
REQ_IN_COLS = ("contexttokens", "input_tokens", "isl", "prompt_tokens", "input_length")
REQ_OUT_COLS = ("generatedtokens", "output_tokens", "osl", "completion_tokens", "output_length")


@dataclass(frozen=True)
class ProfileTrace:
    """The requests of a trace profile: arrival times (seconds from the profile's start,
    sorted) and their prompt and output tokens; ``bounds[k]:bounds[k+1]`` are period ``k``'s."""

    arrival_s: np.ndarray = field(repr=False)
    isl: np.ndarray = field(repr=False)
    osl: np.ndarray = field(repr=False)
    bounds: np.ndarray = field(repr=False)

    def period(self, k: int) -> slice:
        return slice(int(self.bounds[k]), int(self.bounds[k + 1]))


@dataclass(frozen=True)
class LoadProfile:
    """Equal periods of ``period_s`` (the last may be shorter: ``duration_s``), each with a
    rate (requests/s) or a concurrency (closed-loop clients), optionally its own mean lengths
    (``isl``/``osl``, NaN where the command's apply), burstiness (``cv``, NaN likewise) and,
    for a trace, its own requests (``trace``)."""

    source: str  # what was given: the shape's text or the file's path
    kind: str  # shape | table | trace
    period_s: float
    duration_s: np.ndarray = field(repr=False)  # per period
    rate: np.ndarray | None = field(default=None, repr=False)  # requests/s per period
    concurrency: np.ndarray | None = field(default=None, repr=False)  # clients per period
    isl: np.ndarray | None = field(default=None, repr=False)
    osl: np.ndarray | None = field(default=None, repr=False)
    cv: np.ndarray | None = field(default=None, repr=False)
    trace: ProfileTrace | None = field(default=None, repr=False)
    start_of_day_s: float = 0.0  # clock time of period 0's start (labels, cron schedules)
    sha256: str = ""
    repeats: bool | None = None  # the profile is one cycle that repeats (None: when it spans a day)

    @property
    def periods(self) -> int:
        return int(len(self.duration_s))

    @property
    def closed(self) -> bool:
        return self.concurrency is not None

    @property
    def span_s(self) -> float:
        return float(np.sum(self.duration_s))

    @property
    def cyclic(self) -> bool:
        """The profile is one cycle that repeats (a shape; a table of one whole day): period 0
        follows the last one. A trace does not repeat."""
        if self.repeats is not None:
            return bool(self.repeats)
        return abs(self.span_s - DAY_S) < 1e-6 and self.kind != "trace"

    @property
    def starts_s(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.duration_s)[:-1]])

    @property
    def load(self) -> np.ndarray:
        """Rate, or concurrency, per period (what the profile gives)."""
        return np.asarray(self.concurrency if self.rate is None else self.rate, dtype=float)

    @property
    def peak_period(self) -> int:
        return int(np.argmax(self.load))

    def label(self, k: int) -> str:
        """Clock time of period ``k``'s start, ``HH:MM`` (``HH:MM:SS`` when not whole minutes;
        ``dN HH:MM`` past the first day)."""
        t = self.start_of_day_s + float(self.starts_s[k])
        day, rest = divmod(t, DAY_S)
        h, rem = divmod(round(rest, 3), 3600.0)
        m, s = divmod(rem, 60.0)
        text = f"{int(h):02d}:{int(m):02d}"
        if s >= 1e-3:
            text += f":{int(s):02d}" if abs(s - round(s)) < 1e-3 else f":{s:04.1f}"
        return (f"d{int(day) + 1} " if day and self.span_s > DAY_S else "") + text

    def describe(self) -> str:
        what = "concurrency" if self.closed else "QPS"
        lo, hi = float(np.min(self.load)), float(np.max(self.load))
        return (f"{self.periods} periods of {fmt_span(self.period_s)}, {what} {lo:,.3g} to {hi:,.3g}"
                f" ({self.kind} {self.source})")

    def scaled(self, peak: float) -> LoadProfile:
        """The same shape with its busiest period at ``peak`` (``whatif --vary peak=...``): a
        named shape re-evaluated with ``peak=`` (its trough kept), a table or trace scaled."""
        if self.kind == "shape" and self.source.startswith("diurnal:"):
            params = dict(_shape_params(self.source, "--load-profile"))
            params["peak"] = _fmt_param(peak)
            if float(params.get("trough", "0")) > peak:
                raise InvalidRequestError(f"--vary: peak={peak:g} is below the profile's trough "
                                          f"{params['trough']}")
            return parse_shape("diurnal:" + ",".join(f"{k}={v}" for k, v in params.items()))
        if self.kind == "shape" and self.source.startswith("constant:"):
            params = dict(_shape_params(self.source, "--load-profile"))
            params["qps"] = _fmt_param(peak)
            return parse_shape("constant:" + ",".join(f"{k}={v}" for k, v in params.items()))
        if self.kind == "trace":
            raise InvalidRequestError("--vary: peak: a trace profile replays its own requests; scale "
                                      "it by binning another trace, or give a table or a shape")
        f = peak / float(np.max(self.load))
        if self.closed:
            assert self.concurrency is not None
            conc = np.round(self.concurrency * f)
            return _replace(self, concurrency=conc, source=f"{self.source} (peak {peak:g})")
        assert self.rate is not None
        return _replace(self, rate=self.rate * f, source=f"{self.source} (peak {peak:g})")

    def document(self) -> dict:
        """What a plan records: enough to rebuild the profile without its file (a trace's
        requests are not embedded: their periods' rates, lengths and burstiness are)."""
        d: dict = {"source": Path(self.source).name if self.kind != "shape" else self.source,
                   "kind": self.kind, "period_s": float(self.period_s),
                   "start_of_day_s": float(self.start_of_day_s), "periods": self.periods}
        if self.sha256:
            d["sha256"] = self.sha256
        d["repeats"] = bool(self.cyclic)
        if np.any(self.duration_s != self.period_s):
            d["duration_s"] = [float(x) for x in self.duration_s]
        if self.rate is not None:
            d["qps"] = [float(x) for x in self.rate]
        if self.concurrency is not None:
            d["concurrency"] = [int(x) for x in self.concurrency]
        for key, arr in (("isl", self.isl), ("osl", self.osl), ("burstiness", self.cv)):
            if arr is not None:
                d[key] = [None if not math.isfinite(float(x)) else round(float(x), 4) for x in arr]
        return d


def _replace(p: LoadProfile, **kw) -> LoadProfile:
    from dataclasses import replace

    return replace(p, **kw)


def fmt_span(seconds: float) -> str:
    """``1h``, ``30m``, ``90s``: a span for people."""
    s = float(seconds)
    for unit, size in (("d", DAY_S), ("h", 3600.0), ("m", 60.0)):
        if s >= size and abs(s / size - round(s / size)) < 1e-9:
            return f"{round(s / size)}{unit}"
    return f"{s:g}s" if s >= 1 else f"{s * 1e3:g}ms"


def _fmt_param(v: float) -> str:
    return f"{v:g}"


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def load_profile(text: str, period: str | float | None = None, flag: str = "--load-profile") -> LoadProfile:
    """The profile ``text`` names: a shape (``diurnal:...``, ``constant:...``) or a file (a
    table of periods, or a request trace binned into periods of ``period``: seconds, or a span
    such as ``15m``)."""
    text = str(text).strip()
    if not text:
        raise InvalidRequestError(f"{flag}: empty; give a file or a shape such as "
                                  "diurnal:peak=120,trough=30,peak_hour=14")
    head = text.partition(":")[0].strip().lower()
    p = Path(text).expanduser()
    if head in SHAPES and not p.exists():
        if period is not None:
            raise InvalidRequestError("--profile-period: only for a trace file; a shape takes period=..., "
                                      "e.g. diurnal:peak=120,trough=30,period=30m,periods=48")
        return parse_shape(text, flag)
    if not p.exists():
        from planner.errors import did_you_mean

        raise InvalidRequestError(
            f"{flag}: {shown(text, 60)} is neither a file nor a named shape{did_you_mean(head, SHAPES)}; "
            "shapes: diurnal:peak=Q,trough=Q[,peak_hour=H][,periods=N][,period=1h], "
            "constant:qps=Q[,periods=N][,period=1h]")
    period_s = None
    if period is not None:
        period_s = (float(period) if isinstance(period, (int, float)) and not isinstance(period, bool)
                    else parse_span(period, "--profile-period", lo=MIN_PERIOD_S))
    return read_profile_file(str(p), period_s, flag)


# --------------------------------------------------------------------------------------------
# Named shapes
# --------------------------------------------------------------------------------------------


def _shape_params(text: str, flag: str) -> list[tuple[str, str]]:
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    out = []
    for part in filter(None, (x.strip() for x in rest.split(","))):
        k, eq, v = part.partition("=")
        if not eq or not k.strip() or not v.strip():
            raise InvalidRequestError(f"{flag}: {kind}: expected key=value, got {shown(part, 40)}")
        out.append((k.strip().lower(), v.strip()))
    return out


def parse_shape(text: str, flag: str = "--load-profile") -> LoadProfile:
    """``diurnal:peak=Q,trough=Q[,peak_hour=H][,periods=N][,period=D]``: the rate
    ``trough + (peak - trough) (1 + cos(2 pi (h - peak_hour) / 24)) / 2`` at hour ``h`` of the
    day, each period at its highest value; ``constant:qps=Q[,periods=N][,period=D]``. Defaults:
    24 periods of 1 h, peak at 14:00. The curve runs over the profile's span, one day, unless
    ``periods x period`` makes it longer or shorter (a compressed day: ``periods=24,period=2m``
    is the same curve over 48 minutes). A shape repeats (its first period follows its last)."""
    from planner.errors import did_you_mean
    from planner.units import MIN_QPS, parse_count, parse_number

    kind = text.partition(":")[0].strip().lower()
    valid = _SHAPE_PARAMS[kind]
    params: dict[str, str] = {}
    for k, v in _shape_params(text, flag):
        if k not in valid:
            raise InvalidRequestError(f"{flag}: {kind}: unknown parameter {k!r}{did_you_mean(k, valid)}; "
                                      f"valid: {', '.join(valid)}")
        if k in params:
            raise InvalidRequestError(f"{flag}: {kind}: {k} given twice")
        params[k] = v
    need = ("peak", "trough") if kind == "diurnal" else ("qps",)
    missing = [k for k in need if k not in params]
    if missing:
        raise InvalidRequestError(f"{flag}: {kind}: missing {', '.join(missing)}; e.g. "
                                  + ("diurnal:peak=120,trough=30,peak_hour=14" if kind == "diurnal"
                                     else "constant:qps=50"))
    n = parse_count(params.get("periods", "24"), f"{flag}: {kind}: periods", 2, MAX_PERIODS)
    period = parse_span(params.get("period", "1h"), f"{flag}: {kind}: period", lo=MIN_PERIOD_S)
    starts = np.arange(n) * period
    if kind == "constant":
        q = parse_number(params["qps"], f"{flag}: constant: qps", MIN_QPS, MAX_QPS, lo_open=False)
        rate = np.full(n, q)
    else:
        peak = parse_number(params["peak"], f"{flag}: diurnal: peak", MIN_QPS, MAX_QPS, lo_open=False)
        trough = parse_number(params["trough"], f"{flag}: diurnal: trough", 0.0, MAX_QPS, lo_open=False)
        if trough > peak:
            raise InvalidRequestError(f"{flag}: diurnal: trough ({trough:g}) must be at most peak ({peak:g})")
        ph = parse_number(params.get("peak_hour", "14"), f"{flag}: diurnal: peak_hour", 0.0, 24.0,
                          lo_open=False)
        scale = DAY_S / (n * period)  # profile seconds -> seconds of the day the curve runs over
        rate = diurnal_period_max(starts * scale, (starts + period) * scale, peak, trough, ph)
        rate = np.maximum(rate, MIN_QPS)
    # the canonical text (what plans record and whatif rescales)
    canon = f"{kind}:" + ",".join(f"{k}={params[k]}" for k in valid if k in params)
    return LoadProfile(canon, "shape", float(period), np.full(n, float(period)), rate=rate, repeats=True)


def diurnal_rate(t_s, peak: float, trough: float, peak_hour: float):
    """The diurnal curve at times ``t_s`` (seconds from midnight)."""
    h = np.asarray(t_s, dtype=float) / 3600.0
    return trough + (peak - trough) * 0.5 * (1.0 + np.cos(2.0 * np.pi * (h - peak_hour) / 24.0))


def diurnal_period_max(t0, t1, peak: float, trough: float, peak_hour: float) -> np.ndarray:
    """The curve's maximum over each ``[t0, t1]``: at an end, or ``peak`` where a peak time
    (``peak_hour`` plus whole days) falls inside."""
    t0, t1 = np.asarray(t0, dtype=float), np.asarray(t1, dtype=float)
    ends = np.maximum(diurnal_rate(t0, peak, trough, peak_hour), diurnal_rate(t1, peak, trough, peak_hour))
    first = peak_hour * 3600.0 + np.ceil((t0 - peak_hour * 3600.0) / DAY_S) * DAY_S  # first peak >= t0
    return np.where(first <= t1, peak, ends)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


class _Rows:
    """The rows of a CSV (with a header) or JSONL file as (row number, {column: cell})."""

    def __init__(self, path: str, text: str, flag: str):
        self.path, self.flag = path, flag
        self.label = f"{flag}: {path}"
        first = next((ln for ln in text.splitlines() if ln.strip()), None)
        if first is None:
            raise InvalidRequestError(f"{self.label} is empty")
        self.jsonl = first.lstrip().startswith("{")
        self.rows: list[tuple[int, dict]] = []
        if self.jsonl:
            from planner.files import parse_json

            cols: list[str] | None = None
            for i, ln in enumerate(text.splitlines(), start=1):
                if not ln.strip():
                    continue
                obj = parse_json(ln, f"{self.label}: row {i}")
                if not isinstance(obj, dict):
                    raise InvalidRequestError(f"{self.label}: row {i}: expected a JSON object")
                row = {str(k).strip().lower(): v for k, v in obj.items()}
                if cols is None:
                    cols = list(row)
                self.rows.append((i, row))
            self.columns = cols or []
        else:
            reader = csv.reader(text.splitlines())
            try:
                header = next(reader)
                while not any(h.strip() for h in header):
                    header = next(reader)
                names = [h.strip().lower() for h in header]
                for j, nm in enumerate(names):
                    if not nm:
                        raise InvalidRequestError(
                            f"{self.label}: row {reader.line_num}: column {j + 1} has no name; the header "
                            "names every column (e.g. time,qps or TIMESTAMP,ContextTokens,GeneratedTokens)")
                dup = next((nm for j, nm in enumerate(names) if nm in names[:j]), None)
                if dup is not None:
                    raise InvalidRequestError(f"{self.label}: row {reader.line_num}: column {dup!r} "
                                              "appears twice in the header")
                self.columns = names
                for cells in reader:
                    if not cells or not any(c.strip() for c in cells):
                        continue
                    if len(cells) > len(names):
                        raise InvalidRequestError(
                            f"{self.label}: row {reader.line_num}: {len(cells)} cells, the header names "
                            f"{len(names)} columns (a column without a name)")
                    self.rows.append((reader.line_num, {nm: (cells[j].strip() if j < len(cells) else "")
                                                         for j, nm in enumerate(names)}))
            except StopIteration:
                raise InvalidRequestError(f"{self.label} is empty") from None
            except csv.Error as exc:
                raise InvalidRequestError(f"{self.label}: row {reader.line_num}: malformed CSV "
                                          f"({' '.join(str(exc).split())})") from None
        if not self.rows:
            raise InvalidRequestError(f"{self.label}: has a header but no rows")

    def pick(self, names) -> str | None:
        return next((c for c in names if c in self.columns), None)

    def fail(self, row: int, col: str, what: str) -> NoReturn:
        raise InvalidRequestError(f"{self.label}: row {row}: {col}: {what}")


def read_profile_file(path: str, period_s: float | None = None, flag: str = "--load-profile") -> LoadProfile:
    from planner.files import TRACE_MAX_BYTES, decode_text, read_bytes

    label = f"{flag}: {path}"
    raw = read_bytes(path, label, "a CSV or JSONL load profile or trace", max_bytes=TRACE_MAX_BYTES)
    sha = hashlib.sha256(raw).hexdigest()
    rows = _Rows(path, decode_text(raw, label, "a CSV or JSONL file"), flag)
    del raw
    is_trace = rows.pick(REQ_IN_COLS) is not None or rows.pick(REQ_OUT_COLS) is not None
    if is_trace and rows.pick(RATE_COLS + CONC_COLS) is None:
        return _trace_profile(rows, period_s, sha)
    if period_s is not None:
        raise InvalidRequestError("--profile-period: only for a request trace; a table's rows are its periods")
    return _table_profile(rows, sha)


# ---- cells ----------------------------------------------------------------------------------

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?$")
_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$")


def _number(rows: _Rows, r: int, col: str, v, lo: float, hi: float, what: str) -> float:
    if isinstance(v, bool) or v is None or (isinstance(v, str) and not v.strip()):
        rows.fail(r, col, f"missing; expected {what}")
    try:
        x = float(v)
    except (TypeError, ValueError, OverflowError):
        rows.fail(r, col, f"not a number: {shown(v, 30)}")
    if not math.isfinite(x):
        rows.fail(r, col, f"must be finite, got {shown(v, 30)}")
    if x < lo:
        rows.fail(r, col, f"must not be negative, got {shown(v, 30)}" if lo == 0 else
                  f"must be at least {lo:g}, got {shown(v, 30)}")
    if x > hi:
        rows.fail(r, col, f"must be at most {hi:,g}, got {shown(v, 30)}")
    return x


def _time_cell(rows: _Rows, r: int, col: str, v) -> tuple[float, bool]:
    """Seconds of a time cell and whether it is a date-time (absolute). ``hour``/``minute``
    columns hold numbers of hours/minutes; ``*_s`` seconds; ``time``/``start``/``timestamp`` a
    number of seconds, a span with its unit (``30m``), a clock time ``HH:MM[:SS]`` or a date-time
    ``YYYY-MM-DD HH:MM:SS[.f]``."""
    scale = {"hour": 3600.0, "minute": 60.0}.get(col, 1.0)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        x = _number(rows, r, col, v, -math.inf, math.inf, "a time")
        if x < 0:
            rows.fail(r, col, f"negative time {shown(v, 30)}; times count from the profile's start")
        return x * scale, False
    t = str(v).strip() if v is not None else ""
    if not t:
        rows.fail(r, col, "missing; expected a time")
    m = _DATETIME.match(t)
    if m and scale == 1.0:
        import datetime as dt

        y, mo, d, hh, mi, ss = (int(m.group(i)) for i in range(1, 7))
        frac = float("0." + m.group(7)) if m.group(7) else 0.0
        try:
            base = dt.datetime(y, mo, d, hh, mi, ss, tzinfo=dt.timezone.utc)
        except ValueError as exc:
            rows.fail(r, col, f"not a date-time: {shown(v, 30)} ({exc})")
        offset = 0.0
        if m.group(8) and m.group(8) != "Z":
            z = m.group(8).replace(":", "")
            offset = (1 if z[0] == "+" else -1) * (int(z[1:3]) * 3600 + int(z[3:5]) * 60)
        return base.timestamp() + frac - offset, True
    m = _CLOCK.match(t)
    if m and scale == 1.0:
        ch, cm, cs = int(m.group(1)), int(m.group(2)), float(m.group(3) or 0)
        if ch > 47 or cm > 59 or cs >= 60:
            rows.fail(r, col, f"not a clock time: {shown(v, 30)}")
        return ch * 3600.0 + cm * 60.0 + cs, False
    try:
        x = float(t)
    except ValueError:
        if scale != 1.0:
            rows.fail(r, col, f"not a number of {col}s: {shown(v, 30)}")
        try:
            return parse_span(t, "", lo=0.0, lo_open=False), False
        except InvalidRequestError:
            if t.startswith("-"):
                rows.fail(r, col, f"negative time {shown(v, 30)}; times count from the profile's start")
            rows.fail(r, col, f"cannot read {shown(v, 30)} as a time; use seconds (3600), a span (1h), "
                      "a clock time (14:00) or a date-time (2024-05-10 14:00:00)")
    if not math.isfinite(x):
        rows.fail(r, col, f"must be finite, got {shown(v, 30)}")
    if x < 0:
        rows.fail(r, col, f"negative time {shown(v, 30)}; times count from the profile's start")
    return x * scale, False


def _tokens(rows: _Rows, r: int, col: str, v) -> float:
    x = _number(rows, r, col, v, 1.0, MAX_TOKENS, "a token count")
    return x


# ---- a table of periods ---------------------------------------------------------------------


def _table_profile(rows: _Rows, sha: str) -> LoadProfile:
    tcol = rows.pick(TIME_COLS)
    rcol, ccol = rows.pick(RATE_COLS), rows.pick(CONC_COLS)
    icol, ocol, vcol = rows.pick(ISL_COLS), rows.pick(OSL_COLS), rows.pick(CV_COLS)
    known = {c for c in (tcol, rcol, ccol, icol, ocol, vcol) if c}
    first_row = rows.rows[0][0]
    header_row = 1 if not rows.jsonl else first_row
    unknown = [c for c in rows.columns if c not in known]
    if tcol is None:
        raise InvalidRequestError(
            f"{rows.label}: row {header_row}: needs a time column ({', '.join(TIME_COLS[:5])}); found "
            f"{', '.join(rows.columns) or 'none'}")
    if rcol is None and ccol is None:
        raise InvalidRequestError(
            f"{rows.label}: row {header_row}: needs a rate column ({', '.join(RATE_COLS[:3])}) or a "
            f"concurrency column ({', '.join(CONC_COLS)}); found {', '.join(rows.columns)}")
    if rcol is not None and ccol is not None:
        raise InvalidRequestError(f"{rows.label}: row {header_row}: {rcol} and {ccol}: give a rate or a "
                                  "concurrency per period, not both")
    if unknown:
        valid = TIME_COLS + RATE_COLS + CONC_COLS + ISL_COLS + OSL_COLS + CV_COLS
        raise InvalidRequestError(
            f"{rows.label}: row {header_row}: column {unknown[0]!r} is not one a profile takes; valid: "
            f"{', '.join(valid)}")
    n = len(rows.rows)
    if n < 2:
        raise InvalidRequestError(f"{rows.label}: row {rows.rows[0][0]}: a single row; a profile needs at "
                                  "least two periods (for one rate use --qps)")
    if n > MAX_PERIODS:
        raise InvalidRequestError(f"{rows.label}: {n:,} rows; at most {MAX_PERIODS:,} periods")
    times = np.empty(n)
    absolute = None
    for i, (r, row) in enumerate(rows.rows):
        t, is_abs = _time_cell(rows, r, tcol, row.get(tcol))
        if absolute is None:
            absolute = is_abs
        elif is_abs != absolute:
            rows.fail(r, tcol, "mixes date-times with relative times")
        times[i] = t
        if i:
            prev = rows.rows[i - 1][0]
            if t == times[i - 1]:
                rows.fail(r, tcol, f"duplicates row {prev} ({shown(row.get(tcol), 30)}); one row per period")
            if t < times[i - 1]:
                rows.fail(r, tcol, f"earlier than row {prev}; rows must be sorted by time")
    period = float(times[1] - times[0])
    if period < MIN_PERIOD_S:
        rows.fail(rows.rows[1][0], tcol, f"periods of {period:g} s; at least {MIN_PERIOD_S:g} s")
    steps = np.diff(times)
    bad = np.nonzero(np.abs(steps - period) > 1e-6 * period + 1e-9)[0]
    if bad.size:
        i = int(bad[0]) + 1
        r = rows.rows[i][0]
        what = "a gap" if steps[i - 1] > period else "an uneven step"
        rows.fail(r, tcol, f"{what}: {fmt_span(steps[i - 1])} after row {rows.rows[i - 1][0]}, the profile's "
                  f"period is {fmt_span(period)} (rows {rows.rows[0][0]} and {rows.rows[1][0]}); give "
                  "every period a row")
    col = rcol or ccol
    assert col is not None
    load = np.empty(n)
    for i, (r, row) in enumerate(rows.rows):
        if rcol:
            load[i] = _number(rows, r, rcol, row.get(rcol), 0.0, MAX_QPS, "requests per second")
        else:
            x = _number(rows, r, col, row.get(col), 0.0, 1_000_000, "a number of clients")
            if x != int(x):
                rows.fail(r, col, f"must be a whole number of clients, got {shown(row.get(col), 30)}")
            load[i] = x
    if not np.any(load > 0):
        rows.fail(rows.rows[0][0], col, "every period is idle (0); nothing to plan for")

    def per_row(c, fn):
        if c is None:
            return None
        return np.array([fn(rows, r, c, row.get(c)) for r, row in rows.rows], dtype=float)

    isl = per_row(icol, _tokens)
    osl = per_row(ocol, _tokens)
    cv = per_row(vcol, lambda rs, r, c, v: _number(rs, r, c, v, 0.0, MAX_BURSTINESS, "a CV"))
    start = float(times[0] % DAY_S) if absolute else float(times[0])
    return LoadProfile(rows.path, "table", period, np.full(n, period),
                       rate=load if rcol else None, concurrency=load if ccol else None,
                       isl=isl, osl=osl, cv=cv, start_of_day_s=start % DAY_S, sha256=sha)


# ---- a request trace, binned ----------------------------------------------------------------


def _trace_profile(rows: _Rows, period_s: float | None, sha: str) -> LoadProfile:
    acol, icol, ocol = rows.pick(ARRIVAL_COLS), rows.pick(REQ_IN_COLS), rows.pick(REQ_OUT_COLS)
    header_row = 1 if not rows.jsonl else rows.rows[0][0]
    if acol is None or icol is None or ocol is None:
        miss = [what for what, c in (("an arrival time (TIMESTAMP, arrival_s)", acol),
                                     ("prompt tokens (ContextTokens, input_tokens)", icol),
                                     ("output tokens (GeneratedTokens, output_tokens)", ocol)) if c is None]
        raise InvalidRequestError(f"{rows.label}: row {header_row}: a request trace needs {' and '.join(miss)}; "
                                  f"found {', '.join(rows.columns)}")
    extra = [c for c in rows.columns if c not in (acol, icol, ocol)]
    if extra:
        raise InvalidRequestError(f"{rows.label}: row {header_row}: column {extra[0]!r} is not one a request "
                                  f"trace takes; valid: {', '.join(ARRIVAL_COLS)}; {', '.join(REQ_IN_COLS)}; "
                                  f"{', '.join(REQ_OUT_COLS)}")
    n = len(rows.rows)
    if n < 2:
        raise InvalidRequestError(f"{rows.label}: row {rows.rows[0][0]}: a single request; a trace profile "
                                  "needs requests over at least two periods")
    t = np.empty(n)
    isl = np.empty(n, dtype=np.int64)
    osl = np.empty(n, dtype=np.int64)
    absolute = None
    for i, (r, row) in enumerate(rows.rows):
        ti, is_abs = _time_cell(rows, r, acol, row.get(acol))
        if absolute is None:
            absolute = is_abs
        elif is_abs != absolute:
            rows.fail(r, acol, "mixes date-times with relative times")
        if i and ti < t[i - 1]:
            rows.fail(r, acol, f"earlier than row {rows.rows[i - 1][0]}; a trace must be sorted by arrival time")
        t[i] = ti
        for c, arr in ((icol, isl), (ocol, osl)):
            x = _number(rows, r, c, row.get(c), 1.0, MAX_TOKENS, "a token count")
            if x != int(x):
                rows.fail(r, c, f"must be a whole number of tokens, got {shown(row.get(c), 30)}")
            arr[i] = int(x)
    t0 = float(t[0])
    rel = t - t0
    span = float(rel[-1])
    if period_s is None:
        period_s = DEFAULT_TRACE_PERIOD_S if span >= 2 * DEFAULT_TRACE_PERIOD_S else SHORT_TRACE_PERIOD_S
    # Periods of period_s from the first request; a remainder under half a period joins the
    # last whole period (the last request closes the trace: its rate counts up to it).
    full = int(math.floor(span / period_s + 1e-9))
    rest = span - full * period_s
    k = full + 1 if rest >= 0.5 * period_s else full
    if k < 2:
        raise InvalidRequestError(
            f"{rows.label}: rows {rows.rows[0][0]}-{rows.rows[-1][0]}: {acol}: the requests span "
            f"{fmt_span(span) if span > 0 else '0 s'}, a single period of {fmt_span(period_s)}; give a "
            "shorter --profile-period (e.g. 5m)")
    if k > MAX_PERIODS:
        raise InvalidRequestError(f"--profile-period: {fmt_span(period_s)} makes {k:,} periods of the trace; "
                                  f"at most {MAX_PERIODS:,}")
    dur = np.full(k, float(period_s))
    dur[-1] = span - (k - 1) * period_s
    starts = np.arange(k) * period_s
    bounds = np.append(np.searchsorted(rel, starts, side="left"), n)
    counts = np.diff(bounds)
    rate = counts / dur
    cv = np.full(k, np.nan)
    isl_m = np.full(k, np.nan)
    osl_m = np.full(k, np.nan)
    for j in range(k):
        a, b = int(bounds[j]), int(bounds[j + 1])
        if b - a >= 3:
            g = np.diff(rel[a:b])
            m = float(np.mean(g))
            if m > 0:
                cv[j] = min(float(np.std(g)) / m, MAX_BURSTINESS)
        if b > a:
            isl_m[j], osl_m[j] = float(np.mean(isl[a:b])), float(np.mean(osl[a:b]))
    start = (t0 % DAY_S) if absolute else 0.0
    tr = ProfileTrace(rel, isl, osl, bounds.astype(np.int64))
    return LoadProfile(rows.path, "trace", float(period_s), dur, rate=rate, isl=isl_m, osl=osl_m, cv=cv,
                       trace=tr, start_of_day_s=float(start), sha256=sha)


# --------------------------------------------------------------------------------------------
# A plan's record back into a profile
# --------------------------------------------------------------------------------------------


def profile_from_document(doc, where: str) -> LoadProfile:
    """The profile a plan recorded (:meth:`LoadProfile.document`), checked."""
    def fail(key, what) -> NoReturn:
        raise InvalidRequestError(f"{where}.{key}: {what}")

    if not isinstance(doc, dict):
        raise InvalidRequestError(f"{where}: must be a mapping (a load profile)")
    kind = doc.get("kind")
    if kind not in ("shape", "table", "trace"):
        fail("kind", f"must be shape, table or trace, got {kind!r}")
    if kind == "shape" and isinstance(doc.get("source"), str):
        try:
            return parse_shape(doc["source"], f"{where}.source")
        except InvalidRequestError:
            pass  # fall back to the recorded periods
    period = doc.get("period_s")
    if isinstance(period, bool) or not isinstance(period, (int, float)) or not period >= MIN_PERIOD_S:
        fail("period_s", f"must be a number of seconds, at least {MIN_PERIOD_S:g}, got {period!r}")
    n = doc.get("periods")
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_PERIODS:
        fail("periods", f"must be a whole number from 2 to {MAX_PERIODS:,}, got {n!r}")

    def arr(key, lo, hi, required=False, allow_none=False):
        v = doc.get(key)
        if v is None:
            if required:
                fail(key, "missing")
            return None
        if not isinstance(v, list) or len(v) != n:
            fail(key, f"must be a list of {n} numbers (one per period)")
        out = np.empty(n)
        for i, x in enumerate(v):
            if x is None and allow_none:
                out[i] = math.nan
                continue
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not lo <= x <= hi:
                fail(f"{key}[{i}]", f"must be a number from {lo:g} to {hi:,g}, got {x!r}")
            out[i] = float(x)
        return out

    rate = arr("qps", 0.0, MAX_QPS)
    conc = arr("concurrency", 0, 1_000_000)
    if (rate is None) == (conc is None):
        fail("qps", "give qps or concurrency per period (exactly one)")
    dur = arr("duration_s", 1e-9, float(period) * (1 + 1e-9))
    start = doc.get("start_of_day_s", 0.0)
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not 0 <= start < DAY_S:
        fail("start_of_day_s", f"must be seconds from 0 to {DAY_S:g}, got {start!r}")
    return LoadProfile(str(doc.get("source") or "plan"), str(kind), float(period),
                       dur if dur is not None else np.full(n, float(period)), rate=rate, concurrency=conc,
                       isl=arr("isl", 1, MAX_TOKENS, allow_none=True), osl=arr("osl", 1, MAX_TOKENS, allow_none=True),
                       cv=arr("burstiness", 0.0, MAX_BURSTINESS, allow_none=True), start_of_day_s=float(start),
                       sha256=str(doc.get("sha256") or ""), repeats=bool(doc.get("repeats", False)))


__all__ = ["LoadProfile", "ProfileTrace", "load_profile", "parse_shape", "profile_from_document",
           "diurnal_rate", "diurnal_period_max", "fmt_span", "DAY_S"]
