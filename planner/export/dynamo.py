"""NVIDIA Dynamo: one DynamoGraphDeployment with a frontend and the plan's workers.

Schema read from ai-dynamo/dynamo ``examples/backends/vllm/deploy/disagg.yaml`` @ 0044eb90 and
``examples/backends/sglang/deploy/disagg.yaml``, ``examples/backends/trtllm/deploy/disagg.yaml``
@ 04521f47: ``apiVersion: nvidia.com/v1alpha1``, ``kind: DynamoGraphDeployment``,
``spec.services.<Name>`` with ``componentType`` (frontend | worker), ``subComponentType`` (prefill
| decode), ``replicas``, ``resources.limits.gpu``, ``envFromSecret`` and
``extraPodSpec.mainContainer`` (image, command, args). Workers run ``python3 -m dynamo.vllm``
(vLLM's engine flags plus Dynamo's ``--is-prefill-worker`` / ``--is-decode-worker``),
``python3 -m dynamo.sglang`` (SGLang's server flags, ``--disaggregation-mode``) or
``python3 -m dynamo.trtllm`` (``--model-path``, ``--extra-engine-args`` FILE with the LLM-API
options, ``--disaggregation-mode``). An instance larger than a node gets ``multinode.nodeCount``
(docs/kubernetes/deployment/multinode-deployment.md): the operator then starts one pod per node
and adds the engine's multi-node flags.
"""

from __future__ import annotations

from typing import Any

from planner.errors import InvalidRequestError
from planner.export import sglang, trtllm, vllm
from planner.export.common import (
    PoolSettings,
    Source,
    argv_from_options,
    header_lines,
    k8s_name,
    plan_stem,
    pool_settings,
    yaml_file,
)

IMAGES = {"vllm": "nvcr.io/nvidia/ai-dynamo/vllm-runtime", "sglang": "nvcr.io/nvidia/ai-dynamo/sglang-runtime",
          "trtllm": "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime"}
MODULES = {"vllm": "dynamo.vllm", "sglang": "dynamo.sglang", "trtllm": "dynamo.trtllm"}
WORKER_NAMES = {"vllm": "Vllm", "sglang": "Sglang", "trtllm": "Trtllm"}
# Dynamo's own worker flags (not the engine's): from the example manifests above
DYNAMO_FLAGS = {"vllm": ("--is-prefill-worker", "--is-decode-worker"),
                "sglang": (),
                "trtllm": ("--model-path", "--served-model-name", "--extra-engine-args", "--disaggregation-mode")}
HF_SECRET = "hf-token-secret"
CONFIG_DIR = "/etc/pdplan"


def check(src: Source) -> None:
    if src.engine.id not in IMAGES:
        raise InvalidRequestError(f"plan file {src.path}: engine: Dynamo has no worker for {src.engine.id}; "
                                  f"it runs {', '.join(IMAGES)}")
    if src.engine.id == "vllm":
        vllm.check(src)


def worker_args(src: Source, ps: PoolSettings) -> list[str]:
    e = src.engine.id
    if e == "vllm":
        opts = vllm.options(src, ps)
        opts.pop("kv-transfer-config", None)  # Dynamo configures the NIXL connector itself
        opts.pop("distributed-executor-backend", None)  # the operator wires multi-node instances
        opts.pop("data-parallel-size-local", None)
        a = argv_from_options(opts)
        if ps.kv_role:
            a.append("--is-prefill-worker" if ps.pool.role == "prefill" else "--is-decode-worker")
        return a
    if e == "sglang":
        return sglang.args(src, ps, multi_node=False)
    a = ["--model-path", src.model_ref, "--extra-engine-args", f"{CONFIG_DIR}/{trtllm.config_name(ps)}"]
    if ps.kv_role:
        a += ["--disaggregation-mode", ps.pool.role]
    return a


def trtllm_engine_args(src: Source, ps: PoolSettings) -> dict:
    """The LLM-API options file of a Dynamo TensorRT-LLM worker: the trtllm-serve flags' keys too."""
    p = ps.pool
    d = {"tensor_parallel_size": int(p.tp * p.dp), "pipeline_parallel_size": int(p.pp), "backend": "pytorch"}
    d.update(trtllm.llm_api(src, ps))
    return d


def service_name(src: Source, ps: PoolSettings) -> str:
    base = WORKER_NAMES[src.engine.id]
    return f"{base}{ps.pool.role.capitalize()}Worker" if ps.kv_role else f"{base}Worker"


