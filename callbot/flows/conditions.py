"""Condition tests: opening hours, French public holidays, time of day, slots, caller.

Pure functions of (condition, facts, now): the engine passes the call's clock
so tests can pin any date. Public holidays come from the ``holidays`` package
(``holidays.France``, with the Alsace-Moselle subdivision when configured).
Opening-hours tables are also *spoken* (``speak_hours``) so the hours live in
one place in the flow file and prompts cannot drift from the real schedule.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from functools import lru_cache

import holidays

from callbot.flows.schema import Condition
from callbot.flows.text import fold, time_words

DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_RANGE = re.compile(r"^\s*(\d{1,2})[:h](\d{2})\s*-\s*(\d{1,2})[:h](\d{2})\s*$")


def parse_range(text: str) -> tuple[time, time] | None:
    m = _RANGE.match(text)
    if not m:
        return None
    h1, m1, h2, m2 = map(int, m.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h1, m1) >= (h2, m2):
        return None
    return time(h1, m1), (time(23, 59, 59) if h2 == 24 else time(h2, m2))


@lru_cache(maxsize=8)
def _calendar(subdiv: str | None, year: int) -> holidays.HolidayBase:
    return holidays.France(years=year, subdiv=subdiv) if subdiv else holidays.France(years=year)


def holiday_name(day: date, subdiv: str | None = None) -> str | None:
    return _calendar(subdiv, day.year).get(day)


def is_open(table: dict[str, list[str]], now: datetime, closed_dates: tuple[str, ...] = (),
            subdiv: str | None = None) -> bool:
    if now.date().isoformat() in closed_dates or holiday_name(now.date(), subdiv):
        return False
    t = now.time()
    for r in table.get(DAYS[now.weekday()], []):
        rng = parse_range(r)
        if rng and rng[0] <= t < rng[1]:
            return True
    return False


def evaluate(cond: Condition, *, now: datetime, hours: dict, closed_dates: tuple[str, ...],
             subdiv: str | None, slots: dict, caller: str, services: dict | None = None) -> bool:
    """True when every test given in ``cond`` holds."""

    def sub(c: Condition) -> bool:
        return evaluate(c, now=now, hours=hours, closed_dates=closed_dates, subdiv=subdiv,
                        slots=slots, caller=caller, services=services)

    checks: list[bool] = []
    if cond.open is not None:
        checks.append(is_open(hours.get(cond.open, {}), now, closed_dates, subdiv))
    if cond.closed is not None:
        checks.append(not is_open(hours.get(cond.closed, {}), now, closed_dates, subdiv))
    if cond.holiday is not None:
        checks.append(bool(holiday_name(now.date(), subdiv)) == cond.holiday)
    if cond.weekday is not None:
        checks.append(DAYS[now.weekday()] in cond.weekday)
    if cond.time is not None:
        rng = parse_range(cond.time)
        checks.append(bool(rng) and rng[0] <= now.time() < rng[1])
    if cond.slot is not None:
        value = slots.get(cond.slot)
        if cond.equals is not None:
            checks.append(value is not None and fold(str(value)) == fold(cond.equals))
        elif cond.one_of is not None:
            checks.append(value is not None and fold(str(value)) in {fold(v) for v in cond.one_of})
        else:
            checks.append(value not in (None, ""))
    if cond.service is not None:
        svc = (services or {}).get(cond.service)
        checks.append(bool(svc is not None and svc.number))
    if cond.caller_prefix is not None:
        checks.append(caller.startswith(cond.caller_prefix))
    if cond.caller_hidden is not None:
        hidden = caller.strip().lower() in ("", "anonymous", "anonyme", "unknown", "restricted")
        checks.append(hidden == cond.caller_hidden)
    if cond.all is not None:
        checks.append(all(sub(c) for c in cond.all))
    if cond.any is not None:
        checks.append(any(sub(c) for c in cond.any))
    if cond.not_ is not None:
        checks.append(not sub(cond.not_))
    return all(checks) if checks else True


def _speak_ranges(ranges: list[str]) -> str:
    parts = []
    for r in ranges:
        rng = parse_range(r)
        if rng:
            a, b = rng
            parts.append(f"de {time_words(a.hour, a.minute)} à {time_words(b.hour, b.minute)}")
    return " et ".join(parts)


def speak_hours(table: dict[str, list[str]]) -> str:
    """'du lundi au vendredi de huit heures trente à midi et …, le samedi de neuf heures à midi'."""
    groups: list[tuple[list[str], str]] = []
    for day in DAYS:
        spoken = _speak_ranges(table.get(day, []))
        if not spoken:
            continue
        if groups and groups[-1][1] == spoken and DAYS.index(groups[-1][0][-1]) == DAYS.index(day) - 1:
            groups[-1][0].append(day)
        else:
            groups.append(([day], spoken))
    out = []
    for days, spoken in groups:
        if len(days) == 1:
            out.append(f"le {days[0]} {spoken}")
        elif len(days) == 2:
            out.append(f"le {days[0]} et le {days[1]} {spoken}")
        else:
            out.append(f"du {days[0]} au {days[-1]} {spoken}")
    if not out:
        return "sur rendez-vous uniquement"
    return out[0] if len(out) == 1 else ", ".join(out[:-1]) + ", et " + out[-1]
