"""The analytic serving models, one module per approach behind one registry.

Each approach's module maps (question, deployment, request rates) to a typed
:class:`~planner.serving.common.LaneResult` through its ``evaluate``; :func:`evaluate` here picks
the module by the deployment's approach. Adding an approach means its module here, its policy in
:mod:`planner.sim`, its rule in the reference scheduler and one line in ``REGISTRY``.
Modules are imported on first use (the CLI's ``--help`` imports no numpy).
"""

from __future__ import annotations

import importlib

REGISTRY = {
    "unified": "planner.serving.unified",
    "chunked": "planner.serving.chunked",
    "disaggregated": "planner.serving.disaggregated",
}


def model(approach: str):
    """The serving module of ``approach``."""
    from planner.errors import unknown_name

    if approach not in REGISTRY:
        raise unknown_name("approach", approach, REGISTRY, "--approach")
    return importlib.import_module(REGISTRY[approach])


def evaluate(inp, dep, qps, at_boundary: bool = False, percentiles=None):
    """The :class:`LaneResult` of ``dep`` under ``inp`` at every total rate in ``qps``.
    ``at_boundary``: requests arrive at iteration boundaries (closed-loop clients without think
    time)."""
    from planner.serving.common import PERCENTILES

    return model(dep.approach).evaluate(inp, dep, qps, at_boundary=at_boundary,
                                        percentiles=PERCENTILES if percentiles is None else percentiles)


__all__ = ["REGISTRY", "evaluate", "model"]
