"""Memory of one instance: weights per GPU, runtime and activation reserves, KV capacity, fit.

A mixin of :class:`planner.perf.roofline.StepModel` (it reads the model, GPU, parallelism and
dtypes set there)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from planner.catalog import ACTIVATION_BYTES
from planner.errors import DoesNotFitError

if TYPE_CHECKING:
    from planner.catalog import EngineSpec, GPUSpec, ModelSpec

# Without an engine profile: vLLM's policy (weights + activations + KV within 90% of HBM, the
# default gpu_memory_utilization) and an activation reserve for an 8192-token iteration. With one,
# the engine's memory policy and token budget apply (hardware/engines/*.yaml, with sources).
GPU_MEMORY_UTILIZATION = 0.90
ACTIVATION_RESERVE_TOKENS = 8192
# Fixed runtime reserve per GPU: CUDA context, CUDA graphs, NCCL buffers (an approximation;
# vLLM reports 1-2 GiB for these on H100-class GPUs).
RUNTIME_RESERVE_BYTES = 1.5e9


class InstanceMemory:
    """Weights, reserves and KV capacity of one ``tp * dp * pp`` instance (per GPU unless named)."""

    # Set by StepModel.__init__ (declarations only, for the type checker).
    model: ModelSpec
    gpu: GPUSpec
    engine: EngineSpec | None
    dtype: str
    tp: int
    dp: int
    pp: int
    ep: int
    lanes: int
    bw: float
    bkv: float
    attn_prec: tuple[Any, ...]
    expert_prec: tuple[Any, ...]
    stage_attn_layers: int
    kv_elems_gpu: float
    kv_window: float

    @property
    def weight_bytes_per_gpu(self) -> float:
        """Routed experts spread over all ``tp * dp`` GPUs of a stage; everything else (attention,
        dense and shared FFNs, router, embeddings) sharded over ``tp`` and, under data-parallel
        attention, held by every rank."""
        m = self.model
        routed = m.moe_layers * m.num_experts * m.expert_params if m.is_moe else 0
        bw_attn, bw_exp = self.attn_prec[2], self.expert_prec[2]
        if bw_attn == self.bw and bw_exp == self.bw and not m.vision_params:
            body = ((m.total_params - m.embedding_params - routed) / self.tp
                    + routed / (self.tp * self.dp)) * self.bw / self.pp
        else:  # per-part dtypes (a quantised checkpoint's) and a BF16 vision tower
            attn = m.attention_layers * m.attn_params_per_layer
            rest = m.total_params - m.embedding_params - routed - attn - m.vision_params
            body = ((rest * self.bw + attn * bw_attn + m.vision_params * ACTIVATION_BYTES) / self.tp
                    + routed * bw_exp / (self.tp * self.dp)) / self.pp
        embed = m.vocab_size * m.hidden_size * ACTIVATION_BYTES / self.tp  # one table per end stage
        if self.pp == 1 and not m.tie_word_embeddings:
            embed *= 2
        return body + embed

    @property
    def activation_reserve_bytes(self) -> float:
        m = self.model
        width = 4 * m.hidden_size + 2 * max(m.intermediate_size, m.moe_intermediate_size * m.experts_per_token) / self.tp
        tokens = ACTIVATION_RESERVE_TOKENS if self.engine is None else self.engine.token_budget(self.gpu)
        return RUNTIME_RESERVE_BYTES + tokens * width * ACTIVATION_BYTES

    @property
    def kv_bytes_per_token_per_gpu(self) -> float:
        return self.stage_attn_layers * self.kv_elems_gpu * self.bkv * self.kv_window

    @property
    def usable_bytes_per_gpu(self) -> float:
        """HBM the engine lets weights, activations and KV use (its memory policy)."""
        e = self.engine
        if e is None or e.memory_policy == "total_fraction":
            return self.gpu.hbm_bytes * (GPU_MEMORY_UTILIZATION if e is None else e.memory_fraction)
        if e.memory_policy == "static_fraction":  # weights + KV pool; activations outside it
            return self.gpu.hbm_bytes * e.memory_fraction + self.activation_reserve_bytes
        # free_fraction: the KV pool takes a share of what is free after weights and activations
        free = self.gpu.hbm_bytes - self.weight_bytes_per_gpu - self.activation_reserve_bytes
        return (self.weight_bytes_per_gpu + self.activation_reserve_bytes
                + max(free, 0.0) * e.memory_fraction)

    @property
    def kv_budget_bytes_per_gpu(self) -> float:
        """Memory policies (the engine's source is cited in its profile):
        ``total_fraction`` (vLLM ``gpu_memory_utilization``): ``f * HBM - weights - activations``;
        ``static_fraction`` (SGLang ``mem_fraction_static``): ``f * HBM - weights``;
        ``free_fraction`` (TensorRT-LLM ``free_gpu_memory_fraction``):
        ``f * (HBM - weights - activations)``."""
        return self.usable_bytes_per_gpu - self.weight_bytes_per_gpu - self.activation_reserve_bytes

    @property
    def fits(self) -> bool:
        return self.kv_budget_bytes_per_gpu > 0

    @property
    def kv_capacity_tokens(self) -> float:
        """KV tokens the whole instance can hold (shared by its ``pp`` lanes; each of its ``dp``
        attention ranks holds its own sequences')."""
        return max(self.kv_budget_bytes_per_gpu, 0.0) / self.kv_bytes_per_token_per_gpu * self.dp

    @property
    def kv_capacity_tokens_per_lane(self) -> float:
        """KV tokens one lane (a pipeline micro-batch of one attention rank) can hold."""
        return self.kv_capacity_tokens / self.lanes

    def require_fit(self) -> None:
        if not self.fits:
            need = (self.weight_bytes_per_gpu + self.activation_reserve_bytes) / 1e9
            have = self.usable_bytes_per_gpu / 1e9
            raise DoesNotFitError(
                f"{self.model.id} in {self.dtype} does not fit {self.gpu.id} at tp={self.tp}"
                f"{f' dp={self.dp} ep={self.ep}' if self.dp > 1 else ''} pp={self.pp}: "
                f"needs {need:.1f} GB per GPU for weights and runtime, {have:.1f} GB usable; "
                "raise --tp/--pp or use --dtype fp8"
            )
