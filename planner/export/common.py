"""What every exporter shares: the plan as read back (:class:`Source`), each pool's engine
settings as pdplan's numbers assumed them (:class:`PoolSettings`), the header every generated
file starts with, and YAML/shell rendering.

Nothing here computes a model quantity: the settings are the engine profile's (token budget,
sequence cap, memory fraction) and the plan's (parallelism, chunk size, dtypes), and the longest
prompt is the one the serving model itself used (:func:`planner.serving.common.shape_of`).
"""

from __future__ import annotations

import hashlib
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.errors import InvalidRequestError

if TYPE_CHECKING:
    from planner.api import Inputs
    from planner.catalog import EngineSpec, ModelSpec
    from planner.serving.common import Deployment, Pool

ROLE_KV = {"prefill": "kv_producer", "decode": "kv_consumer"}


@dataclass
class Source:
    """A plan file read back and checked (:func:`planner.plans.load_plan`)."""

    path: str
    sha256: str
    inputs: Inputs
    deployment: Deployment
    doc: dict[str, Any]
    target: str

    @property
    def engine(self) -> EngineSpec:
        assert self.inputs.engine is not None  # load() refuses a plan without one
        return self.inputs.engine

    @property
    def model(self) -> ModelSpec:
        return self.inputs.model

    @property
    def approach(self) -> str:
        return self.deployment.approach

    @property
    def model_ref(self) -> str:
        """What the engine loads: the catalog model's Hugging Face id (its catalog id if none)."""
        return str((self.model.raw or {}).get("hf_id") or self.model.id)

    @property
    def has_hf_id(self) -> bool:
        return bool((self.model.raw or {}).get("hf_id"))

    def gpus_per_node(self, pool) -> int:
        return int(self.inputs.catalog.gpus[pool.gpu].gpus_per_node)

    def transfer_engine(self) -> str | None:
        """The KV-transfer engine the plan assumed (``kv_transfer.engine``), e.g. ``nixl-ucx``."""
        kv = self.doc.get("kv_transfer")
        return kv.get("engine") if isinstance(kv, dict) else None


def load(path: str, target: str, catalog_dir: str | None = None) -> Source:
    from planner.files import PLAN_MAX_BYTES, read_bytes
    from planner.plans import load_plan

    inputs, dep, doc = load_plan(path, catalog_dir=catalog_dir)
    if inputs.engine is None:
        raise InvalidRequestError(f"plan file {path}: engine: missing; export needs the engine the plan "
                                  "was made for (re-run pdplan recommend ... -o)")
    raw = read_bytes(path, f"plan file {path}", "a YAML plan", max_bytes=PLAN_MAX_BYTES)
    return Source(path, hashlib.sha256(raw).hexdigest(), inputs, dep, doc, target)


# --------------------------------------------------------------------------------------------
# Per-pool settings
# --------------------------------------------------------------------------------------------


@dataclass
class PoolSettings:
    """A pool's engine settings as pdplan's numbers assume them (per attention rank)."""

    pool: Pool
    name: str  # file-name and Kubernetes-name stem: "unified", "prefill", "decode"
    token_budget: int  # max-num-batched-tokens / chunked-prefill-size / max_num_tokens
    max_seqs: int
    memory_fraction: float
    chunked: bool  # prompts split into chunks of token_budget
    longest_prompt: int
    nodes_per_instance: int
    gpus_per_node: int
    kv_role: str | None  # kv_producer | kv_consumer (disaggregated), else None
    notes: list[str] = field(default_factory=list)

    @property
    def multi_node(self) -> bool:
        return self.nodes_per_instance > 1

    @property
    def gpus_per_instance(self) -> int:
        return int(self.pool.gpus_per_instance)

    @property
    def gpus_per_pod(self) -> int:
        """GPUs one pod (one node of an instance) requests."""
        return min(self.gpus_per_instance, self.gpus_per_node)


def longest_prompt(src: Source) -> int:
    """The longest prompt the serving model planned for
    (:func:`planner.serving.common.longest_prompt`)."""
    from planner.serving.common import longest_prompt as longest

    return longest(src.inputs.workload)


def pool_settings(src: Source) -> list[PoolSettings]:
    """Each pool's settings. The token budget is the plan's chunk size (chunked), else the
    engine profile's default on that GPU; where the plan assumes whole prompts (unified, or an
    engine with chunked prefill off such as TensorRT-LLM) it is raised to the longest prompt so
    that no prompt is split, as the serving model assumed (planner.serving.unified.budget)."""
    e, dep = src.engine, src.deployment
    longest = longest_prompt(src)
    out = []
    for pool in dep.pools:
        gpu = src.inputs.catalog.gpus[pool.gpu]
        budget = int(dep.chunk_size) if dep.approach == "chunked" and dep.chunk_size else int(e.token_budget(gpu))
        notes = []
        whole = dep.approach == "unified" or (not e.chunked_prefill and dep.approach != "chunked")
        if whole and budget < longest:
            notes.append(f"token budget raised from the engine default {budget} to the longest prompt "
                         f"{longest}, so that prompts are not split (the plan assumes whole prompts)")
            budget = longest
        # every running sequence takes a token of the budget: engines refuse a sequence cap above it
        seqs = min(int(e.max_seqs(gpu)), budget)
        gpn = int(gpu.gpus_per_node)
        out.append(PoolSettings(pool, pool.role, budget, seqs, float(e.memory_fraction),
                                dep.approach == "chunked", longest,
                                int(math.ceil(pool.gpus_per_instance / gpn)), gpn,
                                ROLE_KV.get(pool.role) if dep.approach == "disaggregated" else None, notes))
    return out


