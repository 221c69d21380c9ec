"""Which rows belong to a use (a session, :mod:`fairwatch.contracts.uses`), as SQL conditions.

A use's rows are those naming its ``use_id``, and those naming no use that occurred in its period
``[start, end)``: sites that do not send use ids still have their rows placed by time. Both the use
figures (:mod:`fairwatch.store.uses`) and the two-person reads (:mod:`fairwatch.store.two_person`)
select with these, so the two agree on what a use holds.
"""

from __future__ import annotations

__all__ = ["IN_WINDOW", "OF_USE"]

# params start, end
IN_WINDOW = "occurred_at >= %(start)s AND occurred_at < %(end)s"
# params use, start, end
OF_USE = f"(use_id = %(use)s OR (use_id = '' AND {IN_WINDOW}))"
