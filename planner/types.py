"""The records and names every layer shares, free of numpy (``import planner.types`` loads no
numpy, scipy, rich or yaml; a test holds it to that).

- names: the approaches (``APPROACHES``, from the serving registry), the percentiles the
  metrics carry, the weight, KV-cache and KV-transfer dtypes, the documented defaults;
- records: a deployment (:class:`Pool`, :class:`Deployment`), the targets (:class:`SLO`), the
  question (:class:`Inputs`), what one deployment does under it (:class:`Metrics`) and the
  answer (:class:`Plan`).

Values are SI units (seconds, bytes, tokens); field names carry the unit where it is not a count.
The old homes re-export these (``planner.api.Inputs``, ``planner.serving.common.Pool``, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from planner.serving import REGISTRY
from planner.units import PERCENTILES

if TYPE_CHECKING:
    from planner.calibrate.profile import Profile
    from planner.catalog import Catalog, EngineSpec, ModelSpec, TransferSpec
    from planner.perf.roofline import Calibration
    from planner.perf.speculative import SpecDecode
    from planner.workload import Workload

APPROACHES: tuple[str, ...] = tuple(REGISTRY)  # unified, chunked, disaggregated
WEIGHT_DTYPES = ("bf16", "fp8", "fp4", "int4")
KV_DTYPES = ("bf16", "fp8")
KV_TRANSFER_DTYPES = ("bf16", "fp8", "int4")
OBJECTIVES = ("gpus", "cost")  # what recommend minimises
CATALOG_TABLES = ("models", "gpus", "links")  # what `pdplan catalog` lists

# What a question assumes where the user says nothing (the CLI lists each one it used).
DEFAULTS: dict[str, Any] = {
    "model": "llama-3.1-70b",
    "gpu": "h100-sxm",
    "isl": 2048,
    "osl": 256,
    "ttft_slo": 1.0,
    "tpot_slo": 0.050,
    "percentile": 90,
    "engine": "vllm",
}

__all__ = ["APPROACHES", "CATALOG_TABLES", "DEFAULTS", "KV_DTYPES", "KV_TRANSFER_DTYPES", "OBJECTIVES", "PERCENTILES",
           "WEIGHT_DTYPES", "SLO", "Deployment", "Inputs", "Metrics", "Plan", "Pool"]


@dataclass(frozen=True)
class Pool:
    """``instances`` replicas of ``tp * dp * pp`` GPUs each, all of type ``gpu``: ``dp`` attention
    ranks of ``tp`` GPUs (data-parallel attention, MoE models), ``pp`` pipeline stages, experts
    over ``ep`` GPUs."""

    role: str  # unified | prefill | decode
    gpu: str
    instances: int
    tp: int
    pp: int = 1
    ep: int = 1
    dp: int = 1

    @property
    def gpus_per_instance(self) -> int:
        return self.tp * self.dp * self.pp

    @property
    def gpus(self) -> int:
        return self.instances * self.gpus_per_instance

    @property
    def lanes_per_instance(self) -> int:
        """Lanes per instance: its pipeline micro-batches (data-parallel attention ranks step
        together, so they share a lane; see planner.perf.roofline)."""
        return self.pp

    @property
    def lanes(self) -> int:
        return self.instances * self.lanes_per_instance

    def spec(self) -> str:
        s = f"{self.instances}xtp{self.tp}"
        if self.dp > 1:
            s += f"dp{self.dp}"
        if self.pp > 1:
            s += f"pp{self.pp}"
        if self.ep > 1:
            s += f"ep{self.ep}"
        return f"{s}@{self.gpu}"

    def nodes(self, gpus_per_node: int) -> int:
        """Nodes the pool needs: an instance larger than a node spans whole nodes; smaller ones
        pack into nodes."""
        g = self.gpus_per_instance
        if g > gpus_per_node:
            return self.instances * -(-g // gpus_per_node)
        return -(-self.instances // (gpus_per_node // g))


@dataclass(frozen=True)
class Deployment:
    approach: str
    pools: tuple
    chunk_size: int | None = None
    link: str | None = None  # KV-transfer link override (disaggregated)
    kv_overlap: bool = True
    kv_transfer_dtype: str | None = None

    @property
    def total_gpus(self) -> int:
        return sum(p.gpus for p in self.pools)

    def pool(self, role: str) -> Pool:
        return next(p for p in self.pools if p.role == role)


@dataclass
class Metrics:
    """What users see under a deployment at one traffic level (SI units; inf = overloaded)."""

    ttft: dict  # 'mean', 'p50', 'p90', 'p95', 'p99' -> seconds
    tpot: dict
    itl_max_s: float
    throughput_in_tok_s: float
    throughput_out_tok_s: float
    utilization: dict  # pool role -> fraction of capacity in use
    decode_batch: float  # steady concurrent decodes per lane
    kv_used_tokens: float  # per instance (decode or unified pool)
    kv_capacity_tokens: float
    stable: bool
    saturated: str | None = None  # which pool saturates (None when stable)
    breakdown: dict = field(default_factory=dict)
    attainment: float = 0.0  # predicted share of requests within both SLOs
    batch_cap: float = math.nan  # most sequences a lane keeps running (paged KV or the engine cap)
    batch_cap_by: str = ""  # kv-memory | max-num-seqs | token budget
    admission_wait_probability: float = 0.0  # a prompt waits for a place in the batch


@dataclass(frozen=True)
class SLO:
    ttft_s: float
    tpot_s: float
    percentile: int = 90

    @property
    def key(self) -> str:
        return f"p{self.percentile}"


@dataclass
class Inputs:
    """Everything a question to pdplan is about, besides the deployment."""

    model: ModelSpec
    workload: Workload
    slo: SLO
    dtype: str
    kv_dtype: str
    catalog: Catalog
    gpu: str = DEFAULTS["gpu"]
    assumed: list[str] = field(default_factory=list)  # defaults the user did not set
    engine: EngineSpec | None = None  # None = the catalog's default engine
    kv_transfer: TransferSpec | None = None  # None = the engine's default
    # Speculative decoding (planner.perf.speculative.SpecDecode): on for estimate/simulate; what
    # recommend may turn on where it pays. None = off.
    spec: SpecDecode | None = None
    # A calibration profile (planner.calibrate.Profile) and the step-model constants it implies
    # (planner.perf.Calibration), applied to the GPUs in calibration_gpus (None = every GPU).
    profile: Profile | None = None
    calibration: Calibration | None = None
    calibration_gpus: tuple | None = None
    # The confidence of the likely ranges (planner.confidence; None = its default, 0.8); when
    # set, recommend also sizes so that the SLO holds at the upper end of the range.
    confidence: float | None = None
    # Search options recommend sets on the instance (planner.optimize): plain class attributes,
    # not fields, so replace() drops them back to these defaults (what the search expects).
    objective = "gpus"  # "gpus" | "cost"
    util_cap = math.inf  # utilisation every pool stays under (the confidence margin's regimes)

    def __post_init__(self):
        if self.engine is None and self.catalog is not None and DEFAULTS["engine"] in self.catalog.engines:
            self.engine = self.catalog.engines[DEFAULTS["engine"]]
        # A model with sliding-window layers holds KV per token by sequence length: evaluate it
        # at the workload's mean context (prompt plus half the output; docs/methodology.md).
        if getattr(self.model, "window_layers", 0) and self.workload is not None:
            ctx = float(self.workload.mean_isl + self.workload.mean_osl / 2)
            if ctx > 0 and ctx != self.model.kv_context_tokens:
                self.model = replace(self.model, kv_context_tokens=ctx)


@dataclass
class Plan:
    """A deployment with its metrics under the inputs: what estimate/recommend return."""

    inputs: Inputs
    deployment: Deployment
    metrics: Metrics
    meets_slo: bool
    max_qps: float
    cost_per_hour: float
    reason: str = ""
    link: dict | None = None
    verification: dict | None = None
    notes: list = field(default_factory=list)
    # recommend with --spec-tokens: whether speculative decoding was turned on and why
    # ({"on": bool, "why": sentence}); None where it was not offered.
    speculation: dict | None = None
    # One decode iteration of the decoding pool's lane at the operating point (its mean batch
    # and decode context), op group -> seconds; and that pool's layout facts.
    decode_step: dict = field(default_factory=dict)
    layout: dict = field(default_factory=dict)
    # The likely ranges of the metrics (planner.confidence.ranges: SI units, per statistic).
    ranges: dict | None = None
    # recommend with a confidence: what sizing to the upper end of the range cost
    # ({"confidence", "gpus", "gpus_without", "ttft_factor", "tpot_factor", ...}).
    margin: dict | None = None

    @property
    def approach(self) -> str:
        return self.deployment.approach

    @property
    def total_gpus(self) -> int:
        return self.deployment.total_gpus
