"""Output that fits its ecosystem (issue 14, item 3): tables at 80 columns with no truncated cell,
``catalog show`` as YAML at any width, ``--format table|json|yaml`` and errors as a document."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from planner.cli import cli

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"
SWEEP = sorted(str(p) for p in (DATA / "calibration").glob("vllm_bench_*.json"))
ELLIPSIS = "\u2026"  # what rich puts at the end of a cell it truncates

UNIFIED = ["--approach", "unified", "--replicas", "4xtp8", "--qps", "20"]
DISAGG = ["--approach", "disaggregated", "--prefill", "6xtp4", "--decode", "2xtp8", "--qps", "20"]

# Every table-printing command of recommend/estimate/validate/whatif/catalog, and the rest.
TABLE_COMMANDS = [
    ["recommend", "--qps", "80", "--ttft-slo", "200ms"],  # the acceptance's command
    ["recommend", "--qps", "20", "--gpu", "h100-sxm,h200", "--objective", "cost"],
    ["estimate", *UNIFIED],
    ["estimate", *DISAGG],
    ["estimate", "--approach", "chunked", "--replicas", "4xtp8", "--chunk-size", "1024", "--qps", "20"],
    ["whatif", "--vary", "qps=10,20,40,80", "--ttft-slo", "500ms"],
    ["whatif", "--vary", "qps=5,2000", "--max-gpus", "16"],  # a row with no plan
    ["whatif", "--vary", "qps=5,20", "--vary", "isl=512,8192", "--ttft-slo", "1s"],
    ["validate"],
    ["validate", "--set", "kernels"],
    ["validate", "--set", "pass-grid"],
    ["validate", "--set", "deepseek"],
    ["catalog"],
    ["catalog", "show", "h100-sxm"],
    ["catalog", "show", "llama-3.1-70b"],
    ["kv", "--seq-len", "8k", "--gpu", "h100-sxm", "--batch", "64"],
    ["kv", "--seq-len", "2k"],
    ["step", "--tp", "8", "--prefill", "2048"],
    ["simulate", *UNIFIED, "--requests", "500"],
    ["timeline", "--approach", "chunked", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--tp", "8"],
    pytest.param(["calibrate", *SWEEP, "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--no-loo"],
                 marks=pytest.mark.slow),  # the fit takes ~4 s
]


def run(args, columns: int | None = 80, **kw):
    env = {"COLUMNS": str(columns)} if columns else {}
    return CliRunner().invoke(cli, args, env=env, **kw)


@pytest.mark.parametrize("args", TABLE_COMMANDS, ids=lambda a: " ".join(a[:3])[:40])
def test_tables_fit_80_columns_without_truncation(args):
    """``COLUMNS=80 pdplan ...``: no cell cut short with "…" and no line wider than 80."""
    r = run(args)
    assert r.exit_code == 0, r.output
    assert ELLIPSIS not in r.stdout, r.stdout
    if args[:2] != ["catalog", "show"]:  # YAML, deliberately unwrapped (see below)
        assert max(len(line) for line in r.stdout.splitlines()) <= 80


def test_recommend_at_80_columns_keeps_approach_names_and_numbers_whole():
    """Cells fold rather than truncate, and the ones that must stay whole (approach names,
    GPU counts, latencies) are each on one line of the table at 80 columns."""
    r = run(["recommend", "--qps", "80", "--ttft-slo", "200ms", "--json"], columns=None)
    doc = json.loads(r.stdout)
    t = run(["recommend", "--qps", "80", "--ttft-slo", "200ms"]).stdout
    table = t[t.index("best plan of each approach"):]
    for p in [doc["plan"], *doc["alternatives"]]:
        row = next(line for line in table.splitlines() if line.startswith(p["approach"] + " "))
        assert re.search(rf"\b{p['total_gpus']}\b", row), row
        assert f"{p['metrics']['ttft_ms']['p90']:.1f} ms" in row, row


def test_validate_at_80_columns_folds_long_ids_and_says_what_it_left_out():
    """Serving ids run to 94 characters: at 80 columns they fold onto the next lines (whole when
    joined) and batch / isl-osl are left for wider terminals and --json, which says so."""
    r = run(["validate"])
    assert "batch and isl/osl columns from 100 columns up" in r.stdout
    wide = run(["validate"], columns=120).stdout
    assert ELLIPSIS not in wide and "isl/osl" in wide.splitlines()[1]
    ids = [row["id"] for row in json.loads(run(["validate", "--json"]).stdout)["rows"]]
    first_col = "".join(line.split(" ", 1)[0] for line in r.stdout.splitlines())
    for rid in ids:
        assert rid in first_col


@pytest.mark.parametrize("name", ["llama-3.1-70b", "h100-sxm", "deepseek-v3", "nvlink4"])
@pytest.mark.parametrize("columns", [40, 80, 200])
def test_catalog_show_is_valid_yaml_at_any_width(name, columns):
    """``catalog show`` printed the entry through rich, which wrapped long strings (sources) at
    the terminal's width into invalid YAML; now the output parses to the entry at any width (the
    file and kernel-model lines are ``#`` comments)."""
    r = run(["catalog", "show", name], columns=columns)
    assert r.exit_code == 0, r.output
    entry = json.loads(run(["catalog", "show", name, "--json"]).stdout)["entry"]
    assert yaml.safe_load(r.stdout) == entry
    assert r.stdout.startswith("# ")


