"""Typed slot parsing from Whisper text (or keypad digits) with a spoken read-back.

Whisper writes "06, 12, 34 56 78", "9h30", "le 3 mars"; callers also say
"zéro six douze…" or "neuf heures et demie". Each parser returns a ``Parsed``
(the stored value and how to read it back on the phone) or ``None`` when the
answer does not fit, so the engine can re-ask instead of storing rubbish.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable

from callbot.flows.text import fold, number_words, phone_words, time_words, words_to_digits

DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
MONTHS = ("janvier", "fevrier", "mars", "avril", "mai", "juin", "juillet", "aout", "septembre",
          "octobre", "novembre", "decembre")
MONTHS_SPOKEN = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
                 "octobre", "novembre", "décembre")


@dataclass(frozen=True)
class Parsed:
    value: Any  # what is stored (str, int, bool, ISO date "2025-03-12", "09:30")
    spoken: str  # how it is read back to the caller


_YES = ("oui", "ouais", "ouai", "voui", "d accord", "exactement", "tout a fait", "c est ca", "c est bien ca",
        "bien sur", "absolument", "affirmatif", "ok", "okay", "correct", "parfait", "volontiers",
        "je veux bien", "allez y", "c est exact", "en effet", "effectivement", "oui oui", "si")
_NO = ("non", "pas du tout", "c est pas ca", "ce n est pas ca", "negatif", "surtout pas", "pas la peine",
       "c est faux", "pas vraiment", "non merci", "pas besoin", "ca ira", "je ne veux pas", "j veux pas",
       "je veux pas", "inutile", "erreur", "pas correct", "pas ca")


def _has(text: str, phrase: str) -> int:
    m = re.search(r"(?:^| )" + re.escape(phrase) + r"(?: |$)", text)
    return m.start() if m else -1


def parse_yes_no(text: str, now: datetime | None = None) -> Parsed | None:
    t = fold(text)
    if t in ("1", "2"):
        return Parsed(t == "1", "oui" if t == "1" else "non")
    yes = [p for p in (_has(t, w) for w in _YES) if p >= 0]
    no = [p for p in (_has(t, w) for w in _NO) if p >= 0]
    if not yes and not no:
        return None
    answer = bool(yes) and (not no or min(yes) < min(no) and _has(t, "pas") < 0)
    return Parsed(answer, "oui" if answer else "non")


def digits_of(text: str) -> str:
    t = words_to_digits(fold(text.replace("+", " plus "), keep_hyphens=True))
    t = re.sub(r"\bplus (33|trente trois)\b", "+33", t)
    return "".join(re.findall(r"\+33|\d", t))


def parse_phone(text: str, now: datetime | None = None) -> Parsed | None:
    d = digits_of(text)
    if d.startswith("+33"):
        d = "0" + d[3:]
    elif d.startswith("0033"):
        d = "0" + d[4:]
    elif d.startswith("33") and len(d) == 11:
        d = "0" + d[2:]
    if len(d) == 9 and d[0] in "123456789":
        d = "0" + d  # "6 12 34 56 78": the leading zero was swallowed
    if not re.fullmatch(r"0[1-9]\d{8}", d):
        return None
    return Parsed(d, phone_words(d))


def parse_number(text: str, now: datetime | None = None) -> Parsed | None:
    m = re.search(r"\d+", words_to_digits(fold(text)))
    if not m:
        return None
    n = int(m.group())
    return Parsed(n, number_words(n))


def _spoken_date(d: date) -> str:
    day = "premier" if d.day == 1 else number_words(d.day)
    return f"{DAYS[d.weekday()]} {day} {MONTHS_SPOKEN[d.month - 1]}"


def parse_date(text: str, now: datetime | None = None) -> Parsed | None:
    today = (now or datetime.now()).date()
    t = words_to_digits(fold(text)).replace("premier", "1").replace("1er", "1")
    found: date | None = None
    if _has(t, "apres demain") >= 0:
        found = today + timedelta(days=2)
    elif _has(t, "demain") >= 0:
        found = today + timedelta(days=1)
    elif _has(t, "aujourd hui") >= 0 or _has(t, "ce jour") >= 0:
        found = today
    m = re.search(r"\b(\d{1,2}) (?:(\d{1,2})|(" + "|".join(MONTHS) + r"))(?: (\d{4}))?\b", t)
    if found is None and m:
        day = int(m.group(1))
        month = int(m.group(2)) if m.group(2) else MONTHS.index(m.group(3)) + 1
        year = int(m.group(4)) if m.group(4) else today.year
        try:
            found = date(year, month, day)
        except ValueError:
            return None
        if not m.group(4) and found < today - timedelta(days=180):
            found = date(year + 1, month, day)
    if found is None:
        for i, name in enumerate(DAYS):
            if _has(t, name) >= 0:
                delta = (i - today.weekday()) % 7 or 7
                found = today + timedelta(days=delta)
                break
    if found is None:
        return None
    return Parsed(found.isoformat(), _spoken_date(found))


def parse_time(text: str, now: datetime | None = None) -> Parsed | None:
    t = words_to_digits(fold(text))
    if _has(t, "midi") >= 0 and not re.search(r"\d", t):
        h, m = 12, 0
    elif _has(t, "minuit") >= 0 and not re.search(r"\d", t):
        h, m = 0, 0
    else:
        mt = re.search(r"\b(\d{1,2}) ?(?:heures?|h|:)(?: ?(\d{1,2}))?", t)
        if not mt:
            mt = re.fullmatch(r"(?:a )?(\d{1,2})(?: (\d{2}))?", t.strip())
        if not mt:
            return None
        h, m = int(mt.group(1)), int(mt.group(2) or 0)
        rest = t[mt.end():]
        if re.match(r"\s*(?:et )?demie?", rest):
            m = 30
        elif re.match(r"\s*et quart", rest):
            m = 15
        elif re.match(r"\s*moins (?:le )?quart", rest):
            h, m = h - 1, 45
        if re.search(r"\b(?:de l apres midi|du soir)\b", t) and h < 12:
            h += 12
    if not (0 <= h <= 23 and 0 <= m <= 59):
        return None
    return Parsed(f"{h:02d}:{m:02d}", time_words(h, m))


_LEADS = sorted(
    ["euh", "heu", "alors", "donc", "oui", "bon", "ben", "bah", "voila", "c est", "c est au", "c est a",
     "c est a la", "c est dans la", "c est sur la", "ca se trouve", "ca se trouve au", "ca se passe", "au niveau de",
     "j habite", "j habite au", "j habite a", "je suis", "je suis au", "je m appelle", "mon nom est",
     "mon nom c est", "moi c est", "il s appelle", "elle s appelle"], key=len, reverse=True)
_LEAD_IN = re.compile(r"^(?:(?:" + "|".join(_LEADS) + r")[ ,]+)+")
STREET = ("rue", "avenue", "av", "boulevard", "bd", "place", "chemin", "impasse", "allee", "route", "quai",
          "square", "cours", "passage", "lotissement", "residence", "parking", "rond point", "carrefour",
          "sentier", "voie", "hameau", "lieu dit", "cite", "parc", "pont", "esplanade", "promenade")


_NUMBER_WORDS = {"un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix", "onze", "douze",
                 "treize", "quatorze", "quinze", "seize", "vingt", "trente", "quarante", "cinquante", "soixante"}


def _clean(text: str) -> str:
    """Drop the lead-in words of an answer ("euh c'est au …") but keep the caller's spelling."""
    text = text.strip().strip(".!?,;")
    folded = fold(text)
    m = _LEAD_IN.match(folded + " ")
    n_words = len(m.group().split()) if m else 0
    rest = folded.split()[n_words:]
    if len(rest) > 1 and rest[0] in ("au", "a") and (rest[1].isdigit() or rest[1] in _NUMBER_WORDS):
        n_words += 1  # "au 12 rue …", "au douze rue …": the number starts the address
    if n_words == 0:
        return text
    # cut the original text at its n-th word (apostrophes split words in both spellings)
    starts = [m.start() for m in re.finditer(r"[^\s',]+", text)]
    if n_words >= len(starts):
        return text
    return text[starts[n_words]:].strip(" ,") or text


