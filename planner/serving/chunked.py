"""Chunked prefill: prompts split into pieces that fill the token budget left by the running
decodes (Sarathi-Serve's stall-free batching; vLLM's default scheduler).

The model is :mod:`planner.serving.lanes` with ``split=True``: see there and
docs/methodology.md ("In-flight batching").
"""

from __future__ import annotations

from planner.perf import StepModel
from planner.serving.common import PERCENTILES, LoadShape
from planner.serving.lanes import IterationCurves
from planner.serving.lanes import lane_metrics as _lanes


def ChunkCurves(sm: StepModel, shape: LoadShape, chunk: int) -> IterationCurves:  # noqa: N802
    """The step-time curves of a chunked lane with token budget ``chunk``."""
    return IterationCurves(sm, shape, chunk, split=True)


def lane_metrics(sm: StepModel, shape: LoadShape, lam, chunk: int, arrival_cv: float = 1.0,
                 curves: IterationCurves | None = None, lanes=1, percentiles=PERCENTILES,
                 slo=None, at_boundary: bool = False) -> dict:
    """Metrics of chunked-prefill lanes at per-lane rates ``lam``; ``lanes`` lanes share the
    traffic by shortest-queue routing (pooled prompt queue, M/G/c)."""
    return _lanes(sm, shape, lam, chunk, arrival_cv, curves or ChunkCurves(sm, shape, chunk),
                  lanes=lanes, percentiles=percentiles, slo=slo, split=True,
                  at_boundary=at_boundary)


__all__ = ["ChunkCurves", "lane_metrics"]
