"""Typed slot parsing from Whisper-style text, and the spoken read-back."""

from __future__ import annotations

from datetime import datetime

import pytest

from callbot.flows.slots import parse
from callbot.flows.text import number_words, phone_words, time_words, words_to_digits

NOW = datetime(2025, 3, 12, 10, 0)  # a Wednesday


@pytest.mark.parametrize("text,value", [
    ("06, 12, 34, 56, 78", "0612345678"),
    ("c'est le 06 12 34 56 78", "0612345678"),
    ("zéro six douze trente-quatre cinquante-six soixante-dix-huit", "0612345678"),
    ("zéro deux quarante quatre-vingt-dix-sept zéro zéro onze", "0240970011"),
    ("+33 6 12 34 56 78", "0612345678"),
    ("plus trente-trois six douze trente-quatre cinquante-six soixante-dix-huit", "0612345678"),
    ("0612345678", "0612345678"),
])
def test_phone(text, value):
    assert parse("phone", text).value == value


@pytest.mark.parametrize("text", ["06 12 34", "je sais pas", "00 12 34 56 78", "06 12 34 56 78 90 12"])
def test_phone_invalid(text):
    assert parse("phone", text) is None


def test_phone_read_back_in_pairs():
    assert parse("phone", "0612345678").spoken == "zéro six, douze, trente-quatre, cinquante-six, soixante-dix-huit"


@pytest.mark.parametrize("text,value", [
    ("oui", True), ("ouais d'accord", True), ("oui c'est bien ça", True), ("exactement", True),
    ("non", False), ("non merci", False), ("pas du tout", False), ("non non c'est pas ça", False),
    ("1", True), ("2", False),
])
def test_yes_no(text, value):
    assert parse("yes_no", text).value is value


def test_yes_no_unclear():
    assert parse("yes_no", "peut-être") is None


@pytest.mark.parametrize("text,value,spoken", [
    ("demain", "2025-03-13", "jeudi treize mars"),
    ("après-demain", "2025-03-14", "vendredi quatorze mars"),
    ("le 3 avril", "2025-04-03", "jeudi trois avril"),
    ("le premier mai", "2025-05-01", "jeudi premier mai"),
    ("lundi", "2025-03-17", "lundi dix-sept mars"),
    ("le 12/04/2025", "2025-04-12", "samedi douze avril"),
    ("le vingt-cinq décembre", "2025-12-25", "jeudi vingt-cinq décembre"),
])
def test_date(text, value, spoken):
    p = parse("date", text, NOW)
    assert (p.value, p.spoken) == (value, spoken)


def test_date_invalid():
    assert parse("date", "le 31 février", NOW) is None
    assert parse("date", "je ne sais pas", NOW) is None


@pytest.mark.parametrize("text,value,spoken", [
    ("9h30", "09:30", "neuf heures trente"),
    ("à 14 h", "14:00", "quatorze heures"),
    ("neuf heures et demie", "09:30", "neuf heures trente"),
    ("dix heures moins le quart", "09:45", "neuf heures quarante-cinq"),
    ("midi", "12:00", "midi"),
    ("3 heures de l'après-midi", "15:00", "quinze heures"),
    ("17:15", "17:15", "dix-sept heures quinze"),
])
def test_time(text, value, spoken):
    p = parse("time", text)
    assert (p.value, p.spoken) == (value, spoken)


def test_time_invalid():
    assert parse("time", "25 h") is None
    assert parse("time", "le matin") is None


@pytest.mark.parametrize("text,value", [("22", 22), ("on sera cinq", 5), ("quatre-vingt-dix-sept", 97), ("deux mille vingt-cinq", 2025)])
def test_number(text, value):
    assert parse("number", text).value == value


def test_number_invalid():
    assert parse("number", "aucune idée") is None


@pytest.mark.parametrize("text,value", [
    ("euh c'est au 12 rue des Lilas", "12 rue des Lilas"),
    ("avenue de la République devant la pharmacie", "avenue de la République devant la pharmacie"),
    ("c'est dans la rue Pasteur", "rue Pasteur"),
    ("devant l'école Jules Ferry", "devant l'école Jules Ferry"),
    ("Au douze rue Victor Hugo.", "douze rue Victor Hugo"),
    ("au coin de la rue Pasteur", "au coin de la rue Pasteur"),
])
def test_address(text, value):
    assert parse("address", text).value == value


def test_address_invalid():
    assert parse("address", "euh") is None


@pytest.mark.parametrize("text,value", [
    ("je m'appelle Jeanne Martin", "Jeanne Martin"), ("Dupont", "Dupont"), ("mon nom est paul durand", "Paul Durand"),
])
def test_name(text, value):
    assert parse("name", text).value == value


def test_name_invalid():
    assert parse("name", "06 12 34 56 78") is None


def test_text():
    assert parse("text", "il clignote toute la nuit").value == "il clignote toute la nuit"
    assert parse("text", " . ") is None


def test_french_numbers():
    assert [number_words(n) for n in (21, 71, 80, 91, 100, 200, 1958)] == [
        "vingt et un", "soixante et onze", "quatre-vingts", "quatre-vingt-onze", "cent", "deux cents",
        "mille neuf cent cinquante-huit"]
    assert time_words(8, 30) == "huit heures trente" and time_words(12, 0) == "midi" and time_words(1, 0) == "une heure"
    assert phone_words("+33240000000").startswith("zéro deux, quarante")
    assert words_to_digits("vingt et un et trente") == "21 et 30"
