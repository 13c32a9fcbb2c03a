"""Output that fits its ecosystem (issue 14, item 3): tables at 80 columns with no truncated cell,
``catalog show`` as YAML at any width, ``--format table|json|yaml`` and errors as a document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from jsondoc import envelope_of, result_of

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
    pytest.param(["validate", "--set", "kernels"], marks=pytest.mark.slow),  # the same layout
    pytest.param(["validate", "--set", "pass-grid"], marks=pytest.mark.slow),
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
    doc = result_of(r.stdout)
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
    ids = [row["id"] for row in result_of(run(["validate", "--json"]).stdout)["rows"]]
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
    entry = result_of(run(["catalog", "show", name, "--json"]).stdout)["entry"]
    assert yaml.safe_load(r.stdout) == entry
    assert r.stdout.startswith("# ")


# --------------------------------------------------------------------------------------------
# --format table|json|yaml
# --------------------------------------------------------------------------------------------

FORMAT_COMMANDS = [
    ["estimate", *UNIFIED],
    ["simulate", *UNIFIED, "--requests", "300"],
    ["recommend", "--qps", "10"],
    ["whatif", "--vary", "qps=10"],
    ["evaluate", str(GOLDEN / "default-80qps.yaml")],
    ["catalog", "gpus"],
    ["catalog", "show", "h100-sxm"],
    ["kv", "--seq-len", "2k"],
    ["step", "--tp", "8", "--prefill", "512"],
    ["catalog", "links"],
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
    doc = _timeless(envelope_of(as_json.stdout))
    assert doc["command"] == args[0] and doc["result"]
    assert _timeless(envelope_of(run([*args, "--format", "json"], columns=None).stdout)) == doc
    as_yaml = run([*args, "--format", "yaml"], columns=None)
    assert as_yaml.exit_code == 0, as_yaml.output
    assert _timeless(yaml.safe_load(as_yaml.stdout)) == doc
    table = run([*args, "--format", "table"], columns=None)
    assert table.exit_code == 0 and "{" not in table.stdout.splitlines()[0]


def test_json_with_another_format_is_bad_input():
    r = run(["estimate", *UNIFIED, "--json", "--format", "yaml"], columns=None)
    assert r.exit_code == 2
    assert "Error: --json/--format: --json means --format json" in r.stderr
    assert envelope_of(r.stdout)["error"]["exit_code"] == 2
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
    doc = yaml.safe_load(r.stdout) if fmt[-1].endswith("yaml") else envelope_of(r.stdout)
    assert doc["command"] == args[0] and "result" not in doc
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
    assert envelope_of(r.stdout)["error"]["message"].startswith("internal error: ZeroDivisionError")


# --------------------------------------------------------------------------------------------
# -o - and estimate -o, plan file modes
# --------------------------------------------------------------------------------------------


def test_recommend_o_dash_writes_the_plan_yaml_alone_on_stdout(tmp_path):
    r = run(["recommend", "--qps", "20", "-o", "-"], columns=None)
    assert r.exit_code == 0, r.output
    plan = yaml.safe_load(r.stdout)
    ref = result_of(run(["recommend", "--qps", "20", "--json"], columns=None).stdout)["plan"]
    assert plan == ref
    assert "assumed:" in r.stderr and not (tmp_path / "-").exists()
    bad = run(["recommend", "--qps", "20", "-o", "-", "--json"], columns=None)
    assert bad.exit_code == 2 and "-o -:" in bad.stderr


def test_estimate_o_writes_a_plan_that_evaluate_reads(tmp_path):
    out = tmp_path / "p.yaml"
    r = run(["estimate", *UNIFIED, "-o", str(out)], columns=None)
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.stdout
    doc = result_of(run(["estimate", *UNIFIED, "--json"], columns=None).stdout)["plan"]
    assert yaml.safe_load(out.read_text()) == doc
    ev = result_of(run(["evaluate", str(out), "--json"], columns=None).stdout)["plan"]
    assert ev["metrics"] == doc["metrics"] and ev["total_gpus"] == doc["total_gpus"]
    again = run(["estimate", *UNIFIED, "-o", str(out)], columns=None)
    assert again.exit_code == 2 and "exists; pass --force" in again.stderr
    assert run(["estimate", *UNIFIED, "-o", str(out), "--force"], columns=None).exit_code == 0
    dash = run(["estimate", *UNIFIED, "-o", "-"], columns=None)
    assert yaml.safe_load(dash.stdout) == doc


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_plan_files_get_0666_less_the_umask(tmp_path, mask, mode):
    """``-o plan.yaml`` is 0644 under the usual umask 022 (readable by the deploy tooling and
    colleagues, as files from cp or an editor), and 0600 where the user's umask says private:
    pdplan does not override a umask (docs/cli.md)."""
    import os

    old = os.umask(mask)
    try:
        out = tmp_path / "p.yaml"
        r = run(["recommend", "--qps", "20", "-o", str(out)], columns=None)
        assert r.exit_code == 0, r.output
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == mode


# --------------------------------------------------------------------------------------------
# evaluate --check
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "p.yaml"
    r = run(["recommend", "--qps", "80", "--ttft-slo", "200ms", "-o", str(out)], columns=None)
    assert r.exit_code == 0, r.output
    return out


def test_evaluate_check_passes_at_the_plans_rate(plan_file):
    r = run(["evaluate", str(plan_file), "--check"], columns=None)
    assert r.exit_code == 0 and "meets SLO" in r.stdout and "Error" not in r.stderr


@pytest.mark.parametrize("qps", ["120", "90"])
def test_evaluate_check_exits_3_when_the_plan_misses(plan_file, qps):
    """Above the plan's max QPS in SLO (86.6 for this plan): exit 3 and one Error: line naming
    the file, the rate and what missed; under --json the plan document carries the error."""
    r = run(["evaluate", str(plan_file), "--qps", qps, "--check"], columns=None)
    assert r.exit_code == 3, r.output
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert str(plan_file) in line and f"at {qps} QPS" in line
    assert "misses SLO" in r.stdout  # the table is still printed
    j = run(["evaluate", str(plan_file), "--qps", qps, "--check", "--json"], columns=None)
    doc = envelope_of(j.stdout)
    assert j.exit_code == 3 and doc["result"]["plan"]["meets_slo"] is False
    assert doc["error"] == {"message": line.removeprefix("Error: "), "exit_code": 3}
    assert run(["evaluate", str(plan_file), "--qps", qps], columns=None).exit_code == 0  # no --check


# --------------------------------------------------------------------------------------------
# --version, shell completion
# --------------------------------------------------------------------------------------------


def test_version():
    from planner import __version__

    r = run(["--version"], columns=None)
    assert r.exit_code == 0 and r.stdout.strip() == f"pdplan, version {__version__}"


def _complete(args, incomplete):
    from click.shell_completion import ShellComplete

    comp = ShellComplete(cli, {}, "pdplan", "_PDPLAN_COMPLETE")
    return [(c.value, c.type) for c in comp.get_completions(args, incomplete)]


def test_completion_of_catalog_ids():
    from planner.catalog import load_catalog

    catalog = load_catalog()
    values = lambda args, inc: [v for v, _ in _complete(args, inc)]  # noqa: E731
    assert values(["recommend", "--model"], "llama-3.1-") == sorted(
        m for m in catalog.models if m.startswith("llama-3.1-"))
    assert values(["estimate", "--gpu"], "h1") == sorted(g for g in catalog.gpus if g.startswith("h1"))
    assert values(["recommend", "--gpu"], "h100-sxm,h2") == ["h100-sxm,h200"]
    assert values(["estimate", "--link"], "nv") == sorted(x for x in catalog.links if x.startswith("nv"))
    assert values(["recommend", "--engine"], "") == sorted(catalog.engines)
    assert values(["recommend", "--kv-transfer"], "moon") == sorted(
        t for t in catalog.transfers if t.startswith("moon"))
    assert values(["kv", "--gpu"], "b2") == ["b200"]
    assert values(["calibrate", "--engine"], "sg") == ["sglang"]
    assert "h100-sxm" in values(["catalog", "show"], "h") and "llama-3.1-70b" in values(["catalog", "show"], "l")
    assert _complete(["kv", "--model"], "./conf") == [("./conf", "file")]


def test_completion_reads_the_users_catalog(tmp_path):
    extra = tmp_path / "models"
    extra.mkdir()
    src = Path(__file__).parents[1] / "models" / "llama-3.1-8b.yaml"
    (extra / "my-model.yaml").write_text(src.read_text().replace("id: llama-3.1-8b", "id: my-model"))
    values = [v for v, _ in _complete(["--catalog", str(tmp_path), "estimate", "--model"], "my")]
    assert values == ["my-model"]
