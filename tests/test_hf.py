"""Hugging Face config.json import (planner/hf.py): a corpus of real configs against their
published parameter counts, KV bytes per token derived by hand, per-part precision of quantised
checkpoints, sliding-window KV, and bad inputs (exit 2 naming the key)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from jsondoc import result_of

from planner.catalog import model_from_hf_config
from planner.cli import cli
from planner.errors import InvalidRequestError


@pytest.fixture(scope="module")
def catalog():
    from planner.catalog import load_catalog

    return load_catalog()


CORPUS = Path(__file__).parent / "data" / "hf_configs"
INDEX = yaml.safe_load((CORPUS / "index.yaml").read_text())["models"]
COSTED = [e for e in INDEX if "refuse" not in e]
REFUSED = [e for e in INDEX if "refuse" in e]


def _model(name: str):
    return model_from_hf_config(CORPUS / name / "config.json")


def test_corpus_is_large_enough():
    assert len(COSTED) >= 25 and all((CORPUS / e["dir"] / "config.json").is_file() for e in INDEX)


@pytest.mark.parametrize("entry", COSTED, ids=[e["dir"] for e in COSTED])
def test_corpus_parameters_within_2_percent_of_published(entry):
    m = _model(entry["dir"])
    assert m.total_params == pytest.approx(entry["published_b"] * 1e9, rel=0.02)
    if "active_b" in entry:
        active = m.active_params
        if entry["dir"].startswith("openai--"):
            active -= m.vocab_size * m.hidden_size  # OpenAI counts the unembedding only
        # Published active counts are rounded to 2 significant digits (22B, 37B, 32B).
        assert active == pytest.approx(entry["active_b"] * 1e9, rel=0.03)
    assert m.default_dtype == entry.get("dtype", "bf16")
    assert m.default_kv_dtype == entry.get("kv_dtype", "bf16")
    assert (m.expert_dtype or m.default_dtype) == entry.get("expert_dtype", m.default_dtype)


@pytest.mark.parametrize("entry", REFUSED, ids=[e["dir"] for e in REFUSED])
def test_corpus_uncostable_architectures_exit_2(entry):
    res = CliRunner().invoke(cli, ["catalog", "show", str(CORPUS / entry["dir"] / "config.json")])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and entry["refuse"] in errors[0] and "cannot cost" in errors[0]


# ---- KV bytes per token, derived by hand ----------------------------------------------------


def test_kv_bytes_dense_gqa_and_mla():
    # Llama-3.1-70B: 2 (K, V) x 80 layers x 8 KV heads x 128 x 2 bytes.
    assert _model("meta-llama--Meta-Llama-3.1-70B").kv_bytes_per_token("bf16") == 2 * 80 * 8 * 128 * 2
    # Qwen3-30B-A3B: 48 layers x 4 KV heads x head_dim 128.
    assert _model("Qwen--Qwen3-30B-A3B").kv_bytes_per_token("bf16") == 2 * 48 * 4 * 128 * 2
    # DeepSeek-V3 (MLA): 61 layers x (512 latent + 64 RoPE key) x 2 bytes, at any length.
    m = _model("deepseek-ai--DeepSeek-V3")
    assert m.kv_bytes_per_token("bf16", 1024) == m.kv_bytes_per_token("bf16", 32768) == 61 * 576 * 2


def test_gpt_oss_120b_fp4_experts_and_sliding_window_kv():
    """The issue's acceptance: gpt-oss-120b reports MXFP4 experts beside BF16 attention and a
    KV size reflecting its 18 sliding-window layers (window 128) of 36."""
    m = _model("openai--gpt-oss-120b")
    assert (m.default_dtype, m.attention_dtype or m.default_dtype, m.expert_dtype) == ("bf16", "bf16", "mxfp4")
    assert (m.sliding_layers, m.sliding_window, m.attention_layers) == (18, 128, 36)
    e = 2 * 8 * 64 * 2  # bytes one token leaves in one layer (8 KV heads, head_dim 64, BF16)
    assert m.kv_bytes("bf16", 1024) == e * (18 * 1024 + 18 * 128)
    assert m.kv_bytes_per_token("bf16", 1024) == e * (18 + 18 * 128 / 1024) == 41_472
    assert m.kv_bytes_per_token("bf16", 32768) == e * (18 + 18 * 128 / 32768) == 37_008
    assert m.kv_bytes_per_token("bf16") == e * 36  # no context: every layer in full
    res = CliRunner().invoke(cli, ["catalog", "show", str(CORPUS / "openai--gpt-oss-120b" / "config.json"),
                                   "--json"])
    assert res.exit_code == 0, res.output
    s = result_of(res.output)["summary"]
    assert s["dtype"]["experts"] == "mxfp4" and s["dtype"]["attention"] == "bf16"
    assert (s["kv_bytes_per_token_at_1k"], s["kv_bytes_per_token_at_32k"]) == (41_472, 37_008)
    assert s["sliding_window"] == {"layers": 18, "of_layers": 36, "window_tokens": 128}
    text = CliRunner().invoke(cli, ["catalog", "show", str(CORPUS / "openai--gpt-oss-120b" / "config.json")])
    assert text.exit_code == 0 and "experts: mxfp4" in text.output and "kv_bytes_per_token_at_32k: 37008" in text.output


def test_llama4_interleaved_moe_shared_expert_and_chunked_attention():
    """Maverick: MoE in every other layer (24 of 48) with 128 routed experts plus one shared
    expert of width 8192, dense layers of width 16384; 36 of 48 layers chunked (8192 tokens)."""
    m = _model("meta-llama--Llama-4-Maverick-17B-128E-Instruct")
    assert (m.moe_layers, m.dense_layers, m.num_shared_experts) == (24, 24, 1)
    assert (m.moe_intermediate_size, m.intermediate_size) == (8192, 16384)
    assert (m.sliding_layers, m.sliding_window) == (36, 8192)
    e = 2 * 8 * 128 * 2
    assert m.kv_bytes_per_token("bf16", 32768) == e * (12 + 36 * 8192 / 32768)
    assert m.kv_bytes_per_token("bf16", 1024) == e * 48  # shorter than the window: all layers
    s = _model("meta-llama--Llama-4-Scout-17B-16E-Instruct")
    assert (s.moe_layers, s.num_experts, s.num_shared_experts) == (48, 16, 1)


def test_nemotron_super_block_configs():
    """49 of 80 layers keep attention (8 KV heads each); the FFN widths follow DeciLM's rule
    (ffn_mult 5.25 x 8192 -> 28672); KV counts only the attention layers."""
    m = _model("nvidia--Llama-3_3-Nemotron-Super-49B-v1")
    assert (m.attention_layers, m.no_attention_layers, m.num_kv_heads) == (49, 31, 8)
    assert m.kv_bytes_per_token("bf16") == 2 * 49 * 8 * 128 * 2


def test_quantised_checkpoints_at_their_real_precision(catalog):
    fp8 = _model("Qwen--Qwen3-30B-A3B-FP8")
    assert fp8.default_dtype == "fp8" and "block 128x128" in fp8.quantization
    nv = _model("nvidia--Qwen3-235B-A22B-NVFP4")  # ModelOpt hf_quant_config.json beside it
    assert (nv.default_dtype, nv.default_kv_dtype) == ("fp4", "fp8")
    ds = _model("nvidia--DeepSeek-V3.1-NVFP4")  # attention projections excluded: BF16
    assert (ds.default_dtype, ds.attention_dtype) == ("fp4", "bf16")
    # Weight memory follows the parts: gpt-oss-120b's experts at 4.25 bits, the rest BF16.
    from planner.perf import build_step_model

    m = _model("openai--gpt-oss-120b")
    sm = build_step_model(catalog, m, catalog.gpu("h100-sxm"), 1, 1)
    routed = m.routed_expert_params
    rest = m.total_params - routed - m.embedding_params
    want = routed * 0.53125 + rest * 2.0 + m.embedding_params * 2.0
    assert sm.weight_bytes_per_gpu == pytest.approx(want, rel=1e-9)
    # The gpt-oss model card (table 1) gives the checkpoint as 60.8 GiB.
    assert sm.weight_bytes_per_gpu == pytest.approx(60.8 * 2**30, rel=0.01)
    # An explicit other --dtype requantises every part.
    assert m.part_dtype("experts", "fp8") == "fp8" and m.part_dtype("experts", "bf16") == "mxfp4"


def test_sliding_window_capacity_and_decode_reads(catalog):
    """Capacity at the workload's mean context and decode attention bytes scale by
    (F + S min(L, W) / L) / (F + S)."""
    from dataclasses import replace

    from planner.perf import build_step_model

    m = _model("openai--gpt-oss-120b")
    gpu = catalog.gpu("h100-sxm")
    full = build_step_model(catalog, m, gpu, 2, 1)
    at = replace(m, kv_context_tokens=2048.0)
    win = build_step_model(catalog, at, gpu, 2, 1)
    f = (18 + 18 * 128 / 2048) / 36
    assert at.kv_window_factor == pytest.approx(f)
    assert win.kv_capacity_tokens == pytest.approx(full.kv_capacity_tokens / f)
    a, b = full.decode_attention(64, 64 * 2048), win.decode_attention(64, 64 * 2048)
    assert b[2] < a[2] and b[1] == pytest.approx(a[1] * f)
    # The question's Inputs carry the workload's mean context (ISL + OSL / 2) into the model.
    from planner import api
    from planner.workload import Workload, fixed

    inp = api.Inputs(m, Workload(1.0, fixed(2048), fixed(256)), api.SLO(1.0, 0.05), "bf16", "bf16", catalog)
    assert inp.model.kv_context_tokens == pytest.approx(2048 + 128)


def test_kv_command_is_sequence_length_aware():
    path = str(CORPUS / "openai--gpt-oss-120b" / "config.json")
    res = CliRunner().invoke(cli, ["kv", "--model", path, "--seq-len", "32k", "--json"])
    assert res.exit_code == 0, res.output
    doc = result_of(res.output)
    assert doc["bytes"] == 2 * 8 * 64 * 2 * (18 * 32768 + 18 * 128)


# ---- hand-written inputs for the parts the corpus lacks -----------------------------------

GEMMA3 = {  # google/gemma-3-27b-it's shape: text_config leaves vocab_size and the pattern out
    "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
    "text_config": {"head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504,
                    "model_type": "gemma3_text", "num_attention_heads": 32, "num_hidden_layers": 62,
                    "num_key_value_heads": 16, "query_pre_attn_scalar": 168, "sliding_window": 1024},
    "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                      "model_type": "siglip_vision_model", "num_attention_heads": 16,
                      "num_hidden_layers": 27, "patch_size": 14},
}


def _write(tmp_path: Path, cfg: dict, name: str = "m") -> Path:
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    p = d / "config.json"
    p.write_text(json.dumps(cfg))
    return p


def test_gemma3_nested_text_config_defaults_pattern_and_vision(tmp_path):
    m = model_from_hf_config(_write(tmp_path, GEMMA3))
    assert m.vocab_size == 262_208 and m.tie_word_embeddings  # Gemma3TextConfig defaults
    # sliding_window_pattern 6: layer i slides unless (i + 1) % 6 == 0 -> 52 of 62.
    assert (m.sliding_layers, m.sliding_window) == (52, 1024)
    e = 2 * 16 * 128 * 2
    assert m.kv_bytes_per_token("bf16", 32768) == e * (10 + 52 * 1024 / 32768)
    # SigLIP tower: 27 x (4 d^2 + 2 d f) + patch 3 x 14^2 x d + (896/14)^2 x d + projector d x h.
    d, f = 1152, 4304
    assert m.vision_params == 27 * (4 * d * d + 2 * d * f) + 3 * 14 * 14 * d + 64 * 64 * d + d * 5376
    assert m.total_params == pytest.approx(27.4e9, rel=0.02)  # model card: 27.4B (HF page)
    assert m.active_params < m.total_params - m.vision_params + 1


@pytest.mark.parametrize("quant,dtype", [
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}, "int4"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False}, "int4"),
    ({"quant_method": "fbgemm_fp8", "modules_to_not_convert": ["lm_head"]}, "fp8"),
    ({"quant_method": "compressed-tensors", "format": "float-quantized",
      "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float"}}},
      "ignore": ["lm_head"], "kv_cache_scheme": {"num_bits": 8, "type": "float"}}, "fp8"),
    ({"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
      "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "float",
                                                                        "group_size": 16}}}}, "fp4"),
    ({"quant_method": "compressed-tensors", "format": "pack-quantized",
      "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int"}}}}, "int4"),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8"}, "fp4"),
])
def test_quantisation_methods(tmp_path, quant, dtype):
    base = json.loads((CORPUS / "meta-llama--Meta-Llama-3.1-8B" / "config.json").read_text())
    m = model_from_hf_config(_write(tmp_path, {**base, "quantization_config": quant}))
    assert m.default_dtype == dtype and not m.attention_dtype
    kv = quant.get("kv_cache_quant_algo") == "FP8" or isinstance(quant.get("kv_cache_scheme"), dict)
    assert m.default_kv_dtype == ("fp8" if kv else "bf16")


def test_attention_excluded_from_quantisation_stays_bf16(tmp_path):
    base = json.loads((CORPUS / "meta-llama--Meta-Llama-3.1-8B" / "config.json").read_text())
    q = {"quant_method": "fp8", "modules_to_not_convert": ["model.layers.*.self_attn", "lm_head"]}
    m = model_from_hf_config(_write(tmp_path, {**base, "quantization_config": q}))
    assert (m.default_dtype, m.attention_dtype) == ("fp8", "bf16")


# ---- bad input: exit 2 naming the key --------------------------------------------------------

LLAMA = {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
         "num_hidden_layers": 32, "intermediate_size": 14336, "vocab_size": 128256}


@pytest.mark.parametrize("change,key", [
    ({"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}, "quant_method"),
    ({"quantization_config": {"quant_method": "awq", "bits": 3}}, "bits"),
    ({"hidden_size": 4100}, "num_attention_heads"),  # 32 heads do not divide 4100, no head_dim
    ({"num_key_value_heads": 5}, "num_key_value_heads"),
    ({"num_local_experts": 8, "num_experts_per_tok": 9}, "num_experts_per_tok"),
    ({"model_type": "jamba"}, "model_type"),
    ({"model_type": "mamba"}, "model_type"),
    ({"model_type": "falcon_h1"}, "model_type"),
    ({"model_type": "rwkv"}, "model_type"),
    ({"model_type": "minimax"}, "model_type"),
    ({"ssm_cfg": {"d_state": 16}}, "ssm_cfg"),
    ({"layers_block_type": ["mamba", "attention"]}, "layers_block_type"),
    ({"layer_types": ["full_attention"] * 31}, "layer_types"),
    ({"layer_types": ["sliding_attention"] * 32}, "sliding_window"),
    ({"text_config": [1, 2]}, "text_config"),
])
def test_bad_configs_exit_2_naming_the_key(tmp_path, change, key):
    path = _write(tmp_path, {**LLAMA, **change})
    with pytest.raises(InvalidRequestError, match=key):
        model_from_hf_config(path)
    res = CliRunner().invoke(cli, ["catalog", "show", str(path)])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and key in errors[0]
    if key == "quant_method":
        assert "known: awq" in errors[0] and "mxfp4" in errors[0]


def test_catalog_models_unchanged_by_the_new_fields(catalog):
    """Catalog entries carry no per-part dtypes or windows: their sizes are the old formulas."""
    for m in catalog.models.values():
        assert not (m.attention_dtype or m.expert_dtype or m.window_layers or m.no_attention_layers
                    or m.vision_params)
        assert m.kv_bytes_per_token("bf16") == m.num_layers * m.kv_elements_per_token_per_layer * 2.0
