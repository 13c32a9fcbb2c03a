"""pdplan export (issue 14, item 1): every flag and config key written is in the option list of
the engine version the plan names (tests/data/engine_options, extracted from the engines' own
source by benchmarks/extract_engine_options.py), manifests are valid YAML with
apiVersion/kind/metadata and list-valued args, launch scripts pass options as separate words,
and bad input is one Error: line with exit 2."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from jsondoc import result_of

from planner import __version__, api
from planner.cli import cli
from planner.export import TARGETS, render
from planner.export.dynamo import DYNAMO_FLAGS

DATA = Path(__file__).resolve().parent / "data" / "engine_options"

# name -> recommend argv; every approach, dp/ep MoE, fp8, multi-node, each engine
PLANS = {
    "disagg": ["--qps", "80", "--ttft-slo", "200ms"],
    "unified": ["--qps", "80", "--ttft-slo", "200ms", "--approach", "unified"],
    "unified-long": ["--isl", "12k", "--qps", "5", "--approach", "unified", "--ttft-slo", "3s"],
    "chunked": ["--qps", "80", "--ttft-slo", "200ms", "--approach", "chunked"],
    "moe": ["--model", "deepseek-v3", "--gpu", "h200", "--qps", "20", "--approach", "disaggregated"],
    "fp8": ["--dtype", "fp8", "--kv-dtype", "fp8", "--qps", "20"],
    "multinode": ["--model", "llama-3.1-405b", "--qps", "2"],
    "sglang": ["--engine", "sglang", "--qps", "40"],
    "sglang-moe": ["--model", "deepseek-v3", "--gpu", "h200", "--qps", "20", "--engine", "sglang"],
    "sglang-multinode": ["--model", "llama-3.1-405b", "--qps", "2", "--engine", "sglang"],
    "sglang-chunked": ["--model", "mixtral-8x7b", "--qps", "20", "--dtype", "fp8", "--kv-dtype", "fp8",
                       "--engine", "sglang", "--approach", "chunked"],
    "trtllm": ["--engine", "trtllm", "--qps", "40"],
    "trtllm-moe": ["--model", "deepseek-v3", "--gpu", "h200", "--qps", "20", "--engine", "trtllm"],
    "trtllm-multinode": ["--model", "llama-3.1-405b", "--qps", "2", "--engine", "trtllm"],
}


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("plans")
    out = {}
    runner = CliRunner()
    for name, argv in PLANS.items():
        path = d / f"{name}.yaml"
        r = runner.invoke(cli, ["recommend", *argv, "-o", str(path)])
        assert r.exit_code == 0, r.output
        out[name] = str(path)
    # data parallelism across nodes: the MoE plan's decode pool as 1xtp1dp16ep16 on 8-GPU H200 nodes
    doc = yaml.safe_load(Path(out["moe"]).read_text())
    pool = next(p for p in doc["pools"] if p["role"] == "decode")
    pool.update(dp=16, ep=16, gpus=16)
    path = d / "moe-dp16.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out["moe-dp16"] = str(path)
    return out


def plan_doc(path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def engine_of(path) -> tuple[str, str]:
    e = plan_doc(path)["engine"]
    return e["id"], e["version"]


_OPTIONS: dict = {}


def options(engine: str, version: str) -> set:
    """The option list of ``engine`` at ``version`` (tests/data/engine_options/<engine>-<version>.txt)."""
    name = f"{engine}-{version.split()[0]}.txt"
    if name not in _OPTIONS:
        lines = (DATA / name).read_text().splitlines()
        assert lines[0].startswith("#") and version.split()[0] in lines[0]
        _OPTIONS[name] = {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}
    return _OPTIONS[name]


def check_argv(words: list, opts: set, extra=()) -> list:
    """Every ``--flag`` in ``words`` is an option (or one of ``extra``); a flag with a fixed
    set of values (``--flag=value`` lines) has one of them; a JSON config value has known keys.
    Returns the flags seen."""
    seen = []
    for i, w in enumerate(words):
        assert isinstance(w, str), words
        if not w.startswith("--"):
            continue
        assert not re.search(r"\s", w), f"option and value in one word: {w!r}"
        seen.append(w)
        assert w in opts or w in extra, f"{w} is not an option of this engine version"
        nxt = words[i + 1] if i + 1 < len(words) else None
        if nxt is not None and not nxt.startswith("--") and any(o.startswith(w + "=") for o in opts):
            assert f"{w}={nxt}" in opts, f"{w} {nxt}: not an allowed value"
        if w == "--kv-transfer-config":
            check_kv_transfer(json.loads(nxt), opts)
    return seen


def check_kv_transfer(cfg: dict, opts: set) -> None:
    for k in cfg:
        assert f"kv_transfer_config.{k}" in opts, k
    assert f"kv_connector={cfg['kv_connector']}" in opts
    assert f"kv_role={cfg['kv_role']}" in opts


def header(text: str, plan_path: str) -> None:
    """Every generated file states pdplan's version, the plan (path, sha256) and the checks."""
    head = "".join(ln for ln in text.splitlines(keepends=True)[:12] if ln.startswith("#"))
    sha = hashlib.sha256(Path(plan_path).read_bytes()).hexdigest()
    assert f"pdplan {__version__}" in head
    assert plan_path in head and sha in head
    assert "Check before deploying" in head and "model weights" in head
    assert "pdplan's assumptions" in head