def parse_address(text: str, now: datetime | None = None) -> Parsed | None:
    cleaned = _clean(text)
    folded = fold(cleaned)
    words = folded.split()
    if not words:
        return None
    if any(_has(folded, s) >= 0 for s in STREET) or len([w for w in words if len(w) > 2]) >= 2:
        return Parsed(cleaned, cleaned)
    return None


def parse_name(text: str, now: datetime | None = None) -> Parsed | None:
    cleaned = _clean(text)
    words = [w for w in re.split(r"\s+", cleaned) if w]
    if not words or len(words) > 6 or any(ch.isdigit() for ch in cleaned):
        return None
    name = " ".join(w[:1].upper() + w[1:] for w in words)
    return Parsed(name, name)


def parse_text(text: str, now: datetime | None = None) -> Parsed | None:
    cleaned = text.strip()
    if len(fold(cleaned).replace(" ", "")) < 2:
        return None
    return Parsed(cleaned, cleaned)


PARSERS: dict[str, Callable[[str, datetime | None], Parsed | None]] = {
    "text": parse_text, "yes_no": parse_yes_no, "phone": parse_phone, "date": parse_date,
    "time": parse_time, "number": parse_number, "address": parse_address, "name": parse_name,
}

# listening hints per slot type: (end_of_turn_secs, no_input_secs, max_digits)
LISTEN_HINTS: dict[str, tuple[float | None, float | None, int]] = {
    "text": (1.2, None, 1), "yes_no": (None, None, 1), "phone": (1.8, 10.0, 10), "date": (1.0, None, 8),
    "time": (1.0, None, 4), "number": (1.0, None, 6), "address": (1.5, 10.0, 1), "name": (1.0, None, 1),
}


def parse(slot_type: str, text: str, now: datetime | None = None) -> Parsed | None:
    return PARSERS[slot_type](text, now)
