"""planner.api is the one facade: every command's computation is one call there, and the CLI
gives what the call gives (issue 14, item 4)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from jsondoc import result_of

from planner import api, render
from planner.catalog import load_catalog
from planner.cli import cli
from planner.errors import InvalidRequestError
from planner.inputs import build_deployment, build_inputs


def cli_json(args: list[str]) -> dict:
    r = CliRunner().invoke(cli, args + ["--json"])
    assert r.exit_code == 0, r.output
    return result_of(r.stdout)


def doc(obj) -> dict:
    """A document as the CLI prints it (JSON round trip: tuples to lists, floats as printed)."""
    return json.loads(render.to_json(obj))


UNIFIED = {"approach": "unified", "replicas": "4xtp8", "qps": 20.0}
UNIFIED_ARGS = ["--approach", "unified", "--replicas", "4xtp8", "--qps", "20"]


def test_every_command_has_its_call():
    for name in ("recommend", "estimate", "evaluate", "evaluate_plan", "whatif", "simulate",
                 "export", "calibrate", "kv_report", "step_report", "timeline", "validate",
                 "fit_overhead", "catalog_entry"):
        assert callable(getattr(api, name)), name
        assert name in api.__all__, name


def test_recommend_equals_the_cli():
    inputs = build_inputs(load_catalog(), {"qps": 20.0, "ttft_slo": "500ms"})
    rec = api.recommend(inputs)
    cli_doc = cli_json(["recommend", "--qps", "20", "--ttft-slo", "500ms"])
    api_doc = doc(render.recommend_document(rec))
    assert cli_doc["plan"]["pools"] == api_doc["plan"]["pools"]
    assert cli_doc["plan"]["metrics"] == api_doc["plan"]["metrics"]
    assert cli_doc["plan"]["inputs"]["assumed"] == inputs.assumed


def test_estimate_and_simulate_equal_the_cli():
    cat = load_catalog()
    inputs = build_inputs(cat, dict(UNIFIED))
    dep = build_deployment(inputs, dict(UNIFIED))
    plan = api.estimate(inputs, dep)
    assert cli_json(["estimate", *UNIFIED_ARGS])["plan"] == doc(render.plan_document(plan))
    run = api.simulate(inputs, dep, requests=400, seed=3)
    assert (run.requests, run.seed) == (400, 3)
    assert doc(render.plan_document(run.plan)) == doc(render.plan_document(plan))
    cli_sim = cli_json(["simulate", *UNIFIED_ARGS, "--requests", "400", "--seed", "3"])["simulation"]
    api_sim = doc(render.simulation_document(run.result, 3, 400))
    assert {k: v for k, v in cli_sim.items() if k != "wall_s"} == {k: v for k, v in api_sim.items() if k != "wall_s"}


def test_evaluate_plan_reads_back_the_plan(tmp_path):
    path = tmp_path / "plan.yaml"
    r = CliRunner().invoke(cli, ["estimate", *UNIFIED_ARGS, "-o", str(path)])
    assert r.exit_code == 0, r.output
    plan = api.evaluate_plan(str(path))
    assert plan.total_gpus == 32 and plan.approach == "unified"
    assert cli_json(["evaluate", str(path)])["plan"]["metrics"] == doc(render.plan_document(plan))["metrics"]
    faster = api.evaluate_plan(str(path), qps=40.0)
    assert faster.inputs.workload.qps == 40.0
    assert faster.metrics.ttft["p90"] > plan.metrics.ttft["p90"]  # twice the load waits longer


def test_kv_report_by_name_fills_in_and_lists_the_defaults():
    """Llama-3.1-70B: 80 layers x 8 KV heads x 128 x (K and V) x 2 bytes = 327,680 bytes per
    token in BF16, so 2,048 tokens are 671,088,640 bytes."""
    rep = api.kv_report(load_catalog(), None, "2k")
    assert rep.model.id == "llama-3.1-70b" and rep.seq_len == 2048 and rep.kv_dtype == "bf16"
    assert rep.bytes_per_token == 327_680 and rep.bytes == 2048 * 327_680
    assert rep.assumed == ["model llama-3.1-70b", "KV bf16"]
    with pytest.raises(InvalidRequestError, match="--batch: only with --gpu"):
        api.kv_report(load_catalog(), "llama-3.1-70b", 2048, batch=8)
    cli_doc = cli_json(["kv", "--seq-len", "2k"])
    assert cli_doc == doc(render.kv_document(rep))


def test_step_report_equals_the_cli():
    rep = api.step_report(load_catalog(), model="llama-3.1-70b", gpu="h100-sxm", tp=8,
                          decode_batch=64, context="2176")
    assert (rep.phase, rep.batch, rep.context) == ("decode", 64, 2176)
    assert rep.assumed == ["dtype bf16", "KV bf16", "engine vllm"]
    cli_doc = cli_json(["step", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--tp", "8",
                        "--decode", "64", "--context", "2176"])
    assert cli_doc == doc(render.step_document(rep))
    with pytest.raises(InvalidRequestError, match="give exactly one of --prefill N or --decode"):
        api.step_report(load_catalog(), prefill_tokens=2048, decode_batch=4, context=100)


def test_timeline_equals_the_cli():
    tl, assumed = api.timeline(load_catalog(), "chunked")
    assert assumed[0] == "chunk 2" and assumed[1].startswith("requests ")
    expected = doc(render.timeline_document(tl))
    expected["assumed"] = assumed
    assert cli_json(["timeline", "--approach", "chunked"]) == expected


def test_catalog_entry_kinds():
    cat = load_catalog()
    assert api.catalog_entry(cat, "h100-sxm")[0] == "gpu"
    assert api.catalog_entry(cat, "llama-3.1-70b")[0] == "model"
    link = next(iter(cat.links))
    assert api.catalog_entry(cat, link) == ("link", cat.links[link])


def test_fit_constants_names_the_valid_ones():
    assert api.fit_constants(None) is None
    assert api.fit_constants("compute, memory") == ["compute", "memory"]
    assert api.fit_constants(["overhead_ms"]) == ["overhead_ms"]
    with pytest.raises(InvalidRequestError, match="--fit: unknown constant 'speed'; valid: overhead_ms, request_ms, compute"):
        api.fit_constants("compute,speed")
    with pytest.raises(InvalidRequestError, match="--fit: unknown constant ','"):
        api.fit_constants(",")


# What the CLI may import from pdplan: the facade, the option builders, the records and names,
# the renderers and the edges (files, progress, errors, input parsing). No model, queue, serving,
# search, simulator or plan-file code: those are reached through planner.api.
CLI_MAY_IMPORT = {"planner", "planner.api", "planner.inputs", "planner.types", "planner.units",
                  "planner.errors", "planner.files", "planner.progress", "planner.render",
                  "planner.render.charts", "planner.catalog"}


def _planner_imports(path):
    import ast

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "planner":
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "planner":
                    yield a.name, []


def test_the_cli_reaches_the_library_only_through_the_facade():
    from pathlib import Path

    import planner.cli

    seen = set()
    for path in sorted(Path(planner.cli.__file__).parent.glob("*.py")):
        for module, names in _planner_imports(path):
            if module.startswith("planner.cli"):
                continue
            seen.add(module)
            assert module in CLI_MAY_IMPORT, f"{path.name} imports {module}"
            if module == "planner":
                assert set(names) <= {"api", "render", "units", "__version__"}, (path.name, names)
                seen.update(f"planner.{n}" for n in names)
            if module == "planner.catalog":
                assert names == ["load_catalog"], (path.name, names)
    assert {"planner.api", "planner.inputs", "planner.render"} <= seen  # the check sees imports
