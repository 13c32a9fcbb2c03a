"""KV links in the simulator: a prefill instance's NICs shared by the transfers in flight.

A link is a processor-sharing server with ``lanes`` lanes of unit speed: while ``n`` transfers
are in flight each moves at ``min(1, lanes / n)`` of its solo rate (one transfer alone never
goes faster than its own streams allow; ``lanes`` of them fill the NICs). Sizes are in seconds
of solo transfer. This is the analytic model's M/G/k-PS server
(:func:`planner.serving.disaggregated.link_load`) run job by job.
"""

from __future__ import annotations

import heapq
import math


def ps_completions(arrivals: list, sizes: list, lanes: float = 1.0) -> list:
    """Completion times of jobs arriving at ``arrivals`` (sorted) with solo durations
    ``sizes`` on a processor-sharing server of ``lanes`` lanes.

    Virtual time ``V`` counts the service every job in the system has received since the
    start; it advances at ``min(1, lanes / n)`` with ``n`` jobs present, so a job arriving at
    virtual time ``v`` leaves when ``V`` reaches ``v + size``: a heap of those finish marks."""
    k = max(1.0, math.floor(lanes))
    n = len(arrivals)
    out = [0.0] * n
    heap: list = []  # (virtual finish, job)
    t, V, i = 0.0, 0.0, 0
    push, pop = heapq.heappush, heapq.heappop
    while i < n or heap:
        m = len(heap)
        rate = 1.0 if m <= k else k / m
        t_next_dep = t + (heap[0][0] - V) / rate if heap else math.inf
        t_next_arr = arrivals[i] if i < n else math.inf
        if t_next_arr <= t_next_dep:
            if heap:
                V += (t_next_arr - t) * rate
            t = t_next_arr
            push(heap, (V + sizes[i], i))
            i += 1
        else:
            vf, j = pop(heap)
            V = vf
            t = t_next_dep
            out[j] = t
    return out


__all__ = ["ps_completions"]
