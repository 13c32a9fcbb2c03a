"""Day plans for people (issue 15, item 5): the per-period table and the totals at 80 and 100
columns, the text chart of the load and GPUs per pool, and the PNG/SVG picture."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from planner import api
from planner.day.schedule import Scaling
from planner.render import day as day_render

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def day():
    inp = api.default_inputs(qps=40.0, ttft_slo=0.5, model="llama-3.1-8b")
    return api.plan_day(inp, api.load_profile("diurnal:peak=40,trough=10,peak_hour=12"), ["h100-sxm"],
                        scaling=Scaling(scale_up_s=300.0))


def _text(day, width):
    buf = io.StringIO()
    day_render.show_day(Console(file=buf, width=width, color_system=None), day)
    return buf.getvalue()


@pytest.mark.parametrize("width", [80, 100])
def test_table_and_totals(day, width):
    out = _text(day, width)
    assert all(f"{h:02d}:00" in out for h in range(24))
    assert "GPU-hours per day" in out and "static peak provisioning" in out and "saves" in out
    assert "predicted attainment over the day" in out
    assert max(len(line) for line in out.splitlines()) <= width


def test_chart_scales_and_marks(day):
    lines = day_render.chart_lines(day, 100)
    assert max(len(ln) for ln in lines) <= 100
    body = "\n".join(lines)
    letters = {day_render.LETTER[p.role] for p in day.peak.deployment.pools}
    assert all(letter in body for letter in letters)
    assert f"{max(p.load for p in day.periods):,.0f}" in lines[1]  # the load scale's top
    assert any("00:00" in ln for ln in lines[-3:]) and "static peak" in body
    narrow = day_render.chart_lines(day, 60)
    assert max(len(ln) for ln in narrow) <= 60


@pytest.mark.parametrize("ext", ["png", "svg"])
def test_picture_files(tmp_path, day, ext):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"day.{ext}"
    day_render.day_plot(day, str(path))
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) if ext == "png" else b"<svg" in data[:2000]
