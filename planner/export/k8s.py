"""Kubernetes: per pool a Deployment (a LeaderWorkerSet where an instance spans nodes) and a
Service, for whichever engine the plan names.

Schemas: apps/v1 Deployment and v1 Service (the Kubernetes API); LeaderWorkerSet
``leaderworkerset.x-k8s.io/v1`` from kubernetes-sigs/lws (``spec.replicas``,
``spec.leaderWorkerTemplate.size``, ``leaderTemplate``/``workerTemplate``; every pod gets the
``LWS_LEADER_ADDRESS``, ``LWS_GROUP_SIZE`` and ``LWS_WORKER_INDEX`` environment variables, and the
leader pod the label ``leaderworkerset.sigs.k8s.io/worker-index: "0"``). Container ``args`` are
lists with one flag or one value per item; ``$(VAR)`` in them is expanded by Kubernetes from the
container's environment.
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

IMAGES = {"vllm": "vllm/vllm-openai:v0.11.0", "sglang": "lmsysorg/sglang:v0.5.3",
          # no TensorRT-LLM release matches the profile's main@0004396: pin one that contains it
          "trtllm": "nvcr.io/nvidia/tensorrt-llm/release"}
PORTS = {"vllm": 8000, "sglang": 30000, "trtllm": 8000}
GPU_RESOURCE = "nvidia.com/gpu"
NODE_LABEL = "pdplan/gpu"  # nodes must carry it: kubectl label node NODE pdplan/gpu=<gpu id>
HF_SECRET = "hf-token"  # a Secret with key HF_TOKEN (optional: public models need none)
CONFIG_DIR = "/etc/pdplan"
LWS_API = "leaderworkerset.x-k8s.io/v1"


def check(src: Source) -> None:
    if src.engine.id not in IMAGES:
        raise InvalidRequestError(f"plan file {src.path}: engine: no Kubernetes exporter for {src.engine.id}; "
                                  f"known: {', '.join(IMAGES)}")
    if src.engine.id == "vllm":
        vllm.check(src)
    for ps in pool_settings(src):
        if ps.multi_node and src.engine.id == "trtllm":
            raise InvalidRequestError(
                f"plan file {src.path}: pool {ps.pool.role} {ps.pool.spec()}: an instance spans "
                f"{ps.nodes_per_instance} nodes, and TensorRT-LLM starts such an instance with mpirun, which "
                "this exporter does not wire into Kubernetes; use --target trtllm (launch.sh) or --target dynamo")


def extra_checks(src: Source) -> list[str]:
    e = src.engine
    return [f"image {IMAGES[e.id]}" + (" carries no tag: pin a TensorRT-LLM release that contains the profile's "
                                        "version" if e.id == "trtllm" else f": the {e.id} {e.version} release image"),
            f"nodes need the label {NODE_LABEL}=<gpu id> (kubectl label node NODE {NODE_LABEL}="
            f"{src.deployment.pools[0].gpu}) and the NVIDIA device plugin ({GPU_RESOURCE})",
            f"Secret {HF_SECRET} with key HF_TOKEN for gated models (kubectl create secret generic {HF_SECRET} "
            "--from-literal=HF_TOKEN=...)"]


def container_args(src: Source, ps: PoolSettings, worker: bool = False) -> tuple[list[str], list[str]]:
    """(command, args) of the pool's serving container; ``worker``: a non-leader pod of a
    multi-node instance."""
    e = src.engine.id
    port = str(PORTS[e])
    if e == "vllm":
        opts = vllm.options(src, ps)
        args = argv_from_options(opts) + ["--host", "0.0.0.0", "--port", port]
        if not ps.multi_node:
            return ["vllm", "serve"], args
        per = vllm.local_dp(ps)
        if per:
            dp = ["--data-parallel-address", "$(LWS_LEADER_ADDRESS)", "--data-parallel-rpc-port", str(vllm.DP_RPC_PORT)]
            if not worker:
                return ["vllm", "serve"], args + dp
            # the start rank needs arithmetic on the worker index: a shell runs vllm with the args
            return (["bash", "-c", f'exec vllm serve "$@" --data-parallel-start-rank $((LWS_WORKER_INDEX * {per}))',
                     "--"], args + dp + ["--headless"])
        if worker:
            return ["bash", "-c", f'exec ray start --address="$LWS_LEADER_ADDRESS:{vllm.RAY_PORT}" --block'], []
        return ["bash", "-c", f'ray start --head --port={vllm.RAY_PORT} && exec vllm serve "$@"', "--"], args
    if e == "sglang":
        args = sglang.args(src, ps) + ["--host", "0.0.0.0", "--port", port]
        if ps.multi_node:
            args += ["--node-rank", "$(LWS_WORKER_INDEX)", "--dist-init-addr",
                     f"$(LWS_LEADER_ADDRESS):{sglang.DIST_INIT_PORT}"]
        return ["python3", "-m", "sglang.launch_server"], args
    args = [src.model_ref, *trtllm.serve_args(src, ps), "--config", f"{CONFIG_DIR}/{trtllm.config_name(ps)}",
            "--host", "0.0.0.0", "--port", port]
    if ps.kv_role:
        args += ["--server_role", "CONTEXT" if ps.pool.role == "prefill" else "GENERATION"]
    return ["trtllm-serve"], args


def pod_spec(src: Source, ps: PoolSettings, name: str, worker: bool = False) -> dict:
    command, args = container_args(src, ps, worker)
    gpus = str(ps.gpus_per_pod)
    c: dict[str, Any] = {"name": src.engine.id, "image": IMAGES[src.engine.id], "command": command, "args": args,
         "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": HF_SECRET, "key": "HF_TOKEN",
                                                                    "optional": True}}}],
         "ports": [{"name": "http", "containerPort": PORTS[src.engine.id]}],
         "resources": {"requests": {GPU_RESOURCE: gpus}, "limits": {GPU_RESOURCE: gpus}},
         "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    if src.engine.id == "trtllm":
        c["volumeMounts"].append({"name": "engine-config", "mountPath": CONFIG_DIR, "readOnly": True})
        volumes.append({"name": "engine-config", "configMap": {"name": name + "-config"}})
    return {"nodeSelector": {NODE_LABEL: ps.pool.gpu}, "containers": [c], "volumes": volumes}


def labels(src: Source, ps: PoolSettings) -> dict:
    return {"app.kubernetes.io/name": plan_stem(src), "app.kubernetes.io/component": ps.name,
            "app.kubernetes.io/managed-by": "pdplan"}


def workload(src: Source, ps: PoolSettings, name: str) -> dict:
    lab = labels(src, ps)
    meta = {"name": name, "labels": lab}
    if not ps.multi_node:
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                "spec": {"replicas": int(ps.pool.instances), "selector": {"matchLabels": lab},
                         "template": {"metadata": {"labels": lab}, "spec": pod_spec(src, ps, name)}}}
    return {"apiVersion": LWS_API, "kind": "LeaderWorkerSet", "metadata": meta,
            "spec": {"replicas": int(ps.pool.instances),
                     "leaderWorkerTemplate": {
                         "size": int(ps.nodes_per_instance),
                         "leaderTemplate": {"metadata": {"labels": lab}, "spec": pod_spec(src, ps, name)},
                         "workerTemplate": {"metadata": {"labels": lab},
                                            "spec": pod_spec(src, ps, name, worker=True)}}}}


def service(src: Source, ps: PoolSettings, name: str) -> dict:
    sel = dict(labels(src, ps))
    if ps.multi_node:  # only the leader pod of each instance serves HTTP
        sel["leaderworkerset.sigs.k8s.io/worker-index"] = "0"
    port = PORTS[src.engine.id]
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels(src, ps)},
            "spec": {"selector": sel, "ports": [{"name": "http", "port": port, "targetPort": port}]}}


def config_map(src: Source, ps: PoolSettings, name: str) -> dict:
    from planner.export.common import to_yaml

    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name + "-config", "labels": labels(src, ps)},
            "data": {trtllm.config_name(ps): to_yaml(trtllm.llm_api(src, ps))}}


def files(src: Source) -> list[tuple[str, str]]:
    from planner.day import autoscale

    check(src)
    day, day_notes = autoscale.for_source(src)
    out = []
    for ps in pool_settings(src):
        name = k8s_name(plan_stem(src), src.engine.id, ps.name)
        kind = "LeaderWorkerSet" if ps.multi_node else "Deployment"
        if src.engine.id == "vllm":
            notes = vllm.notes(src, ps)
        elif src.engine.id == "sglang":
            notes = sglang.notes(src, ps)
        else:
            notes = trtllm.notes(src, ps)
        if ps.multi_node:
            notes.append(f"LeaderWorkerSet needs the lws controller (kubernetes-sigs/lws); {ps.nodes_per_instance} "
                         f"pods of {ps.gpus_per_pod} GPUs per instance")
        head = header_lines(src, f"{kind} and Service for the {ps.pool.role} pool ({ps.pool.instances} "
                                 f"instances of {ps.gpus_per_instance} GPUs); kubectl apply -f",
                            extra_checks(src) + notes
                            + (autoscale.notes(day, src.engine.id, (ps.pool.role,)) if day else day_notes))
        docs = [workload(src, ps, name), service(src, ps, name)]
        if src.engine.id == "trtllm":
            docs.insert(0, config_map(src, ps, name))
        pol = (day or {}).get("autoscaling", {}).get(ps.pool.role) if day else None
        if pol:  # the day's schedule: a KEDA ScaledObject on the pool's workload
            target = ({"apiVersion": LWS_API, "kind": "LeaderWorkerSet", "name": name} if ps.multi_node
                      else {"apiVersion": "apps/v1", "kind": "Deployment", "name": name})
            assert day is not None  # (pol comes from it)
            docs.append(autoscale.scaled_object(k8s_name(name, "scaler"), target, src.engine.id, ps.pool.role, pol,
                                                autoscale.pod_selector(name), day))
        out.append((f"{ps.name}.yaml", yaml_file(head, *docs)))
    return out
