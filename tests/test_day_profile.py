"""Load profiles (issue 15, item 1): named shapes against hand-derived values, tables and request
traces read and binned, burstiness measured, and every kind of bad file refused with one error
naming the file, the row and the column."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.cli import cli
from planner.day.profile import (
    diurnal_period_max,
    diurnal_rate,
    load_profile,
    profile_from_document,
)
from planner.errors import InvalidRequestError

# ---- shapes ---------------------------------------------------------------------------------


def test_diurnal_hand_values():
    # rate(h) = 30 + 90 (1 + cos(2 pi (h - 14) / 24)) / 2; a period takes its highest value
    p = load_profile("diurnal:peak=120,trough=30,peak_hour=14")
    assert p.periods == 24 and p.period_s == 3600 and p.cyclic
    r = p.rate
    # 02:00 is the trough (h - 14 = -12, cos = -1): [02:00, 03:00) peaks at 03:00, cos(-11 pi / 12)
    assert r[2] == pytest.approx(30 + 45 * (1 + math.cos(-11 * math.pi / 12)))
    assert r[1] == pytest.approx(r[2])  # [01:00, 02:00) mirrors it
    assert r[13] == pytest.approx(120) and r[14] == pytest.approx(120)  # both touch 14:00
    # [08:00, 09:00): rising, so its 09:00 end: cos(-5 pi / 12)
    assert r[8] == pytest.approx(30 + 45 * (1 + math.cos(-5 * math.pi / 12)))
    assert p.peak_period == 13 and p.label(13) == "13:00"


def test_constant_and_compressed_day():
    c = load_profile("constant:qps=50,periods=4,period=15m")
    assert c.periods == 4 and c.period_s == 900 and np.all(c.rate == 50)
    day = load_profile("diurnal:peak=40,trough=10,peak_hour=12")
    short = load_profile("diurnal:peak=40,trough=10,peak_hour=12,periods=24,period=2m")
    assert np.allclose(day.rate, short.rate)  # the same curve over 48 minutes
    assert short.span_s == 24 * 120 and short.cyclic
    assert short.label(1) == "00:02"


@settings(max_examples=60, deadline=None)
@given(st.floats(1, 1000), st.floats(0, 1), st.floats(0, 24), st.integers(2, 96))
def test_diurnal_within_trough_and_peak(peak, frac, hour, n):
    trough = peak * frac
    p = load_profile(f"diurnal:peak={peak!r},trough={trough!r},peak_hour={hour!r},periods={n}")
    assert np.all(p.rate <= peak * (1 + 1e-9)) and np.all(p.rate >= trough * (1 - 1e-9) - 1e-9)
    # the period holding the peak hour is at the peak
    t = np.arange(n) * p.period_s * 86400 / (n * p.period_s)
    assert np.isclose(p.rate.max(), peak) or not np.any((t <= hour * 3600) & (hour * 3600 <= t + 86400 / n))


def test_period_max_is_the_max_of_the_curve():
    t0 = np.arange(0, 86400, 3600.0)
    fine = np.array([diurnal_rate(np.linspace(a, a + 3600, 721), 100, 20, 9.5).max() for a in t0])
    assert np.allclose(diurnal_period_max(t0, t0 + 3600, 100, 20, 9.5), fine, rtol=1e-6)


# ---- tables ---------------------------------------------------------------------------------


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_table_csv_with_lengths(tmp_path):
    f = _write(tmp_path, "p.csv", "time,qps,isl,osl,burstiness\n08:00,10,1000,100,1.5\n08:30,20,2000,200,1\n"
                                  "09:00,5,500,50,0.5\n")
    p = load_profile(f)
    assert p.kind == "table" and p.period_s == 1800 and list(p.rate) == [10, 20, 5]
    assert list(p.isl) == [1000, 2000, 500] and list(p.cv) == [1.5, 1, 0.5]
    assert p.label(0) == "08:00" and p.label(2) == "09:00" and not p.cyclic


def test_table_columns_and_units(tmp_path):
    assert list(load_profile(_write(tmp_path, "h.csv", "hour,qps\n0,1\n1,2\n")).rate) == [1, 2]
    assert load_profile(_write(tmp_path, "s.csv", "time,rate\n0s,1\n15m,2\n")).period_s == 900
    assert load_profile(_write(tmp_path, "m.csv", "minute,qps\n0,1\n5,2\n")).period_s == 300
    c = load_profile(_write(tmp_path, "c.csv", "time_s,concurrency\n0,8\n600,16\n"))
    assert c.closed and list(c.concurrency) == [8, 16]
    j = load_profile(_write(tmp_path, "j.jsonl", '{"time_s": 0, "qps": 3}\n{"time_s": 60, "qps": 4}\n'))
    assert list(j.rate) == [3, 4] and j.period_s == 60


def test_a_whole_day_table_repeats(tmp_path):
    rows = "".join(f"{h:02d}:00,{10 + h}\n" for h in range(24))
    assert load_profile(_write(tmp_path, "d.csv", "time,qps\n" + rows)).cyclic


BAD_TABLES = [
    ("time,qps\n01:00,10\n00:00,20\n", "row 3: time: earlier than row 2"),
    ("time,qps\n00:00,10\n00:00,20\n", "row 3: time: duplicates row 2"),
    ("time_s,qps\n-60,10\n0,20\n", "row 2: time_s: negative time"),
    ("time,qps\n00:00,10\n01:00,-5\n", "row 3: qps: must not be negative"),
    ("time,qps\n00:00,10\n01:00,20\n03:00,10\n", "row 4: time: a gap"),
    ("time,qps\n00:00,10\n", "row 2: a single row"),
    ("time,qps,\n00:00,10,1\n01:00,20,2\n", "row 1: column 3 has no name"),
    ("time,qps,foo\n00:00,10,1\n01:00,20,2\n", "row 1: column 'foo' is not one a profile takes"),
    ("when,qps\n00:00,10\n01:00,20\n", "row 1: needs a time column"),
    ("time,x\n00:00,10\n01:00,20\n", "row 1: needs a rate column"),
    ("time,qps,concurrency\n00:00,10,1\n01:00,20,2\n", "qps and concurrency"),
    ("time,qps\n00:00,10\n01:00,abc\n", "row 3: qps: not a number"),
    ("time,qps\n00:00,10\n01:00\n", "row 3: qps: missing"),
    ("time,qps\n00:00,10,7\n01:00,20\n", "row 2: 3 cells"),
    ("time,concurrency\n00:00,1.5\n01:00,2\n", "row 2: concurrency: must be a whole number"),
]


@pytest.mark.parametrize("text,want", BAD_TABLES)
def test_bad_tables_name_file_row_and_column(tmp_path, text, want):
    f = _write(tmp_path, "bad.csv", text)
    with pytest.raises(InvalidRequestError) as e:
        load_profile(f)
    assert str(e.value).startswith(f"--load-profile: {f}: "), e.value
    assert want in str(e.value), e.value


@pytest.mark.parametrize("text,want", BAD_TABLES[:6])
def test_bad_tables_exit_2_with_one_error_line(tmp_path, text, want):
    f = _write(tmp_path, "bad.csv", text)
    r = CliRunner().invoke(cli, ["recommend", "--load-profile", f])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: --load-profile: ") and want in lines[0]
    assert "Traceback" not in r.output


# ---- traces ---------------------------------------------------------------------------------


def _azure(tmp_path, times, isl=1000, osl=100, name="az.csv"):
    import datetime as dt

    base = dt.datetime(2023, 11, 16, 18, 15, 0)
    rows = "".join(f"{(base + dt.timedelta(seconds=float(t))).strftime('%Y-%m-%d %H:%M:%S.%f')}0,{isl},{osl}\n"
                   for t in times)
    return _write(tmp_path, name, "TIMESTAMP,ContextTokens,GeneratedTokens\n" + rows)


def test_azure_trace_binned(tmp_path):
    # 10 requests in the first 5 minutes, 20 in the next (evenly spaced: burstiness 0)
    times = list(np.linspace(0, 290, 10)) + list(np.linspace(300, 590, 20)) + [600.0]
    f = _azure(tmp_path, times)
    p = load_profile(f, "5m")
    assert p.kind == "trace" and p.periods == 2 and p.period_s == 300
    assert p.rate[0] == pytest.approx(10 / 300)
    assert p.rate[1] == pytest.approx(21 / 300)  # the closing request counts in the last period
    assert p.cv[0] == pytest.approx(0.0, abs=1e-6)
    assert p.isl[0] == 1000 and p.label(0) == "18:15"
    assert p.trace is not None and p.trace.period(1) == slice(10, 31)


def test_trace_burstiness_is_measured(tmp_path):
    rng = np.random.default_rng(3)
    f = _azure(tmp_path, np.cumsum(rng.exponential(0.5, 4000)))
    p = load_profile(f, "5m")
    assert np.all(np.abs(p.cv[:-1] - 1.0) < 0.15)  # Poisson: CV of the gaps near 1
    bursty = np.cumsum(rng.gamma(0.25, 2.0, 4000))  # CV 2
    p2 = load_profile(_azure(tmp_path, bursty, name="b.csv"), "5m")
    assert np.all(p2.cv[:-1] > 1.5)


def test_trace_default_period_and_errors(tmp_path):
    f = _azure(tmp_path, np.linspace(0, 3000, 100))  # 50 minutes: 5-minute periods
    assert load_profile(f).period_s == 300
    with pytest.raises(InvalidRequestError, match="a single period"):
        load_profile(_azure(tmp_path, [0, 10, 20], name="s.csv"), "5m")
    with pytest.raises(InvalidRequestError, match=r"row 4: timestamp: earlier than row 3"):
        load_profile(_azure(tmp_path, [0, 100, 50, 900], name="u.csv"), "5m")
    with pytest.raises(InvalidRequestError, match="--profile-period: only for a trace file"):
        load_profile("diurnal:peak=1,trough=1", "5m")


def test_shape_errors():
    for text, want in [("diurnal:peak=10", "missing trough"), ("diurnal:peak=10,trough=20", "at most peak"),
                       ("diurnal:peak=10,trough=1,when=3", "unknown parameter 'when'"),
                       ("diurnal:peak=10,trough=1,period=5", "with a unit"),
                       ("weekly:peak=1", "neither a file nor a named shape")]:
        with pytest.raises(InvalidRequestError, match=want):
            load_profile(text)


def test_profile_document_round_trip(tmp_path):
    f = _write(tmp_path, "p.csv", "time,qps,isl\n00:00,10,1000\n00:30,20,\n")
    with pytest.raises(InvalidRequestError, match="row 3: isl: missing"):
        load_profile(f)
    p = load_profile(_write(tmp_path, "q.csv", "time,qps,isl\n00:00,10,1000\n00:30,20,3000\n"))
    back = profile_from_document(p.document(), "day.profile")
    assert np.array_equal(back.rate, p.rate) and np.array_equal(back.isl, p.isl) and back.period_s == p.period_s
    s = load_profile("diurnal:peak=120,trough=30")
    assert np.allclose(profile_from_document(s.document(), "x").rate, s.rate)
