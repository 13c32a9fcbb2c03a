"""Hugging Face ``config.json`` import: a checkpoint's real shape and precision as a ModelSpec.

``--model ./config.json`` works wherever a model name does. What is read, and from where the
field names and defaults come (read, not copied):

- shapes and defaults of the config classes in transformers 4.56.0
  (``models/*/configuration_*.py``): a key a class defaults is filled in only when absent
  (Gemma-3's ``text_config`` ships without ``vocab_size`` or ``sliding_window_pattern``);
- nested ``text_config`` (Gemma-3, Llama-4, LLaVA-style wrappers): the language model is
  planned; the ``vision_config`` tower's weights are estimated and held in memory;
- MoE: routed and shared experts, interleaved MoE layers (``interleave_moe_layer_step``,
  ``moe_layers``, ``decoder_sparse_step``, ``mlp_only_layers``, ``first_k_dense_replace``);
  Llama-4's shared expert (width ``intermediate_size``) beside dense layers of width
  ``intermediate_size_mlp``;
- attention patterns: ``layer_types`` (``sliding_attention`` / ``chunked_attention`` /
  ``full_attention``), else ``sliding_window`` with ``sliding_window_pattern`` (Gemma-2: every
  other layer, Gemma-3: 5 local to 1 global, Cohere-2: 3 to 1), Qwen-2's
  ``use_sliding_window`` / ``max_window_layers``, Llama-4's chunked layers (every layer but
  each ``no_rope_layer_interval``-th, window ``attention_chunk_size``);
- DeciLM / Nemotron-NAS ``block_configs`` (per-layer ``ffn_mult``, ``n_heads_in_group``,
  ``no_op`` and ``replace_with_linear``; widths by DeciLM's rule ``round_up(int(2 m h / 3),
  256)`` as in vLLM's nemotron_nas.py), costed as the per-layer average (docs/methodology.md);
- ``quantization_config`` (transformers ``utils/quantization_config.py`` method names), a
  ModelOpt ``hf_quant_config.json`` beside the config, compressed-tensors ``config_groups``:
  the dtype of the attention projections, the routed experts and the rest, and the KV dtype.

Architectures without a per-token KV cache (Mamba / SSM hybrids, linear attention) and
contradictory fields are refused with one line naming the key (exit 2).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from planner.catalog import CatalogError, ModelSpec, parse_model
from planner.errors import InvalidRequestError

# Defaults of transformers 4.56.0's config classes for keys the Hub's config.json files leave
# out (configuration_gemma3.py Gemma3TextConfig, configuration_gemma2.py, configuration_cohere2.py,
# configuration_llama4.py Llama4TextConfig).
_TYPE_DEFAULTS = {
    "gemma3_text": {"vocab_size": 262_208, "hidden_size": 2304, "intermediate_size": 9216,
                    "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
                    "head_dim": 256, "tie_word_embeddings": True, "sliding_window": 4096,
                    "sliding_window_pattern": 6},
    "gemma2": {"vocab_size": 256_000, "head_dim": 256, "tie_word_embeddings": True,
               "sliding_window": 4096, "sliding_window_pattern": 2},
    "cohere2": {"sliding_window": 4096, "sliding_window_pattern": 4},
    "llama4_text": {"vocab_size": 202_048, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
                    "tie_word_embeddings": False, "interleave_moe_layer_step": 1,
                    "num_local_experts": 16, "num_experts_per_tok": 1, "no_rope_layer_interval": 4,
                    "attention_chunk_size": 8192, "head_dim": 128},
}
_TYPE_DEFAULTS["gemma3"] = _TYPE_DEFAULTS["gemma3_text"]
_TYPE_DEFAULTS["llama4"] = _TYPE_DEFAULTS["llama4_text"]

# Architectures whose MLP is a plain two-matrix GELU MLP; every other current decoder (Llama,
# Mistral, Mixtral, Qwen, Gemma (GeGLU), Phi-3, DeepSeek, ...) uses a gated MLP (three matrices).
_UNGATED_TYPES = {"gpt2", "gptj", "gpt_neox", "gpt_neo", "falcon", "bloom", "opt", "gpt_bigcode",
                  "mpt", "starcoder2", "codegen"}

# Model types without a per-token KV cache in (some of) their layers: state-space / Mamba
# hybrids, linear or recurrent attention. Their memory and decode cost is not what pdplan's
# attention roofline computes, so they are refused rather than sized wrongly.
_UNCOSTABLE_TYPES = {
    "mamba": "a Mamba state-space model", "mamba2": "a Mamba-2 state-space model",
    "falcon_mamba": "a Mamba state-space model", "jamba": "a Mamba/attention hybrid",
    "falcon_h1": "a Mamba/attention hybrid", "nemotron_h": "a Mamba/attention hybrid",
    "zamba": "a Mamba/attention hybrid", "zamba2": "a Mamba/attention hybrid",
    "bamba": "a Mamba/attention hybrid", "granitemoehybrid": "a Mamba/attention hybrid",
    "lfm2": "a convolution/attention hybrid", "recurrent_gemma": "a recurrent/attention hybrid",
    "rwkv": "a linear-attention (RWKV) model", "rwkv5": "a linear-attention (RWKV) model",
    "rwkv6": "a linear-attention (RWKV) model", "rwkv7": "a linear-attention (RWKV) model",
    "minimax": "a linear-attention (lightning attention) hybrid",
    "minimax_text_01": "a linear-attention (lightning attention) hybrid",
    "qwen3_next": "a linear-attention (Gated DeltaNet) hybrid",
    "kimi_linear": "a linear-attention (Kimi Delta Attention) hybrid",
    "xlstm": "a recurrent (xLSTM) model",
}
_CACHE_LAYER_TYPES = {"full_attention", "sliding_attention", "chunked_attention"}

QUANT_METHODS = ("awq", "auto-round", "compressed-tensors", "fbgemm_fp8", "fp8", "gptq", "modelopt",
                 "mxfp4")
_MODELOPT_ALGOS = {"FP8": "fp8", "FP8_PER_CHANNEL_PER_TOKEN": "fp8", "FP8_BLOCKWISE": "fp8",
                   "NVFP4": "fp4", "W4A16_AWQ": "int4", "W4A8_AWQ": "int4", "NVFP4_AWQ": "fp4",
                   "W4A8_NVFP4_FP8": "fp4", "W4A8_MXFP4_FP8": "mxfp4", "MXFP4": "mxfp4"}

# Module-name patterns of a quantisation config's exclusion lists, by part.
_ATTN = re.compile(r"self_attn|(^|[.*_])attn([.*]|$)|attention|q_proj|k_proj|v_proj|qkv|o_proj|q_a_proj|"
                   r"q_b_proj|kv_a_proj|kv_b_proj|wq|wkv")
_EXPERTS = re.compile(r"(?<!shared_)experts")
_REST = re.compile(r"shared_expert|(^|[.*])mlp([.*]?$|\.\*$)|dense|(^|[.*])ffn\.shared")


class _Cfg:
    """Typed reads of a config mapping; every complaint names the file and the key."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    def fail(self, key: str, what: str) -> NoReturn:
        raise InvalidRequestError(f"--model: {self.path}: {key}: {what}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def int(self, *names, default=None, minimum=0):
        for n in names:
            v = self.data.get(n)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                self.fail(n, f"must be a number, got {v!r}")
            if not math.isfinite(v):
                self.fail(n, f"must be finite, got {v!r}")
            if v != int(v):
                self.fail(n, f"must be a whole number, got {v!r}")
            if v < minimum:
                self.fail(n, f"must be at least {minimum}, got {v!r}")
            if v > 1e12:
                self.fail(n, f"is implausibly large, got {v!r}")
            return int(v)
        if default is not None:
            return default
        self.fail(names[0], "missing (needed for the roofline)")

    def float(self, name: str, where: str) -> float:
        v = self.data.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            self.fail(where, f"must be a non-negative number, got {v!r}")
        return float(v)

    def mapping(self, key: str) -> dict:
        v = self.data.get(key)
        if v is None:
            return {}
        if not isinstance(v, dict):
            self.fail(key, f"must be a mapping, got {type(v).__name__}")
        return v

    def list(self, key: str) -> list:
        v = self.data.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            self.fail(key, f"must be a list, got {type(v).__name__}")
        return v


def _read_json(path: Path, what: str) -> dict:
    from planner.files import parse_json, read_text

    cfg = parse_json(read_text(path, f"--model: {path}", what), f"--model: {path}")
    if not isinstance(cfg, dict):
        raise InvalidRequestError(f"--model: {path}: expected a JSON object")
    return cfg


def _model_types(top: dict, cfg: dict) -> list:
    return [str(t).lower() for t in (cfg.get("model_type"), top.get("model_type")) if t]


def _refuse_uncostable(c: _Cfg, types: list) -> None:
    for t in types:
        if t in _UNCOSTABLE_TYPES:
            c.fail("model_type", f"{t!r} is {_UNCOSTABLE_TYPES[t]}: its state-space / linear-attention "
                                 "layers keep no per-token KV cache, which pdplan's attention roofline "
                                 "cannot cost; no plan rather than a wrong one")
    d = c.data
    if d.get("ssm_cfg") is not None or d.get("mamba_d_state") is not None or d.get("ssm_state_size") is not None:
        key = next(k for k in ("ssm_cfg", "mamba_d_state", "ssm_state_size") if d.get(k) is not None)
        c.fail(key, "declares state-space (Mamba) layers, which pdplan cannot cost")
    for key in ("layers_block_type", "layer_types", "hybrid_override_pattern", "attn_type_list"):
        v = d.get(key)
        if isinstance(v, str) and key == "hybrid_override_pattern" and "M" in v:
            c.fail(key, "declares Mamba layers ('M'), which pdplan cannot cost")
        if isinstance(v, list):
            bad = sorted({str(x) for x in v if isinstance(x, str) and
                          any(w in x.lower() for w in ("mamba", "linear", "ssm", "recurrent", "conv"))})
            if bad:
                c.fail(key, f"declares {', '.join(repr(b) for b in bad)} layers, which keep no per-token "
                            "KV cache; pdplan cannot cost them")
            if key == "attn_type_list" and any(x == 0 for x in v):
                c.fail(key, "declares linear-attention layers (0), which pdplan cannot cost")


def _is_gated(cfg: dict, types: list) -> bool:
    if types:
        return types[0] not in _UNGATED_TYPES
    act = str(cfg.get("hidden_act", cfg.get("activation_function", "silu"))).lower()
    return act in ("silu", "swiglu", "swish", "geglu")


# ---- attention pattern ----------------------------------------------------------------------


def _window_pattern(c: _Cfg, types: list, layers: int) -> tuple[int, int]:
    """(windowed layers, window tokens)."""
    kinds = c.list("layer_types")
    if kinds:
        if len(kinds) != layers:
            c.fail("layer_types", f"has {len(kinds)} entries, num_hidden_layers is {layers}")
        unknown = sorted({str(k) for k in kinds} - _CACHE_LAYER_TYPES)
        if unknown:
            c.fail("layer_types", f"unknown layer type {unknown[0]!r}; known: "
                                  f"{', '.join(sorted(_CACHE_LAYER_TYPES))}")
        sliding, chunked = kinds.count("sliding_attention"), kinds.count("chunked_attention")
        if sliding and chunked:
            c.fail("layer_types", "mixes sliding_attention and chunked_attention layers; pdplan "
                                  "costs one window per model")
        if sliding:
            return sliding, c.int("sliding_window", minimum=1)
        if chunked:
            return chunked, c.int("attention_chunk_size", minimum=1)
        return 0, 0
    t = types[0] if types else ""
    if t.startswith("llama4") and c.has("attention_chunk_size"):
        window = c.int("attention_chunk_size", minimum=1)
        rope = c.list("no_rope_layers")  # 1: a RoPE layer with chunked attention, 0: global NoPE
        if rope:
            if len(rope) != layers:
                c.fail("no_rope_layers", f"has {len(rope)} entries, num_hidden_layers is {layers}")
            return sum(1 for x in rope if x), window
        every = c.int("no_rope_layer_interval", minimum=1)
        return sum(1 for i in range(layers) if (i + 1) % every), window
    if not c.has("sliding_window") or c.data.get("use_sliding_window") is False:
        return 0, 0
    window = c.int("sliding_window", minimum=1)
    if c.data.get("use_sliding_window") is True and c.has("max_window_layers"):  # Qwen-2 style
        return max(layers - c.int("max_window_layers"), 0), window
    if c.has("sliding_window_pattern"):
        every = c.int("sliding_window_pattern", minimum=1)
        return sum(1 for i in range(layers) if (i + 1) % every), window
    return layers, window  # Mistral-7B-v0.1 style: every layer slides


# ---- MoE ------------------------------------------------------------------------------------


def _moe(c: _Cfg, types: list, layers: int, inter: int) -> dict | None:
    experts = c.int("n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts", default=0)
    if not experts:
        return None
    names = ("num_experts_per_tok", "num_experts_per_token", "experts_per_token", "top_k", "moe_top_k")
    k = c.int(*names, minimum=1)
    if k > experts:
        key = next(n for n in names if c.has(n))
        c.fail(key, f"{k} experts per token exceeds the {experts} experts")
    llama4 = bool(types) and types[0].startswith("llama4")
    width = c.int("moe_intermediate_size", default=inter)
    shared = c.int("n_shared_experts", "num_shared_experts", default=0)
    if c.has("shared_expert_intermediate_size") and c.int("shared_expert_intermediate_size"):
        shared = max(1, round(c.int("shared_expert_intermediate_size") / width))  # Qwen2-MoE
    if llama4:
        shared = 1  # Llama4TextMoe always adds a shared expert of the routed experts' width
    # Which layers are MoE.
    moe_list = c.list("moe_layers")
    if moe_list:
        moe = len({x for x in moe_list if isinstance(x, int) and not isinstance(x, bool) and 0 <= x < layers})
    elif c.has("interleave_moe_layer_step"):
        step = c.int("interleave_moe_layer_step", minimum=1)
        moe = len(range(step - 1, layers, step))
    else:
        step = c.int("decoder_sparse_step", "moe_layer_freq", default=1, minimum=1)
        first = c.int("first_k_dense_replace", default=0)
        dense_only = {x for x in c.list("mlp_only_layers") if isinstance(x, int)}
        moe = sum(1 for i in range(layers) if i >= first and (i + 1) % step == 0 and i not in dense_only)
        if step > 1 and first:  # DeepSeek: moe_layer_freq counts from first_k_dense_replace
            moe = sum(1 for i in range(first, layers) if (i - first) % step == 0)
    if moe <= 0:
        c.fail("num_hidden_layers", "no layer is a MoE layer under the config's MoE layer pattern")
    return {"num_experts": experts, "experts_per_token": k, "moe_intermediate_size": width,
            "num_shared_experts": shared, "first_dense_layers": layers - moe}


# ---- DeciLM / Nemotron-NAS ------------------------------------------------------------------


def _decilm(c: _Cfg, layers: int, hidden: int, heads: int, gated: bool) -> tuple[int, int, int, str]:
    """(mean FFN width, attention-free layers, KV heads, note) from ``block_configs``."""
    blocks = c.list("block_configs")
    if len(blocks) != layers:
        c.fail("block_configs", f"has {len(blocks)} entries, num_hidden_layers is {layers}")
    mats = 3 if gated else 2
    ffn_params, no_attn, kv = 0.0, 0, []
    for i, b in enumerate(blocks):
        key = f"block_configs[{i}]"
        if not isinstance(b, dict):
            c.fail(key, "must be a mapping")
        att, ffn = b.get("attention") or {}, b.get("ffn") or {}
        if not isinstance(att, dict) or not isinstance(ffn, dict):
            c.fail(key, "attention and ffn must be mappings")
        if att.get("no_op") or att.get("replace_with_linear"):
            no_attn += 1
            if att.get("replace_with_linear"):  # one hidden x hidden GEMM, costed as FFN width
                ffn_params += hidden * hidden
        else:
            g = _Cfg(c.path, att).int("n_heads_in_group", minimum=1)
            if heads % g:
                c.fail(f"{key}.attention.n_heads_in_group", f"{g} does not divide num_attention_heads ({heads})")
            kv.append(heads // g)
        if ffn.get("no_op"):
            continue
        if ffn.get("replace_with_linear"):
            ffn_params += hidden * hidden
            continue
        mult = _Cfg(c.path, ffn).float("ffn_mult", f"{key}.ffn.ffn_mult")
        width = int(2 * mult * hidden / 3)
        width += (-width) % 256  # DeciLM: rounded up to a multiple of 256
        ffn_params += mats * hidden * width
    if not kv:
        c.fail("block_configs", "no layer has attention")
    counts = Counter(kv)
    kv_heads = counts.most_common(1)[0][0]
    note = "" if len(counts) == 1 else f"; KV heads vary by layer ({dict(counts)}), costed at {kv_heads}"
    return round(ffn_params / (mats * hidden * layers)), no_attn, kv_heads, note


# ---- vision tower ---------------------------------------------------------------------------


def _vision_params(c: _Cfg, top: dict, text_hidden: int) -> int:
    """Weights of a ViT-style vision encoder and its projector, from ``vision_config``: per layer
    ``4 d^2`` attention and a ``2`` (GELU) or ``3`` (gated) matrix MLP of width ``f``, plus the
    patch embedding (channels x patch^2 x d, x temporal patch), position embeddings (one per
    patch of the image) and a projector ``d x text hidden`` (one more ``text hidden^2`` for a
    two-layer projector). An estimate (norms and biases left out)."""
    v = _Cfg(c.path, c.mapping("vision_config"))
    if not v.data:
        return 0
    d = v.int("hidden_size", "embed_dim", "width", default=0)
    n = v.int("num_hidden_layers", "depth", "num_layers", default=0)
    if not d or not n:
        return 0
    f = v.int("intermediate_size", "mlp_dim", default=4 * d)
    act = str(v.data.get("hidden_act", "gelu")).lower()
    mats = 3 if act in ("silu", "swiglu") else 2
    patch = v.int("patch_size", default=14)
    chans = v.int("num_channels", "in_channels", "in_chans", default=3)
    temporal = v.int("temporal_patch_size", default=1)
    image = v.int("image_size", default=0)
    pos = (image // patch) ** 2 * d if image and patch else 0
    out = v.int("out_hidden_size", "vision_output_dim", "projector_output_dim", default=text_hidden)
    proj = d * out + (text_hidden * text_hidden if top.get("projector_hidden_act") else 0)
    return n * (4 * d * d + mats * d * f) + chans * patch * patch * temporal * d + pos + proj


# ---- quantisation ---------------------------------------------------------------------------


def _patterns(q: dict) -> list:
    out = []
    for key in ("modules_to_not_convert", "ignore", "exclude_modules", "ignored_layers"):
        v = q.get(key)
        if isinstance(v, list):
            out += [str(x).lower() for x in v if isinstance(x, str)]
    return [p for p in out if "norm" not in p and not p.endswith((".gate", "router", "gate*"))]


def _excluded(patterns: list) -> dict:
    """Which parts an exclusion list keeps unquantised (any pattern naming that part)."""
    return {"attention": any(_ATTN.search(p) for p in patterns),
            "experts": any(_EXPERTS.search(p) for p in patterns),
            "rest": any(_REST.search(p) for p in patterns)}


def _ct_dtype(c: _Cfg, key: str, w: dict, fmt: str) -> str:
    bits, typ = w.get("num_bits"), str(w.get("type", "")).lower()
    if "nvfp4" in fmt or (bits == 4 and typ == "float"):
        return "fp4"
    if bits == 8 and typ in ("float", "int"):
        return "fp8"  # INT8 W8A8 costed as FP8: same bytes; Hopper's dense INT8 peak equals FP8's
    if bits == 4 and typ == "int":
        return "int4"
    c.fail(key, f"weights of {bits!r} bits ({typ or 'no type'}) are not a precision pdplan can cost "
                "(8-bit float/int, 4-bit int, 4-bit float)")


def _parts_from_names(names: list, algo_of) -> dict:
    """Most common dtype per part over module names (ModelOpt MIXED_PRECISION)."""
    per: dict[str, Counter[str]] = {"attention": Counter(), "experts": Counter(), "rest": Counter()}
    for name in names:
        n = str(name).lower()
        part = "experts" if _EXPERTS.search(n) else "attention" if _ATTN.search(n) else "rest"
        dt = algo_of(name)
        if dt:
            per[part][dt] += 1
    return {p: (cnt.most_common(1)[0][0] if cnt else "") for p, cnt in per.items()}


def _quantization(c: _Cfg, q: dict, where: str, is_moe: bool) -> dict:
    """{"attention", "experts", "rest": stored dtype or "" (unquantised), "kv": "fp8" or "",
    "label"} of a quantisation config."""
    qc = _Cfg(c.path, q)
    method = q.get("quant_method")
    if method is None and (q.get("quant_algo") is not None or isinstance(q.get("producer"), dict)):
        method = "modelopt"
    method = str(method).lower() if method is not None else None
    if method not in QUANT_METHODS:
        qc.fail(f"{where}.quant_method", f"{method!r} is not a quantisation method pdplan can cost; "
                                         f"known: {', '.join(QUANT_METHODS)}")
    parts = {"attention": "", "experts": "", "rest": ""}
    kv = ""
    label = method
    if method in ("fp8", "fbgemm_fp8"):
        parts = dict.fromkeys(parts, "fp8")
        block = q.get("weight_block_size")
        if isinstance(block, list) and block:
            label += " block " + "x".join(str(b) for b in block)
    elif method == "mxfp4":
        if not is_moe:
            qc.fail(f"{where}.quant_method", "mxfp4 quantises MoE experts; this model has none")
        parts["experts"] = "mxfp4"  # transformers' Mxfp4 quantiser converts the experts only
    elif method in ("awq", "gptq", "auto-round"):
        bits = qc.int("bits", "w_bit", default=0)
        if bits != 4:
            qc.fail(f"{where}.bits", f"pdplan costs 4-bit {method} checkpoints, got {bits}")
        parts = dict.fromkeys(parts, "int4")
        label += f" int4 group {q.get('group_size', q.get('q_group_size', '?'))}"
    elif method == "modelopt":
        algo = str(q.get("quant_algo", "")).upper()
        if algo == "MIXED_PRECISION":
            layers = q.get("quantized_layers")
            if not isinstance(layers, dict) or not layers:
                qc.fail(f"{where}.quantized_layers", "MIXED_PRECISION needs a mapping of layers to algorithms")

            def algo_of(name):
                a = layers[name].get("quant_algo") if isinstance(layers[name], dict) else None
                return _MODELOPT_ALGOS.get(str(a).upper(), "") if a else ""
            parts = _parts_from_names(list(layers), algo_of)
        elif algo in _MODELOPT_ALGOS:
            parts = dict.fromkeys(parts, _MODELOPT_ALGOS[algo])
            label += f" {algo}"
        else:
            qc.fail(f"{where}.quant_algo", f"{algo or None!r} is not a ModelOpt algorithm pdplan can cost; "
                                           f"known: {', '.join(sorted(_MODELOPT_ALGOS))}, MIXED_PRECISION")
        if str(q.get("kv_cache_quant_algo", "")).upper() == "FP8":
            kv = "fp8"
    elif method == "compressed-tensors":
        fmt = str(q.get("format", "")).lower()
        groups = qc.mapping("config_groups")
        if not groups:
            qc.fail(f"{where}.config_groups", "missing: compressed-tensors needs its quantisation groups")
        for gname, g in groups.items():
            key = f"{where}.config_groups.{gname}"
            if not isinstance(g, dict) or not isinstance(g.get("weights"), dict):
                qc.fail(f"{key}.weights", "missing")
            dt = _ct_dtype(qc, f"{key}.weights", g["weights"], str(g.get("format", fmt)).lower())
            targets = [str(t).lower() for t in g.get("targets", ["Linear"]) if isinstance(t, str)]
            if targets and all(_EXPERTS.search(t) for t in targets):
                parts["experts"] = dt
            elif targets and all(_ATTN.search(t) for t in targets):
                parts["attention"] = dt
            else:
                parts = {p: (parts[p] or dt) for p in parts}
        label += f" {fmt}" if fmt else ""
    if method in ("compressed-tensors", "modelopt") and not kv:
        s = q.get("kv_cache_scheme")
        if s == "FP8" or (isinstance(s, dict) and s.get("num_bits") == 8 and s.get("type") == "float"):
            kv = "fp8"
    for part, off in _excluded(_patterns(q)).items():
        if off and method != "mxfp4":
            parts[part] = ""
    if not any(parts.values()):
        qc.fail(where, "quantises none of the attention, expert or FFN weights pdplan costs")
    return {**parts, "kv": kv, "label": label}


def _precision(c: _Cfg, top: dict, cfg: dict, path: Path, is_moe: bool) -> dict:
    q, where = None, "quantization_config"
    for src in (cfg, top):
        if isinstance(src.get("quantization_config"), dict):
            q = src["quantization_config"]
            break
        if src.get("quantization_config") is not None:
            c.fail(where, "must be a mapping")
    side = path.parent / "hf_quant_config.json"
    if q is None and path.name == "config.json" and side.is_file():  # ModelOpt export
        doc = _read_json(side, "a ModelOpt hf_quant_config.json")
        q, where = doc.get("quantization"), f"{side.name}: quantization"
        if not isinstance(q, dict):
            raise InvalidRequestError(f"--model: {side}: quantization: missing")
        q = {**q, "quant_method": "modelopt"}
    if q is None:
        return {}
    return _quantization(c, q, where, is_moe)


# ---- the import -----------------------------------------------------------------------------


def model_from_hf_config(path: Path) -> ModelSpec:
    """Build a :class:`ModelSpec` from a Hugging Face ``config.json`` (see the module docstring)."""
    path = Path(path)
    top = _read_json(path, "a Hugging Face config.json")
    cfg = dict(top)
    if top.get("text_config") is not None:
        if not isinstance(top["text_config"], dict):
            raise InvalidRequestError(f"--model: {path}: text_config: must be a mapping")
        cfg = {**top, **top["text_config"]}  # multimodal wrappers keep the language model here
    types = _model_types(top, cfg)
    for t in types:
        for k, v in _TYPE_DEFAULTS.get(t, {}).items():
            cfg.setdefault(k, v)
    c = _Cfg(path, cfg)
    _refuse_uncostable(c, types)

    hidden = c.int("hidden_size", "n_embd", "d_model", minimum=1)
    heads = c.int("num_attention_heads", "n_head", minimum=1)
    layers = c.int("num_hidden_layers", "n_layer", minimum=1)
    if not c.has("head_dim") and hidden % heads:
        key = "num_attention_heads" if c.has("num_attention_heads") else "n_head"
        c.fail(key, f"{heads} heads do not divide hidden_size {hidden} and head_dim is absent")
    head_dim = c.int("head_dim", default=hidden // heads, minimum=1)
    kv_heads = c.int("num_key_value_heads", "n_head_kv", default=heads, minimum=1)
    gated = _is_gated(cfg, types)
    inter = c.int("intermediate_size", "ffn_dim", "n_inner", default=4 * hidden)
    no_attn, note = 0, ""
    if c.list("block_configs"):  # DeciLM / Nemotron-NAS
        inter, no_attn, kv_heads, note = _decilm(c, layers, hidden, heads, gated)
    if heads % kv_heads:
        key = "num_key_value_heads" if c.has("num_key_value_heads") else "n_head_kv"
        c.fail(key, f"{kv_heads} KV heads do not divide the {heads} attention heads")
    moe = _moe(c, types, layers, inter)
    if moe and types and types[0].startswith("llama4"):
        inter = c.int("intermediate_size_mlp", default=inter)  # the dense layers' FFN
    data: dict = {
        "id": str(cfg.get("_name_or_path") or (path.resolve().parent.name if path.name == "config.json"
                                               else path.stem) or "model"),
        "name": str(cfg.get("_name_or_path") or path),
        "num_layers": layers, "hidden_size": hidden, "num_heads": heads, "num_kv_heads": kv_heads,
        "head_dim": head_dim, "intermediate_size": max(inter, 1),
        "vocab_size": c.int("vocab_size", "padded_vocab_size", minimum=1),
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "gated_ffn": gated,
        "mtp_layers": c.int("num_nextn_predict_layers", default=0),
        "source": f"Hugging Face config.json at {path}",
    }
    if moe:
        data["moe"] = moe
    if c.has("kv_lora_rank") and c.int("kv_lora_rank"):
        data["mla"] = {
            "kv_lora_rank": c.int("kv_lora_rank", minimum=1),
            "q_lora_rank": c.int("q_lora_rank", default=0),
            "qk_rope_head_dim": c.int("qk_rope_head_dim", minimum=1),
            "qk_nope_head_dim": c.int("qk_nope_head_dim", minimum=1),
            "v_head_dim": c.int("v_head_dim", minimum=1),
        }
        data["num_kv_heads"] = heads
    prec = _precision(c, top, cfg, path, bool(moe))
    if prec:
        data["default_dtype"] = {"mxfp4": "fp4"}.get(prec["rest"], prec["rest"]) or "bf16"
        if prec["kv"]:
            data["default_kv_dtype"] = prec["kv"]
    sliding, window = _window_pattern(c, types, layers - no_attn)
    extra: dict[str, Any] = {"no_attention_layers": no_attn, "sliding_layers": sliding, "sliding_window": window,
             "vision_params": _vision_params(c, top, hidden)}
    if prec:
        default = data["default_dtype"]
        extra["attention_dtype"] = "" if (prec["attention"] or "bf16") == default else (prec["attention"] or "bf16")
        extra["expert_dtype"] = ("" if not moe or (prec["experts"] or "bf16") == default
                                 else (prec["experts"] or "bf16"))
        extra["quantization"] = prec["label"] + note
    elif note:
        extra["quantization"] = note.lstrip("; ")
    try:
        spec = parse_model(path, data)
    except CatalogError as exc:
        raise InvalidRequestError(f"--model: {exc}") from None
    return replace(spec, **extra)
