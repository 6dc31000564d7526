"""Emergency detection on every caller turn, independent of the intent recogniser.

Recall first: a missed fire costs a life, a false alarm costs one repeated
question (the caller hears the emergency numbers and is asked whether to go on).
Two detectors, either one suffices:

* **danger words** (``DANGER``): fire, smoke, gas, not breathing, drowning, a
  knife, "au secours"... matched anywhere in the folded text, so a danger said in
  the middle of another request ("je voulais les horaires mais ça sent le gaz")
  is caught. Words that are also ordinary ("feu", "tombé", "accident", "inondé")
  are ``WEAK``: they need the classifier's agreement. A benign context ("feu
  d'artifice", "détecteur de fumée", "l'an dernier", "pour l'assurance") turns a
  strong word weak.
* **a classifier** over the sentence's vectors (the recogniser's encoders),
  trained at load time on the flow's ``urgence`` examples against every other
  example. (Scoring each clause apart was measured: more false alarms, no more
  emergencies caught.)
* the intent recogniser's own ``urgence`` probability, as a third vote.

Whisper's slips of long danger words ("un sandie" for "un incendie") are matched
through the lexical scorer's French phonetic spelling.

Thresholds were set on ``tests/data/tune.tsv`` (every emergency caught, false
alarms under 2 %) and judged on ``tests/data/callers.tsv``; see
``docs/understanding.md``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from callbot.flows.intents import phonetic
from callbot.flows.text import fold
from callbot.understanding import logreg
from callbot.understanding.encoders import Encoder
from callbot.understanding.text import for_model

ALONE = 0.90  # classifier probability that is an emergency by itself (sentences of 3 words or more)
WITH_WORD = 0.60  # ... when a danger word is present
WITH_BENIGN = 0.95  # ... when an ordinary context is present ("détecteur de fumée", "l'an dernier")
INTENT = 0.40  # the intent recogniser's own probability of ``urgence`` (another, independent vote)
MIN_WORDS = 3
SURE_OTHER = 0.9  # the recogniser is this sure of an ordinary intent: weak words need ALONE
MIN_POSITIVES, MIN_NEGATIVES = 20, 100  # fewer examples: danger words only (a tiny classifier fires on names)

# Strong danger words (folded; regex fragments, matched from a word start).
DANGER = [
    r"au secours", r"a l aide", r"aidez moi", r"aidez nous", r"au feu", r"(?:y a|il y a|ya) (?:le|du) feu",
    r"(?:prend|pris|prennent|en) feu", r"incendie", r"flamme", r"fumee", r"(?:ca|tout|la maison|ca) brule",
    r"crame", r"odeur de gaz", r"sent (?:le|du) gaz", r"fuite de gaz", r"gaz partout", r"explos", r"monoxyde",
    r"inconscien", r"(?:respire|respirait) (?:plus|pas|mal)", r"ne respire",
    r"(?:bouge|reagit|reveille) (?:plus|pas)", r"arret cardiaque", r"crise cardiaque", r"coeur (?:s est )?arrete",
    r"malaise", r"avc", r"convuls", r"etouff", r"s etrangle", r"saign", r"plein de sang", r"du sang",
    r"pisse le sang", r"(?:se|s est) noy", r"se noie", r"noyade",
    r"(?:voiture|personne|enfant|homme|femme|gamin|quelqu un) (?:est|et) dans l eau", r"tombe (?:a|dans) l eau",
    r"dans la riviere", r"emporte par", r"couteau", r"armes? ", r"pistolet", r"fusil", r"tire(?:nt)? sur",
    r"coups de feu", r"poignard", r"me frappe", r"le frappe", r"la frappe", r"les frappe", r"nous frappe",
    r"se battent", r"bagarre", r"(?:se fait|se font|m a|l a|a ete) agress",
    r"en train (?:de |d )(?:cambrioler|voler|frapper|forcer|entrer|rentrer|casser|attaquer|mordre|battre|tabasser)",
    r"vient de s (?:ecrouler|effondrer)", r"cambrioleur", r"force la porte", r"forcer la porte",
    r"quelqu un (?:est )?(?:entre|rentre) chez", r"suicid", r"se tuer", r"me tuer", r"en finir",
    r"mettre fin a (?:ses|mes) jours", r"sauter du", r"va sauter", r"veut sauter", r"electrocut",
    r"coince(?:e|s)? sous", r"ambulance", r"samu",
    r"(?:appelez|envoyez|faut) (?:la police|les secours|les pompiers)", r"envoyez (?:quelqu un|les secours)",
    r"vite vite", r"venez vite", r"urgence vitale", r"en danger", r"il va mourir", r"elle va mourir",
    r"(?:il|elle) est tombe(?:e)? et (?:ne|n arrive)", r"ne se releve", r"n arrive (?:pas|plus) a se relever",
    r"avale (?:du|de la|des|un|une|les|mes|ses|sa|son)", r"va accoucher", r"accouche (?:la|maintenant)",
    r"perdu les eaux", r"poche (?:des eaux )?(?:est )?perce",
    r"(?:peux|peut|arrive) (?:pas|plus) (?:a )?(?:me|se) (?:lever|relever)",
    r"(?:fille|fils|enfant|petit|petite|mere|pere|grand pere|grand mere|mari|femme|bebe)(?: de \w+ ans)? a disparu",
    r"(?:on|je) (?:le|la|les) cherche partout", r"eau monte", r"on est (?:bloque|coince)s?",
    r"respire (?:tres |vraiment )?mal", r"beaucoup (?:de )?sang",
    r"tombe (?:du|d un|d une|de la|par la) (?:toit|echelle|balcon|fenetre)",
    r"au fond (?:du bassin|de l eau|de la piscine|du lac)", r"(?:feu|fut|fu) a pris",
    r"(?:on|je|la maitresse|la nounou|l ecole|la creche|personne) (?:ne )?(?:la|le|les) (?:trouve|retrouve) (?:plus|pas)",
    r"perdu (?:mon|ma) (?:enfant|fils|fille|petit|petite)",
    r"ne (?:trouve|retrouve) plus (?:mon|ma) (?:enfant|fils|fille|petit|petite)", r"fait une crise",
    r"menace de (?:me|le|la|nous)? ?(?:tuer|frapper)",
    r"contractions", r"perd les eaux", r"accident grave", r"grave accident", r"(?:messages?|lettre|mot) d adieu",
    r"(?:sur|dans) les voies", r"en train de m ordre",
    r"(?:un|des|le|les) (?:voleurs?|cambrioleurs?|intrus) (?:chez|dans) (?:moi|nous|la maison|l appartement|le jardin)",
    r"(?:peut|peux|peuvent|arrive) (?:plus|pas) (?:a )?bouger", r"par terre depuis",
    r"(?:fauche|percute|renverse) (?:un|une|deux|trois|des|quelqu un|une personne|un pieton|un enfant|un cycliste)",
    r"(?:enfant|fils|fille|petit|petite|gamin|gamine)(?: de \w+ ans)? (?:il |elle )?est perdue?", r"je (?:le |la )?cherche partout", r"(?:veut|va|vais|voulait) se (?:jeter|pendre|tailler|ouvrir)",
    r"evanou", r"perdu connaissance", r"sans connaissance", r"tombee? dans les pommes", r"syncope",
    r"(?:vient|viennent) de s (?:ecrouler|effondrer|evanouir)", r"se sont (?:ecroule|effondre|evanoui)",
    r"hache", r"machette", r"batte de", r"(?:menace|menacent|menacee?) avec", r"(?:est|sont) arme",
    r"se (?:sont |est )?jetee?s? sur", r"(?:la|le|les) lache(?:nt)? pas", r"intoxi", r"empoisonn",
    r"digue", r"barrage (?:a )?(?:cede|lache)", r"(?:sur|vers) (?:la voie ferree|les rails)",
    r"(?:eau|inond\w*) .{0,120}(?:peuvent|peut|arrivent|arrive) (?:pas|plus) (?:a )?(?:monter|sortir|bouger)",
]
# Ordinary words that point to danger only with the classifier's agreement.
WEAK = [
    r"feu", r"brul", r"accident", r"tombe", r"blesse", r"inond", r"frappe", r"agress", r"cambriol", r"vol ",
    r"danger", r"urgen", r"vite", r"secours", r"mort", r"police", r"gaz", r"sang", r"fuite", r"crise", r"par terre",
    r"riviere", r"disparu", r"repond (?:plus|pas)", r"effondr", r"ecroul", r"coince", r"pompiers", r"tout mou",
    r"dans l eau", r"dedans", r"se sent pas bien", r"mal au", r"hopital", r"violen", r"menace", r"peur", r"noy",
    r"eau partout", r"alzheimer", r"toute? seule?", r"(?:trouve|retrouve) (?:plus|pas)", r"a terre", r"mordu",
    r"attaqu", r"toussent", r"produits?", r"recuper",
]
# Contexts where a strong word is ordinary: it then needs the classifier's agreement too.
BENIGN = [
    r"feux? d artifice", r"feux? (?:rouges?|tricolores?|verts?|orange|de circulation|de signalisation)",
    r"feu de la saint", r"detecteurs? de fumee", r"borne(?:s)? (?:a )?incendie", r"exercice", r"alarme incendie",
    r"l an (?:dernier|passe)", r"l annee (?:derniere|passee)",
    r"(?:la semaine|le mois) (?:derniere|dernier|passee|passe)",
    r"il y a (?:un|une|deux|trois|quatre|cinq|six|quinze|quelques|plusieurs|\d+) (?:jours?|semaines?|mois|ans?)",
    r"l autre (?:jour|soir|nuit|semaine)", r"depuis des (?:mois|annees)", r"assurance", r"attestation",
    r"certificat", r"acte de deces", r"declarer le deces", r"indemnis", r"rembours", r"facture", r"constat",
    r"decede", r"est mort (?:il y a|la semaine|hier|le mois)", r"l ancien", r"pompes funebres",
    r"cours de secourisme", r"formation", r"caserne", r"bal des pompiers", r"calendrier des pompiers",
    r"personne (?:n )?(?:est|a ete) blesse", r"pas de blesse", r"depuis l incendie",
    r"apres l incendie", r"barbecue", r"aux urgences", r"(?:la|une|sa|leur) tombe ", r"cimetiere", r"va finir par",
    r"risque de", r"avant qu (?:un|une|il|elle|on)", r"(?:c est )?pas (?:violent|grave|dangereux)", r"calendriers?",
    r"amicale", r"bouches? (?:a |d )incendie", r"(?:samedi|dimanche|lundi|mardi|mercredi|jeudi|vendredi) dernier",
    r"la nuit derniere", r"(?:va|vont|vas) me tuer si", r"formulaire", r"journaliste", r"spectacle", r"theatre",
    r"numero (?:du samu|des pompiers|de la police)",
    r"pompiers? volontaires?", r"devenir pompier", r"un jour (?:quelqu un|on|il)",
    r"quelqu un va se (?:tuer|blesser|faire)", r"petards?",
    r"apres (?:son|sa|mon|ma|un|une|leur) (?:avc|accident|operation|infarctus|chute|malaise|crise)",
    r"(?:rentree?|sortie?|revenue?) de l hopital", r"refaire", r"mes papiers",
]
# Habits and past events ("tous les soirs", "hier soir", "la dernière fois"): ordinary contexts too,
# unless the caller says it is still going on ("depuis hier soir", "toujours par terre", "ce matin").
PAST = [
    r"tous les (?:soirs|jours|matins|nuits|ans|week ends)", r"chaque (?:soir|nuit|jour|annee|week end)",
    r"hier (?:soir|matin|apres midi)", r"il y a eu (?:un|une|des)", r"la derniere fois",
]
NOW = [
    r"toujours", r"encore", r"depuis hier", r"depuis ce", r"depuis (?:\w+ )?(?:minutes?|heures?)", r"en ce moment",
    r"(?:la|ici) maintenant", r"ce (?:matin|soir|midi)", r"cette nuit", r"actuellement", r"(?:vient|viennent) de",
]
# "Nobody is hurt": an ordinary call about a weak danger word (a flooded cellar), never about a strong one.
SAFE = [r"tout le monde va bien", r"personne n a rien", r"(?:on|nous) (?:va|allons) (?:tous )?bien"]
# Long danger words matched through Whisper's slips ("un sandie", "inconsient"): same French
# phonetic spelling as the lexical scorer, at most one sound apart.
FUZZY = ["incendie", "inconscient", "inconsciente", "ambulance", "explosion", "electrocute", "noyade",
         "asphyxie", "hemorragie", "convulse", "convulsion"]


def _compile(parts: list[str]) -> re.Pattern:
    return re.compile(r"(?:^| )(?:" + "|".join(parts) + r")")


_DANGER, _WEAK, _BENIGN = _compile(DANGER), _compile(WEAK), _compile(BENIGN)
_PAST, _NOW, _SAFE = _compile(PAST), _compile(NOW), _compile(SAFE)
_FUZZY = tuple(phonetic(w) for w in FUZZY)


def _near(a: str, b: str) -> bool:
    """Edit distance <= 1 (one sound added, dropped or changed)."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) <= 1
    if len(a) > len(b):
        a, b = b, a
    return any(b[:i] + b[i + 1:] == a for i in range(len(b)))


