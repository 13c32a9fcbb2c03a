"""TensorRT-LLM: per pool an extra LLM-API YAML (``trtllm-serve --config``) and one
``launch.sh`` with the ``trtllm-serve`` options.

Schema read from NVIDIA/TensorRT-LLM (no release tag could be read; see
hardware/engines/trtllm.yaml): ``tensorrt_llm/commands/serve.py`` @ 00209af1 (the ``serve``
command's click options: ``--tp_size``, ``--pp_size``, ``--ep_size``, ``--max_batch_size``,
``--max_num_tokens``, ``--kv_cache_free_gpu_memory_fraction``, ``--enable_chunked_prefill``,
``--config``/``--extra_llm_api_options``, ``--backend``) and ``tensorrt_llm/llmapi/llm_args.py`` @
0004396 (``BaseLlmArgs`` keys such as ``enable_attention_dp``, ``moe_expert_parallel_size``;
``KvCacheConfig.dtype`` auto|fp8|...; ``CacheTransceiverConfig.backend``
DEFAULT|UCX|NIXL|MOONCAKE|MPI and ``max_tokens_in_buffer``). With attention data parallelism
``tensor_parallel_size`` counts every GPU of the instance and ``enable_attention_dp`` splits the
attention over them.
"""

from __future__ import annotations

from typing import Any

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

KV_CACHE_DTYPE = {"fp8": "fp8"}
TRANSFER_BACKEND = {"nixl-ucx": "NIXL", "mooncake-rdma": "MOONCAKE", "mooncake-tcp": "MOONCAKE"}
ENGINE = "trtllm"


def check(src: Source) -> None:
    require_engine(src, ENGINE, "TensorRT-LLM configs")


def serve_args(src: Source, ps: PoolSettings) -> list[str]:
    """``trtllm-serve MODEL`` options of the pool (the extra YAML is passed with ``--config``)."""
    p = ps.pool
    a = ["--backend", "pytorch", "--tp_size", str(p.tp * p.dp), "--pp_size", str(p.pp)]
    if p.ep > 1:
        a += ["--ep_size", str(p.ep)]
    a += ["--max_batch_size", str(ps.max_seqs), "--max_num_tokens", str(ps.token_budget),
          "--kv_cache_free_gpu_memory_fraction", f"{ps.memory_fraction:g}"]
    if ps.chunked:
        a.append("--enable_chunked_prefill")
    return a


def llm_api(src: Source, ps: PoolSettings) -> dict:
    """The extra LLM-API options of the pool (keys of BaseLlmArgs)."""
    p, inp = ps.pool, src.inputs
    d: dict = {"max_batch_size": int(ps.max_seqs), "max_num_tokens": int(ps.token_budget)}
    if ps.chunked:
        d["enable_chunked_prefill"] = True
    if p.dp > 1:
        d["enable_attention_dp"] = True
    if p.ep > 1:
        d["moe_expert_parallel_size"] = int(p.ep)
    kv: dict[str, Any] = {"free_gpu_memory_fraction": float(ps.memory_fraction)}
    if inp.kv_dtype in KV_CACHE_DTYPE:
        kv["dtype"] = KV_CACHE_DTYPE[inp.kv_dtype]
    d["kv_cache_config"] = kv
    if ps.kv_role:
        d["cache_transceiver_config"] = {"backend": TRANSFER_BACKEND.get(src.transfer_engine() or "nixl-ucx", "NIXL"),
                                         "max_tokens_in_buffer": int(max(ps.longest_prompt, ps.token_budget))}
    return d


def notes(src: Source, ps: PoolSettings) -> list[str]:
    out = list(ps.notes)
    if not ps.chunked:
        out.append(f"chunked prefill off (TensorRT-LLM's default, as the plan assumes): max_num_tokens "
                   f"{ps.token_budget} holds the longest prompt ({ps.longest_prompt} tokens)")
    out.append(f"kv_cache_config.free_gpu_memory_fraction {ps.memory_fraction:g} is a share of the memory free "
               "after the weights load, not of all memory")
    if src.inputs.dtype != "bf16":
        out.append(f"weights in {src.inputs.dtype}: TensorRT-LLM reads the quantization from the checkpoint; "
                   "point the model at a checkpoint quantized that way (NVIDIA ModelOpt)")
    if ps.kv_role:
        out.append(f"disaggregated {ps.pool.role} pool: start it with --server_role "
                   f"{'CONTEXT' if ps.pool.role == 'prefill' else 'GENERATION'} behind trtllm-serve "
                   "disaggregated (or Dynamo)")
    if ps.multi_node:
        out.append(f"each instance spans {ps.nodes_per_instance} nodes: launch.sh starts it with mpirun over "
                   "HOSTS (trtllm-llmapi-launch runs trtllm-serve on each rank)")
    return out


def config_name(ps: PoolSettings) -> str:
    return f"trtllm-{ps.name}.yaml"


def pool_file(src: Source, ps: PoolSettings) -> str:
    head = header_lines(src, f"trtllm-serve --config (extra LLM API options) for the {ps.pool.role} pool "
                             f"({ps.pool.instances} instances of {ps.gpus_per_instance} GPUs)", notes(src, ps))
    run = "trtllm-serve " + src.model_ref + " " + " ".join(serve_args(src, ps)) + f" --config {config_name(ps)}"
    return comment(head) + f"# Run: {run}\n" + to_yaml(llm_api(src, ps))


def launch_script(src: Source, settings: list[PoolSettings]) -> str:
    head = header_lines(src, "launch script: one instance of a pool per call",
                        ["usage: bash launch.sh POOL; PORT (default 8000); multi-node instances: HOSTS "
                         "(comma-separated host:slots list for mpirun)"])
    lines = ["#!/usr/bin/env bash", *comment(head).splitlines(), "set -euo pipefail",
             'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
             'POOL="${1:?usage: bash launch.sh ' + "|".join(ps.name for ps in settings) + '}"',
             'PORT="${PORT:-8000}"', 'case "$POOL" in']
    for ps in settings:
        words = ["trtllm-serve", src.model_ref, *serve_args(src, ps), "--config", f'"$HERE/{config_name(ps)}"',
                 "--host", "0.0.0.0", "--port", '"$PORT"']
        if ps.kv_role:
            words += ["--server_role", "CONTEXT" if ps.pool.role == "prefill" else "GENERATION"]
        lines.append(f"  {ps.name})")
        if ps.multi_node:
            lines.append('    : "${HOSTS:?set HOSTS to the instance nodes, e.g. node1:8,node2:8}"')
            mpi = ["mpirun", "-H", '"$HOSTS"', "-n", str(ps.gpus_per_instance), "trtllm-llmapi-launch"]
            lines += [f"    mpi=({shell_words(mpi)})", f"    cmd=({shell_words(words)})",
                      '    exec "${mpi[@]}" "${cmd[@]}"', "    ;;"]
        else:
            lines += [f"    cmd=({shell_words(words)})", '    exec "${cmd[@]}"', "    ;;"]
    lines += ['  *) echo "unknown pool $POOL" >&2; exit 2 ;;', "esac"]
    return "\n".join(lines) + "\n"


def files(src: Source) -> list[tuple[str, str]]:
    check(src)
    settings = pool_settings(src)
    return [(config_name(ps), pool_file(src, ps)) for ps in settings] + [("launch.sh", launch_script(src, settings))]
