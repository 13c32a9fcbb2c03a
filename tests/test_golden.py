"""Golden plan files and CLI == API.

A golden file pins the whole plan document of a few scenarios, so any change in a number shows
up in review. Regenerate after an intended change with ``PDPLAN_REGEN_GOLDEN=1 pytest
tests/test_golden.py`` and explain the change in docs/changelog.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from jsondoc import result_of

from planner import api, render
from planner.cli import cli
from planner.optimize import recommend

GOLDEN = Path(__file__).parent / "golden"
SCENARIOS = {
    "default-80qps": ["recommend", "--qps", "80", "--ttft-slo", "200ms"],
    "low-load-short-prompts": ["recommend", "--qps", "2", "--isl", "512", "--ttft-slo", "2s"],
    "mixtral-h200-chunked": ["recommend", "--model", "mixtral-8x7b", "--gpu", "h200", "--qps", "10",
                             "--approach", "chunked", "--tpot-slo", "30ms"],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_golden_plan(name, tmp_path):
    out = tmp_path / "plan.yaml"
    res = CliRunner().invoke(cli, SCENARIOS[name] + ["-o", str(out)])
    assert res.exit_code == 0, res.output
    got = out.read_text()
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("PDPLAN_REGEN_GOLDEN"):
        path.write_text(got)
    assert path.exists(), f"missing golden file {path}; run with PDPLAN_REGEN_GOLDEN=1"
    assert yaml.safe_load(got) == yaml.safe_load(path.read_text()), f"{name} changed"


def test_cli_equals_api():
    res = CliRunner().invoke(cli, ["recommend", "--qps", "20", "--ttft-slo", "500ms", "--json"])
    assert res.exit_code == 0
    cli_doc = result_of(res.stdout)
    inp = api.default_inputs(qps=20, ttft_slo=0.5)
    inp.assumed = ["model llama-3.1-70b", "gpu h100-sxm", "isl 2048", "osl 256", "TPOT SLO 50 ms",
                   "P90", "dtype bf16", "KV bf16"]
    rec = recommend(inp, ["h100-sxm"])
    api_doc = json.loads(render.to_json(render.recommend_document(rec)))
    assert cli_doc["plan"]["metrics"] == api_doc["plan"]["metrics"]
    assert cli_doc["plan"]["pools"] == api_doc["plan"]["pools"]
    assert cli_doc["plan"]["reason"] == api_doc["plan"]["reason"]
    assert [a["approach"] for a in cli_doc["alternatives"]] == [a["approach"] for a in api_doc["alternatives"]]