def launch_commands(text: str) -> list:
    """The argv of every ``cmd=(...)`` / ``mpi=(...)`` array in a launch script."""
    out = []
    for ln in text.splitlines():
        m = re.match(r"\s*(?:cmd|mpi)=\((.*)\)\s*$", ln)
        if m:
            out.append(shlex.split(m.group(1)))
    assert out, "no command in the launch script"
    return out


def engine_words(words: list) -> list:
    """The engine's own options in a command: after ``vllm serve`` / ``sglang.launch_server`` /
    ``trtllm-serve MODEL``; mpirun's are not the engine's."""
    if "trtllm-serve" in words:
        return words[words.index("trtllm-serve") + 2:]
    if words[:1] == ["mpirun"]:
        return []
    return words


# --------------------------------------------------------------------------------------------
# Engine targets
# --------------------------------------------------------------------------------------------

VLLM_PLANS = ["disagg", "unified", "unified-long", "chunked", "moe", "fp8", "multinode", "moe-dp16"]
SGLANG_PLANS = ["sglang", "sglang-moe", "sglang-multinode", "sglang-chunked"]
TRTLLM_PLANS = ["trtllm", "trtllm-moe", "trtllm-multinode"]


@pytest.mark.parametrize("name", VLLM_PLANS)
def test_vllm_every_key_is_an_option(plans, name):
    path = plans[name]
    opts = options(*engine_of(path))
    files = dict(render(path, "vllm"))
    doc = plan_doc(path)
    assert set(files) == {f"vllm-{p['role']}.yaml" for p in doc["pools"]} | {"launch.sh"}
    for fname, text in files.items():
        header(text, path)
        if fname == "launch.sh":
            assert text.startswith("#!/usr/bin/env bash\n")
            for words in launch_commands(text):
                check_argv(engine_words(words), opts)
            continue
        cfg = yaml.safe_load(text)
        role = fname[len("vllm-"):-len(".yaml")]
        pool = next(p for p in doc["pools"] if p["role"] == role)
        argv = []
        for k, v in cfg.items():
            assert v is not False, f"{k}: false is dropped by vLLM's --config loader"
            assert not isinstance(v, (dict, list)), f"{k}: the --config loader passes str(value)"
            argv += [f"--{k}"] + ([] if v is True else [str(v)])
        check_argv(argv, opts)
        assert "no-enable-chunked-prefill" not in cfg
        assert cfg["tensor-parallel-size"] == pool["tp"] and cfg["pipeline-parallel-size"] == pool["pp"]
        assert cfg.get("data-parallel-size", 1) == pool.get("dp", 1)
        assert cfg.get("enable-expert-parallel", False) == (pool.get("ep", 1) > 1)
        assert cfg["model"] == doc["catalog"]["models"][doc["inputs"]["model"]]["hf_id"]
        assert cfg["gpu-memory-utilization"] == doc["engine"]["memory_fraction"]
        assert cfg["max-num-seqs"] <= cfg["max-num-batched-tokens"]
        if doc["approach"] == "disaggregated":
            kv = json.loads(cfg["kv-transfer-config"])
            assert kv == {"kv_connector": "NixlConnector",
                          "kv_role": {"prefill": "kv_producer", "decode": "kv_consumer"}[role]}
        else:
            assert "kv-transfer-config" not in cfg
        if doc["approach"] == "chunked":
            assert cfg["enable-chunked-prefill"] is True and cfg["max-num-batched-tokens"] == doc["chunk_size"]
        if doc["approach"] == "unified":  # whole prompts: the budget holds the longest
            assert cfg["max-num-batched-tokens"] >= int(doc["inputs"]["isl"])
            assert "prompts are not split" in text
        if doc["inputs"]["dtype"] == "fp8":
            assert cfg["quantization"] == "fp8"
        if doc["inputs"]["kv_dtype"] == "fp8":
            assert cfg["kv-cache-dtype"] == "fp8"
        if pool["gpus"] // pool["instances"] > pool["gpus_per_node"]:
            assert ("distributed-executor-backend" in cfg) != ("data-parallel-size-local" in cfg)