def fuzzy_danger(folded: str) -> str | None:
    words = folded.split()
    grams = words + [a + b for a, b in zip(words, words[1:])]  # "un sandie" -> "unsandie"
    for w in grams:
        if len(w) < 6:
            continue
        code = phonetic(w)
        if len(code) >= 4 and any(_near(code, f) for f in _FUZZY):
            return w
    return None


_CONNECTORS = re.compile(r" (?:mais|attendez|attends|excusez moi|pardon|oh|ah|mon dieu|et la|par contre|sauf que"
                         r"|d ailleurs|au fait|en plus) ")


def _benign(folded: str, danger) -> bool:
    """An ordinary context that concerns the danger words: in the same clause as one of them (a
    "facture" in "c'est pour la facture, mais l'eau monte chez ma voisine" does not count)."""
    if not danger and _SAFE.search(folded):
        return True
    if not _ordinary(folded, folded):
        return False
    spans = [c for c in clauses(folded) if _DANGER.search(c) or _WEAK.search(c) or fuzzy_danger(c)]
    return not spans or any(_ordinary(c, folded) for c in spans) if danger or _WEAK.search(folded) else True


def _ordinary(clause: str, folded: str) -> bool:
    """An ordinary context in ``clause``; a past or habitual one only if nothing in the whole turn says
    it is happening now."""
    return bool(_BENIGN.search(clause) or (_PAST.search(clause) and not _NOW.search(folded)))


