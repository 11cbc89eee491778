"""NCRONTAB (the Functions timer's six-field cron): validated before the host would refuse it at start."""

from __future__ import annotations

import re

# NCRONTAB, as the Functions timer trigger reads it: {second} {minute} {hour} {day} {month} {day-of-week}.
_NCRONTAB_EXPECTED = (
    "an NCRONTAB expression of 6 fields: second minute hour day month day-of-week, e.g. 0 0 2 * * * (02:00 daily)"
)
_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                                       "DEC"), 1)}
_DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}), (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _DAYS)
)


def _is_ncrontab(value: str) -> bool:
    fields = value.split()
    return len(fields) == 6 and all(_cron_field(f, *spec) for f, spec in zip(fields, _FIELDS, strict=True))


def _cron_field(field: str, low: int, high: int, names: dict[str, int]) -> bool:
    def number(text: str) -> int | None:
        if re.fullmatch(r"[0-9]{1,2}", text):
            return int(text) if low <= int(text) <= high else None
        return names.get(text.upper())

    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and not (re.fullmatch(r"[0-9]{1,2}", step) and 0 < int(step) <= high):
            return False
        if base == "*":
            continue
        first, dash, last = base.partition("-")
        start, end = number(first), number(last) if dash else None
        if start is None or (dash and (end is None or end < start)):
            return False
    return True
