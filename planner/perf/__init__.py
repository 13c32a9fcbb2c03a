"""The model of one engine iteration (see ``docs/methodology.md`` section 1).

``roofline`` costs each operator group from its shape; ``efficiency`` holds the kernel models it
uses; ``memory`` the weights, reserves and KV capacity; ``placement`` the parallelism checks,
links and KV transfer; ``tables`` the simulator's fast tables, built by evaluating the roofline.
"""

from planner.perf.placement import (
           build_step_model,
           check_parallel,
           kv_link_for,
           kv_transfer_bytes,
           kv_transfer_time,
           link_capacity,
           shares_node,
           transfer_fixed_time,
           transfer_rate,
)
from planner.perf.roofline import Calibration, StepCost, StepModel
from planner.perf.tables import FastTimes, fast_times

__all__ = ["Calibration", "FastTimes", "fast_times", "StepCost", "StepModel", "build_step_model", "check_parallel",
           "kv_link_for", "kv_transfer_bytes", "kv_transfer_time", "link_capacity",
           "shares_node", "transfer_fixed_time", "transfer_rate"]
