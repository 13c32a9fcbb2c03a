"""Model, GPU and interconnect catalogs: YAML files loaded on demand into frozen dataclasses.

Every entry is one YAML file (``models/*.yaml``, ``hardware/gpus/*.yaml``,
``hardware/links/*.yaml``) shipped inside the wheel as ``planner.models`` and
``planner.hardware``. Human units live in the YAML (``hbm_gb``, ``peak_tflops``, ``gb_per_s``)
and are converted to SI here, once. Every number in a hardware entry has a ``sources`` line; the
loader refuses an entry whose number has none.

Users add or override entries with ``--catalog DIR`` (or ``PDPLAN_CATALOG``): a directory holding
``models/``, ``gpus/``, ``links/``, ``engines/`` and ``kv_transfer/`` sub-folders (or YAML files directly, sorted by their ``kind``).
A Hugging Face ``config.json`` is accepted wherever a model name is (``--model ./config.json``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

from planner.errors import CatalogError, InvalidRequestError, did_you_mean
from planner.types import KV_DTYPES, KV_TRANSFER_DTYPES, WEIGHT_DTYPES  # noqa: F401  (re-exported)

# Bytes per stored element. FP4 is NVFP4 (E2M1 plus one FP8 scale per 16 values = 4.5 bits),
# INT4 is group-wise (group 128 with an FP16 scale and zero = 4.25 bits); see docs/methodology.md.
DTYPE_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp4": 0.5625, "int4": 0.53125,
               # MXFP4 (OCP Microscaling Formats v1.0: E2M1 plus one E8M0 scale per 32 values =
               # 4.25 bits); only as the stored dtype of a checkpoint's part (gpt-oss experts),
               # computed as FP4 (see COMPUTE_DTYPE).
               "mxfp4": 0.53125}
# The dtype whose GEMM peak and kernel constants a stored dtype runs on.
COMPUTE_DTYPE = {"mxfp4": "fp4"}
ACTIVATION_BYTES = 2.0  # activations and all-reduce messages travel in BF16


# --------------------------------------------------------------------------------------------
# Dataclasses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """What the roofline needs to know about a transformer (decoder-only, pre-norm)."""

    id: str
    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # dense FFN width (SwiGLU: gate, up and down projections)
    vocab_size: int
    tie_word_embeddings: bool = False
    gated_ffn: bool = True  # SwiGLU (gate, up, down: 3 matrices) or a plain GELU MLP (2)
    # Mixture of experts (num_experts == 0 means dense).
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    # Layers that keep a dense FFN (DeepSeek-V3: the first 3; Llama-4 Maverick: every other one;
    # only their count matters to the costing).
    first_dense_layers: int = 0
    # Multi-head latent attention (kv_lora_rank == 0 means ordinary GQA/MHA/MQA).
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # Multi-token-prediction modules shipped with the checkpoint (HF num_nextn_predict_layers;
    # DeepSeek-V3: 1), usable as the draft of speculative decoding.
    mtp_layers: int = 0
    default_dtype: str = "bf16"
    default_kv_dtype: str = "bf16"
    # Per-part stored dtypes of a quantised checkpoint ("" = default_dtype): the attention
    # projections and the routed experts (gpt-oss: BF16 attention, MXFP4 experts). They apply
    # when the model is planned at its default_dtype (see part_dtype).
    attention_dtype: str = ""
    expert_dtype: str = ""
    # Sliding-window (or chunked local) attention: ``sliding_layers`` of the attention layers
    # hold at most ``sliding_window`` tokens of KV each (gpt-oss: 18 of 36 at 128).
    sliding_window: int = 0
    sliding_layers: int = 0
    # Layers without attention (DeciLM / Nemotron-NAS ``no_op`` or linear-replaced attention).
    no_attention_layers: int = 0
    # Weights of a multimodal checkpoint's vision tower and projector: held in memory (BF16),
    # not run per text token.
    vision_params: int = 0
    # The sequence length at which the KV bytes of one token are evaluated for a model with
    # sliding-window layers (set from the workload's mean context; 0 = every layer counted at
    # full length, the long-sequence upper bound).
    kv_context_tokens: float = 0.0
    quantization: str = ""  # how the checkpoint's precision was read (HF import), for display
    published_params: float = 0.0  # total parameters as published (a cross-check, not used)
    source: str = ""
    path: str = ""
    raw: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        return self.num_layers - self.first_dense_layers if self.is_moe else 0

    @property
    def dense_layers(self) -> int:
        return self.num_layers - self.moe_layers

    @property
    def attention_layers(self) -> int:
        """Layers with attention (at least one: a one-layer draft head derived from the model
        keeps its attention)."""
        return max(self.num_layers - self.no_attention_layers, 1)

    @property
    def window_layers(self) -> int:
        """Sliding-window attention layers (at most the attention layers)."""
        return min(self.sliding_layers, self.attention_layers) if self.sliding_window > 0 else 0

    @property
    def full_attention_layers(self) -> int:
        return self.attention_layers - self.window_layers

    def part_dtype(self, part: str, dtype: str) -> str:
        """The dtype ``part`` ("attention", "experts" or anything else: the rest) is stored in
        when the model is planned at weight dtype ``dtype``: the checkpoint's own per-part
        dtype at its default_dtype, else ``dtype`` for every part (an explicit requantisation)."""
        if dtype != self.default_dtype:
            return dtype
        own = {"attention": self.attention_dtype, "experts": self.expert_dtype}.get(part, "")
        return own or dtype

    # ---- parameter counts (elements) -------------------------------------------------------
    @property
    def attn_params_per_layer(self) -> int:
        h = self.hidden_size
        if self.is_mla:
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            q = (h * self.q_lora_rank + self.q_lora_rank * self.num_heads * qk
                 if self.q_lora_rank else h * self.num_heads * qk)
            kv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            kv_b = self.kv_lora_rank * self.num_heads * (self.qk_nope_head_dim + self.v_head_dim)
            o = self.num_heads * self.v_head_dim * h
            return q + kv_a + kv_b + o
        d = self.head_dim
        return h * (self.num_heads + 2 * self.num_kv_heads) * d + self.num_heads * d * h

    @property
    def ffn_matrices(self) -> int:
        return 3 if self.gated_ffn else 2

    @property
    def dense_ffn_params(self) -> int:
        return self.ffn_matrices * self.hidden_size * self.intermediate_size

    @property
    def expert_params(self) -> int:
        """Parameters of one routed expert."""
        return self.ffn_matrices * self.hidden_size * self.moe_intermediate_size

    @property
    def embedding_params(self) -> int:
        n = self.vocab_size * self.hidden_size
        return n if self.tie_word_embeddings else 2 * n

    @property
    def total_params(self) -> int:
        """Every weight of the checkpoint (a multimodal one's vision tower included)."""
        body = self.attention_layers * self.attn_params_per_layer + self.dense_layers * self.dense_ffn_params
        if self.is_moe:
            per_moe_layer = (self.num_experts + self.num_shared_experts) * self.expert_params
            per_moe_layer += self.hidden_size * self.num_experts  # router
            body += self.moe_layers * per_moe_layer
        return body + self.embedding_params + self.vision_params

    @property
    def routed_expert_params(self) -> int:
        return self.moe_layers * self.num_experts * self.expert_params if self.is_moe else 0

    @property
    def active_params(self) -> int:
        """Parameters of the language model touched per token (routed experts: only the top-k)."""
        body = self.attention_layers * self.attn_params_per_layer + self.dense_layers * self.dense_ffn_params
        if self.is_moe:
            body += self.moe_layers * (self.experts_per_token + self.num_shared_experts) * self.expert_params
        return body + self.embedding_params

    # ---- KV cache --------------------------------------------------------------------------
    @property
    def kv_elements_per_token_per_layer(self) -> int:
        """K and V elements a token leaves in one layer (MLA: the compressed latent + RoPE key)."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def kv_bytes_per_token(self, kv_dtype: str, context: float | None = None) -> float:
        """``2 * layers * kv_heads * head_dim * bytes`` (GQA/MHA/MQA) or ``(d_c + d_rope) * layers *
        bytes`` (MLA). Llama-3.1-70B in BF16: 2 * 80 * 8 * 128 * 2 = 327,680 bytes. With
        sliding-window layers: :meth:`kv_bytes` of a sequence of ``context`` tokens (default
        :attr:`kv_context_tokens`) divided by its length; with neither, every layer in full."""
        full = self.attention_layers * self.kv_elements_per_token_per_layer * DTYPE_BYTES[kv_dtype]
        ctx = self.kv_context_tokens if context is None else context
        if not self.window_layers or not ctx or ctx <= 0:
            return full
        return self.kv_bytes(kv_dtype, ctx) / ctx

    def kv_bytes(self, kv_dtype: str, tokens: float) -> float:
        """KV bytes of one sequence of ``tokens`` tokens: ``e (F L + S min(L, W))`` with ``e`` the
        bytes one token leaves in one layer, ``F`` full-attention and ``S`` sliding-window layers
        of window ``W`` (docs/methodology.md, "Sliding-window layers")."""
        e = self.kv_elements_per_token_per_layer * DTYPE_BYTES[kv_dtype]
        held = min(tokens, self.sliding_window) if self.window_layers else tokens
        return e * (self.full_attention_layers * tokens + self.window_layers * held)

    @property
    def kv_window_factor(self) -> float:
        """KV bytes per token at :attr:`kv_context_tokens` over the bytes with every attention
        layer in full (1.0 without sliding-window layers or without a context)."""
        ctx = self.kv_context_tokens
        if not self.window_layers or ctx <= 0:
            return 1.0
        return (self.full_attention_layers + self.window_layers * min(ctx, self.sliding_window) / ctx) \
            / self.attention_layers

    def valid_tp(self, tp: int) -> bool:
        """TP must divide the query heads (and the KV heads, or be a multiple of them)."""
        if tp < 1 or self.num_heads % tp:
            return False
        if self.is_mla:
            return True
        kv = self.num_kv_heads
        return kv % tp == 0 or tp % kv == 0


# Kernel-efficiency constants of a GPU: (YAML group, key, attribute, unit, lower, upper, to SI).
# Every value is derived from silicon-measured kernel tables (benchmarks/derive_kernel_constants.py)
# or, for GPUs without such tables, borrowed from the GPU of the same silicon (the entry's
# sources line says which). The bounds are physical plausibility, not fitting limits.


def _gemm_fields(dtype: str, extra: tuple = ()) -> tuple:
    """The GEMM constants of one dtype group (BF16 and FP8 share the form)."""
    g = f"gemm_{dtype}"
    return (
        (g, "mamf", f"{dtype}_mamf", f"fraction of dense {dtype.upper()} peak", 0.3, 1.0, 1.0),
        (g, "floor_us", f"{dtype}_floor_s", "us per GEMM", 0.0, 50.0, 1e-6),
        (g, "mem", f"{dtype}_mem", "fraction of HBM bandwidth", 0.3, 1.0, 1.0),
        (g, "mem_half_mb", f"{dtype}_mem_half_bytes", "MB", 0.0, 200.0, 1e6),
        (g, "blend", f"{dtype}_blend", "p-norm exponent", 1.0, 20.0, 1.0),
        (g, "wave", f"{dtype}_wave", "exponent", 0.0, 1.0, 1.0),
    ) + extra


EFFICIENCY_FIELDS = (
    *_gemm_fields("bf16"),
    *_gemm_fields("fp8", (("gemm_fp8", "quant", "fp8_quant",
                           "multiple of the ideal quantisation traffic", 0.0, 50.0, 1.0),)),
    ("attn_prefill", "mamf", "pf_mamf", "fraction of dense BF16 peak", 0.1, 1.0, 1.0),
    ("attn_prefill", "floor_us", "pf_floor_s", "us per layer", 0.0, 200.0, 1e-6),
    ("attn_prefill", "half_tokens", "pf_half_tokens", "query tokens", 0.0, 1e5, 1.0),
    ("attn_prefill", "wave", "pf_wave", "exponent", 0.0, 1.0, 1.0),
    ("attn_decode", "mem", "dec_mem", "fraction of HBM bandwidth", 0.1, 1.0, 1.0),
    ("attn_decode", "floor_us", "dec_floor_s", "us per layer", 0.0, 200.0, 1e-6),
    ("attn_decode", "per_seq_us", "dec_per_seq_s", "us per sequence per layer", 0.0, 5.0, 1e-6),
    ("attn_decode", "per_read_ns", "dec_per_read_s", "ns per sequence x KV head read per layer",
     0.0, 1e3, 1e-9),
    ("attn_decode", "group_max", "dec_group_max", "query heads a kernel packs per KV head", 1.0,
     256.0, 1.0),
    ("attn_decode", "half_occupancy", "dec_half_occupancy", "sequences x KV heads read", 0.0, 1e5,
     1.0),
    ("attn_decode", "shape", "dec_shape", "exponent", 0.1, 3.0, 1.0),
    ("attn_decode", "fp8", "dec_fp8", "FP8-KV bandwidth factor", 0.2, 1.5, 1.0),
    ("moe", "floor_us", "moe_floor_s", "us per MoE layer (routing, permutation, finalize)", 0.0,
     500.0, 1e-6),
    ("moe", "per_expert_us", "moe_per_expert_s", "us per active expert per MoE layer", 0.0, 20.0,
     1e-6),
    ("moe", "mamf", "moe_mamf", "multiple of the dense GEMM's compute efficiency", 0.1, 1.5, 1.0),
    ("moe", "half_rows", "moe_half_rows", "rows per expert at half that efficiency", 0.0, 1e5, 1.0),
    ("moe", "mem", "moe_mem", "multiple of the dense GEMM's HBM efficiency", 0.1, 1.5, 1.0),
    ("moe", "fp8", "moe_fp8", "FP8 experts' extra compute-efficiency factor", 0.3, 3.0, 1.0),
    ("comm", "oneshot_us", "oneshot_s", "us per all-reduce", 0.5, 50.0, 1e-6),
    ("comm", "busbw", "busbw", "fraction of link bandwidth", 0.02, 1.0, 1.0),
)


@dataclass(frozen=True)
class Efficiency:
    """What a GPU achieves per kernel shape; used by :mod:`planner.perf.efficiency`."""

    bf16_mamf: float
    bf16_floor_s: float
    bf16_mem: float
    bf16_mem_half_bytes: float
    bf16_blend: float
    bf16_wave: float
    fp8_mamf: float
    fp8_floor_s: float
    fp8_mem: float
    fp8_mem_half_bytes: float
    fp8_blend: float
    fp8_wave: float
    fp8_quant: float
    pf_mamf: float
    pf_floor_s: float
    pf_half_tokens: float
    pf_wave: float
    dec_mem: float
    dec_floor_s: float
    dec_per_seq_s: float
    dec_per_read_s: float
    dec_group_max: float
    dec_half_occupancy: float
    dec_shape: float
    dec_fp8: float
    moe_floor_s: float
    moe_per_expert_s: float
    moe_mamf: float
    moe_half_rows: float
    moe_mem: float
    moe_fp8: float
    oneshot_s: float
    busbw: float

    def gemm(self, dtype: str) -> dict:
        """The GEMM constants of a weight dtype (FP4 runs on the FP8 constants; INT4 is
        weight-only and runs BF16 tensor cores)."""
        dtype = COMPUTE_DTYPE.get(dtype, dtype)
        p = "fp8" if dtype in ("fp8", "fp4") else "bf16"
        d = {k: getattr(self, f"{p}_{k}") for k in ("mamf", "floor_s", "mem", "mem_half_bytes",
                                                    "blend", "wave")}
        d["quant"] = self.fp8_quant if p == "fp8" else 0.0
        return d

    @property
    def prefill(self) -> dict:
        return {"mamf": self.pf_mamf, "floor_s": self.pf_floor_s,
                "half_tokens": self.pf_half_tokens, "wave": self.pf_wave}

    @property
    def decode(self) -> dict:
        return {"mem": self.dec_mem, "floor_s": self.dec_floor_s, "per_seq_s": self.dec_per_seq_s,
                "per_read_s": self.dec_per_read_s, "group_max": self.dec_group_max,
                "half_occupancy": self.dec_half_occupancy, "shape": self.dec_shape,
                "fp8": self.dec_fp8}

    @property
    def moe(self) -> dict:
        return {"floor_s": self.moe_floor_s, "per_expert_s": self.moe_per_expert_s,
                "mamf": self.moe_mamf, "half_rows": self.moe_half_rows, "mem": self.moe_mem,
                "fp8": self.moe_fp8}


@dataclass(frozen=True)
class GPUSpec:
    """One accelerator: dense peaks, memory, links, power, price and default efficiencies."""

    id: str
    name: str
    peak_flops: dict  # dtype -> dense FLOP/s (bf16 always; fp8 / fp4 where the hardware has them)
    hbm_bytes: float
    hbm_bytes_per_s: float
    gpus_per_node: int
    intra_node_link: str
    inter_node_link: str
    inter_node_bytes_per_s: float  # per GPU, per direction
    tdp_w: float
    price_per_hour: float  # USD per GPU-hour, indicative
    price_date: str
    sm_count: int  # streaming multiprocessors (AMD: compute units): sets GEMM wave quantisation
    efficiency: Efficiency  # kernel-efficiency constants (see Efficiency)
    # Measured all-reduce latency by message size: ((n, (bytes, ...), (seconds, ...)), ...);
    # empty where the GPU has no table (the analytic form is used).
    allreduce_table: tuple = field(default=(), compare=False, hash=False, repr=False)
    kernel_tables: str = ""  # the hardware/kernels file the tables came from, if any
    kernel_raw: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    sources: dict = field(default_factory=dict, compare=False, hash=False)
    path: str = ""
    raw: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def flops_for(self, dtype: str) -> float:
        """Peak dense FLOP/s for GEMMs whose weights are stored in ``dtype``.

        FP8 and FP4 run at their own peak only where the hardware has it; otherwise weights are
        dequantised and the GEMM runs at the next precision the GPU supports (weight-only
        quantisation: fewer bytes, same compute). INT4 is weight-only everywhere (W4A16)."""
        dtype = COMPUTE_DTYPE.get(dtype, dtype)
        if dtype == "fp4" and "fp4" in self.peak_flops:
            return self.peak_flops["fp4"]
        if dtype in ("fp4", "fp8") and "fp8" in self.peak_flops:
            return self.peak_flops["fp8"]
        return self.peak_flops["bf16"]


@dataclass(frozen=True)
class LinkSpec:
    """A point-to-point interconnect used for KV transfer and collectives."""

    id: str
    name: str
    bytes_per_s: float  # per direction
    latency_s: float
    sources: dict = field(default_factory=dict, compare=False, hash=False)
    path: str = ""
    raw: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def transfer_time(self, nbytes):
        """``latency + bytes / bandwidth`` (one direction, one stream)."""
        return self.latency_s + nbytes / self.bytes_per_s


@dataclass(frozen=True)
class TransferSpec:
    """A KV-transfer engine (``hardware/kv_transfer/*.yaml``): what one prefill-to-decode KV
    transfer costs on top of the bytes over the link. A transfer moves data at ``efficiency``
    times the links' bandwidth (at most ``max_bytes_per_s`` in all, where the host bounds it)
    after a fixed ``setup_s`` (handshake, descriptor preparation and posting, completion)."""

    id: str
    name: str
    efficiency: float  # share of the link bandwidth a transfer achieves
    setup_s: float  # per-transfer fixed cost
    max_bytes_per_s: float | None = None  # cap on one transfer's rate over all its streams
    default_for: tuple = ()  # serving-engine ids whose P/D default this is
    sources: dict = field(default_factory=dict, compare=False, hash=False)
    notes: str = ""
    path: str = ""
    raw: dict = field(default_factory=dict, compare=False, hash=False, repr=False)


# The transfer engine of a serving engine whose profile no transfer entry claims (and of a
# question without an engine): NIXL over UCX, the default of vLLM's P/D guide, TensorRT-LLM
# and Dynamo (hardware/kv_transfer/nixl-ucx.yaml).
DEFAULT_KV_TRANSFER = "nixl-ucx"


# --------------------------------------------------------------------------------------------
# YAML helpers with precise errors
# --------------------------------------------------------------------------------------------


def _load_yaml(path: Path) -> dict:
    from planner.files import read_yaml

    data = read_yaml(path, str(path), "a YAML file", CatalogError)
    if data is None:
        raise CatalogError(f"{path}: is empty")
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


class _Reader:
    """Typed access to a YAML mapping; every complaint names the file and the key."""

    def __init__(self, path: Path, data: dict, allowed: set[str]):
        self.path, self.data = path, data
        unknown = set(data) - allowed
        if unknown:
            key = sorted(unknown, key=str)[0]
            raise CatalogError(f"{path}: {key}: unknown key{did_you_mean(key, allowed)}")

    def _fail(self, key, what, got) -> NoReturn:
        raise CatalogError(f"{self.path}: {key}: {what}, got {got!r}")

    def number(self, key, *, positive=True, integer=False, default=None, container=None, ctx=None,
               maximum=1e12):
        data = self.data if container is None else container
        label = key if ctx is None else f"{ctx}.{key}"
        if key not in data:
            if default is not None:
                return default
            raise CatalogError(f"{self.path}: {label}: missing")
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self._fail(label, "must be a number", v)
        if not math.isfinite(v):
            self._fail(label, "must be finite", v)
        if integer and v != int(v):
            self._fail(label, "must be a whole number", v)
        if positive and v <= 0:
            self._fail(label, "must be positive", v)
        if not positive and v < 0:
            self._fail(label, "must not be negative", v)
        if v > maximum:
            self._fail(label, f"is implausibly large (at most {maximum:g})", v)
        return int(v) if integer else float(v)

    def text(self, key, default=None, choices=None):
        if key not in self.data:
            if default is not None:
                return default
            raise CatalogError(f"{self.path}: {key}: missing")
        v = self.data[key]
        if not isinstance(v, (str, int, float)) or isinstance(v, bool) or str(v).strip() == "":
            self._fail(key, "must be a non-empty string", v)
        v = str(v)
        if choices is not None and v not in choices:
            raise CatalogError(
                f"{self.path}: {key}: {v!r} is not one of {', '.join(choices)}{did_you_mean(v, choices)}"
            )
        return v

    def mapping(self, key, default=None):
        if key not in self.data:
            if default is not None:
                return default
            raise CatalogError(f"{self.path}: {key}: missing")
        v = self.data[key]
        if not isinstance(v, dict):
            self._fail(key, "must be a mapping", v)
        return v


# --------------------------------------------------------------------------------------------
# Parsing entries
# --------------------------------------------------------------------------------------------

_MODEL_KEYS = {
    "id", "name", "kind", "hf_id", "num_layers", "hidden_size", "num_heads", "num_kv_heads",
    "head_dim", "intermediate_size", "vocab_size", "tie_word_embeddings", "gated_ffn", "moe", "mla",
    "default_dtype", "default_kv_dtype", "published_params_b", "source", "sources", "notes",
    "mtp_layers",
}
_MOE_KEYS = {"num_experts", "experts_per_token", "moe_intermediate_size", "num_shared_experts",
             "first_dense_layers"}
_MLA_KEYS = {"kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"}


def parse_model(path: Path, data: dict) -> ModelSpec:
    r = _Reader(path, data, _MODEL_KEYS)
    kw = {
        "id": r.text("id"),
        "name": r.text("name", default=str(data.get("id", path.stem))),
        "num_layers": r.number("num_layers", integer=True, maximum=10_000),
        "hidden_size": r.number("hidden_size", integer=True, maximum=1_000_000),
        "num_heads": r.number("num_heads", integer=True, maximum=100_000),
        "num_kv_heads": r.number("num_kv_heads", integer=True),
        "intermediate_size": r.number("intermediate_size", integer=True),
        "vocab_size": r.number("vocab_size", integer=True, maximum=100_000_000),
        "default_dtype": r.text("default_dtype", default="bf16", choices=WEIGHT_DTYPES),
        "default_kv_dtype": r.text("default_kv_dtype", default="bf16", choices=KV_DTYPES),
        "source": r.text("source"),
        "path": str(path),
        "raw": dict(data),
    }
    kw["head_dim"] = r.number("head_dim", integer=True,
                              default=max(1, kw["hidden_size"] // kw["num_heads"]))
    tie = data.get("tie_word_embeddings", False)
    if not isinstance(tie, bool):
        raise CatalogError(f"{path}: tie_word_embeddings: must be true or false, got {tie!r}")
    kw["tie_word_embeddings"] = tie
    gated = data.get("gated_ffn", True)
    if not isinstance(gated, bool):
        raise CatalogError(f"{path}: gated_ffn: must be true or false, got {gated!r}")
    kw["gated_ffn"] = gated
    kw["mtp_layers"] = r.number("mtp_layers", integer=True, positive=False, default=0, maximum=16)
    if "published_params_b" in data:
        kw["published_params"] = r.number("published_params_b") * 1e9
    if kw["num_heads"] % kw["num_kv_heads"]:
        raise CatalogError(
            f"{path}: num_kv_heads: must divide num_heads ({kw['num_heads']}), got {kw['num_kv_heads']}"
        )
    if "moe" in data:
        moe = r.mapping("moe")
        bad = set(moe) - _MOE_KEYS
        if bad:
            k = sorted(bad, key=str)[0]
            raise CatalogError(f"{path}: moe.{k}: unknown key{did_you_mean(k, _MOE_KEYS)}")
        kw["num_experts"] = r.number("num_experts", integer=True, container=moe, ctx="moe")
        kw["experts_per_token"] = r.number("experts_per_token", integer=True, container=moe, ctx="moe")
        kw["moe_intermediate_size"] = r.number("moe_intermediate_size", integer=True,
                                               container=moe, ctx="moe")
        kw["num_shared_experts"] = r.number("num_shared_experts", integer=True, positive=False,
                                            default=0, container=moe, ctx="moe")
        kw["first_dense_layers"] = r.number("first_dense_layers", integer=True, positive=False,
                                            default=0, container=moe, ctx="moe")
        if kw["experts_per_token"] > kw["num_experts"]:
            raise CatalogError(f"{path}: moe.experts_per_token: exceeds num_experts")
        if kw["first_dense_layers"] >= kw["num_layers"]:
            raise CatalogError(f"{path}: moe.first_dense_layers: must be below num_layers")
    if "mla" in data:
        mla = r.mapping("mla")
        bad = set(mla) - _MLA_KEYS
        if bad:
            k = sorted(bad, key=str)[0]
            raise CatalogError(f"{path}: mla.{k}: unknown key{did_you_mean(k, _MLA_KEYS)}")
        for k in ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"):
            kw[k] = r.number(k, integer=True, container=mla, ctx="mla")
        kw["q_lora_rank"] = r.number("q_lora_rank", integer=True, positive=False, default=0,
                                     container=mla, ctx="mla")
    return ModelSpec(**kw)


_GPU_KEYS = {
    "id", "name", "kind", "peak_tflops", "hbm_gb", "hbm_tb_per_s", "gpus_per_node",
    "intra_node_link", "inter_node_link", "inter_node_gb_per_s", "tdp_w", "price_per_hour_usd",
    "price_date", "sm_count", "efficiency", "sources", "notes",
}


def parse_efficiency(r: _Reader, eff: dict) -> Efficiency:
    """The ``efficiency:`` block of a GPU entry: every group and key present, numbers in bounds."""
    groups: dict = {}
    for group, key, *_ in EFFICIENCY_FIELDS:
        groups.setdefault(group, set()).add(key)
    for g in eff:
        if g not in groups:
            raise CatalogError(f"{r.path}: efficiency.{g}: unknown group{did_you_mean(str(g), groups)}")
    for g, keys in groups.items():
        if g not in eff:
            raise CatalogError(f"{r.path}: efficiency.{g}: missing (keys: {', '.join(sorted(keys))})")
        if not isinstance(eff[g], dict):
            raise CatalogError(f"{r.path}: efficiency.{g}: must be a mapping, got {eff[g]!r}")
        bad = set(eff[g]) - keys
        if bad:
            k = sorted(bad, key=str)[0]
            raise CatalogError(f"{r.path}: efficiency.{g}.{k}: unknown key{did_you_mean(str(k), keys)}")
    kw = {}
    for group, key, attr, unit, lo, hi, to_si in EFFICIENCY_FIELDS:
        v = r.number(key, positive=False, container=eff[group], ctx=f"efficiency.{group}")
        if not lo <= v <= hi:
            raise CatalogError(f"{r.path}: efficiency.{group}.{key}: must be within [{lo:g}, {hi:g}] "
                               f"({unit}), got {v!r}")
        kw[attr] = v * to_si
    return Efficiency(**kw)


def _require_sources(r: _Reader, keys) -> dict:
    sources = r.mapping("sources")
    for key in keys:
        s = sources.get(key)
        if not isinstance(s, str) or not s.strip():
            raise CatalogError(f"{r.path}: sources.{key}: missing (every number needs its source)")
    return {str(k): str(v) for k, v in sources.items()}


def parse_gpu(path: Path, data: dict) -> GPUSpec:
    r = _Reader(path, data, _GPU_KEYS)
    peaks_raw = r.mapping("peak_tflops")
    if "bf16" not in peaks_raw:
        raise CatalogError(f"{path}: peak_tflops.bf16: missing")
    peaks = {}
    for k in peaks_raw:
        if k not in ("bf16", "fp8", "fp4"):
            raise CatalogError(f"{path}: peak_tflops.{k}: unknown dtype; valid: bf16, fp8, fp4")
        peaks[k] = r.number(k, container=peaks_raw, ctx="peak_tflops", maximum=1e5) * 1e12
    efficiency = parse_efficiency(r, r.mapping("efficiency"))
    sources = _require_sources(
        r, ["peak_tflops", "hbm_gb", "hbm_tb_per_s", "gpus_per_node", "inter_node_gb_per_s",
            "tdp_w", "price_per_hour_usd", "sm_count", "efficiency"])
    return GPUSpec(
        id=r.text("id"),
        name=r.text("name"),
        peak_flops=peaks,
        hbm_bytes=r.number("hbm_gb", maximum=1e5) * 1e9,
        hbm_bytes_per_s=r.number("hbm_tb_per_s", maximum=1e3) * 1e12,
        gpus_per_node=r.number("gpus_per_node", integer=True, maximum=1024),
        intra_node_link=r.text("intra_node_link"),
        inter_node_link=r.text("inter_node_link"),
        inter_node_bytes_per_s=r.number("inter_node_gb_per_s", maximum=1e5) * 1e9,
        tdp_w=r.number("tdp_w", maximum=1e5),
        price_per_hour=r.number("price_per_hour_usd", maximum=1e4),
        price_date=r.text("price_date"),
        sm_count=r.number("sm_count", integer=True, maximum=10000),
        efficiency=efficiency,
        sources=sources,
        path=str(path),
        raw=dict(data),
    )


_KERNEL_KEYS = {"kind", "gpu", "allreduce_us", "sources", "notes"}


def parse_kernels(path: Path, data: dict) -> tuple[str, tuple]:
    """A measured kernel-table file (``hardware/kernels/*.yaml``): the GPU it belongs to and its
    all-reduce table ``((n, bytes, seconds), ...)``. Sizes must rise strictly and latencies must
    not fall with size (the derivation script stores the monotone envelope)."""
    r = _Reader(path, data, _KERNEL_KEYS)
    gpu = r.text("gpu")
    _require_sources(r, ["allreduce_us"])
    table = r.mapping("allreduce_us")
    rows = []
    for n, pts in table.items():
        if isinstance(n, str) and n.isascii() and n.isdigit() and len(n) < 6:
            n = int(n)  # a plan written as JSON keeps the GPU count as a string key
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise CatalogError(f"{path}: allreduce_us.{n}: GPU count must be a whole number >= 2")
        if not isinstance(pts, list) or len(pts) < 2:
            raise CatalogError(f"{path}: allreduce_us.{n}: must be a list of at least two [bytes, us] pairs")
        xs: list[float] = []
        ts: list[float] = []
        for i, pt in enumerate(pts):
            ok = (isinstance(pt, list) and len(pt) == 2
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                          and math.isfinite(v) and 0 < v < 1e12 for v in pt))
            if not ok:
                raise CatalogError(f"{path}: allreduce_us.{n}[{i}]: must be [bytes, us], two positive numbers, got {pt!r}")
            if xs and (pt[0] <= xs[-1] or pt[1] * 1e-6 < ts[-1]):
                raise CatalogError(f"{path}: allreduce_us.{n}[{i}]: sizes must rise and latencies must not fall, got {pt!r} after {[xs[-1], ts[-1] * 1e6]!r}")
            xs.append(float(pt[0]))
            ts.append(float(pt[1]) * 1e-6)
        rows.append((int(n), tuple(xs), tuple(ts)))
    return gpu, tuple(sorted(rows))


def _attach_kernels(directory: Path, cat: Catalog) -> None:
    for p in sorted(directory.glob("*.yaml")):
        attach_kernels(cat, p, _load_yaml(p))


def attach_kernels(cat: Catalog, path, data: dict) -> None:
    """Parse one kernel-table mapping and attach it to its GPU in ``cat``."""
    from dataclasses import replace

    gpu, table = parse_kernels(path, data)
    if gpu not in cat.gpus:
        raise CatalogError(f"{path}: gpu: unknown GPU {gpu!r}{did_you_mean(gpu, cat.gpus)}")
    cat.gpus[gpu] = replace(cat.gpus[gpu], allreduce_table=table, kernel_tables=str(path),
                            kernel_raw=dict(data))


_LINK_KEYS = {"id", "name", "kind", "gb_per_s", "latency_us", "sources", "notes"}


def parse_link(path: Path, data: dict) -> LinkSpec:
    r = _Reader(path, data, _LINK_KEYS)
    sources = _require_sources(r, ["gb_per_s", "latency_us"])
    return LinkSpec(
        id=r.text("id"),
        name=r.text("name"),
        bytes_per_s=r.number("gb_per_s", maximum=1e5) * 1e9,
        latency_s=r.number("latency_us", maximum=1e6) * 1e-6,
        sources=sources,
        path=str(path),
        raw=dict(data),
    )


_TRANSFER_KEYS = {"id", "name", "kind", "efficiency", "setup_ms", "max_gb_per_s", "default_for",
                  "sources", "notes"}


def parse_transfer(path: Path, data: dict) -> TransferSpec:
    """A KV-transfer engine entry: ``efficiency`` in (0, 1], ``setup_ms`` in [0, 10000],
    ``max_gb_per_s`` positive or null, ``default_for`` a list of engine ids; every number sourced."""
    r = _Reader(path, data, _TRANSFER_KEYS)
    for key in ("efficiency", "setup_ms"):
        if key not in data:
            raise CatalogError(f"{path}: {key}: missing")
    cap = data.get("max_gb_per_s")
    sources = _require_sources(r, ("efficiency", "setup_ms") + (("max_gb_per_s",) if cap is not None else ())
                               + (("default_for",) if data.get("default_for") else ()))
    eff = r.number("efficiency", maximum=1.0)
    setup = r.number("setup_ms", positive=False, maximum=1e4) * 1e-3
    if cap is not None:
        cap = r.number("max_gb_per_s", maximum=1e5) * 1e9
    owners = data.get("default_for") or []
    if not isinstance(owners, list) or not all(isinstance(x, str) and x.strip() for x in owners):
        raise CatalogError(f"{path}: default_for: must be a list of engine ids, got {owners!r}")
    return TransferSpec(
        id=r.text("id"),
        name=r.text("name"),
        efficiency=eff,
        setup_s=setup,
        max_bytes_per_s=cap,
        default_for=tuple(owners),
        sources=sources,
        notes=str(data.get("notes") or ""),
        path=str(path),
        raw=dict(data),
    )


def default_transfer(cat, engine) -> TransferSpec | None:
    """The KV-transfer engine a serving engine uses for P/D unless told otherwise: the entry
    whose ``default_for`` names it, else :data:`DEFAULT_KV_TRANSFER`."""
    eid = getattr(engine, "id", None)
    for t in cat.transfers.values():
        if eid is not None and eid in t.default_for:
            return t
    return cat.transfers.get(DEFAULT_KV_TRANSFER)


_ENGINE_KEYS = {
    "id", "name", "kind", "version", "max_num_batched_tokens", "max_num_seqs", "large_gpu",
    "memory_policy", "memory_fraction", "kv_block_tokens", "cuda_graph_max_batch",
    "chunked_prefill", "schedule", "custom_allreduce_max_bytes", "preemption", "kv_admission",
    "iteration_overhead_ms", "overlap_schedule", "sources", "notes",
}
_LARGE_GPU_KEYS = {"min_memory_gib", "exclude", "max_num_batched_tokens", "max_num_seqs"}
MEMORY_POLICIES = ("total_fraction", "static_fraction", "free_fraction")
SCHEDULES = ("decode_first", "prefill_first")
PREEMPTIONS = ("recompute", "swap", "none")
KV_ADMISSIONS = ("incremental", "reserve_full")
# Sourced keys of an engine profile (iteration_overhead_ms may be null: then the step model's
# documented default applies and plans say so).
_ENGINE_SOURCED = ("version", "max_num_batched_tokens", "max_num_seqs", "memory_policy",
                   "memory_fraction", "kv_block_tokens", "cuda_graph_max_batch", "chunked_prefill",
                   "schedule", "custom_allreduce_max_bytes", "preemption", "kv_admission",
                   "iteration_overhead_ms", "overlap_schedule")


@dataclass(frozen=True)
class EngineSpec:
    """What a serving engine does with a GPU, at one named version (``hardware/engines/*.yaml``)."""

    id: str
    name: str
    version: str
    max_num_batched_tokens: int  # token budget per iteration (chunked prefill on)
    max_num_seqs: int
    memory_policy: str  # total_fraction | static_fraction | free_fraction
    memory_fraction: float
    kv_block_tokens: int
    cuda_graph_max_batch: int
    chunked_prefill: bool
    schedule: str  # decode_first | prefill_first
    custom_allreduce_max_bytes: float
    preemption: str
    kv_admission: str  # incremental | reserve_full
    iteration_overhead_s: float | None
    # The host schedules iteration n + 1 while the GPU runs n (TensorRT-LLM's overlap scheduler,
    # SGLang's overlap loop): a request arriving during n is first scheduled into n + 2.
    overlap_schedule: bool = False
    large_gpu: dict = field(default_factory=dict, compare=False, hash=False)
    sources: dict = field(default_factory=dict, compare=False, hash=False)
    notes: str = ""
    path: str = ""
    raw: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def _large(self, gpu: GPUSpec) -> bool:
        lg = self.large_gpu
        if not lg:
            return False
        return (gpu.hbm_bytes >= lg["min_memory_gib"] * 2**30 * 0.99
                and not any(x in gpu.id for x in lg.get("exclude", ())))

    def token_budget(self, gpu: GPUSpec) -> int:
        """The default token budget per iteration on ``gpu``."""
        if self._large(gpu) and "max_num_batched_tokens" in self.large_gpu:
            return int(self.large_gpu["max_num_batched_tokens"])
        return self.max_num_batched_tokens

    def max_seqs(self, gpu: GPUSpec) -> int:
        """The default cap on running sequences on ``gpu``."""
        if self._large(gpu) and "max_num_seqs" in self.large_gpu:
            return int(self.large_gpu["max_num_seqs"])
        return self.max_num_seqs

    @property
    def label(self) -> str:
        return f"{self.id} {self.version}"


def parse_engine(path: Path, data: dict) -> EngineSpec:
    r = _Reader(path, data, _ENGINE_KEYS)
    sources = _require_sources(r, _ENGINE_SOURCED)
    chunked = data.get("chunked_prefill")
    if not isinstance(chunked, bool):
        raise CatalogError(f"{path}: chunked_prefill: must be true or false, got {chunked!r}")
    overlap = data.get("overlap_schedule")
    if not isinstance(overlap, bool):
        raise CatalogError(f"{path}: overlap_schedule: must be true or false, got {overlap!r}")
    overhead = data.get("iteration_overhead_ms", "missing")
    if overhead == "missing":
        raise CatalogError(f"{path}: iteration_overhead_ms: missing (a number, or null for the default)")
    if overhead is not None:
        overhead = r.number("iteration_overhead_ms", positive=False, maximum=100.0) * 1e-3
    large = {}
    if data.get("large_gpu") is not None:
        lg = r.mapping("large_gpu")
        bad = set(lg) - _LARGE_GPU_KEYS
        if bad:
            k = sorted(bad, key=str)[0]
            raise CatalogError(f"{path}: large_gpu.{k}: unknown key{did_you_mean(str(k), _LARGE_GPU_KEYS)}")
        large["min_memory_gib"] = r.number("min_memory_gib", container=lg, ctx="large_gpu", maximum=1e4)
        for k in ("max_num_batched_tokens", "max_num_seqs"):
            if k in lg:
                large[k] = r.number(k, integer=True, container=lg, ctx="large_gpu", maximum=1e7)
        ex = lg.get("exclude", [])
        if not isinstance(ex, list) or not all(isinstance(x, str) and x for x in ex):
            raise CatalogError(f"{path}: large_gpu.exclude: must be a list of GPU-id substrings, got {ex!r}")
        large["exclude"] = tuple(ex)
    budget = r.number("max_num_batched_tokens", integer=True, maximum=1e7)
    seqs = r.number("max_num_seqs", integer=True, maximum=1e6)
    for b, n, where in ((budget, seqs, ""), (large.get("max_num_batched_tokens", budget),
                                             large.get("max_num_seqs", seqs), "large_gpu.")):
        if b < n:
            raise CatalogError(f"{path}: {where}max_num_batched_tokens: the token budget ({b}) must be "
                               f"at least {where}max_num_seqs ({n}): every running decode takes one token")
    frac = r.number("memory_fraction", maximum=1.0)
    return EngineSpec(
        id=r.text("id"),
        name=r.text("name"),
        version=r.text("version"),
        max_num_batched_tokens=budget,
        max_num_seqs=seqs,
        memory_policy=r.text("memory_policy", choices=MEMORY_POLICIES),
        memory_fraction=frac,
        kv_block_tokens=r.number("kv_block_tokens", integer=True, maximum=1e5),
        cuda_graph_max_batch=r.number("cuda_graph_max_batch", integer=True, positive=False, maximum=1e6),
        chunked_prefill=chunked,
        schedule=r.text("schedule", choices=SCHEDULES),
        custom_allreduce_max_bytes=r.number("custom_allreduce_max_bytes", positive=False, maximum=1e12),
        preemption=r.text("preemption", choices=PREEMPTIONS),
        kv_admission=r.text("kv_admission", choices=KV_ADMISSIONS),
        iteration_overhead_s=overhead,
        overlap_schedule=overlap,
        large_gpu=large,
        sources=sources,
        notes=str(data.get("notes") or ""),
        path=str(path),
        raw=dict(data),
    )


# --------------------------------------------------------------------------------------------
# Hugging Face config.json import
# --------------------------------------------------------------------------------------------


def model_from_hf_config(path: Path) -> ModelSpec:
    """A :class:`ModelSpec` from a Hugging Face ``config.json`` (:mod:`planner.hf`)."""
    from planner.hf import model_from_hf_config as from_hf

    return from_hf(path)


# --------------------------------------------------------------------------------------------
# The catalog
# --------------------------------------------------------------------------------------------


def _builtin_dir(package: str, fallback: str) -> Path:
    try:
        from importlib.resources import files

        p = Path(str(files(package)))
        if p.is_dir():
            return p
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / fallback


@dataclass
class Catalog:
    models: dict
    gpus: dict
    links: dict
    engines: dict = field(default_factory=dict)
    transfers: dict = field(default_factory=dict)  # KV-transfer engines (TransferSpec)

    def model(self, name: str, flag: str = "--model") -> ModelSpec:
        if name.endswith(".json") or os.sep in name or name.startswith("."):
            p = Path(name).expanduser()
            if not p.exists():
                raise InvalidRequestError(f"{flag}: file {name} does not exist")
            return model_from_hf_config(p)
        if name not in self.models:
            from planner.errors import unknown_name

            raise unknown_name("model", name, self.models, flag)
        return self.models[name]

    def gpu(self, name: str, flag: str = "--gpu") -> GPUSpec:
        if name not in self.gpus:
            from planner.errors import unknown_name

            raise unknown_name("GPU", name, self.gpus, flag)
        return self.gpus[name]

    def link(self, name: str, flag: str = "--link") -> LinkSpec:
        if name not in self.links:
            from planner.errors import unknown_name

            raise unknown_name("link", name, self.links, flag)
        return self.links[name]

    def engine(self, name: str, flag: str = "--engine") -> EngineSpec:
        if name not in self.engines:
            from planner.errors import unknown_name

            raise unknown_name("engine", name, self.engines, flag)
        return self.engines[name]

    def kv_transfer(self, name: str, flag: str = "--kv-transfer") -> TransferSpec:
        if name not in self.transfers:
            from planner.errors import unknown_name

            raise unknown_name("KV-transfer engine", name, self.transfers, flag)
        return self.transfers[name]

    def get(self, name: str):
        for table in (self.models, self.gpus, self.links, self.engines):
            if name in table:
                return table[name]
        from planner.errors import unknown_name

        raise unknown_name("catalog entry", name, [*self.models, *self.gpus, *self.links, *self.engines])


def _read_dir(directory: Path, parser, table: dict) -> None:
    for p in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        entry = parser(p, _load_yaml(p))
        table[entry.id] = entry


def _check_links(cat: Catalog) -> None:
    for g in cat.gpus.values():
        for key in ("intra_node_link", "inter_node_link"):
            name = getattr(g, key)
            if name not in cat.links:
                raise CatalogError(f"{g.path}: {key}: unknown link {name!r}{did_you_mean(name, cat.links)}")


def _check_transfers(cat: Catalog) -> None:
    """A serving engine may be claimed as ``default_for`` by one transfer entry only."""
    owner: dict = {}
    for t in cat.transfers.values():
        for e in t.default_for:
            if e in owner and owner[e] != t.id:
                raise CatalogError(f"{t.path}: default_for: engine {e!r} is already the default of "
                                   f"{owner[e]!r}; one transfer engine per serving engine")
            owner[e] = t.id


def load_catalog(user_dir: str | None = None) -> Catalog:
    """The built-in catalog, overlaid with a user directory (``--catalog DIR``, else
    ``PDPLAN_CATALOG=DIR``: the two are the same directory given two ways)."""
    user_dir = user_dir or os.environ.get("PDPLAN_CATALOG") or None
    if user_dir:
        d = Path(user_dir).expanduser()
        if not d.is_dir():
            raise CatalogError(f"--catalog: {user_dir} is not a directory")
        user_dir = str(d.resolve())
    return _load_catalog(user_dir)


# (an lru_cache's API on the public function; mypy has no type for a function attribute)
load_catalog.cache_clear = lambda: _load_catalog.cache_clear()  # type: ignore[attr-defined, has-type]


@lru_cache(maxsize=8)
def _load_catalog(user_dir: str | None) -> Catalog:
    cat = Catalog({}, {}, {})
    _read_dir(_builtin_dir("planner.models", "models"), parse_model, cat.models)
    hw = _builtin_dir("planner.hardware", "hardware")
    _read_dir(hw / "gpus", parse_gpu, cat.gpus)
    _read_dir(hw / "links", parse_link, cat.links)
    _read_dir(hw / "engines", parse_engine, cat.engines)
    if (hw / "kv_transfer").is_dir():
        _read_dir(hw / "kv_transfer", parse_transfer, cat.transfers)
    if (hw / "kernels").is_dir():
        _attach_kernels(hw / "kernels", cat)
    if user_dir:
        d = Path(user_dir)
        for sub, parser, table in (("models", parse_model, cat.models), ("gpus", parse_gpu, cat.gpus),
                                   ("links", parse_link, cat.links),
                                   ("engines", parse_engine, cat.engines),
                                   ("kv_transfer", parse_transfer, cat.transfers)):
            if (d / sub).is_dir():
                _read_dir(d / sub, parser, table)
        parsers: dict[str, tuple[Callable[[Path, dict], Any], dict]]
        parsers = {"model": (parse_model, cat.models), "gpu": (parse_gpu, cat.gpus),
                   "link": (parse_link, cat.links), "engine": (parse_engine, cat.engines),
                   "kv_transfer": (parse_transfer, cat.transfers)}
        for p in sorted(d.glob("*.yaml")):
            data = _load_yaml(p)
            kind = data.get("kind")
            if kind not in parsers:
                raise CatalogError(f"{p}: kind: must be one of model, gpu, link, engine, kv_transfer, got {kind!r}")
            parse_kind, into = parsers[kind]
            entry = parse_kind(p, data)
            into[entry.id] = entry
        if (d / "kernels").is_dir():
            _attach_kernels(d / "kernels", cat)
    _check_links(cat)
    _check_transfers(cat)
    return cat