def clauses(text: str) -> list[str]:
    """Folded clauses, split at punctuation and at the words callers use to change subject."""
    out = []
    for part in re.split(r"[,.;:!?]", text):
        out += [" " + c.strip() + " " for c in _CONNECTORS.split(" " + fold(part) + " ") if c.strip()]
    return out or [" " + fold(text) + " "]


@dataclass(frozen=True)
class EmergencyHit:
    """Why a turn was judged an emergency (``reason``: words, classifier, or both)."""

    score: float
    reason: str
    words: str = ""


class EmergencyDetector:
    """Built once per flow version; read-only afterwards (shared by every call)."""

    def __init__(self, positives: Sequence[str], negatives: Sequence[str], *, encoders: Sequence[Encoder] = (),
                 alone: float = ALONE, with_word: float = WITH_WORD) -> None:
        self.alone, self.with_word = alone, with_word
        self._pos, self._neg = list(positives), list(negatives)
        self._encoders = tuple(encoders)
        self._model: logreg.LogReg | None = None
        self._mean: np.ndarray | None = None
        self._lock = threading.Lock()

    def ensure_trained(self) -> None:
        if self._model is not None or not self._encoders:
            return
        if len(self._pos) < MIN_POSITIVES or len(self._neg) < MIN_NEGATIVES:
            self._encoders = ()
            return
        with self._lock:
            if self._model is not None:
                return
            x = self._vectors(self._pos + self._neg)
            self._mean = x.mean(axis=0)
            y = np.array([1] * len(self._pos) + [0] * len(self._neg))
            self._model = logreg.fit(x - self._mean, y, 2, l2=1e-4, epochs=300)

    def _vectors(self, texts: list[str]) -> np.ndarray:
        prepared = [for_model(t) for t in texts]
        return np.concatenate([e.embed(prepared) for e in self._encoders], axis=1)

    def probability(self, text: str) -> float:
        """Classifier probability that the sentence reports an emergency."""
        self.ensure_trained()
        if self._model is None:
            return 0.0
        return float(self._model.proba(self._vectors([text]) - self._mean)[0, 1])

    def prepare(self, text: str) -> None:
        """Embed the sentence ahead (from a worker thread): ``detect`` then costs no model time."""
        self.ensure_trained()
        if self._encoders:
            self._vectors([text])

    def detect(self, text: str, intent_probability: float = 0.0, other_intent: float = 0.0) -> EmergencyHit | None:
        """An emergency, or None. ``intent_probability``: the recogniser's ``urgence`` probability;
        ``other_intent``: its confidence in its best *other* intent ("un arbre est tombé sur la
        route" is a road problem: a weak word then needs the classifier's full agreement)."""
        folded = " " + fold(text) + " "
        for clause in clauses(text):  # "c'est pour la facture, mais ça sent le gaz": judged apart
            strong = _DANGER.search(clause)
            word = strong.group().strip() if strong else (fuzzy_danger(clause) or "")
            if word and not _ordinary(clause, folded):
                return EmergencyHit(1.0, "words", word)
        strong = _DANGER.search(folded) or fuzzy_danger(folded)
        benign = _benign(folded, strong)
        if strong and not benign and not isinstance(strong, str):  # a danger said across a pause or a comma
            return EmergencyHit(1.0, "words", strong.group().strip())
        p = self.probability(text)
        if benign:
            return EmergencyHit(p, "classifier") if p >= WITH_BENIGN else None
        if p >= self.alone and len(folded.split()) >= MIN_WORDS:
            return EmergencyHit(p, "classifier")
        weak = _WEAK.search(folded)
        if weak and p >= (self.with_word if other_intent < SURE_OTHER else self.alone):
            return EmergencyHit(p, "words+classifier", weak.group().strip())
        if intent_probability >= INTENT:
            return EmergencyHit(intent_probability, "intent")
        return None
