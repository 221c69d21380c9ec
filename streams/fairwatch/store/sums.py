"""Sums of floating-point columns that do not depend on the order ClickHouse adds the rows in.

Float addition is not associative: the same rows summed in another order (other parts, other
threads, two shards of a cluster) differ in the last bits, so a report recomputed later, or on a
cluster, would not be bit-identical, and the sha256 of its numbers would change. Each value is
converted to ``Decimal128`` with 12 decimal places and added as an integer, which is exact and so
independent of the order; the total goes back to ``Float64``. The truncation to 1e-12 per row is far
below what the intervals resolve (a weight ``1 / inclusion_prob`` is at least 1), and the sum stays
below ``Decimal128``'s 1e26.
"""

from __future__ import annotations

__all__ = ["SCALE", "exact_sum"]

SCALE = 12


def exact_sum(expression: str) -> str:
    """SQL: the sum of ``expression`` over a group's rows, the same whatever their order.

    >>> exact_sum("weight")
    'toFloat64(sum(toDecimal128(weight, 12)))'
    """
    return f"toFloat64(sum(toDecimal128({expression}, {SCALE})))"
