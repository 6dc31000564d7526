"""Paraphrases written apart from dev.tsv, as a check that the flow's examples generalise.

``HELD_OUT`` was measured once, untouched, before any flow edit (34/38 = 0.895);
``FIRST_SET`` was 60/70 before its misses led to new keywords in flows/mairie.yaml
(now in the training side of the story, so it is a regression test only).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot.flows.loader import load_flow
from callbot.understanding.evaluate import first_turn

FLOW = Path(__file__).resolve().parent.parent / "flows" / "mairie.yaml"

FIRST_SET = [
    ('la mairie elle ouvre à quelle heure le jeudi', 'horaires'),
    ('vous êtes où exactement, je dois venir déposer un papier', 'horaires'),
    ('il me faudrait un acte de naissance pour mon dossier de pension', 'etat_civil_naissance'),
    ("c'est pour déclarer mon fils qui est né hier", 'etat_civil_naissance'),
    ("on veut se marier l'année prochaine, on fait comment", 'etat_civil_mariage'),
    ("une copie de l'acte de mariage de mes parents", 'etat_civil_mariage'),
    ("ma mère est décédée hier soir, qu'est-ce qu'on doit faire", 'etat_civil_deces'),
    ('je voudrais trois actes de décès pour la succession de mon oncle', 'etat_civil_deces'),
    ("ma carte d'identité expire le mois prochain", 'identite'),
    ('je voudrais savoir si mon passeport est arrivé', 'identite'),
    ("je voudrais m'inscrire sur la liste électorale", 'elections'),
    ('je serai absent pour les élections, comment je fais pour voter', 'elections'),
    ("mon garçon a seize ans, on m'a dit qu'il devait se faire recenser", 'recensement_citoyen'),
    ("je n'ai pas mon attestation de recensement pour le permis", 'recensement_citoyen'),
    ('ma sœur qui vit en Algérie veut venir me rendre visite, il lui faut un papier de la mairie', 'attestation_accueil'),
    ("l'attestation pour héberger quelqu'un de l'étranger", 'attestation_accueil'),
    ('je veux construire une extension de vingt mètres carrés', 'urbanisme'),
    ('il faut une autorisation pour changer mes volets', 'urbanisme'),
    ('il y a un grand trou dans la route devant chez moi', 'voirie'),
    ('le trottoir de ma rue est plein de trous', 'voirie'),
    ('le réverbère de ma rue ne marche plus', 'eclairage'),
    ("il n'y a plus de lumière dans mon impasse la nuit", 'eclairage'),
    ("les poubelles n'ont pas été ramassées depuis une semaine", 'proprete_dechets'),
    ("c'est quel jour pour sortir le bac jaune", 'proprete_dechets'),
    ("j'ai un vieux buffet à jeter, vous pouvez passer", 'encombrants'),
    ("comment se débarrasser d'une vieille machine à laver", 'encombrants'),
    ('je voudrais inscrire ma fille en maternelle', 'inscription_scolaire'),
    ("on déménage, il faut changer mon fils d'école", 'inscription_scolaire'),
    ('la cantine de mon fils, comment je paye', 'periscolaire'),
    ('les inscriptions au centre de loisirs pour cet été', 'periscolaire'),
    ('je cherche une assistante maternelle pour mon fils', 'petite_enfance'),
    ('il reste de la place à la crèche municipale', 'petite_enfance'),
    ("je suis au chômage et je n'arrive plus à payer mon loyer, il y a une aide", 'social'),
    ("ma mère a besoin qu'on lui livre ses repas", 'social'),
    ('je voudrais déposer un dossier pour un HLM', 'logement'),
    ('notre appartement est trop petit, on voudrait un logement social', 'logement'),
    ('la piscine est ouverte le dimanche', 'sport_loisirs'),
    ('comment inscrire mon fils au judo', 'sport_loisirs'),
    ('la bibliothèque ouvre à quelle heure le samedi', 'culture'),
    ("des cours de guitare à l'école de musique", 'culture'),
    ("c'est quand la fête de la ville", 'evenements'),
    ('il y a un marché de producteurs cette semaine', 'evenements'),
    ('pourquoi ma rue est fermée à la circulation', 'travaux'),
    ('les travaux sur la place vont durer encore longtemps', 'travaux'),
    ("on m'a enlevé ma voiture, où est la fourrière", 'stationnement'),
    ('le stationnement est payant le samedi', 'stationnement'),
    ('le chien du voisin aboie toute la nuit et il y a du bruit', 'police_municipale'),
    ('une voiture brûlée est abandonnée sur le parking depuis deux semaines', 'police_municipale'),
    ('mon voisin est tombé dans son jardin, il ne bouge plus', 'urgence'),
    ("de la fumée noire sort de la maison d'en face", 'urgence'),
    ("quels sont les horaires d'ouverture du cimetière", 'cimetiere'),
    ('je voudrais acheter une concession pour mes parents', 'cimetiere'),
    ("j'ai perdu mon portefeuille au marché", 'objets_trouves'),
    ("quelqu'un a trouvé des lunettes", 'objets_trouves'),
    ('je voudrais réserver la salle polyvalente pour un repas', 'location_salle'),
    ('combien coûte la location de la salle des fêtes', 'location_salle'),
    ('un chien sans collier se promène dans le quartier', 'animaux'),
    ("il y a un nid de guêpes dans l'arbre de l'école", 'animaux'),
    ('mon eau est marron ce matin', 'eau_assainissement'),
    ("je voudrais résilier mon abonnement d'eau", 'eau_assainissement'),
    ('le bus de la ligne 2 passe à quelle heure', 'transports'),
    ("mon fils prend le car pour aller au lycée, comment l'inscrire", 'transports'),
    ("je peux parler à quelqu'un de la mairie", 'parler_agent'),
    ('je voudrais un interlocuteur humain', 'parler_agent'),
    ('je voudrais rencontrer monsieur le maire', 'rendez_vous_elu'),
    ("j'aimerais voir l'adjoint à l'urbanisme", 'rendez_vous_elu'),
    ("je ne suis pas content du tout de la façon dont on m'a reçu", 'reclamation'),
    ('je voudrais déposer une plainte contre le service technique', 'reclamation'),
    ("j'ai un problème avec ma déclaration de revenus", 'hors_sujet'),
    ('je voudrais renouveler ma carte vitale', 'hors_sujet'),
]

HELD_OUT = [
    ('bonjour euh vous fermez à quelle heure le vendredi soir', 'horaires'),
    ('le numéro de la mairie annexe', 'horaires'),
    ("bonjour c'est pour avoir un extrait de naissance de mon père", 'etat_civil_naissance'),
    ('je voudrais avoir les papiers pour notre mariage', 'etat_civil_mariage'),
    ("c'est pour un acte de décès de mon mari", 'etat_civil_deces'),
    ("je voudrais faire une carte d'identité pour ma fille de dix ans", 'identite'),
    ('ma procuration pour dimanche, je la fais où', 'elections'),
    ('est-ce que mon fils de dix-sept ans peut encore se faire recenser', 'recensement_citoyen'),
    ('mes parents viennent du Maroc pour un mois, il faut une attestation', 'attestation_accueil'),
    ('je veux savoir si je peux construire sur mon terrain', 'urbanisme'),
    ("il y a une plaque de la chaussée qui s'est soulevée", 'voirie'),
    ("euh dans ma rue les lampadaires s'éteignent tout le temps", 'eclairage'),
    ('on a jeté un matelas et des gravats dans le bois à côté', 'proprete_dechets'),
    ('je voudrais que vous passiez prendre une vieille cuisinière', 'encombrants'),
    ("l'inscription en CP c'est à partir de quand", 'inscription_scolaire'),
    ("ma fille mange à la cantine, il faut l'inscrire pour l'année prochaine", 'periscolaire'),
    ("je reprends le travail et je n'ai pas de solution de garde pour mon bébé", 'petite_enfance'),
    ("bonjour je suis handicapé et j'ai besoin d'aide à la maison", 'social'),
    ('je voudrais savoir où en est ma demande de logement', 'logement'),
    ('le gymnase est fermé pendant les vacances', 'sport_loisirs'),
    ('on voudrait inscrire notre fils au conservatoire', 'culture'),
    ("c'est quand le prochain vide-grenier", 'evenements'),
    ('ils refont la route devant chez moi, ça dure combien de temps', 'travaux'),
    ("j'ai pris une amende alors que j'avais mis mon disque", 'stationnement'),
    ("les voisins d'au-dessus crient toute la nuit", 'police_municipale'),
    ('vite venez il y a un homme par terre qui saigne', 'urgence'),
    ("l'eau rentre dans la maison, le salon est inondé", 'urgence'),
    ('combien coûte une case au columbarium', 'cimetiere'),
    ("j'ai laissé mon écharpe à la mairie hier", 'objets_trouves'),
    ('est-ce que la salle des fêtes est libre pour un baptême en mai', 'location_salle'),
    ('un chat errant miaule dans ma cave depuis hier', 'animaux'),
    ("j'ai une fuite sur mon compteur d'eau", 'eau_assainissement'),
    ("il y a une navette pour aller à l'hôpital", 'transports'),
    ('je veux un humain', 'parler_agent'),
    ('je voudrais écrire à madame le maire pour un problème', 'rendez_vous_elu'),
    ("votre service n'a jamais traité ma demande, je suis très mécontente", 'reclamation'),
    ("je voudrais changer l'adresse de ma carte grise", 'hors_sujet'),
    ("c'est pour la déclaration d'impôts de ma mère", 'hors_sujet'),
]


@pytest.fixture(scope="module")
def recogniser():
    return load_flow(FLOW)


def accuracy(flow, rows) -> float:
    return sum(first_turn(flow, u).judged() == i for u, i in rows) / len(rows)


def test_first_set(recogniser):
    assert accuracy(recogniser, FIRST_SET) >= 0.95


def test_held_out(recogniser):
    assert accuracy(recogniser, HELD_OUT) >= 0.85


def test_no_emergency_missed(recogniser):
    for u, i in FIRST_SET + HELD_OUT:
        if i == "urgence":
            assert first_turn(recogniser, u).label == "urgence", u
