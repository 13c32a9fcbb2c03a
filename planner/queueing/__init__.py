"""Queueing: waiting-time distributions (M/D/1, M/G/1, M/G/c, bursty arrivals), one
implementation each. :mod:`planner.queueing.exact` holds the reference forms (scalar or array,
carefully conditioned), :mod:`planner.queueing.fast` the vectorised CDFs the serving models
evaluate over many candidates, each tested against its exact twin. Pure numerics: nothing here
knows about GPUs, models or engines."""

from planner.queueing.exact import *  # noqa: F401,F403
from planner.queueing.exact import (  # noqa: F401  (private helpers the fast forms and tests use)
    _md1_decay,
    _md1_tail_const,
    _mg1_tail_params,
    _samples,
)
