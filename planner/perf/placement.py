"""Placement: which TP/PP a model and node can take, the links a placement implies, KV transfer."""

from __future__ import annotations

import numpy as np

from planner.catalog import GPUSpec, LinkSpec, ModelSpec
from planner.errors import InvalidRequestError
from planner.perf.efficiency import _as
from planner.perf.roofline import StepModel


def check_parallel(model: ModelSpec, gpu: GPUSpec, tp: int, pp: int, flag: str = "--tp", *,
                   ep: int = 1, dp: int = 1) -> None:
    """Raise a clear error for a TP/PP/EP/DP the model or the node cannot take."""
    if tp < 1 or pp < 1:
        raise InvalidRequestError(f"{flag}: must be a positive whole number, got tp={tp} pp={pp}")
    if tp > gpu.gpus_per_node:
        raise InvalidRequestError(
            f"{flag}: tp={tp} exceeds the {gpu.gpus_per_node} GPUs of a {gpu.id} node; "
            f"valid: {', '.join(str(t) for t in (1, 2, 4, 8) if t <= gpu.gpus_per_node)}"
        )
    if not model.valid_tp(tp):
        valid = [t for t in (1, 2, 4, 8) if model.valid_tp(t) and t <= gpu.gpus_per_node]
        raise InvalidRequestError(
            f"{flag}: tp={tp} does not divide the {model.num_heads} attention heads "
            f"({model.num_kv_heads} KV heads) of {model.id}; valid: {', '.join(map(str, valid))}"
        )
    if pp > model.num_layers:
        raise InvalidRequestError(f"--pp: pp={pp} exceeds the {model.num_layers} layers of {model.id}")
    if (ep > 1 or dp > 1) and not model.is_moe:
        what = f"ep{ep}: expert parallelism" if ep > 1 else f"dp{dp}: data-parallel attention"
        raise InvalidRequestError(f"{flag}: {what} needs an MoE model; {model.id} is dense "
                                  "(for more copies of a dense model, add instances)")
    if dp < 1 or ep < 1:
        raise InvalidRequestError(f"{flag}: dp and ep must be at least 1, got dp={dp} ep={ep}")
    if dp > 1 and ep != tp * dp:
        raise InvalidRequestError(f"{flag}: with dp{dp} the experts spread over all tp x dp GPUs: "
                                  f"ep must be {tp * dp} (or left out), got ep{ep}")
    if dp == 1 and ep not in (1, tp):
        raise InvalidRequestError(f"{flag}: ep must equal tp ({tp}) or be left out, got ep{ep}")
    if ep > 1 and model.num_experts % ep:
        valid = [e for e in (2, 4, 8, 16, 32, 64, 128, 256) if model.num_experts % e == 0]
        raise InvalidRequestError(f"{flag}: ep{ep} does not divide the {model.num_experts} routed experts "
                                  f"of {model.id}; valid: {', '.join(map(str, valid))}")


def build_step_model(catalog, model: ModelSpec, gpu: GPUSpec, tp: int = 1, pp: int = 1, *,
                     dtype: str | None = None, kv_dtype: str | None = None, ep: int = 1,
                     dp: int = 1, engine=None, calibration=None) -> StepModel:
    """A :class:`StepModel` with the links implied by the placement: TP inside a node on the
    GPU's intra-node link; PP hops on the intra-node link while the instance fits one node,
    else on the inter-node network; expert-parallel all-to-alls on NVLink inside a node and on
    the GPUs' NICs across nodes."""
    key = (id(catalog), id(model), id(gpu), int(tp), int(pp), dtype, kv_dtype, int(ep), int(dp), id(engine),
           calibration)
    hit = _STEP_MODELS.get(key)
    if hit is not None and hit[0] is catalog and hit[1] is model and hit[2] is gpu and hit[3] is engine:
        return hit[4]
    check_parallel(model, gpu, tp, pp, ep=ep, dp=dp)
    intra = catalog.links[gpu.intra_node_link]
    pp_link = intra if tp * dp * pp <= gpu.gpus_per_node else LinkSpec(
        id="inter-node", name="inter-node network", bytes_per_s=gpu.inter_node_bytes_per_s,
        latency_s=catalog.links[gpu.inter_node_link].latency_s)
    sm = StepModel(model, gpu, tp, pp, dtype=dtype, kv_dtype=kv_dtype, ep=ep, dp=dp,
                   link_pp=pp_link, intra_link=intra, engine=engine, calibration=calibration)
    if len(_STEP_MODELS) >= 512:
        _STEP_MODELS.clear()
    _STEP_MODELS[key] = (catalog, model, gpu, engine, sm)
    return sm


