"""The built-in catalogs (GPUs, links, models), their sourcing rule, user overrides and HF import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from planner.catalog import load_catalog, model_from_hf_config
from planner.errors import CatalogError, InvalidRequestError

REPO = Path(__file__).resolve().parent.parent
GPU_DIR = REPO / "hardware" / "gpus"
LINK_DIR = REPO / "hardware" / "links"

GPU_IDS = {"a100-80g", "h100-sxm", "h100-pcie", "h200", "b200", "l40s", "mi300x"}
LINK_IDS = {"pcie4", "pcie5", "ib-hdr", "ib-ndr", "roce-400g", "nvlink3", "nvlink4", "nvlink5", "xgmi"}
MODEL_IDS = {"llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "qwen3-32b", "qwen3-30b-a3b",
             "mixtral-8x7b", "deepseek-v3"}


@pytest.fixture
def fresh_catalog(monkeypatch):
    """load_catalog is lru_cached and reads PDPLAN_CATALOG: start and end with a clean slate."""
    monkeypatch.delenv("PDPLAN_CATALOG", raising=False)
    load_catalog.cache_clear()
    yield load_catalog
    load_catalog.cache_clear()


@pytest.fixture
def catalog(fresh_catalog):
    return fresh_catalog()


def _raw(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numeric_keys(data: dict) -> list[str]:
    """Top-level keys holding a number, or a mapping of numbers (peak_tflops, efficiency)."""
    keys = []
    for key, value in data.items():
        if key == "sources":
            continue
        if _is_number(value) or (isinstance(value, dict) and value and all(
                _is_number(v) or (isinstance(v, dict) and v and all(_is_number(x) for x in v.values()))
                for v in value.values())):
            keys.append(key)
    return keys


# ---- hardware catalog ------------------------------------------------------------------------


def test_gpu_and_link_ids(catalog):
    assert set(catalog.gpus) == GPU_IDS
    assert set(catalog.links) == LINK_IDS


def test_file_name_is_the_id():
    for directory in (GPU_DIR, LINK_DIR):
        for path in directory.glob("*.yaml"):
            assert _raw(path)["id"] == path.stem, path


def test_every_gpu_names_existing_links(catalog):
    for gpu in catalog.gpus.values():
        assert gpu.intra_node_link in catalog.links, gpu.id
        assert gpu.inter_node_link in catalog.links, gpu.id


def test_peak_dtypes(catalog):
    for gpu in catalog.gpus.values():
        assert gpu.peak_flops.get("bf16", 0) > 0, gpu.id
        if "fp8" in gpu.peak_flops:
            assert gpu.peak_flops["fp8"] > gpu.peak_flops["bf16"], gpu.id
    assert "fp8" not in catalog.gpus["a100-80g"].peak_flops  # Ampere has no FP8 tensor cores
    assert {g.id for g in catalog.gpus.values() if "fp4" in g.peak_flops} == {"b200"}


def test_h100_sxm_peak_is_dense(catalog):
    # NVIDIA's spec sheet prints 1979 BF16 "with sparsity"; the catalog must hold the dense 989.
    assert catalog.gpus["h100-sxm"].peak_flops["bf16"] < 1000e12


def test_gpu_numbers_are_plausible(catalog):
    for gpu in catalog.gpus.values():
        assert 16e9 <= gpu.hbm_bytes <= 300e9, gpu.id
        assert 0.2e12 <= gpu.hbm_bytes_per_s <= 10e12, gpu.id
        assert 0 < gpu.inter_node_bytes_per_s <= catalog.links[gpu.inter_node_link].bytes_per_s
        assert 0 < gpu.price_per_hour < 20, gpu.id
        assert len(gpu.price_date) == 7 and gpu.price_date[4] == "-", gpu.id
        assert 100 <= gpu.sm_count <= 400, gpu.id


def test_efficiency_constants_are_derived_or_borrowed_with_their_source(catalog):
    from planner.catalog import EFFICIENCY_FIELDS

    for gpu in catalog.gpus.values():
        for group, key, attr, _unit, lo, hi, to_si in EFFICIENCY_FIELDS:
            v = getattr(gpu.efficiency, attr) / to_si
            assert lo - 1e-9 <= v <= hi + 1e-9, (gpu.id, group, key, v)
        src = gpu.sources["efficiency"]
        assert "derive_kernel_constants.py" in src, gpu.id
        assert ("borrowed" in src) == (not gpu.kernel_tables), gpu.id


def test_efficiency_field_missing_or_out_of_bounds_names_file_and_key(tmp_path, fresh_catalog):
    directory, path = _user_gpu(tmp_path, lambda d: d["efficiency"]["gemm_bf16"].pop("mamf"))
    with pytest.raises(CatalogError, match=r"efficiency\.gemm_bf16\.mamf: missing") as exc:
        fresh_catalog(str(directory))
    assert str(path) in str(exc.value)
    directory, _ = _user_gpu(tmp_path / "b", lambda d: d["efficiency"]["attn_decode"].update(mem=1.7))
    with pytest.raises(CatalogError, match=r"efficiency\.attn_decode\.mem: must be within \[0\.1, 1\]"):
        fresh_catalog(str(directory))
    directory, _ = _user_gpu(tmp_path / "c", lambda d: d["efficiency"].pop("comm"))
    with pytest.raises(CatalogError, match=r"efficiency\.comm: missing"):
        fresh_catalog(str(directory))


def test_malformed_kernel_table_names_file_and_key(tmp_path, fresh_catalog):
    d = tmp_path / "cat" / "kernels"
    d.mkdir(parents=True)
    p = d / "h200.yaml"
    p.write_text("kind: kernels\ngpu: h200\nallreduce_us:\n  8: [[1024, 5.0], [4096, 4.0]]\n"
                 "sources:\n  allreduce_us: test\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"allreduce_us\.8\[1\]: sizes must rise and latencies must not fall") as exc:
        fresh_catalog(str(tmp_path / "cat"))
    assert str(p) in str(exc.value)
    p.write_text("kind: kernels\ngpu: h200\nallreduce_us:\n  8: [[1024, 5.0], [4096, 6.0]]\n"
                 "sources:\n  allreduce_us: test\n", encoding="utf-8")
    assert fresh_catalog(str(tmp_path / "cat")).gpus["h200"].kernel_tables == str(p)


@pytest.mark.parametrize("path", sorted(GPU_DIR.glob("*.yaml")) + sorted(LINK_DIR.glob("*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_number_has_a_source(path):
    data = _raw(path)
    sources = data.get("sources") or {}
    keys = _numeric_keys(data)
    assert keys, path
    for key in keys:
        text = sources.get(key)
        assert isinstance(text, str) and text.strip(), f"{path}: sources.{key} missing"


def test_source_rule_covers_the_required_keys():
    for path in GPU_DIR.glob("*.yaml"):
        keys = set(_numeric_keys(_raw(path)))
        assert {"peak_tflops", "hbm_gb", "hbm_tb_per_s", "gpus_per_node", "inter_node_gb_per_s",
                "tdp_w", "price_per_hour_usd", "sm_count", "efficiency"} <= keys, path
    for path in LINK_DIR.glob("*.yaml"):
        assert {"gb_per_s", "latency_us"} <= set(_numeric_keys(_raw(path))), path


# ---- error cases through a user catalog directory --------------------------------------------


def _user_gpu(tmp_path: Path, mutate, text: str | None = None) -> tuple[Path, Path]:
    """A user catalog dir holding one GPU file derived from the built-in h100-sxm."""
    gpus = tmp_path / "cat" / "gpus"
    gpus.mkdir(parents=True)
    path = gpus / "my-gpu.yaml"
    if text is None:
        data = _raw(GPU_DIR / "h100-sxm.yaml")
        data["id"] = "my-gpu"
        mutate(data)
        text = yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return tmp_path / "cat", path


def test_unknown_key_names_file_and_key(tmp_path, fresh_catalog):
    directory, path = _user_gpu(tmp_path, lambda d: d.update(hbm_gigabytes=80))
    with pytest.raises(CatalogError) as exc:
        fresh_catalog(str(directory))
    assert str(path) in str(exc.value)
    assert "hbm_gigabytes" in str(exc.value)


def test_missing_source_is_refused(tmp_path, fresh_catalog):
    directory, path = _user_gpu(tmp_path, lambda d: d["sources"].pop("tdp_w"))
    with pytest.raises(CatalogError) as exc:
        fresh_catalog(str(directory))
    assert "sources.tdp_w" in str(exc.value)
    assert str(path) in str(exc.value)


def test_empty_source_is_refused(tmp_path, fresh_catalog):
    directory, _ = _user_gpu(tmp_path, lambda d: d["sources"].update(hbm_gb="  "))
    with pytest.raises(CatalogError, match=r"sources\.hbm_gb"):
        fresh_catalog(str(directory))


def test_negative_hbm_is_refused(tmp_path, fresh_catalog):
    directory, _ = _user_gpu(tmp_path, lambda d: d.update(hbm_gb=-80))
    with pytest.raises(CatalogError, match="hbm_gb"):
        fresh_catalog(str(directory))


def test_malformed_yaml(tmp_path, fresh_catalog):
    directory, path = _user_gpu(tmp_path, None, text="kind: gpu\nid: [unclosed\nname: x\n")
    with pytest.raises(CatalogError) as exc:
        fresh_catalog(str(directory))
    assert "malformed YAML" in str(exc.value)
    assert str(path) in str(exc.value)


def test_unknown_link_is_refused(tmp_path, fresh_catalog):
    directory, _ = _user_gpu(tmp_path, lambda d: d.update(inter_node_link="ib-xdr"))
    with pytest.raises(CatalogError, match="inter_node_link"):
        fresh_catalog(str(directory))


def test_user_entry_overrides_builtin(tmp_path, fresh_catalog):
    def cheaper_h100(d):
        d["id"] = "h100-sxm"
        d["price_per_hour_usd"] = 1.23

    directory, path = _user_gpu(tmp_path, cheaper_h100)
    cat = fresh_catalog(str(directory))
    gpu = cat.gpus["h100-sxm"]
    assert gpu.price_per_hour == pytest.approx(1.23)
    assert gpu.path == str(path)
    assert set(cat.gpus) == GPU_IDS  # overridden, not added
    # the built-in catalog is untouched
    assert fresh_catalog().gpus["h100-sxm"].price_per_hour != pytest.approx(1.23)


def test_user_yaml_file_sorted_by_kind(tmp_path, fresh_catalog):
    data = _raw(LINK_DIR / "ib-ndr.yaml")
    data.update(id="ib-xdr", name="InfiniBand XDR 800 Gb/s", gb_per_s=100)
    (tmp_path / "ib-xdr.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    assert fresh_catalog(str(tmp_path)).links["ib-xdr"].bytes_per_s == pytest.approx(100e9)


# ---- model catalog ---------------------------------------------------------------------------


def test_model_ids(catalog):
    assert set(catalog.models) == MODEL_IDS


@pytest.mark.parametrize("model_id", sorted(MODEL_IDS))
def test_total_params_match_published(catalog, model_id):
    m = catalog.models[model_id]
    assert m.published_params > 0
    assert m.total_params == pytest.approx(m.published_params, rel=0.02)
    assert m.active_params <= m.total_params


def test_llama_70b_kv_cache(catalog):
    m = catalog.models["llama-3.1-70b"]
    assert m.kv_bytes_per_token("bf16") == 327680  # 2 * 80 layers * 8 KV heads * 128 * 2 bytes
    assert m.kv_bytes_per_token("bf16") * 2048 == 671088640
    assert m.kv_bytes_per_token("fp8") == 327680 / 2


def test_deepseek_v3_mla_kv_cache(catalog):
    m = catalog.models["deepseek-v3"]
    assert m.is_mla and m.is_moe
    assert m.kv_bytes_per_token("bf16") == 61 * (512 + 64) * 2


# ---- Hugging Face config.json import ---------------------------------------------------------


def _write_config(tmp_path: Path, name: str, cfg: dict) -> Path:
    d = tmp_path / name
    d.mkdir()
    path = d / "config.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


LLAMA_CFG = {
    "_name_or_path": "test/llama-like", "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "hidden_act": "silu", "tie_word_embeddings": False,
}


def test_hf_dense_llama(tmp_path):
    m = model_from_hf_config(_write_config(tmp_path, "llama", LLAMA_CFG))
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads) == (32, 4096, 32, 8)
    assert m.head_dim == 128 and m.intermediate_size == 14336 and m.vocab_size == 128256
    assert not m.is_moe and not m.is_mla and m.gated_ffn and not m.tie_word_embeddings
    assert m.kv_bytes_per_token("bf16") == 2 * 32 * 8 * 128 * 2
    assert m.total_params == pytest.approx(8.03e9, rel=0.02)


def test_hf_mixtral_moe(tmp_path):
    cfg = {
        "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 32000,
        "num_local_experts": 8, "num_experts_per_tok": 2, "hidden_act": "silu",
    }
    m = model_from_hf_config(_write_config(tmp_path, "mixtral", cfg))
    assert m.is_moe and not m.is_mla
    assert (m.num_experts, m.experts_per_token) == (8, 2)
    assert m.moe_intermediate_size == 14336  # defaults to intermediate_size
    assert m.num_shared_experts == 0 and m.first_dense_layers == 0
    assert m.total_params == pytest.approx(46.7e9, rel=0.02)


def test_hf_deepseek_mla(tmp_path):
    cfg = {
        "hidden_size": 7168, "intermediate_size": 18432, "num_attention_heads": 128,
        "num_hidden_layers": 61, "num_key_value_heads": 128, "vocab_size": 129280,
        "n_routed_experts": 256, "num_experts_per_tok": 8, "moe_intermediate_size": 2048,
        "n_shared_experts": 1, "first_k_dense_replace": 3,
        "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64,
        "qk_nope_head_dim": 128, "v_head_dim": 128, "hidden_act": "silu",
    }
    m = model_from_hf_config(_write_config(tmp_path, "deepseek", cfg))
    assert m.is_mla and m.is_moe
    assert (m.kv_lora_rank, m.q_lora_rank, m.qk_rope_head_dim) == (512, 1536, 64)
    assert (m.qk_nope_head_dim, m.v_head_dim) == (128, 128)
    assert (m.num_experts, m.experts_per_token, m.moe_intermediate_size) == (256, 8, 2048)
    assert (m.num_shared_experts, m.first_dense_layers) == (1, 3)
    assert m.kv_bytes_per_token("bf16") == 61 * 576 * 2
    assert m.total_params == pytest.approx(671e9, rel=0.02)


def test_hf_config_missing_hidden_size(tmp_path):
    cfg = {k: v for k, v in LLAMA_CFG.items() if k != "hidden_size"}
    with pytest.raises(InvalidRequestError, match="hidden_size"):
        model_from_hf_config(_write_config(tmp_path, "broken", cfg))


def test_catalog_model_accepts_config_path(tmp_path, catalog):
    path = _write_config(tmp_path, "llama", LLAMA_CFG)
    assert catalog.model(str(path)).hidden_size == 4096


def test_hf_import_of_gemma_and_qwen2_moe(tmp_path):
    """Gemma's GeGLU MLP is gated (three matrices) despite its GELU activation; a Qwen2-MoE
    shared expert of width 4 x moe_intermediate_size counts as 4 shared experts. Parameter
    counts: Gemma-2-9B 9.24B, Qwen1.5-MoE-A2.7B 14.3B total / 2.7B active (model cards)."""
    from planner.catalog import model_from_hf_config

    gemma = tmp_path / "gemma" / "config.json"
    gemma.parent.mkdir()
    gemma.write_text(json.dumps({
        "model_type": "gemma2", "hidden_size": 3584, "num_attention_heads": 16,
        "num_key_value_heads": 8, "head_dim": 256, "intermediate_size": 14336,
        "num_hidden_layers": 42, "vocab_size": 256000, "hidden_act": "gelu_pytorch_tanh",
        "tie_word_embeddings": True}))
    m = model_from_hf_config(gemma)
    assert m.gated_ffn and m.id == "gemma"
    assert m.total_params == pytest.approx(9.24e9, rel=0.01)
    moe = tmp_path / "qwen-moe.json"
    moe.write_text(json.dumps({
        "model_type": "qwen2_moe", "hidden_size": 2048, "num_attention_heads": 16,
        "num_key_value_heads": 16, "intermediate_size": 5632, "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632, "num_experts": 60, "num_experts_per_tok": 4,
        "num_hidden_layers": 24, "vocab_size": 151936, "hidden_act": "silu"}))
    q = model_from_hf_config(moe)
    assert q.num_shared_experts == 4 and q.id == "qwen-moe"
    assert q.total_params == pytest.approx(14.3e9, rel=0.01)
    assert q.active_params == pytest.approx(2.7e9, rel=0.02)


def test_absurd_numbers_are_refused(tmp_path):
    from planner.catalog import _load_yaml, parse_gpu

    src = GPU_DIR / "h100-sxm.yaml"
    text = src.read_text().replace("hbm_tb_per_s: 3.35", "hbm_tb_per_s: 3350000000.0")
    bad = tmp_path / "h100-sxm.yaml"
    bad.write_text(text)
    with pytest.raises(CatalogError, match="hbm_tb_per_s: is implausibly large"):
        parse_gpu(bad, _load_yaml(bad))
    bad.write_text(src.read_text().replace("hbm_gb: 80", "hbm_gb: .nan"))
    with pytest.raises(CatalogError, match="hbm_gb: must be finite"):
        parse_gpu(bad, _load_yaml(bad))
