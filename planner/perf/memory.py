"""Memory of one instance: weights per GPU, runtime and activation reserves, KV capacity, fit.

A mixin of :class:`planner.perf.roofline.StepModel` (it reads the model, GPU, parallelism and
dtypes set there)."""

from __future__ import annotations

from planner.catalog import ACTIVATION_BYTES
from planner.errors import DoesNotFitError

# Share of HBM an engine hands to weights + KV cache (vLLM's default gpu_memory_utilization).
GPU_MEMORY_UTILIZATION = 0.90
# Tokens per iteration the activation reserve is sized for (vLLM's default token budget on
# large GPUs is 8192; arg_utils.get_batch_defaults).
ACTIVATION_RESERVE_TOKENS = 8192
# Fixed runtime reserve per GPU: CUDA context, CUDA graphs, NCCL buffers (an approximation;
# vLLM reports 1-2 GiB for these on H100-class GPUs).
RUNTIME_RESERVE_BYTES = 1.5e9


class InstanceMemory:
    """Weights, reserves and KV capacity of one ``tp * pp`` instance (per GPU unless named)."""

    @property
    def weight_bytes_per_gpu(self) -> float:
        m = self.model
        body = (m.total_params - m.embedding_params) * self.bw / (self.tp * self.pp)
        embed = m.vocab_size * m.hidden_size * ACTIVATION_BYTES / self.tp  # one table per end stage
        if self.pp == 1 and not m.tie_word_embeddings:
            embed *= 2
        return body + embed

    @property
    def activation_reserve_bytes(self) -> float:
        m = self.model
        width = 4 * m.hidden_size + 2 * max(m.intermediate_size, m.moe_intermediate_size * m.experts_per_token) / self.tp
        return RUNTIME_RESERVE_BYTES + ACTIVATION_RESERVE_TOKENS * width * ACTIVATION_BYTES

    @property
    def kv_bytes_per_token_per_gpu(self) -> float:
        return self.stage_layers * self.kv_elems_gpu * self.bkv

    @property
    def kv_budget_bytes_per_gpu(self) -> float:
        return (self.gpu.hbm_bytes * GPU_MEMORY_UTILIZATION - self.weight_bytes_per_gpu
                - self.activation_reserve_bytes)

    @property
    def fits(self) -> bool:
        return self.kv_budget_bytes_per_gpu > 0

    @property
    def kv_capacity_tokens(self) -> float:
        """KV tokens the whole instance can hold (shared by its ``pp`` lanes)."""
        return max(self.kv_budget_bytes_per_gpu, 0.0) / self.kv_bytes_per_token_per_gpu

    def require_fit(self) -> None:
        if not self.fits:
            need = (self.weight_bytes_per_gpu + self.activation_reserve_bytes) / 1e9
            have = self.gpu.hbm_bytes * GPU_MEMORY_UTILIZATION / 1e9
            raise DoesNotFitError(
                f"{self.model.id} in {self.dtype} does not fit {self.gpu.id} at tp={self.tp} pp={self.pp}: "
                f"needs {need:.1f} GB per GPU for weights and runtime, {have:.1f} GB usable; "
                "raise --tp/--pp or use --dtype fp8"
            )
