"""Plots: the terminal chart of whatif, PNG/SVG files (when matplotlib is installed), the
file-safety rules of --plot-file, and the KV bars of `pdplan kv`."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from planner.cli import cli
from planner.errors import InvalidRequestError
from planner.render import charts as plots

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---- stand-ins for recommend results (the plots read only these attributes) ----------------


def _plan(approach, gpus, ttft_ms, tpot_ms, meets=True, ttft_slo=1.0, tpot_slo=0.05, pct=90):
    slo = SimpleNamespace(ttft_s=ttft_slo, tpot_s=tpot_slo, percentile=pct, key=f"p{pct}")
    pool = SimpleNamespace(spec=lambda: f"{gpus // 8}xtp8@h100-sxm")
    return SimpleNamespace(
        approach=approach, total_gpus=gpus, cost_per_hour=3.0 * gpus, meets_slo=meets,
        metrics=SimpleNamespace(ttft={f"p{pct}": ttft_ms / 1e3}, tpot={f"p{pct}": tpot_ms / 1e3}),
        inputs=SimpleNamespace(slo=slo, model=SimpleNamespace(id="llama-3.1-70b"),
                               workload=SimpleNamespace(qps=20.0)),
        deployment=SimpleNamespace(approach=approach, pools=[pool], chunk_size=2048))


def _rows(qps=(10, 20, 40, 80)):
    rows = []
    for i, q in enumerate(qps):
        win = _plan("disaggregated", 16 * (i + 1), 300 + 50 * i, 25 + i)
        alts = [_plan("unified", 16 * (i + 1) + 8, 200, 44 + i, meets=i < 3),
                _plan("chunked", 16 * (i + 1) + 8, 400 + 20 * i, 40 + 2 * i)]
        rows.append({"values": {"qps": str(q)},
                     "rec": SimpleNamespace(plan=win, alternatives=alts), "error": None})
    rows.append({"values": {"qps": "5000"}, "rec": None, "error": "no deployment meets the SLO"})
    return rows


def _rec():
    plan = _plan("disaggregated", 40, 180, 32)
    cloud = [SimpleNamespace(approach=a, gpus=g, cost=3.0 * g, tpot=t / 1e3, feasible=f)
             for a, g, t, f in [("unified", 48, 44, True), ("unified", 1024, 19, False),
                                ("chunked", 56, 30, True), ("chunked", 64, 26, True),
                                ("chunked", 1024, float("inf"), False),
                                ("disaggregated", 40, 32, True), ("disaggregated", 44, 31, True)]]
    return SimpleNamespace(plan=plan, alternatives=[], cloud=cloud, evaluated=100)


# ---- terminal chart -------------------------------------------------------------------------


def test_terminal_chart_has_the_slo_and_fits_100_columns():
    lines = plots.terminal_lines(_rows(), "qps")
    assert max(len(ln) for ln in lines) <= 100
    text = "\n".join(lines)
    assert "TTFT P90 (ms) against qps" in text and "TPOT P90 (ms) against qps" in text
    slo_lines = [ln for ln in lines if "SLO 1,000 ms" in ln or "SLO 50 ms" in ln]
    assert len(slo_lines) == 2 and all("===" in ln for ln in slo_lines)
    assert "D" in text and "u" in text and "c" in text  # winner in capitals, others lower case
    assert "no plan within the GPU limit at qps = 5000" in text
    for q in ("10", "20", "40", "80"):
        assert q in text


def test_terminal_chart_with_a_moving_slo_and_one_value():
    rows = [{"values": {"ttft-slo": v}, "error": None,
             "rec": SimpleNamespace(plan=_plan("unified", 8, 150, 30, ttft_slo=s), alternatives=[])}
            for v, s in (("200ms", 0.2), ("2s", 2.0))]
    lines = plots.terminal_lines(rows, "ttft-slo")
    assert any(ln.rstrip().endswith(" SLO") for ln in lines)
    assert max(len(ln) for ln in lines) <= 100
    single = plots.terminal_lines(rows[:1], "ttft-slo")
    assert any("SLO 200 ms" in ln for ln in single)


def test_whatif_plot_flag_prints_the_chart(monkeypatch):
    from planner import render

    con = render.Console(width=100, record=True)
    render.show_whatif_plot(con, _rows(), "qps")
    assert "SLO 50 ms" in con.export_text()


# ---- --plot-file checks (no matplotlib needed) ----------------------------------------------


def test_plot_file_format_and_overwrite_rules(tmp_path):
    assert plots.check_plot_file(str(tmp_path / "a.png")) == "png"
    assert plots.check_plot_file(str(tmp_path / "a.SVG")) == "svg"
    for bad in ("a.jpg", "a", "a.pdf"):
        with pytest.raises(InvalidRequestError, match="--plot-file.*valid: .png, .svg"):
            plots.check_plot_file(str(tmp_path / bad))
    existing = tmp_path / "old.png"
    existing.write_bytes(b"old")
    with pytest.raises(InvalidRequestError, match="exists; remove it"):
        plots.check_plot_file(str(existing))
    with pytest.raises(InvalidRequestError, match="pass --force"):
        plots.check_plot_file(str(existing), force=False)
    assert plots.check_plot_file(str(existing), force=True) == "png"
    with pytest.raises(InvalidRequestError, match="does not exist"):
        plots.check_plot_file(str(tmp_path / "no" / "a.png"))


def test_missing_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends",
                 "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(InvalidRequestError) as exc:
        plots.whatif_plot(_rows(), "qps", str(tmp_path / "w.png"))
    assert str(exc.value) == plots.MISSING_MATPLOTLIB
    assert "pip install 'pdplan[plot]'" in str(exc.value)
    with pytest.raises(InvalidRequestError, match="needs matplotlib"):
        plots.pareto_plot(_rec(), str(tmp_path / "p.svg"))
    assert not list(tmp_path.iterdir())


def test_cli_unknown_plot_extension_is_exit_2(tmp_path):
    r = CliRunner().invoke(cli, ["recommend", "--qps", "2", "--max-gpus", "16", "--plot-file",
                                 str(tmp_path / "p.jpg")])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "--plot-file" in errors[0] and ".png, .svg" in errors[0]


def test_help_does_not_import_matplotlib(help_imports):
    loaded, out = help_imports([["--help"], ["timeline", "--help"]], ("matplotlib",))
    assert not loaded and "timeline" in out


# ---- image files (need matplotlib) ----------------------------------------------------------


def test_whatif_plot_writes_png_and_svg(tmp_path):
    pytest.importorskip("matplotlib")
    png, svg = tmp_path / "w.png", tmp_path / "w.svg"
    plots.whatif_plot(_rows(), "qps", str(png))
    plots.whatif_plot(_rows(), "qps", str(svg))
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == PNG_MAGIC
    assert svg.stat().st_size > 1000 and "<svg" in svg.read_text()
    with pytest.raises(InvalidRequestError, match="exists"):
        plots.whatif_plot(_rows(), "qps", str(png))
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["w.png", "w.svg"]  # no temp files


def test_whatif_plot_categorical_axis(tmp_path):
    pytest.importorskip("matplotlib")
    rows = _rows()[:3]
    for r, g in zip(rows, ("h100-sxm", "h200", "a100-80g")):
        r["values"] = {"gpu": g}
    out = tmp_path / "g.png"
    plots.whatif_plot(rows, "gpu", str(out))
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_pareto_plot_writes_png_and_svg(tmp_path):
    pytest.importorskip("matplotlib")
    png, svg = tmp_path / "p.png", tmp_path / "p.svg"
    plots.pareto_plot(_rec(), str(png))
    plots.pareto_plot(_rec(), str(svg))
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == PNG_MAGIC
    assert "<svg" in svg.read_text()
    plots.pareto_plot(_rec(), str(png), force=True)  # replaced on request
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_pareto_front():
    assert plots._pareto_front([(40, 32), (44, 31), (48, 44), (56, 30), (64, 26), (64, 27)]) == [
        (40, 32), (44, 31), (56, 30), (64, 26)]


def test_recommend_plot_file_end_to_end(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "pareto.svg"
    args = ["recommend", "--qps", "2", "--max-gpus", "16", "--plot-file", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output and "<svg" in out.read_text()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "--force" in again.output
    forced = CliRunner().invoke(cli, args + ["--force"])
    assert forced.exit_code == 0, forced.output


# ---- kv bars --------------------------------------------------------------------------------


def test_kv_bars_mark_the_decode_step():
    r = CliRunner().invoke(cli, ["kv", "--seq-len", "32k", "--gpu", "h100-sxm", "--tp", "8",
                                 "--batch", "8"])
    assert r.exit_code == 0, r.output
    rows = [ln for ln in r.stdout.splitlines() if "█" in ln]
    assert len(rows) >= 9 and all("|" in ln for ln in rows)
    slow = [ln for ln in rows if "slower" in ln]
    fast = [ln for ln in rows if "faster" in ln]
    assert slow and fast
    # Slower links: the bar runs past the mark; faster ones stop before it.
    assert all(ln.index("|") < ln.rindex("█") for ln in slow)
    assert all(ln.rindex("█") < ln.index("|") for ln in fast)
    assert "| marks the decode step" in r.stdout and "log scale" in r.stdout
    assert max(len(ln) for ln in r.stdout.splitlines()) <= 100


def test_kv_bars_without_gpu():
    r = CliRunner().invoke(cli, ["kv", "--seq-len", "2048"])
    assert r.exit_code == 0, r.output
    rows = [ln for ln in r.stdout.splitlines() if "█" in ln]
    assert len(rows) >= 9 and not any("|" in ln for ln in rows)
    lengths = [ln.count("█") for ln in rows]
    assert lengths == sorted(lengths) and lengths[0] >= 1  # sorted by transfer time


def test_kv_bar_scale():
    from planner.render import kv_bar_scale

    assert kv_bar_scale([1.0, 2.0, 5.0]) == (0.0, 5.0, False)
    assert kv_bar_scale([1.0, 100.0]) == (0.5, 100.0, True)