# --------------------------------------------------------------------------------------------
# --format table|json|yaml
# --------------------------------------------------------------------------------------------

FORMAT_COMMANDS = [
    ["estimate", *UNIFIED],
    ["simulate", *UNIFIED, "--requests", "300"],
    ["recommend", "--qps", "10"],
    ["whatif", "--vary", "qps=5,10"],
    ["evaluate", str(GOLDEN / "default-80qps.yaml")],
    ["catalog", "gpus"],
    ["catalog", "show", "h100-sxm"],
    ["kv", "--seq-len", "2k"],
    ["step", "--tp", "8", "--prefill", "512"],
    ["validate", "--set", "measurements"],
    ["timeline"],
]


def _timeless(doc):
    """``doc`` without its wall-clock times (``wall_s``), which differ from run to run."""
    if isinstance(doc, dict):
        return {k: _timeless(v) for k, v in doc.items() if k != "wall_s"}
    if isinstance(doc, list):
        return [_timeless(v) for v in doc]
    return doc


@pytest.mark.parametrize("args", FORMAT_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_format_json_and_yaml_are_the_json_document(args):
    """``--format json`` is ``--json``; ``--format yaml`` is the same document as YAML."""
    as_json = run([*args, "--json"], columns=None)
    assert as_json.exit_code == 0, as_json.output
    doc = _timeless(json.loads(as_json.stdout))
    assert _timeless(json.loads(run([*args, "--format", "json"], columns=None).stdout)) == doc
    as_yaml = run([*args, "--format", "yaml"], columns=None)
    assert as_yaml.exit_code == 0, as_yaml.output
    assert _timeless(yaml.safe_load(as_yaml.stdout)) == doc
    table = run([*args, "--format", "table"], columns=None)
    assert table.exit_code == 0 and "{" not in table.stdout.splitlines()[0]


def test_json_with_another_format_is_bad_input():
    r = run(["estimate", *UNIFIED, "--json", "--format", "yaml"], columns=None)
    assert r.exit_code == 2
    assert "Error: --json/--format: --json means --format json" in r.stderr
    assert json.loads(r.stdout)["error"]["exit_code"] == 2
    assert run(["estimate", *UNIFIED, "--json", "--format", "json"]).exit_code == 0


def test_every_command_with_json_has_format():
    """Every command taking --json takes --format too, except calibrate, whose --format already
    names the format of the result files it reads."""
    for name, cmd in cli.commands.items():
        opts = {o for p in cmd.params for o in p.opts}
        if "--json" in opts:
            assert "--format" in opts, name
            fmt = next(p for p in cmd.params if "--format" in p.opts)
            if name != "calibrate":
                assert list(fmt.type.choices) == ["table", "json", "yaml"], name


# --------------------------------------------------------------------------------------------
# Errors as a document under --json / --format json|yaml
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args,code", [
    (["estimate", *UNIFIED[:-1], "abc"], 2),  # click's own check of --qps
    (["kv", "--seq-len", "2k", "--model", "nope"], 2),  # a library error
    (["recommend", "--qps", "2", "--max-gpus", "1"], 3),  # no plan
    (["evaluate", "/nonexistent/plan.yaml"], 2),
    (["estimate", *UNIFIED, "--bogus"], 2),  # an unknown option
])
@pytest.mark.parametrize("fmt", [["--json"], ["--format", "json"], ["--format=yaml"]])
def test_errors_are_a_document_on_stdout_and_a_line_on_stderr(args, code, fmt):
    r = run([*args, *fmt], columns=None)
    assert r.exit_code == code, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1
    doc = yaml.safe_load(r.stdout) if fmt[-1].endswith("yaml") else json.loads(r.stdout)
    err = doc["error"]
    assert err["exit_code"] == code
    assert err["message"].splitlines()[0] == lines[0].removeprefix("Error: ")
    # without a document format: stdout stays empty, as before
    plain = run(args, columns=None)
    assert plain.exit_code == code and plain.stdout.strip() == "" or code == 3


def test_internal_errors_are_a_document_too(monkeypatch):
    from planner import api

    def boom(*a, **k):
        raise ZeroDivisionError("x")

    monkeypatch.setattr(api, "estimate", boom)
    r = run(["estimate", *UNIFIED, "--json"], columns=None)
    assert r.exit_code == 1
    assert json.loads(r.stdout)["error"]["message"].startswith("internal error: ZeroDivisionError")
