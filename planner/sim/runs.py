"""Closed forms for runs of decode iterations at a constant batch.

Between two events that change a lane's batch, ``B`` is constant and the context sum grows by
``B`` per iteration, so an iteration takes ``a(B) + max(f(B) * X_j, g(B) * (X_j + B))`` with
``X_j = X + j B``: the duration of ``n`` iterations and the first boundary after a given time have
closed forms (memory-bound iterations first, compute-bound ones after the crossover context
``g B / (f - g)``). These are what keep the simulator from stepping decode iterations one by one.
"""

from __future__ import annotations

import math


def run_span(a: float, f: float, g: float, B: int, X: float, n: int) -> float:
    """Duration of ``n`` decode iterations of batch ``B`` starting at context sum ``X``:
    ``sum_{j<n} a + max(f * (X + jB), g * (X + jB + B))``."""
    if n <= 0:
        return 0.0
    if f <= g:
        return n * a + g * (n * (X + B) + B * (n * (n - 1) * 0.5))
    # Iterations with context below c* = gB / (f - g) are memory-bound, the rest compute-bound.
    js = math.ceil((g * B / (f - g) - X) / B)
    js = 0 if js < 0 else (n if js > n else js)
    s = n * a
    if js:
        s += g * (js * (X + B) + B * (js * (js - 1) * 0.5))
    m = n - js
    if m:
        s += f * (m * X + B * ((n * (n - 1) - js * (js - 1)) * 0.5))
    return s


def iter_time(a: float, f: float, g: float, B: int, X: float) -> float:
    """One decode iteration (the same float operations as FastTimes.time)."""
    return a + max(f * X, g * (X + B))


def _solve_linear(alpha: float, beta: float, D: float) -> float:
    """Real ``m`` with ``alpha * m + beta * m (m - 1) / 2 = D``."""
    if beta <= 0:
        return D / alpha
    b = alpha - beta * 0.5
    return (-b + math.sqrt(b * b + 2.0 * beta * D)) / beta


def run_reach(a: float, f: float, g: float, B: int, X: float, n: int, D: float) -> int:
    """Smallest ``m`` in ``[0, n]`` with ``run_span(m) >= D`` (``n`` when none)."""
    if D <= 0:
        return 0
    if f <= g:
        est = _solve_linear(a + g * (X + B), g * B, D)
    else:
        js = math.ceil((g * B / (f - g) - X) / B)
        js = 0 if js < 0 else (n if js > n else js)
        s_js = run_span(a, f, g, B, X, js)
        if D <= s_js:
            est = _solve_linear(a + g * (X + B), g * B, D)
        else:
            est = js + _solve_linear(a + f * (X + js * B), f * B, D - s_js)
    m = math.ceil(est - 1e-9)
    m = 0 if m < 0 else (n if m > n else m)
    while m > 0 and run_span(a, f, g, B, X, m - 1) >= D:
        m -= 1
    while m < n and run_span(a, f, g, B, X, m) < D:
        m += 1
    return m


# --------------------------------------------------------------------------------------------
# Speculative decoding: two max-terms (the target's verification and the draft's passes), rows
# written ``c`` and context growth ``D`` per iteration no longer equal to ``B``.
# --------------------------------------------------------------------------------------------


def _term_span(f: float, g: float, c: float, X: float, D: float, n: int) -> float:
    """``sum_{j<n} max(f (X + jD), g (X + jD + c))``: memory-bound iterations while the context
    is below ``g c / (f - g)``, compute-bound ones after."""
    if f <= g:
        return g * (n * (X + c) + D * (n * (n - 1) * 0.5))
    js = math.ceil((g * c / (f - g) - X) / D) if D > 0 else (n if f * X < g * (X + c) else 0)
    js = 0 if js < 0 else (n if js > n else js)
    s = 0.0
    if js:
        s += g * (js * (X + c) + D * (js * (js - 1) * 0.5))
    m = n - js
    if m:
        s += f * (m * X + D * ((n * (n - 1) - js * (js - 1)) * 0.5))
    return s


def spec_span(a: float, f: float, g: float, c: float, f2: float, g2: float, c2: float,
              X: float, D: float, n: int) -> float:
    """Duration of ``n`` iterations ``a + max(f X_j, g (X_j + c)) + max(f2 X_j, g2 (X_j + c2))``,
    ``X_j = X + j D``."""
    if n <= 0:
        return 0.0
    return n * a + _term_span(f, g, c, X, D, n) + _term_span(f2, g2, c2, X, D, n)


def spec_iter(a: float, f: float, g: float, c: float, f2: float, g2: float, c2: float,
              X: float) -> float:
    """One such iteration."""
    return a + max(f * X, g * (X + c)) + max(f2 * X, g2 * (X + c2))


def spec_reach(a: float, f: float, g: float, c: float, f2: float, g2: float, c2: float,
               X: float, D: float, n: int, T: float) -> int:
    """Smallest ``m`` in ``[0, n]`` with ``spec_span(m) >= T`` (``n`` when none), by bisection
    (the span increases with ``m``)."""
    if T <= 0:
        return 0
    if spec_span(a, f, g, c, f2, g2, c2, X, D, n) < T:
        return n
    lo, hi = 0, n  # span(lo) < T <= span(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if spec_span(a, f, g, c, f2, g2, c2, X, D, mid) >= T:
            hi = mid
        else:
            lo = mid
    return hi


__all__ = ["iter_time", "run_reach", "run_span", "spec_iter", "spec_reach", "spec_span"]
