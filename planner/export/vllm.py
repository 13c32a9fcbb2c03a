"""vLLM: per pool a ``vllm serve --config`` YAML and one ``launch.sh``.

Schema read from vllm-project/vllm v0.11.0 (the release wheel): ``vllm/utils/__init__.py``
``FlexibleArgumentParser.load_config_file`` turns each YAML key into ``--key`` (a ``true`` into
the bare flag, a ``false`` into nothing, anything else into ``--key str(value)``), so the
``kv-transfer-config`` value must be a JSON string, not a YAML mapping (``str`` of a dict is not
JSON); ``model:`` in the file stands for the positional model (``_pull_args_from_config``).
Flags: ``vllm/engine/arg_utils.py`` ``EngineArgs.add_cli_args``; ``vllm/config/kv_transfer.py``
``KVTransferConfig`` (``kv_connector``, ``kv_role``: kv_producer | kv_consumer | kv_both);
``NixlConnector`` is registered in ``vllm/distributed/kv_transfer/kv_connector/factory.py``.
Multi-node: data parallelism across nodes runs the leader with ``--data-parallel-address`` /
``--data-parallel-rpc-port`` and the other nodes ``--headless --data-parallel-start-rank``
(``vllm/entrypoints/openai/cli_args.py`` ``--headless``; arg_utils.py data-parallel flags);
tensor/pipeline parallelism across nodes uses ``--distributed-executor-backend ray``
(``vllm/config/parallel.py`` ``DistributedExecutorBackend``).

Chunked prefill: vLLM 0.11.0 (V1) always chunks prompts longer than ``max-num-batched-tokens``
(arg_utils.py lines 1544-1548) and warns that turning it off may crash, so a unified plan never
gets ``--no-enable-chunked-prefill``; it gets a token budget at least as long as its longest
prompt instead (no prompt is then split), and the file says so.
"""

from __future__ import annotations

import json
from typing import Any

from planner.errors import InvalidRequestError
from planner.export.common import (
    PoolSettings,
    Source,
    comment,
    header_lines,
    pool_settings,
    require_engine,
    shell_words,
    to_yaml,
)

# pdplan weight dtype -> vLLM --quantization (QuantizationMethods in
# vllm/model_executor/layers/quantization/__init__.py @ v0.11.0). fp8: vLLM quantizes a BF16
# checkpoint online (or reads an FP8 checkpoint); fp4: an NVFP4 checkpoint made by NVIDIA
# ModelOpt; int4: an AWQ checkpoint (gptq_marlin for a GPTQ one).
QUANTIZATION = {"fp8": "fp8", "fp4": "modelopt_fp4", "int4": "awq_marlin"}
KV_CACHE_DTYPE = {"fp8": "fp8"}  # CacheDType in vllm/config/cache.py; bf16 = auto (the model's)
CONNECTOR = "NixlConnector"
DP_RPC_PORT = 13345  # any free port on the leader; the value vLLM's data-parallel docs use
RAY_PORT = 6379  # Ray's default GCS port (ray start --head)
ENGINE = "vllm"


def check(src: Source) -> None:
    require_engine(src, ENGINE, "vLLM configs")
    for ps in pool_settings(src):
        local_dp(ps)


def local_dp(ps: PoolSettings) -> int | None:
    """Data-parallel ranks per node of a multi-node instance spread by data parallelism (None
    when the instance fits a node or spans nodes by tensor/pipeline parallelism)."""
    p = ps.pool
    if not ps.multi_node or p.dp == 1 or p.tp * p.pp > ps.gpus_per_node:
        return None
    per_node = ps.gpus_per_node // (p.tp * p.pp)
    if p.dp % per_node:
        raise InvalidRequestError(
            f"pool {p.role} {p.spec()}: {p.dp} data-parallel ranks do not split evenly over nodes of "
            f"{ps.gpus_per_node} GPUs ({per_node} ranks of tp{p.tp} each)")
    return per_node


def options(src: Source, ps: PoolSettings) -> dict:
    """The pool's vLLM options, keyed by flag name without ``--`` (the ``--config`` YAML keys)."""
    p, inp = ps.pool, src.inputs
    o: dict = {"model": src.model_ref,
               "tensor-parallel-size": int(p.tp),
               "pipeline-parallel-size": int(p.pp)}
    if p.dp > 1:
        o["data-parallel-size"] = int(p.dp)
        if local_dp(ps):
            o["data-parallel-size-local"] = local_dp(ps)
    if p.ep > 1:
        o["enable-expert-parallel"] = True
    if ps.multi_node and local_dp(ps) is None:
        o["distributed-executor-backend"] = "ray"
    o["max-num-batched-tokens"] = int(ps.token_budget)
    o["max-num-seqs"] = int(ps.max_seqs)
    o["gpu-memory-utilization"] = float(ps.memory_fraction)
    if ps.chunked:
        o["enable-chunked-prefill"] = True
    if inp.kv_dtype in KV_CACHE_DTYPE:
        o["kv-cache-dtype"] = KV_CACHE_DTYPE[inp.kv_dtype]
    if inp.dtype in QUANTIZATION:
        o["quantization"] = QUANTIZATION[inp.dtype]
    if ps.kv_role:
        o["kv-transfer-config"] = json.dumps({"kv_connector": CONNECTOR, "kv_role": ps.kv_role},
                                             separators=(",", ":"))
    spec = getattr(inp, "spec", None)
    if spec is not None and p.role != "prefill" and spec.kind in ("mtp", "model"):
        cfg: dict[str, Any] = ({"method": "deepseek_mtp"} if spec.kind == "mtp"
               else {"model": spec.draft.raw.get("hf_id", spec.draft.id)})
        cfg["num_speculative_tokens"] = int(spec.tokens)
        o["speculative-config"] = json.dumps(cfg, separators=(",", ":"))
    return o


