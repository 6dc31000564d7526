"""French text helpers shared by the recogniser and the slot parsers.

Whisper writes numbers as digits ("06, 12", "9h30", "16 ans") while callers and
flow authors write words ("seize ans"); prompts must *speak* numbers as words
because the phone voices read digits badly. So the two directions live here:
``number_words`` (int -> French words) and ``words_to_digits`` (French number
words in a sentence -> digit groups), plus accent/punctuation folding.
"""

from __future__ import annotations

import re
import unicodedata

_UNITS = [
    "zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix",
    "onze", "douze", "treize", "quatorze", "quinze", "seize",
]
_TENS = {20: "vingt", 30: "trente", 40: "quarante", 50: "cinquante", 60: "soixante"}


def number_words(n: int) -> str:
    """Spell a non-negative integer in French (1990 rules: hyphens, "et un")."""
    if n < 0:
        return "moins " + number_words(-n)
    if n <= 16:
        return _UNITS[n]
    if n < 20:
        return "dix-" + _UNITS[n - 10]
    if n < 70:
        tens, unit = divmod(n, 10)
        word = _TENS[tens * 10]
        if unit == 0:
            return word
        return f"{word} et un" if unit == 1 else f"{word}-{_UNITS[unit]}"
    if n < 80:
        return "soixante et onze" if n == 71 else "soixante-" + number_words(n - 60)
    if n < 100:
        return "quatre-vingts" if n == 80 else "quatre-vingt-" + number_words(n - 80)
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head = "cent" if hundreds == 1 else f"{_UNITS[hundreds]} cent"
        if rest == 0:
            return head + ("s" if hundreds > 1 else "")
        return f"{head} {number_words(rest)}"
    if n < 1_000_000:
        thousands, rest = divmod(n, 1000)
        head = "mille" if thousands == 1 else f"{number_words(thousands)} mille"
        return head if rest == 0 else f"{head} {number_words(rest)}"
    millions, rest = divmod(n, 1_000_000)
    head = f"{number_words(millions)} million" + ("s" if millions > 1 else "")
    return head if rest == 0 else f"{head} {number_words(rest)}"


def time_words(hour: int, minute: int = 0) -> str:
    """Speak a clock time the way a French receptionist does: "huit heures trente", "midi"."""
    if hour == 12 and minute == 0:
        return "midi"
    if hour == 0 and minute == 0:
        return "minuit"
    text = "une heure" if hour == 1 else f"{number_words(hour)} heures"
    if minute:
        text += " " + number_words(minute)
    return text


def phone_words(digits: str) -> str:
    """Read a phone number back in pairs ("zéro six, douze, trente-quatre …")."""
    if digits.startswith("+33"):
        digits = "0" + digits[3:]
    pairs = [digits[i : i + 2] for i in range(0, len(digits), 2)]
    spoken = []
    for pair in pairs:
        if pair.startswith("0") and len(pair) == 2:
            spoken.append(f"zéro {_UNITS[int(pair[1])]}")
        else:
            spoken.append(number_words(int(pair)))
    return ", ".join(spoken)


def fold(text: str, keep_hyphens: bool = False) -> str:
    """Lower-case, strip accents, turn punctuation and apostrophes into spaces."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("œ", "oe").replace("æ", "ae")
    text = re.sub(r"[’'`´]", " ", text)
    text = re.sub(r"(?<=\d)[,.](?=\d)", "", text) if re.search(r"\d[.,]\d{3}\b", text) else text
    text = re.sub(r"[^a-z0-9+-]+" if keep_hyphens else r"[^a-z0-9+]+", " ", text)
    return text.strip()


# --- French number words -> digits --------------------------------------------------------------

_WORD_VALUES: dict[str, int] = {fold(w): i for i, w in enumerate(_UNITS)}
_WORD_VALUES.update({"dix": 10, "vingt": 20, "vingts": 20, "trente": 30, "quarante": 40,
                     "cinquante": 50, "soixante": 60, "septante": 70, "huitante": 80,
                     "octante": 80, "nonante": 90, "cent": 100, "cents": 100, "mille": 1000,
                     "une": 1, "zero": 0, "o": 0})
_JOINERS = {"et"}


def _group_value(words: list[str]) -> int | None:
    """Value of a run of number words like ["quatre", "vingt", "dix", "sept"] (< 10 000)."""
    total, current = 0, 0
    for w in words:
        v = _WORD_VALUES[w]
        if v == 1000:
            total += (current or 1) * 1000
            current = 0
        elif v == 100:
            current = (current or 1) * 100
        elif v == 20 and current % 100 == 4:  # quatre-vingt
            current = current - 4 + 80
        else:
            current += v
    return total + current


def words_to_digits(text: str) -> str:
    """Replace runs of French number words by digits in already-folded text.

    "zero six douze trente quatre" -> "0 6 12 34": each run is split where a new
    number must start (a unit after a unit, a ten after a unit, "zero"), which is
    how people dictate phone numbers in pairs.
    """
    tokens = text.split()
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            out.append(str(_group_value(run)))
            run.clear()

    for i, tok in enumerate(tokens):
        parts = tok.strip("-").split("-")
        if len(parts) > 1:  # "quatre-vingt-dix-sept" is one number, whatever comes around it
            flush()
            if all(p in _WORD_VALUES or p in _JOINERS for p in parts):
                out.append(str(_group_value([p for p in parts if p not in _JOINERS])))
            else:
                out.extend(parts)
            continue
        if tok in _JOINERS and run and i + 1 < len(tokens) and tokens[i + 1] in ("un", "une", "onze"):
            continue
        if tok == "o" and not run and not (i + 1 < len(tokens) and tokens[i + 1] in _WORD_VALUES):
            out.append(tok)
            continue
        if tok in _WORD_VALUES and not (tok in ("un", "une") and not _numeric_neighbour(tokens, i)):
            if run and _starts_new(_group_value(run), _WORD_VALUES[tok]):
                flush()
            run.append(tok)
        else:
            flush()
            out.append(tok)
    flush()
    return " ".join(out)


def _starts_new(cur: int, v: int) -> bool:
    """Whether number word value ``v`` begins a new number after a run worth ``cur``."""
    if v == 0 or cur == 0:
        return True
    if v in (100, 1000):
        return False
    low = cur % 100
    if v < 10:
        return not (low in (10, 70, 90) or (low >= 20 and low % 10 == 0) or (low == 0 and cur >= 100))
    if v < 20:
        return not (low in (60, 80) or (low == 0 and cur >= 100))
    return not ((cur == 4 and v == 20) or (low == 0 and cur >= 100))


def _numeric_neighbour(tokens: list[str], i: int) -> bool:
    """'un' / 'une' is a number only next to other number words ("vingt et un", "un deux")."""
    if i >= 2 and tokens[i - 1] == "et" and tokens[i - 2] in _WORD_VALUES:
        return True
    for j in (i - 1, i + 1):
        if 0 <= j < len(tokens) and tokens[j] in _WORD_VALUES and tokens[j] not in ("un", "une", "o"):
            return True
    return False