# --------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------


def header_lines(src: Source, what: str, extra: list[str] | None = None) -> list[str]:
    """The comment every generated file starts with: pdplan's version, the plan (path and
    sha256), what the file is, the plan's deployment, and what an operator must check."""
    from planner import __version__

    e = src.engine
    pools = ", ".join(f"{p.role} {p.spec()}" for p in src.deployment.pools)
    lines = [f"Generated by pdplan {__version__} (pdplan export --target {src.target}): {what}",
             f"from plan {src.path} (sha256 {src.sha256})",
             f"plan: {src.approach}, {src.model.id} {src.inputs.dtype} (KV {src.inputs.kv_dtype}), "
             f"engine {e.id} {e.version}; {pools}" + (f", chunk {src.deployment.chunk_size} tokens"
                                                     if src.approach == "chunked" else ""),
             "Check before deploying:"]
    weights = (f"model weights: {src.model_ref} from Hugging Face (gated repositories need an HF_TOKEN with "
               "access) or replace it by a local path holding the same checkpoint"
               if src.has_hf_id else
               f"model weights: {src.model_ref} is pdplan's catalog id, not a Hugging Face id: replace it "
               "by the checkpoint's path or repository")
    checks = [weights]
    if src.inputs.dtype != src.model.default_dtype:
        checks.append(f"the plan runs weights in {src.inputs.dtype} (the checkpoint's is "
                      f"{src.model.default_dtype}): see the quantization setting below")
    checks += [f"the engine must be {e.id} {e.version} (the version pdplan's engine profile describes); "
               "image tags and installed versions are yours to pin",
               "GPUs: every pool assumes " + ", ".join(sorted({p.gpu for p in src.deployment.pools}))
               + "; label or select nodes of that type",
               "memory fraction, token budget and sequence cap are pdplan's assumptions (the engine "
               "profile's defaults, or the plan's chunk size): the latency the plan predicts holds "
               "only with them"]
    checks += list(extra or ())
    lines += [f"  - {c}" for c in checks]
    return lines


def comment(lines: list[str], prefix: str = "# ") -> str:
    return "".join(f"{prefix}{ln}".rstrip() + "\n" for ln in lines)


def to_yaml(obj) -> str:
    """Block-style YAML in the given key order, without anchors/aliases (a shared mapping is
    written out each time it appears, as Kubernetes manifests are read by people)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data) -> bool:
            return True

    return yaml.dump(obj, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=100,
                     allow_unicode=True)


def yaml_file(header: list[str], *docs) -> str:
    """Header comment + one or more YAML documents."""
    body = "---\n".join(to_yaml(d) for d in docs)
    return comment(header) + body


def shell_words(words: list[str]) -> str:
    """A bash array literal's items, one quoted word each (so every option is its own argv
    word)."""
    return " ".join(w if w.startswith('"$') and w.endswith('"') else shlex.quote(w) for w in words)


def argv_from_options(opts: dict) -> list[str]:
    """``{"tensor-parallel-size": 4, "enable-expert-parallel": True}`` -> ``["--tensor-parallel-size",
    "4", "--enable-expert-parallel"]`` (one flag or value per item, as Kubernetes ``args``)."""
    argv: list[str] = []
    for k, v in opts.items():
        if v is True:
            argv.append(f"--{k}")
        elif v is False or v is None:
            continue
        else:
            argv += [f"--{k}", str(v)]
    return argv


def k8s_name(*parts: str) -> str:
    """A DNS-1123 label from ``parts`` (lower case, ``-`` separated, at most 63 characters)."""
    import re

    s = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return re.sub(r"-{2,}", "-", s)[:63].rstrip("-") or "pdplan"


def plan_stem(src: Source) -> str:
    return k8s_name(Path(src.path).stem)


def require_engine(src: Source, engine: str, writes: str) -> None:
    """A target that writes one engine's configs (``writes``, e.g. "vLLM configs") takes plans
    made for that engine only: exit 2 naming the plan's engine and the targets that take it."""
    if src.engine.id != engine:
        raise InvalidRequestError(
            f"plan file {src.path}: engine: the plan was made for {src.engine.id} {src.engine.version}, "
            f"and --target {engine} writes {writes}; export it with --target {src.engine.id} (or "
            f"dynamo/k8s), or re-plan with --engine {engine}")

