"""Plan files: round trip, standing alone, refusing nonsense, and never overwriting silently."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from jsondoc import result_of

from planner.cli import cli

ARGS = ["recommend", "--qps", "8", "--ttft-slo", "1s", "--max-gpus", "64"]


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("plans") / "plan.yaml"
    res = CliRunner().invoke(cli, ARGS + ["-o", str(path)])
    assert res.exit_code == 0, res.output
    return path


def _run(*argv):
    return CliRunner().invoke(cli, list(argv))


def test_plan_document_has_the_contract_keys(plan_file):
    doc = yaml.safe_load(plan_file.read_text())
    for key in ("schema_version", "inputs", "approach", "total_gpus", "pools", "metrics", "meets_slo",
                "reason", "engine_hints", "catalog"):
        assert key in doc, key
    assert doc["schema_version"] == 1
    for k in ("model", "gpu", "qps", "isl", "osl", "ttft_slo_ms", "tpot_slo_ms", "percentile"):
        assert k in doc["inputs"], k
    for k in ("ttft_ms", "tpot_ms", "itl_max_ms", "throughput_tokens_per_s", "max_qps_within_slo",
              "cost_per_hour"):
        assert k in doc["metrics"], k
    assert set(doc["metrics"]["ttft_ms"]) >= {"mean", "p50", "p90", "p99"}
    assert doc["catalog"]["models"] and doc["catalog"]["gpus"] and doc["catalog"]["links"]
    assert sum(p["gpus"] for p in doc["pools"]) == doc["total_gpus"]
    for hints in doc["engine_hints"].values():
        assert any(f.startswith("--tensor-parallel-size") for f in hints["flags"])


def test_recommend_output_is_deterministic(tmp_path, plan_file):
    again = tmp_path / "again.yaml"
    assert _run(*ARGS, "-o", str(again)).exit_code == 0
    assert again.read_text() == plan_file.read_text()


def test_evaluate_reproduces_the_metrics(plan_file):
    rec = result_of(_run(*ARGS, "--json").stdout)["plan"]
    ev = result_of(_run("evaluate", str(plan_file), "--json").stdout)["plan"]
    assert ev["metrics"] == rec["metrics"]
    assert ev["meets_slo"] == rec["meets_slo"] and ev["pools"] == rec["pools"]


def test_evaluate_at_more_load_reports_less_headroom(plan_file):
    base = result_of(_run("evaluate", str(plan_file), "--json").stdout)["plan"]
    more = result_of(_run("evaluate", str(plan_file), "--qps", "1000", "--json").stdout)["plan"]
    assert more["meets_slo"] is False and more["metrics"]["ttft_ms"]["p90"] is None
    assert base["metrics"]["max_qps_within_slo"] == more["metrics"]["max_qps_within_slo"]


def test_plan_stands_alone_with_its_embedded_catalog(plan_file, tmp_path):
    doc = yaml.safe_load(plan_file.read_text())
    gpu = doc["pools"][0]["gpu"]
    doc["catalog"]["gpus"][gpu]["hbm_tb_per_s"] *= 2  # the embedded entry, not the built-in, counts
    edited = tmp_path / "faster.yaml"
    edited.write_text(yaml.safe_dump(doc, sort_keys=False))
    a = result_of(_run("evaluate", str(plan_file), "--json").stdout)["plan"]["metrics"]["tpot_ms"]["p50"]
    b = result_of(_run("evaluate", str(edited), "--json").stdout)["plan"]["metrics"]["tpot_ms"]["p50"]
    assert b < a


def test_output_is_never_overwritten_without_force(plan_file):
    before = plan_file.read_text()
    res = _run(*ARGS, "--qps", "9", "-o", str(plan_file))
    assert res.exit_code == 2 and "--force" in res.output
    assert plan_file.read_text() == before
    res = _run(*ARGS, "-o", str(plan_file), "--force")
    assert res.exit_code == 0


@pytest.mark.parametrize("edit,needle", [
    (lambda d: d.update(schema_version=99), "newer pdplan"),
    (lambda d: d.pop("schema_version"), "schema_version"),
    (lambda d: d.update(approach="magic"), "approach"),
    (lambda d: d["pools"][0].update(instances=-2), "instances"),
    (lambda d: d["pools"][0].update(tp="eight"), "tp"),
    (lambda d: d["pools"][0].update(gpu="tpu-v9"), "gpu"),
    (lambda d: d["inputs"].update(percentile=42), "percentile"),
    (lambda d: d["inputs"].update(model="gpt-9"), "model"),
    (lambda d: d.update(pools=[]), "pools"),
    (lambda d: next(iter(d["catalog"]["gpus"].values())).update(hbm_gb=-1), "hbm_gb"),
])
def test_edited_nonsense_is_refused(plan_file, tmp_path, edit, needle):
    doc = yaml.safe_load(plan_file.read_text())
    edit(doc)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc, sort_keys=False))
    res = _run("evaluate", str(bad))
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0] and str(bad) in errors[0]


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"), (b"{{{: not yaml", "malformed YAML"), (b"\x00\x01binary", "binary"),
    (b"- a\n- list\n", "mapping"),
])
def test_files_that_are_not_plans(tmp_path, content, needle):
    p = tmp_path / "x.yaml"
    p.write_bytes(content)
    res = _run("evaluate", str(p))
    assert res.exit_code == 2 and needle in res.output, res.output
    assert _run("evaluate", str(tmp_path / "missing.yaml")).exit_code == 2
    assert _run("evaluate", str(tmp_path)).exit_code == 2


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    import os

    from planner import plans
    from planner.errors import InvalidRequestError

    target = tmp_path / "p.yaml"
    target.write_text("old")

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(InvalidRequestError):
        plans.write_atomic(str(target), "new", force=True)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["p.yaml"]  # no temporary left behind
