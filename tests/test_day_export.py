"""A day plan's autoscaling in the exports (issue 15, item 3): KEDA ScaledObjects on the k8s
workloads, on Dynamo's scaling adapters and on llm-d's workloads, with the plan's instance
range, targets and guards; cron triggers under scheduled scaling; none where the engine's
metrics are not named."""

from __future__ import annotations

import pytest
import yaml

from planner import api, render
from planner.day.document import day_document
from planner.day.schedule import Scaling, counts_of
from planner.export import render as export_render


def _plan_file(tmp_path, day, name="day.yaml"):
    doc = render.plan_document(day.peak.plan)
    doc["day"] = day_document(day)
    path = tmp_path / name
    path.write_text(render.to_yaml(doc))
    return str(path), doc


def _scalers(text):
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind") == "ScaledObject"]


@pytest.fixture(scope="module")
def disagg(tmp_path_factory):
    inp = api.default_inputs(qps=40.0, ttft_slo=0.5, model="llama-3.1-8b")
    prof = api.load_profile("diurnal:peak=40,trough=10,peak_hour=12")
    day = api.plan_day(inp, prof, ["h100-sxm"], approaches=("disaggregated",))
    return _plan_file(tmp_path_factory.mktemp("d"), day) + (day,)


def test_k8s_scaled_objects(disagg):
    path, doc, day = disagg
    files = dict(export_render(path, "k8s"))
    for role in ("prefill", "decode"):
        docs = list(yaml.safe_load_all(files[f"{role}.yaml"]))
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        (so,) = _scalers(files[f"{role}.yaml"])
        pol = doc["day"]["autoscaling"][role]
        spec = so["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "name": deployment["metadata"]["name"]}
        n = [counts_of(p.deployment)[role] for p in day.periods]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (min(n), max(n))
        load, guard = spec["triggers"]
        assert float(load["metadata"]["threshold"]) == pytest.approx(pol["target"], rel=1e-3)
        metric = {"prompt_tokens_per_s": "vllm:prompt_tokens_total", "running_requests": "vllm:num_requests_running",
                  "kv_cache_usage": "vllm:kv_cache_usage_perc", "waiting_requests": "vllm:num_requests_waiting"}
        assert metric[pol["signal"]] in load["metadata"]["query"]
        assert deployment["metadata"]["name"] in load["metadata"]["query"]
        assert guard["metricType"] == "Value"
        slo = 0.5 if role == "prefill" else 0.05
        assert float(guard["metadata"]["threshold"]) == pytest.approx(slo)
        assert "KEDA ScaledObjects reproduce the plan's schedule" in files[f"{role}.yaml"]


def test_dynamo_scaling_adapters(disagg):
    path, doc, _ = disagg
    (text,) = [t for n, t in export_render(path, "dynamo")]
    docs = list(yaml.safe_load_all(text))
    graph = next(d for d in docs if d["kind"] == "DynamoGraphDeployment")
    name = graph["metadata"]["name"]
    sos = _scalers(text)
    assert len(sos) == 2
    for svc, body in graph["spec"]["services"].items():
        if body.get("componentType") == "worker":
            assert body["scalingAdapter"] == {"enabled": True}
            so = next(s for s in sos if s["spec"]["scaleTargetRef"]["name"] == f"{name}-{svc.lower()}")
            assert so["spec"]["scaleTargetRef"]["kind"] == "DynamoGraphDeploymentScalingAdapter"


def test_llmd_names_its_workloads(disagg):
    path, _, _ = disagg
    files = dict(export_render(path, "llm-d"))
    values = yaml.safe_load(files["llm-d-values.yaml"])
    name = values["fullnameOverride"]
    targets = {s["spec"]["scaleTargetRef"]["name"] for s in _scalers(files["llm-d-autoscaling.yaml"])}
    assert targets == {f"{name}-decode", f"{name}-prefill"}


def test_scheduled_scaling_writes_cron_triggers(tmp_path):
    inp = api.default_inputs(qps=40.0, ttft_slo=0.5, model="llama-3.1-8b")
    prof = api.load_profile("diurnal:peak=40,trough=10,peak_hour=12")
    day = api.plan_day(inp, prof, ["h100-sxm"], approaches=("unified",), scaling=Scaling(mode="scheduled"))
    path, doc = _plan_file(tmp_path, day)
    (so,) = _scalers(dict(export_render(path, "k8s"))["unified.yaml"])
    crons = [t for t in so["spec"]["triggers"] if t["type"] == "cron"]
    assert len(crons) == 24
    for k, t in enumerate(crons):
        assert t["metadata"]["desiredReplicas"] == str(counts_of(day.periods[k].deployment)["unified"])
        start = (k * 60 - 5) % 1440  # minutes: the period's start less the 5-minute scale-up
        assert t["metadata"]["start"] == f"{start % 60} {start // 60} * * *"
        assert t["metadata"]["end"] == f"0 {(k + 1) % 24} * * *"


def test_no_scalers_for_an_engine_without_named_metrics(tmp_path):
    inp = api.default_inputs(qps=10.0, ttft_slo=0.5, model="llama-3.1-8b", engine="trtllm")
    day = api.plan_day(inp, api.load_profile("constant:qps=10,periods=2"), ["h100-sxm"], approaches=("unified",))
    path, _ = _plan_file(tmp_path, day)
    text = dict(export_render(path, "k8s"))["unified.yaml"]
    assert not _scalers(text)
    assert "not exported as autoscaling" in text