def test_vllm_unified_long_prompts_raise_the_budget(plans):
    cfg = yaml.safe_load(dict(render(plans["unified-long"], "vllm"))["vllm-unified.yaml"])
    assert cfg["max-num-batched-tokens"] == 12 * 1024  # the longest prompt, above the 8192 default
    assert "enable-chunked-prefill" not in cfg


def test_vllm_multinode_launch(plans):
    text = dict(render(plans["multinode"], "vllm"))["launch.sh"]
    assert "ray start --head" in text and "LEADER_ADDR" in text
    text = dict(render(plans["moe-dp16"], "vllm"))["launch.sh"]
    decode = [w for w in launch_commands(text) if "--headless" in w]
    assert decode and "--data-parallel-start-rank" in decode[0]
    cfg = yaml.safe_load(dict(render(plans["moe-dp16"], "vllm"))["vllm-decode.yaml"])
    assert cfg["data-parallel-size"] == 16 and cfg["data-parallel-size-local"] == 8


@pytest.mark.parametrize("name", SGLANG_PLANS)
def test_sglang_every_flag_is_an_option(plans, name):
    path = plans[name]
    opts = options(*engine_of(path))
    doc = plan_doc(path)
    files = dict(render(path, "sglang"))
    for fname, text in files.items():
        header(text, path)
        if fname == "launch.sh":
            for words in launch_commands(text):
                check_argv(words, opts)
            continue
        args = yaml.safe_load(text)
        assert isinstance(args, list) and all(isinstance(a, str) for a in args)
        flags = check_argv(args, opts)
        role = fname[len("sglang-"):-len(".args.yaml")]
        pool = next(p for p in doc["pools"] if p["role"] == role)
        assert args[args.index("--tp-size") + 1] == str(pool["tp"] * pool.get("dp", 1))
        assert ("--enable-dp-attention" in flags) == (pool.get("dp", 1) > 1)
        assert ("--disaggregation-mode" in flags) == (doc["approach"] == "disaggregated")
        if doc["inputs"]["kv_dtype"] == "fp8":
            assert args[args.index("--kv-cache-dtype") + 1] == "fp8_e4m3"
        if doc["approach"] == "chunked":
            assert args[args.index("--chunked-prefill-size") + 1] == str(doc["chunk_size"])


@pytest.mark.parametrize("name", TRTLLM_PLANS)
def test_trtllm_every_key_is_an_option(plans, name):
    path = plans[name]
    opts = options(*engine_of(path))
    doc = plan_doc(path)
    for fname, text in render(path, "trtllm"):
        header(text, path)
        if fname == "launch.sh":
            for words in launch_commands(text):
                check_argv(engine_words(words), opts)
            continue
        cfg = yaml.safe_load(text)
        check_llm_api(cfg, opts)
        if doc["approach"] == "disaggregated":
            assert cfg["cache_transceiver_config"]["backend"] == "NIXL"
        assert cfg["kv_cache_config"]["free_gpu_memory_fraction"] == doc["engine"]["memory_fraction"]
        role = fname[len("trtllm-"):-len(".yaml")]
        pool = next(p for p in doc["pools"] if p["role"] == role)
        assert cfg.get("enable_attention_dp", False) == (pool.get("dp", 1) > 1)
        assert cfg["max_num_tokens"] >= int(doc["inputs"]["isl"])  # chunked prefill is off