def scalers(src: Source, name: str, doc: dict, day: dict) -> list[dict]:
    """KEDA ScaledObjects for the worker services of a day plan: each on the service's scaling
    adapter (a DynamoGraphDeploymentScalingAdapter named ``<graph>-<service, lower case>``, which
    ``scalingAdapter.enabled`` asks the operator for; ai-dynamo/dynamo
    docs/kubernetes/autoscaling.md, deploy/cloud/operator/api/v1alpha1)."""
    from planner.day import autoscale

    out = []
    for ps in pool_settings(src):
        pol = day.get("autoscaling", {}).get(ps.pool.role)
        if not pol:
            continue
        svc = service_name(src, ps)
        doc["spec"]["services"][svc]["scalingAdapter"] = {"enabled": True}
        adapter = f"{name}-{svc.lower()}"
        target = {"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeploymentScalingAdapter", "name": adapter}
        out.append(autoscale.scaled_object(k8s_name(adapter, "scaler"), target, src.engine.id, ps.pool.role, pol,
                                           autoscale.pod_selector(adapter), day))
    return out


def graph(src: Source, name: str) -> tuple[dict, list[dict]]:
    e = src.engine.id
    services: dict = {"Frontend": {"componentType": "frontend", "replicas": 1,
                                   "extraPodSpec": {"mainContainer": {"image": IMAGES[e]}}}}
    config_maps = []
    for ps in pool_settings(src):
        svc: dict = {"envFromSecret": HF_SECRET, "componentType": "worker"}
        if ps.kv_role:
            svc["subComponentType"] = ps.pool.role
        svc["replicas"] = int(ps.pool.instances)
        svc["resources"] = {"limits": {"gpu": str(ps.gpus_per_pod)}}
        if ps.multi_node:
            svc["multinode"] = {"nodeCount": int(ps.nodes_per_instance)}
        main: dict[str, Any] = {"image": IMAGES[e], "command": ["python3", "-m", MODULES[e]], "args": worker_args(src, ps)}
        pod: dict = {"mainContainer": main}
        if e == "trtllm":
            cm = k8s_name(name, ps.name, "engine")
            from planner.export.common import to_yaml

            config_maps.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm},
                                "data": {trtllm.config_name(ps): to_yaml(trtllm_engine_args(src, ps))}})
            main["volumeMounts"] = [{"name": "engine-config", "mountPath": CONFIG_DIR, "readOnly": True}]
            pod["volumes"] = [{"name": "engine-config", "configMap": {"name": cm}}]
        svc["extraPodSpec"] = pod
        services[service_name(src, ps)] = svc
    doc = {"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment",
           "metadata": {"name": name}, "spec": {"services": services}}
    return doc, config_maps


def files(src: Source) -> list[tuple[str, str]]:
    from planner.day import autoscale

    check(src)
    name = k8s_name(plan_stem(src), src.engine.id, "dynamo")
    doc, cms = graph(src, name)
    day, day_notes = autoscale.for_source(src)
    extra = scalers(src, name, doc, day) if day else []
    notes = [f"images {IMAGES[src.engine.id]} carry no tag: pin the Dynamo release whose runtime ships "
             f"{src.engine.id} {src.engine.version}",
             f"Secret {HF_SECRET} (HF_TOKEN) in the namespace, the Dynamo platform (operator, etcd, NATS) installed",
             "GPU type: schedule the workers onto " + ", ".join(sorted({p.gpu for p in src.deployment.pools}))
             + " nodes (extraPodSpec.nodeSelector)"]
    for ps in pool_settings(src):
        notes += [f"{service_name(src, ps)}: {n}" for n in ps.notes]
        if src.approach == "unified":
            notes.append(f"{service_name(src, ps)}: token budget {ps.token_budget} >= the longest prompt "
                         f"({ps.longest_prompt} tokens), so prompts are not split (the plan is unified)")
    if extra:
        notes.append("the worker services ask for scaling adapters (scalingAdapter.enabled), which the KEDA "
                     "ScaledObjects scale: a Dynamo release whose operator has DynamoGraphDeploymentScalingAdapter")
    head = header_lines(src, "DynamoGraphDeployment (frontend + workers); kubectl apply -f", notes + day_notes)
    return [("dynamo.yaml", yaml_file(head, *cms, doc, *extra))]
