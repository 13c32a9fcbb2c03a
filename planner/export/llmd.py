"""llm-d: Helm values for the llm-d-modelservice chart (its prefill and decode pools).

Schema read from llm-d-incubation/llm-d-modelservice ``charts/llm-d-modelservice/values.yaml`` @
b5d214f5 (``modelArtifacts.name/uri/authSecretName/size``, ``multinode``, ``accelerator.type``,
``routing.servicePort``, ``routing.proxy.enabled/targetPort/connector``, ``decode`` and
``prefill`` with ``create``, ``replicas``, ``containers[]`` (``modelCommand``, ``image``, ``args``,
``mountModelVolume``)) and ``templates/_helpers.tpl`` @ 6ab49a0e: ``<pool>.parallelism``
(``tensor``, ``data``, ``dataLocal``, ``workers``) sets the GPUs per pod (dataLocal x tensor) and,
with ``modelCommand: vllmServe``, the chart itself adds ``vllm serve <model>``, ``--port``,
``--tensor-parallel-size``, ``--data-parallel-size``, ``--data-parallel-size-local`` and
``--served-model-name``; the container ``args`` carry the rest. llm-d serves vLLM only.
"""

from __future__ import annotations

import math

from planner.errors import InvalidRequestError
from planner.export import vllm
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

IMAGE = "vllm/vllm-openai:v0.11.0"
CHART_ADDS = ("model", "tensor-parallel-size", "data-parallel-size", "data-parallel-size-local")
HF_SECRET = "hf-token"
SERVICE_PORT = 8000  # routing.servicePort default
PROXY_PORT = 8200  # routing.proxy.targetPort default: vLLM listens here behind the sidecar


def check(src: Source) -> None:
    if src.engine.id != "vllm":
        raise InvalidRequestError(f"plan file {src.path}: engine: llm-d serves vLLM, and the plan was made for "
                                  f"{src.engine.id} {src.engine.version}; re-plan with --engine vllm, or export "
                                  f"with --target {src.engine.id}, dynamo or k8s")
    vllm.check(src)
    for ps in pool_settings(src):
        if ps.multi_node and vllm.local_dp(ps) is None:
            raise InvalidRequestError(
                f"plan file {src.path}: pool {ps.pool.role} {ps.pool.spec()}: an instance spans "
                f"{ps.nodes_per_instance} nodes by tensor/pipeline parallelism; llm-d-modelservice runs "
                "multi-node instances by data parallelism only; use --target k8s or --target vllm")


def weights_gib(src: Source) -> int:
    """Whole GiB holding the model's weights at the plan's dtype (the model volume's size)."""
    from planner.catalog import DTYPE_BYTES

    return int(math.ceil(src.model.total_params * DTYPE_BYTES[src.inputs.dtype] / 2**30))


def pool_values(src: Source, ps: PoolSettings) -> dict:
    p = ps.pool
    opts = {k: v for k, v in vllm.options(src, ps).items() if k not in CHART_ADDS}
    par = {"tensor": int(p.tp)}
    if p.dp > 1:
        par["data"] = int(p.dp)
        per = vllm.local_dp(ps)
        if per:
            par["dataLocal"] = int(per)
            par["workers"] = int(p.dp // per)
    return {"create": True, "replicas": int(p.instances), "parallelism": par,
            "containers": [{"name": "vllm", "image": IMAGE, "modelCommand": "vllmServe",
                            "args": argv_from_options(opts), "mountModelVolume": True}]}


def values(src: Source) -> dict:
    settings = {ps.pool.role: ps for ps in pool_settings(src)}
    disagg = src.approach == "disaggregated"
    decode = settings["decode"] if disagg else settings["unified"]
    v = {"modelArtifacts": {"name": src.model_ref, "uri": f"hf://{src.model_ref}", "authSecretName": HF_SECRET,
                            "size": f"{weights_gib(src)}Gi"},
         "multinode": any(ps.multi_node for ps in settings.values()),
         "accelerator": {"type": "nvidia"},
         "routing": {"servicePort": SERVICE_PORT,
                     "proxy": {"enabled": disagg, "targetPort": PROXY_PORT, "connector": "nixlv2"}},
         "decode": pool_values(src, decode)}
    v["prefill"] = pool_values(src, settings["prefill"]) if disagg else {"create": False, "replicas": 0}
    return v


def scalers(src: Source, name: str, day: dict) -> list[dict]:
    """KEDA ScaledObjects on the chart's decode and prefill workloads (``<fullname>-decode``,
    ``<fullname>-prefill``: templates/_helpers.tpl; a Deployment, or a LeaderWorkerSet with
    ``multinode``); the chart itself makes no autoscaler."""
    from planner.day import autoscale
    from planner.export.k8s import LWS_API

    out = []
    multi = any(ps.multi_node for ps in pool_settings(src))
    for ps in pool_settings(src):
        pol = day.get("autoscaling", {}).get(ps.pool.role)
        if not pol:
            continue
        role = "decode" if ps.pool.role in ("decode", "unified") else "prefill"
        workload = f"{name}-{role}"
        target = ({"apiVersion": LWS_API, "kind": "LeaderWorkerSet", "name": workload} if multi
                  else {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload})
        out.append(autoscale.scaled_object(k8s_name(workload, "scaler"), target, src.engine.id, ps.pool.role, pol,
                                           autoscale.pod_selector(workload), day))
    return out


def files(src: Source) -> list[tuple[str, str]]:
    from planner.day import autoscale

    check(src)
    day, day_notes = autoscale.for_source(src)
    notes = ["helm install NAME llm-d-modelservice/llm-d-modelservice -f llm-d-values.yaml, after llm-d-infra "
             "(gateway, inference scheduler) is installed",
             f"image {IMAGE}: llm-d publishes its own vLLM images (ghcr.io/llm-d/...); use one built on vLLM "
             f"{src.engine.version} if you prefer",
             f"modelArtifacts.size {weights_gib(src)}Gi holds the weights at {src.inputs.dtype}; raise it if the "
             "repository stores more files",
             f"Secret {HF_SECRET} with key HF_TOKEN for gated models",
             "node selection: set decode/prefill acceleratorTypes (labelKey, labelValues) to the GPU type "
             + ", ".join(sorted({p.gpu for p in src.deployment.pools}))]
    for ps in pool_settings(src):
        notes += vllm.notes(src, ps)
    vals = values(src)
    out = []
    if day:
        name = k8s_name(plan_stem(src), "llm-d")
        vals = {"fullnameOverride": name, **vals}  # so that the ScaledObjects can name the workloads
        docs = scalers(src, name, day)
        if docs:
            ahead = header_lines(src, "KEDA ScaledObjects for the llm-d-modelservice workloads (the plan's day "
                                      "schedule); kubectl apply -f after helm install",
                                 day_notes + [f"the values set fullnameOverride: {name}; keep it, the ScaledObjects "
                                              f"name {name}-decode" + (f" and {name}-prefill" if len(docs) > 1 else "")])
            out.append(("llm-d-autoscaling.yaml", yaml_file(ahead, *docs)))
    elif day_notes:
        notes += day_notes
    head = header_lines(src, "Helm values for llm-d-modelservice (decode and prefill pools)", notes)
    return [("llm-d-values.yaml", yaml_file(head, vals))] + out
