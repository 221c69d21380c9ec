"""Windows of event time: a duration or a start/end, resolved to whole buckets."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from fairwatch.contracts.records import ContractError, format_timestamp, parse_timestamp

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class WindowError(ValueError):
    """A window that cannot be read; the message says how to write it."""


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime

    def to_dict(self) -> dict[str, str]:
        return {"from": format_timestamp(self.start), "to": format_timestamp(self.end)}


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise WindowError(f"--window {text!r}: write a positive duration such as 15m, 1h, 24h or 7d")
    return timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])


def parse_label_maturity(text: str) -> int:
    """``--label-maturity``: a duration such as 36h or 4d (``0s``: labels are final at once) -> seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise WindowError(f"--label-maturity {text!r}: write a duration such as 0s, 36h or 4d")
    seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if seconds > 3650 * 86_400:
        raise WindowError(f"--label-maturity {text!r}: at most 3650d")
    return seconds


def resolve_window(
    window: str | None, start: str | None, end: str | None, bucket_seconds: int, now: datetime | None = None
) -> Window:
    """`--window` back from now, or `--from`/`--to` (RFC 3339); widened to whole buckets.

    Counts are kept per event-time bucket, so a window reports the buckets it touches; the
    window returned is the one the numbers cover.
    """
    if window and (start or end):
        raise WindowError("give either --window or --from/--to, not both")

    def parse(value: str, name: str) -> datetime:
        try:
            return parse_timestamp(value, name)
        except ContractError as exc:
            raise WindowError(f"{name}: {exc.rejection.message}") from None

    now = now or datetime.now(timezone.utc)
    if start or end:
        if not (start and end):
            raise WindowError("--from and --to go together")
        lo, hi = parse(start, "--from"), parse(end, "--to")
    else:
        hi = now
        lo = hi - parse_duration(window or "1h")
    if lo >= hi:
        raise WindowError(f"--from {format_timestamp(lo)} is not before --to {format_timestamp(hi)}")
    lo_s = math.floor(lo.timestamp() / bucket_seconds) * bucket_seconds
    hi_s = math.ceil(hi.timestamp() / bucket_seconds) * bucket_seconds
    return Window(datetime.fromtimestamp(lo_s, timezone.utc), datetime.fromtimestamp(hi_s, timezone.utc))