def notes(src: Source, ps: PoolSettings) -> list[str]:
    """What the pool's file says besides its settings."""
    out = []
    if src.approach == "unified":
        out.append(f"unified: prompts are not split. vLLM 0.11.0 always chunks prompts longer than "
                   f"max-num-batched-tokens and warns that --no-enable-chunked-prefill may crash, so "
                   f"max-num-batched-tokens is {ps.token_budget}, at least the longest prompt the plan "
                   f"assumes ({ps.longest_prompt} tokens)")
    elif ps.chunked:
        out.append(f"chunked prefill with the plan's chunk size: {ps.token_budget} tokens per iteration")
    out += ps.notes
    if ps.kv_role:
        out.append(f"disaggregated {ps.pool.role} pool: NixlConnector as {ps.kv_role}; a router must send "
                   "each request to a prefill instance, then to a decode instance with the prefill's "
                   "kv_transfer_params (llm-d, Dynamo or vLLM's disaggregated-serving proxy example); "
                   "set VLLM_NIXL_SIDE_CHANNEL_HOST to an address the other pool reaches")
    if ps.multi_node:
        how = ("data parallelism across nodes: the leader node serves, the others run --headless"
               if local_dp(ps) else "tensor/pipeline parallelism across nodes over a Ray cluster")
        out.append(f"each instance spans {ps.nodes_per_instance} nodes of {ps.gpus_per_node} GPUs ({how}); "
                   "launch.sh takes the node rank and LEADER_ADDR")
    if src.inputs.dtype in ("fp4", "int4"):
        out.append(f"quantization {QUANTIZATION[src.inputs.dtype]} needs a checkpoint already quantized that "
                   f"way ({'NVFP4 by NVIDIA ModelOpt' if src.inputs.dtype == 'fp4' else 'AWQ; use gptq_marlin for GPTQ'})"
                   ": point model at it")
    return out


def config_name(ps: PoolSettings) -> str:
    return f"vllm-{ps.name}.yaml"


def pool_file(src: Source, ps: PoolSettings) -> str:
    head = header_lines(src, f"vllm serve --config for the {ps.pool.role} pool "
                             f"({ps.pool.instances} instances of {ps.gpus_per_instance} GPUs)",
                        notes(src, ps))
    return comment(head) + f"# Run: vllm serve --config {config_name(ps)} (or bash launch.sh {ps.name})\n" + \
        to_yaml(options(src, ps))


def launch_script(src: Source, settings: list[PoolSettings]) -> str:
    head = header_lines(src, "launch script: one instance of a pool per call",
                        ["usage: bash launch.sh POOL [NODE_RANK]; PORT (default 8000) and, for multi-node "
                         "instances, LEADER_ADDR (the instance's first node) from the environment",
                         "start the pool's instances count of times (see each vllm-*.yaml), one per GPU set"])
    lines = ["#!/usr/bin/env bash", *comment(head).splitlines(), "set -euo pipefail",
             'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
             'POOL="${1:?usage: bash launch.sh ' + "|".join(ps.name for ps in settings) + ' [NODE_RANK]}"',
             'NODE_RANK="${2:-0}"', 'PORT="${PORT:-8000}"', 'case "$POOL" in']
    for ps in settings:
        cfg = f'"$HERE/{config_name(ps)}"'
        base = ["vllm", "serve", "--config", cfg, "--port", '"$PORT"']
        lines.append(f"  {ps.name})")
        if not ps.multi_node:
            lines += [f"    cmd=({shell_words(base)})", '    exec "${cmd[@]}"', "    ;;"]
            continue
        lines.append('    : "${LEADER_ADDR:?set LEADER_ADDR to the first node of the instance}"')
        per = local_dp(ps)
        if per:
            dp = ["--data-parallel-address", '"$LEADER_ADDR"', "--data-parallel-rpc-port", str(DP_RPC_PORT)]
            follower = base + ["--headless", *dp, "--data-parallel-start-rank", '"$START_RANK"']
            lines += [f"    START_RANK=$((NODE_RANK * {per}))",
                      '    if [ "$NODE_RANK" -eq 0 ]; then',
                      f"      cmd=({shell_words(base + dp)})",
                      "    else",
                      f"      cmd=({shell_words(follower)})",
                      "    fi", '    exec "${cmd[@]}"', "    ;;"]
        else:
            lines += ['    if [ "$NODE_RANK" -eq 0 ]; then',
                      f"      ray start --head --port {RAY_PORT}",
                      f"      cmd=({shell_words(base)})",
                      '      exec "${cmd[@]}"',
                      "    else",
                      f'      exec ray start --address "$LEADER_ADDR:{RAY_PORT}" --block',
                      "    fi", "    ;;"]
    lines += ['  *) echo "unknown pool $POOL" >&2; exit 2 ;;', "esac"]
    return "\n".join(lines) + "\n"


def files(src: Source) -> list[tuple[str, str]]:
    check(src)
    settings = pool_settings(src)
    return [(config_name(ps), pool_file(src, ps)) for ps in settings] + [("launch.sh", launch_script(src, settings))]
