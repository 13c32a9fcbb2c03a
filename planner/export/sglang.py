"""SGLang: per pool the ``python -m sglang.launch_server`` arguments as a YAML list (one flag or
value per item, ready for a Kubernetes ``args:``) and one ``launch.sh``.

Schema read from sgl-project/sglang v0.5.3 (the release wheel) ``sglang/srt/server_args.py``
``ServerArgs.add_cli_args``: ``--tp-size`` is the GPUs of one instance (with
``--enable-dp-attention`` the attention runs data-parallel over ``--dp-size`` ranks of them, the
experts over ``--ep-size``); ``--disaggregation-mode`` prefill|decode with
``--disaggregation-transfer-backend`` (mooncake, nixl, ...); ``--chunked-prefill-size``;
``--mem-fraction-static``; ``--kv-cache-dtype`` choices auto, fp8_e5m2, fp8_e4m3; multi-node
instances take ``--nnodes``, ``--node-rank`` and ``--dist-init-addr host:port``.
"""

from __future__ import annotations

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

QUANTIZATION = {"fp8": "fp8", "fp4": "modelopt_fp4", "int4": "awq_marlin"}  # QUANTIZATION_CHOICES
KV_CACHE_DTYPE = {"fp8": "fp8_e4m3"}  # bf16 = auto (the model's dtype)
# pdplan KV-transfer engine (hardware/kv_transfer/*.yaml) -> DISAGG_TRANSFER_BACKEND_CHOICES
TRANSFER_BACKEND = {"nixl-ucx": "nixl", "mooncake-rdma": "mooncake", "mooncake-tcp": "mooncake"}
MAX_PREFILL_TOKENS = 16384  # ServerArgs.max_prefill_tokens default (server_args.py line 191)
DIST_INIT_PORT = 20000  # any free port on the first node of an instance
ENGINE = "sglang"


def check(src: Source) -> None:
    require_engine(src, ENGINE, "SGLang arguments")


def transfer_backend(src: Source) -> str:
    return TRANSFER_BACKEND.get(src.transfer_engine() or "nixl-ucx", "nixl")


def args(src: Source, ps: PoolSettings, multi_node: bool = True) -> list[str]:
    """The pool's server arguments (without host/port and without the per-node ones)."""
    p, inp = ps.pool, src.inputs
    a = ["--model-path", src.model_ref, "--tp-size", str(p.tp * p.dp)]
    if p.pp > 1:
        a += ["--pp-size", str(p.pp)]
    if p.dp > 1:
        a += ["--dp-size", str(p.dp), "--enable-dp-attention"]
    if p.ep > 1:
        a += ["--ep-size", str(p.ep)]
    a += ["--chunked-prefill-size", str(ps.token_budget)]
    if ps.token_budget > MAX_PREFILL_TOKENS:
        a += ["--max-prefill-tokens", str(ps.token_budget)]
    a += ["--max-running-requests", str(ps.max_seqs), "--mem-fraction-static", f"{ps.memory_fraction:g}"]
    if inp.kv_dtype in KV_CACHE_DTYPE:
        a += ["--kv-cache-dtype", KV_CACHE_DTYPE[inp.kv_dtype]]
    if inp.dtype in QUANTIZATION:
        a += ["--quantization", QUANTIZATION[inp.dtype]]
    if ps.kv_role:
        a += ["--disaggregation-mode", ps.pool.role, "--disaggregation-transfer-backend", transfer_backend(src)]
    if multi_node and ps.multi_node:
        a += ["--nnodes", str(ps.nodes_per_instance)]
    return a


def notes(src: Source, ps: PoolSettings) -> list[str]:
    out = []
    if src.approach == "unified":
        out.append(f"unified: --chunked-prefill-size {ps.token_budget} is at least the longest prompt the plan "
                   f"assumes ({ps.longest_prompt} tokens), so prompts are not split")
    elif ps.chunked:
        out.append(f"chunked prefill with the plan's chunk size: {ps.token_budget} tokens")
    out += ps.notes
    out.append(f"--mem-fraction-static {ps.memory_fraction:g} is the engine profile's value for H100 80 GB at "
               "TP1; SGLang's own default depends on the GPU's memory and the TP size (see "
               "hardware/engines/sglang.yaml)")
    if ps.kv_role:
        out.append(f"disaggregated {ps.pool.role} pool ({transfer_backend(src)}): run the SGLang router "
                   "(sglang-router, --pd-disaggregation) in front of both pools")
    if ps.multi_node:
        out.append(f"each instance spans {ps.nodes_per_instance} nodes: launch.sh adds --node-rank and "
                   f"--dist-init-addr $LEADER_ADDR:{DIST_INIT_PORT} per node")
    return out


def args_name(ps: PoolSettings) -> str:
    return f"sglang-{ps.name}.args.yaml"


def pool_file(src: Source, ps: PoolSettings) -> str:
    head = header_lines(src, f"python -m sglang.launch_server arguments for the {ps.pool.role} pool "
                             f"({ps.pool.instances} instances of {ps.gpus_per_instance} GPUs), one item each",
                        notes(src, ps))
    return comment(head) + to_yaml(args(src, ps))


def launch_script(src: Source, settings: list[PoolSettings]) -> str:
    head = header_lines(src, "launch script: one instance (or one node of one) of a pool per call",
                        ["usage: bash launch.sh POOL [NODE_RANK]; PORT (default 30000) and, for multi-node "
                         "instances, LEADER_ADDR from the environment"])
    lines = ["#!/usr/bin/env bash", *comment(head).splitlines(), "set -euo pipefail",
             'POOL="${1:?usage: bash launch.sh ' + "|".join(ps.name for ps in settings) + ' [NODE_RANK]}"',
             'NODE_RANK="${2:-0}"', 'PORT="${PORT:-30000}"', 'case "$POOL" in']
    for ps in settings:
        words = ["python3", "-m", "sglang.launch_server", *args(src, ps), "--host", "0.0.0.0", "--port", '"$PORT"']
        lines.append(f"  {ps.name})")
        if ps.multi_node:
            lines.append('    : "${LEADER_ADDR:?set LEADER_ADDR to the first node of the instance}"')
            words += ["--node-rank", '"$NODE_RANK"', "--dist-init-addr", f'"$LEADER_ADDR:{DIST_INIT_PORT}"']
        lines += [f"    cmd=({shell_words(words)})", '    exec "${cmd[@]}"', "    ;;"]
    lines += ['  *) echo "unknown pool $POOL" >&2; exit 2 ;;', "esac"]
    return "\n".join(lines) + "\n"


def files(src: Source) -> list[tuple[str, str]]:
    check(src)
    settings = pool_settings(src)
    return [(args_name(ps), pool_file(src, ps)) for ps in settings] + [("launch.sh", launch_script(src, settings))]