def check_llm_api(cfg: dict, opts: set) -> None:
    for k, v in cfg.items():
        assert k in opts, f"{k} is not an LLM-API option"
        if isinstance(v, dict):
            for k2, v2 in v.items():
                assert f"{k}.{k2}" in opts, f"{k}.{k2}"
                if any(o.startswith(f"{k}.{k2}=") for o in opts):
                    assert f"{k}.{k2}={v2}" in opts, f"{k}.{k2}: {v2}"


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------

ALL_PLANS = VLLM_PLANS + SGLANG_PLANS + TRTLLM_PLANS


def manifests(text: str) -> list:
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert docs
    for d in docs:
        assert isinstance(d.get("apiVersion"), str) and isinstance(d.get("kind"), str)
        assert isinstance(d.get("metadata"), dict) and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
                                                                    d["metadata"]["name"])
    return docs


def containers(d: dict) -> list:
    spec = d["spec"]
    if d["kind"] == "Deployment":
        return [(c, spec["template"]) for c in spec["template"]["spec"]["containers"]]
    lw = spec["leaderWorkerTemplate"]
    return [(c, t) for t in (lw["leaderTemplate"], lw["workerTemplate"]) for c in t["spec"]["containers"]]


@pytest.mark.parametrize("name", ALL_PLANS)
def test_k8s_manifests(plans, name):
    path = plans[name]
    doc = plan_doc(path)
    eng, ver = engine_of(path)
    opts = options(eng, ver)
    multi = any(p["gpus"] // p["instances"] > p["gpus_per_node"] for p in doc["pools"])
    if eng == "trtllm" and multi:
        r = CliRunner().invoke(cli, ["export", path, "--target", "k8s", "-o", str(Path(path).parent / "k8s-x")])
        assert r.exit_code == 2 and r.output.count("Error:") == 1 and "mpirun" in r.output
        return
    files = dict(render(path, "k8s"))
    assert set(files) == {f"{p['role']}.yaml" for p in doc["pools"]}
    for fname, text in files.items():
        header(text, path)
        pool = next(p for p in doc["pools"] if p["role"] == fname[:-5])
        docs = manifests(text)
        kinds = [d["kind"] for d in docs]
        per_instance = pool["gpus"] // pool["instances"]
        assert ("LeaderWorkerSet" in kinds) == (per_instance > pool["gpus_per_node"])
        assert "Service" in kinds
        work = next(d for d in docs if d["kind"] in ("Deployment", "LeaderWorkerSet"))
        assert work["spec"]["replicas"] == pool["instances"]
        if work["kind"] == "LeaderWorkerSet":
            assert work["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
            assert work["spec"]["leaderWorkerTemplate"]["size"] * pool["gpus_per_node"] >= per_instance
        for c, tmpl in containers(work):
            assert isinstance(c["args"], list) and all(isinstance(a, str) for a in c["args"])
            assert isinstance(c["command"], list) and all(isinstance(a, str) for a in c["command"])
            res = c["resources"]
            assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == str(
                min(per_instance, pool["gpus_per_node"]))
            if c["args"]:
                args = c["args"][1:] if eng == "trtllm" else c["args"]  # trtllm-serve MODEL ...
                check_argv(args, opts)
            assert tmpl["spec"]["nodeSelector"] == {"pdplan/gpu": pool["gpu"]}
        svc = next(d for d in docs if d["kind"] == "Service")
        labels = containers(work)[0][1]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()
                   if not k.startswith("leaderworkerset"))
        if eng == "trtllm":
            cm = next(d for d in docs if d["kind"] == "ConfigMap")
            for body in cm["data"].values():
                check_llm_api(yaml.safe_load(body), opts)


@pytest.mark.parametrize("name", ALL_PLANS)
def test_dynamo_graph(plans, name):
    path = plans[name]
    doc = plan_doc(path)
    eng, ver = engine_of(path)
    opts = options(eng, ver)
    (fname, text), = render(path, "dynamo")
    header(text, path)
    docs = manifests(text)
    g = docs[-1]
    assert g["apiVersion"] == "nvidia.com/v1alpha1" and g["kind"] == "DynamoGraphDeployment"
    services = g["spec"]["services"]
    assert services["Frontend"]["componentType"] == "frontend"
    workers = {k: v for k, v in services.items() if v["componentType"] == "worker"}
    assert len(workers) == len(doc["pools"])
    by_role = {v.get("subComponentType", "unified"): v for v in workers.values()}
    for p in doc["pools"]:
        w = by_role[p["role"]]
        assert w["replicas"] == p["instances"]
        per = p["gpus"] // p["instances"]
        assert w["resources"]["limits"]["gpu"] == str(min(per, p["gpus_per_node"]))
        assert ("multinode" in w) == (per > p["gpus_per_node"])
        args = w["extraPodSpec"]["mainContainer"]["args"]
        assert all(isinstance(a, str) for a in args)
        check_argv(args, opts, extra=DYNAMO_FLAGS[eng])
    for cm in docs[:-1]:
        assert cm["kind"] == "ConfigMap"
        for body in cm["data"].values():
            check_llm_api(yaml.safe_load(body), opts)


@pytest.mark.parametrize("name", VLLM_PLANS)
def test_llmd_values(plans, name):
    path = plans[name]
    doc = plan_doc(path)
    opts = options(*engine_of(path))
    if name == "multinode":  # tensor/pipeline parallelism across nodes: not an llm-d layout
        with pytest.raises(Exception, match="data parallelism only"):
            render(path, "llm-d")
        return
    (fname, text), = render(path, "llm-d")
    header(text, path)
    v = yaml.safe_load(text)
    disagg = doc["approach"] == "disaggregated"
    assert v["prefill"]["create"] is disagg and v["routing"]["proxy"]["enabled"] is disagg
    for p in doc["pools"]:
        pv = v["decode" if p["role"] in ("decode", "unified") else "prefill"]
        assert pv["replicas"] == p["instances"]
        par = pv["parallelism"]
        assert par["tensor"] == p["tp"] and par.get("data", 1) == p.get("dp", 1)
        gpus_per_pod = par.get("dataLocal", par.get("data", 1)) * par["tensor"]
        assert gpus_per_pod == min(p["gpus"] // p["instances"], p["gpus_per_node"])
        args = pv["containers"][0]["args"]
        flags = check_argv(args, opts)
        # the chart adds these itself (templates/_helpers.tpl vllmServeModelCommand)
        assert not {"--model", "--port", "--tensor-parallel-size", "--data-parallel-size"} & set(flags)
    assert v["modelArtifacts"]["uri"] == "hf://" + v["modelArtifacts"]["name"]


@pytest.mark.parametrize("target", ["llm-d"])
@pytest.mark.parametrize("name", ["sglang", "trtllm"])
def test_llmd_needs_a_vllm_plan(plans, name, target):
    r = CliRunner().invoke(cli, ["export", plans[name], "--target", target, "-o", "x"])
    assert r.exit_code == 2 and r.output.count("Error:") == 1 and "llm-d serves vLLM" in r.output


# --------------------------------------------------------------------------------------------
# CLI, acceptance and bad input
# --------------------------------------------------------------------------------------------


def test_acceptance(tmp_path, monkeypatch):
    """pdplan recommend --qps 80 --ttft-slo 200ms -o p.yaml && pdplan export p.yaml --target vllm -o out/;
    then --target k8s -o k8s/."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["recommend", "--qps", "80", "--ttft-slo", "200ms", "-o", "p.yaml"]).exit_code == 0
    r = runner.invoke(cli, ["export", "p.yaml", "--target", "vllm", "-o", "out/"])
    assert r.exit_code == 0, r.output
    written = r.output.split()
    assert written and all(Path(w).is_file() for w in written)
    opts = options("vllm", "0.11.0")
    for w in written:
        text = Path(w).read_text()
        if w.endswith(".yaml"):
            cfg = yaml.safe_load(text)
            check_argv([x for k, v in cfg.items() for x in ([f"--{k}"] + ([] if v is True else [str(v)]))], opts)
        else:
            for words in launch_commands(text):
                check_argv(words, opts)
    r = runner.invoke(cli, ["export", "p.yaml", "--target", "k8s", "-o", "k8s/"])
    assert r.exit_code == 0, r.output
    for w in r.output.split():
        for d in manifests(Path(w).read_text()):
            if d["kind"] in ("Deployment", "LeaderWorkerSet"):
                for c, _ in containers(d):
                    assert all(isinstance(a, str) for a in c["args"])


def test_cli_and_api_write_the_same(plans, tmp_path):
    a = api.export(plans["disagg"], "vllm", str(tmp_path / "a"))
    r = CliRunner().invoke(cli, ["export", plans["disagg"], "--target", "vllm", "-o", str(tmp_path / "b"), "--json"])
    assert r.exit_code == 0
    got = result_of(r.output)
    assert got["target"] == "vllm" and [Path(p).name for p in got["files"]] == [Path(p).name for p in a]
    for x, y in zip(a, got["files"]):
        assert Path(x).read_text() == Path(y).read_text()  # deterministic


def test_existing_files_need_force(plans, tmp_path):
    out = tmp_path / "o"
    runner = CliRunner()
    assert runner.invoke(cli, ["export", plans["disagg"], "--target", "k8s", "-o", str(out)]).exit_code == 0
    (out / "decode.yaml").write_text("mine\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = runner.invoke(cli, ["export", plans["disagg"], "--target", "k8s", "-o", str(out)])
    assert r.exit_code == 2 and r.output.count("Error:") == 1 and "--force" in r.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written
    r = runner.invoke(cli, ["export", plans["disagg"], "--target", "k8s", "-o", str(out), "--force"])
    assert r.exit_code == 0 and (out / "decode.yaml").read_text() != "mine\n"


def _one_error(args) -> str:
    r = CliRunner().invoke(cli, ["export", *args])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, r.output
    assert "Traceback" not in r.output
    return lines[0]


def test_bad_plans(plans, tmp_path):
    assert "does not exist" in _one_error([str(tmp_path / "none.yaml"), "--target", "vllm"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: [1\n")
    assert "malformed YAML" in _one_error([str(bad), "--target", "vllm"])
    doc = plan_doc(plans["disagg"])
    newer = copy.deepcopy(doc)
    newer["schema_version"] = api.SCHEMA_VERSION + 1
    p = tmp_path / "newer.yaml"
    p.write_text(yaml.safe_dump(newer))
    assert "newer pdplan" in _one_error([str(p), "--target", "k8s"])
    noeng = copy.deepcopy(doc)
    del noeng["engine"]  # an old plan: the default engine (vLLM) applies
    p = tmp_path / "old.yaml"
    p.write_text(yaml.safe_dump(noeng))
    assert CliRunner().invoke(cli, ["export", str(p), "--target", "vllm", "-o", str(tmp_path / "old")]).exit_code == 0
    assert "--target" in _one_error([plans["disagg"], "--target", "ollama"])


@pytest.mark.parametrize("target,plan", [("sglang", "disagg"), ("trtllm", "disagg"), ("vllm", "sglang"),
                                         ("trtllm", "sglang"), ("vllm", "trtllm"), ("sglang", "trtllm")])
def test_target_needs_the_plans_engine(plans, target, plan, tmp_path):
    line = _one_error([plans[plan], "--target", target, "-o", str(tmp_path)])
    assert "the plan was made for" in line and f"re-plan with --engine {target}" in line
    assert not list(tmp_path.iterdir())


def test_every_target_is_registered():
    from planner.cli import EXPORT_TARGETS

    assert tuple(TARGETS) == EXPORT_TARGETS


def test_option_lists_name_their_source():
    for f in DATA.glob("*.txt"):
        head = [ln for ln in f.read_text().splitlines() if ln.startswith("#")]
        assert any("source" in ln or "@" in ln for ln in head), f
        body = [ln for ln in f.read_text().splitlines() if ln and not ln.startswith("#")]
        assert len(body) == len(set(body)) > 50
