"""One JSON envelope across commands (issue 14, item 3): every command's --json (and --format
json|yaml) document is {"pdplan_version", "command", "schema_version", "result"}, an error one
{"pdplan_version", "command", "schema_version", "error"}, and quantities carry their unit in
their key (docs/cli.md, "Documents")."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from planner import __version__
from planner.cli import cli
from planner.render import DOCUMENT_SCHEMA_VERSION

REPO = Path(__file__).resolve().parent.parent
ENVELOPE = ["pdplan_version", "command", "schema_version", "result"]
CHEAP = ["--model", "llama-3.1-8b", "--gpu", "h100-sxm"]


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "plan.yaml"
    r = CliRunner().invoke(cli, ["estimate", *CHEAP, "--approach", "unified", "--replicas", "1xtp1",
                                 "--qps", "2", "-o", str(path)])
    assert r.exit_code == 0, r.output
    return str(path)


def commands(plan_file: str, out_dir: str) -> dict[str, list[str]]:
    """A cheap run of every command, by its name."""
    runs = sorted(glob.glob(str(REPO / "tests/data/calibration/vllm_bench_qps*.json")))
    assert runs
    return {
        "recommend": ["recommend", *CHEAP, "--qps", "2", "--ttft-slo", "2s", "--max-gpus", "8"],
        "estimate": ["estimate", *CHEAP, "--approach", "unified", "--replicas", "1xtp1", "--qps", "2"],
        "evaluate": ["evaluate", plan_file],
        "whatif": ["whatif", *CHEAP, "--vary", "qps=1,2", "--ttft-slo", "2s", "--max-gpus", "4"],
        "simulate": ["simulate", plan_file, "--requests", "200"],
        "export": ["export", plan_file, "--target", "vllm", "-o", out_dir],
        "calibrate": ["calibrate", *runs, "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--no-loo"],
        "catalog": ["catalog", "gpus"],
        "kv": ["kv", "--model", "llama-3.1-8b", "--seq-len", "2k", "--gpu", "h100-sxm"],
        "step": ["step", *CHEAP, "--tp", "1", "--prefill", "512"],
        "validate": ["validate", "--set", "offline-grid"],
        "timeline": ["timeline", "--approach", "chunked"],
    }


def test_every_command_is_covered(plan_file, tmp_path):
    assert set(commands(plan_file, str(tmp_path))) == set(cli.commands)


# Keys that name a quantity without its unit (a duration, a size, a rate); inside a key that
# carries one (ttft_ms: {p90: ...}, throughput_tokens_per_s: {output: ...}) they are fine.
BARE = {"ttft", "tpot", "itl", "itl_max", "latency", "time", "duration", "wall", "breakdown",
        "throughput", "start", "end", "arrival", "stalled", "worst_gap", "finish", "overhead",
        "compute", "memory", "comm", "transfer", "exposed", "setup", "ticks", "tick", "context",
        "seq_len", "prompt", "output", "flops_rate", "bandwidth", "rate", "bf16_flops",
        "fp8_flops", "fp4_flops", "decode_step", "step", "size"}
UNIT_SUFFIXES = ("_ms", "_s", "_tokens", "_bytes", "_per_s", "_tok_s", "_ticks", "_per_hour",
                 "_w", "_gb", "_flops")
# Subtrees that are other files' schemas, embedded as they are (catalog entries, the YAML you
# write; a calibration profile's own document), or keyed by names rather than quantities (a
# range's basis: which validation cell each metric family's range was read from).
OPAQUE = {"entry", "catalog", "engines", "constants", "data", "residuals", "errors", "basis"}


def bare_keys(obj, path="", unit=False) -> list[str]:
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            here = f"{path}.{k}"
            if k in OPAQUE:
                continue
            has_unit = unit or str(k).endswith(UNIT_SUFFIXES)
            if not has_unit and k in BARE:
                found.append(here)
            found += bare_keys(v, here, has_unit)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += bare_keys(v, f"{path}[{i}]", unit)
    return found


def test_bare_keys_finds_a_bare_quantity():
    """The check can fail: a bare 'ttft' is found, one under 'ttft_ms' is not."""
    assert bare_keys({"result": {"ttft": 1.0, "ttft_ms": {"p90": 2.0}, "x": [{"start": 0}]}}) == [
        ".result.ttft", ".result.x[0].start"]
    assert bare_keys({"result": {"throughput_tokens_per_s": {"output": 3.0}}}) == []


def test_every_command_prints_the_envelope(plan_file, tmp_path):
    for name, args in commands(plan_file, str(tmp_path / "out")).items():
        r = CliRunner().invoke(cli, args + ["--json"])
        assert r.exit_code == 0, (name, r.output)
        doc = json.loads(r.stdout)
        assert list(doc) == ENVELOPE, name
        assert doc["pdplan_version"] == __version__ and doc["command"] == name
        assert doc["schema_version"] == DOCUMENT_SCHEMA_VERSION
        assert isinstance(doc["result"], dict) and doc["result"], name
        assert bare_keys(doc) == [], name
        if name in ("estimate", "evaluate", "recommend", "simulate"):
            assert doc["result"]["plan"]["schema_version"] == 1  # the plan document inside


def test_yaml_format_is_the_same_document(plan_file):
    args = ["kv", "--model", "llama-3.1-8b", "--seq-len", "2k"]
    as_json = json.loads(CliRunner().invoke(cli, args + ["--json"]).stdout)
    r = CliRunner().invoke(cli, args + ["--format", "yaml"])
    assert r.exit_code == 0 and yaml.safe_load(r.stdout) == as_json


@pytest.mark.parametrize("args,command,code", [
    (["kv", "--seq-len", "0"], "kv", 2),
    (["estimate", "--approach", "unified", "--replicas", "1xtp1"], "estimate", 2),  # no --qps
    (["catalog", "show", "no-such-gpu"], "catalog", 2),
    (["no-such-command"], None, 2),
])
def test_errors_keep_their_error_object_in_the_envelope(args, command, code):
    r = CliRunner().invoke(cli, args + ["--json"])
    assert r.exit_code == code
    doc = json.loads(r.stdout)
    assert list(doc) == ["pdplan_version", "command", "schema_version", "error"]
    assert doc["command"] == command
    assert set(doc["error"]) >= {"message", "exit_code"} and doc["error"]["exit_code"] == code
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert doc["error"]["message"] == line.removeprefix("Error: ")


def test_evaluate_check_has_the_plan_and_the_error(plan_file):
    r = CliRunner().invoke(cli, ["evaluate", plan_file, "--qps", "1000", "--check", "--json"])
    assert r.exit_code == 3
    doc = json.loads(r.stdout)
    assert list(doc) == ["pdplan_version", "command", "schema_version", "result", "error"]
    assert doc["result"]["plan"]["meets_slo"] is False and doc["error"]["exit_code"] == 3


def test_a_saved_json_document_loads_as_a_plan(plan_file, tmp_path):
    """`estimate --json > p.json` is a plan file too (the envelope's result.plan)."""
    r = CliRunner().invoke(cli, ["evaluate", plan_file, "--json"])
    saved = tmp_path / "saved.json"
    saved.write_text(r.stdout)
    again = CliRunner().invoke(cli, ["evaluate", str(saved), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["result"]["plan"]["metrics"] == json.loads(r.stdout)["result"]["plan"]["metrics"]