# Step models are immutable once built and the search, what-if grids and the closed-loop solver
# ask for the same ones repeatedly (their decode curves and iteration curves are cached by
# identity): one per placement, keyed by the identity of the catalog objects it is built from.
_STEP_MODELS: dict = {}


def kv_transfer_bytes(model: ModelSpec, tokens, kv_dtype: str):
    """Bytes of KV cache for ``tokens`` tokens in ``kv_dtype``."""
    return _as(tokens) * model.kv_bytes_per_token(kv_dtype)


def transfer_rate(link: LinkSpec, streams: int, xfer=None) -> float:
    """Bytes per second one KV transfer moves when alone on its links: ``streams`` shards in
    parallel, each at the transfer engine's share of the link, ``min(streams * eff * B, cap)``
    (``xfer`` None: the link's full bandwidth, no cap)."""
    bw = link.bytes_per_s * max(int(streams), 1)
    if xfer is None:
        return bw
    bw *= xfer.efficiency
    return min(bw, xfer.max_bytes_per_s) if xfer.max_bytes_per_s else bw


def transfer_fixed_time(link: LinkSpec, xfer=None) -> float:
    """The part of a transfer that does not scale with its bytes: the engine's per-transfer
    setup (handshake, descriptor post, completion) plus the link's latency."""
    return link.latency_s + (xfer.setup_s if xfer is not None else 0.0)


def kv_transfer_time(nbytes, link: LinkSpec, *, streams: int = 1, prefill_time=None,
                     layers: int = 1, overlap: bool = False, xfer=None):
    """Time the decode side waits for a KV cache of ``nbytes`` over ``link``, alone on it.

    ``streams`` GPUs send their shards in parallel (a TP group sends ``tp`` shards over ``tp``
    NICs or NVLink ports) at the rate :func:`transfer_rate` gives for the transfer engine
    ``xfer``; :func:`transfer_fixed_time` (``a``) is added once. Serialized: ``a + S / R``.
    With layer-wise overlap (Splitwise, Mooncake, DistServe) the transfer of layer ``i`` runs
    during the prefill of layer ``i + 1``; only what the prefill cannot hide is exposed:
    ``a + max(S / (layers * R), S / R - T_prefill * (layers - 1) / layers)``.
    """
    full = _as(nbytes) / transfer_rate(link, streams, xfer)
    fixed = transfer_fixed_time(link, xfer)
    if not overlap or prefill_time is None:
        return fixed + full
    per_layer = full / max(layers, 1)
    hidden = _as(prefill_time) * (layers - 1) / max(layers, 1)
    return fixed + np.maximum(per_layer, full - hidden)


def link_capacity(link: LinkSpec, nics: int, xfer=None) -> float:
    """Bytes per second an instance's ``nics`` NICs (or NVLink ports) carry for KV transfers
    together: the same share and cap as one transfer (:func:`transfer_rate`)."""
    return transfer_rate(link, nics, xfer)


def shares_node(gpu_p: GPUSpec, gpu_d: GPUSpec, gpus_p, gpus_d):
    """Whether a prefill pool of ``gpus_p`` GPUs (an array: one per pool size) and a decode
    pool of ``gpus_d`` fit in one node together (same GPU type), so that their KV transfers
    stay on NVLink (:func:`kv_link_for`)."""
    return (gpu_p.id == gpu_d.id) & (np.asarray(gpus_p) + gpus_d <= gpu_p.gpus_per_node)


def kv_link_for(catalog, gpu_p: GPUSpec, gpu_d: GPUSpec, pool_p, pool_d,
                override: str | None) -> tuple[LinkSpec, int, str]:
    """The link a KV cache crosses between a prefill and a decode instance, the number of
    parallel streams (shards) and where: NVLink when both pools fit in one node of the same GPU
    type, else the inter-node network (per-GPU NIC bandwidth). Larger deployments could pair
    prefill and decode instances inside nodes (DistServe's high-affinity placement); pdplan
    assumes the general case where the KV cache crosses the network (``--link`` overrides)."""
    # A request's KV lives on one attention rank: its tp * pp GPUs send (or receive) the shards.
    streams = min(pool_p.tp * pool_p.pp, pool_d.tp * pool_d.pp)
    if override:
        return catalog.link(override, "--link"), streams, "override"
    if bool(shares_node(gpu_p, gpu_d, pool_p.gpus, pool_d.gpus)):
        return catalog.links[gpu_p.intra_node_link], streams, "same-node"
    bw = min(gpu_p.inter_node_bytes_per_s, gpu_d.inter_node_bytes_per_s)
    base = catalog.links[gpu_p.inter_node_link]
    return LinkSpec(id=base.id, name=f"{base.name} ({bw / 1e9:g} GB/s per GPU)", bytes_per_s=bw,
                    latency_s=base.latency_s), streams, "inter-node"
