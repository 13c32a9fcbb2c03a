"""Chunked prefill: prompts split into pieces that fill the token budget left by the running
decodes (Sarathi-Serve's stall-free batching; vLLM's default scheduler).

The model is :mod:`planner.serving.lanes` with ``split=True``: see there and
docs/methodology.md ("In-flight batching").
"""

from __future__ import annotations

from planner.errors import InvalidRequestError
from planner.perf import StepModel
from planner.serving.common import PERCENTILES, LaneResult, LoadShape, lane_budget
from planner.serving.lanes import IterationCurves, pool_args
from planner.serving.lanes import lane_metrics as _lanes


def ChunkCurves(sm: StepModel, shape: LoadShape, chunk: int) -> IterationCurves:  # noqa: N802
    """The step-time curves of a chunked lane with token budget ``chunk``."""
    return IterationCurves.cached(sm, shape, chunk, split=True)


def lane_metrics(sm: StepModel, shape: LoadShape, lam, chunk: int, arrival_cv: float = 1.0,
                 curves: IterationCurves | None = None, lanes=1, percentiles=PERCENTILES,
                 slo=None, at_boundary: bool = False) -> LaneResult:
    """Metrics of chunked-prefill lanes at per-lane rates ``lam``; ``lanes`` lanes share the
    traffic by shortest-queue routing (pooled prompt queue, M/G/c)."""
    return _lanes(sm, shape, lam, chunk, arrival_cv, curves or ChunkCurves(sm, shape, chunk),
                  lanes=lanes, percentiles=percentiles, slo=slo, split=True,
                  at_boundary=at_boundary)


def evaluate(inp, dep, qps, at_boundary: bool = False, percentiles=PERCENTILES) -> LaneResult:
    """The registry's entry: ``dep`` (one pool, token budget ``dep.chunk_size``) at the total
    rates ``qps``."""
    if not dep.chunk_size or dep.chunk_size < 1:
        raise InvalidRequestError("--chunk-size: chunked prefill needs a positive chunk size")
    sm, lanes, lam, shape, slo = pool_args(inp, dep, qps)
    return lane_metrics(sm, shape, lam, lane_budget(sm, dep.chunk_size), arrival_cv=inp.workload.arrival_cv,
                        lanes=lanes, slo=slo, at_boundary=at_boundary, percentiles=percentiles)

__all__ = ["ChunkCurves", "evaluate", "lane_metrics"]
