"""The emergency layer's word lists (data only; the logic is in ``emergency.py``).

Every entry is a regex fragment over the accent-folded text (``flows.text.fold``: lower case, no
accents, punctuation and apostrophes as spaces), matched from a word start. Lists are grouped by
*kind* of danger or of ordinary context: a new writer's miss is fixed by the kind it belongs to,
never by its sentence.
"""

from __future__ import annotations

_DAY = r"(?:lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche)"
_CHILD = r"(?:enfant|fils|fille|petit|petite|gamin|gamine|bebe|gosse|minot)"
_PERSON = (r"(?:quelqu un|gens|personnes?|monde|ouvriers?|enfants?|dame|monsieur|homme|femme|famille|"
           r"gamins?|petits?|voisins?|voisines?)")
_STRUCTURE = (r"(?:balcon|plafond|toit|toiture|mur|muret|immeuble|maison|plancher|escalier|echafaudage|grue|"
              r"batiment|facade|pont|passerelle|tribune|gradins?|charpente|cheminee|tranchee|terrasse|"
              r"mezzanine|falaise|rocher|chapiteau)s?")

# a show, an exhibition, a ceremony... about a disaster ("l'exposition sur le grand incendie")
_SHOW = (r"(?:exposition|expo|musee|film|documentaire|reportage|emission|reconstitution|commemoration|ceremonie|"
         r"demonstration|spectacle|conference|livre|roman|telethon|portes ouvertes|visite|concert|festival)s?")
_DISASTER = (r"(?:incendies?|explosions?|feux?|flammes|fumee|noyades?|secours|secourisme|pompiers|inondations?|crues?|"
             r"tempetes?|guerres?|bombardements?|attentats?|accidents?|naufrages?|desincarceration|victimes|"
             r"debarquement|catastrophes?) ")

# Strong danger words: one suffices, unless an ordinary context shares its clause.
DANGER = [
    # calls for help
    r"au secours", r"a l aide", r"aidez moi", r"aidez nous", r"vite vite", r"venez vite", r"urgence vitale",
    r"en danger", r"il va mourir", r"elle va mourir", r"ambulances? ", r"samu",
    r"(?:appelez|envoyez|faut) (?:la police|les secours|les pompiers)", r"envoyez (?:quelqu un|les secours)",
    # fire, smoke, gas, explosion
    r"au feu", r"(?:y a|il y a|ya) (?:le|du) feu", r"(?:prend|pris|prennent|en) feu", r"incendie", r"flamme",
    r"fumee", r"(?:ca|tout|la maison) brule", r"crame", r"(?:feu|fut|fu) a pris", r"odeur de gaz",
    r"sent (?:le|du) gaz", r"fuite de gaz", r"gaz partout", r"explos", r"monoxyde", r"intoxi", r"empoisonn",
    # unconscious, breathing, heart, stroke, fits, allergy
    r"inconscien", r"(?:respire|respirait) (?:plus|pas|mal)", r"ne respire", r"respire (?:tres |vraiment )?mal",
    r"(?:bouge|reagit|reveille) (?:plus|pas)", r"arret cardiaque", r"crise cardiaque", r"coeur (?:s est )?arrete",
    r"malaise", r"avc", r"convuls", r"etouff", r"s etrangle", r"fait une crise", r"evanou",
    r"(?:perdu|perd|perdre|perdait) (?:connaissance|conscience)", r"sans connaissance", r"tombee? dans les pommes",
    r"syncope",
    r"(?:la|sa) (?:bouche|figure|visage) (?:(?:est|qui|toute?|part|un peu) ){0,3}(?:de travers|tordue?|tombe|pend) ",
    r"(?:douleur|mal|serre|oppression) (?:\w+ ){0,2}(?:la |sa |ma )?poitrine",
    r"gorge (?:\w+ )?(?:se ferme|se serre|gonfle|enfle)", r"(?:langue|levres?|visage|figure) (?:qui )?(?:gonfle|enfle)",
    r"anaphyla", r"quincke", r"overdose", r"surdose",
    r"(?:il|elle|bebe|petit|petite) (?:est |devient |devenu |devenue )?(?:tout |toute )?(?:bleue?|violette?) ",
    r"levres? (?:toutes? )?(?:bleues?|violettes?)",
    # bleeding, falls, crushing, collapse of a structure
    r"saign", r"plein de sang", r"du sang", r"pisse le sang", r"beaucoup (?:de )?sang",
    r"(?:il|elle) est tombee? et (?:ne|n arrive)", r"ne se releve", r"n arrive (?:pas|plus) a se relever",
    r"(?:peux|peut|arrive) (?:pas|plus) (?:a )?(?:me|se) (?:lever|relever)",
    r"(?:peut|peux|peuvent|arrive) (?:plus|pas) (?:a )?bouger", r"par terre depuis",
    r"tombe (?:du|d un|d une|de la|par la) (?:toit|echelle|balcon|fenetre)", r"defenestr",
    r"vient de s (?:ecrouler|effondrer)", r"(?:vient|viennent) de s (?:ecrouler|effondrer|evanouir)",
    r"se sont (?:ecroule|effondre|evanoui)", r"coince(?:e|s)? sous", r"electrocut",
    _STRUCTURE + r" (?:\w+ ){0,3}(?:vient|viennent|est en train|sont en train) de (?:se decrocher|se detacher|ceder|"
                 r"se rompre|s ecrouler|s effondrer|tomber(?! en panne)|lacher)",
    _PERSON + r" (?:(?:est|sont|coincee?s?|bloquee?s?|encore|toujours|qui|restee?s?) ){0,2}"
              r"(?:dessous|sous les (?:decombres|gravats|ruines|eboulis))",
    r"ensevel",
    r"(?:pris|prend|prendre|recu) (?:une|un|le|du) (?:decharge|coup de jus|courant|arc)",  # an electric shock
    r"(?:eau|crue|inondation) (?:\w+ ){0,8}?" + _PERSON + r" (?:\w+ ){0,3}(?:est|sont|reste|restent) "
    r"(?:bloquee?s?|coincee?s?|piegee?s?)",  # water coming in and someone who cannot get out
    r"(?:le )?coeur qui (?:bat|s emballe) (?:n importe comment|trop vite|tres vite|plus)",
    r"(?:force|forcent|fracture|fracturent|defonce|defoncent|enfonce|enfoncent) (?:ma|la|notre|sa|leur) porte",
    r"(?:il y a|y a) (?:quelqu un|des gens|une personne|un enfant|du monde|des enfants) (?:dedans|dessous|coince)",
    _STRUCTURE + r" s (?:effondre|effondrent|ecroule|ecroulent)\b",
    r"(?:trottoir|chaussee|sol|route|terrain)s? (?:\w+ ){0,2}s (?:effondre|effondrent|ecroule|ecroulent|affaisse)\b",
    # water: drowning, floods, people trapped by rising water
    r"(?:se|s est) noy", r"se noie", r"noyade", r"tombe (?:a|dans) l eau", r"dans la riviere", r"emporte par",
    r"(?:voiture|personne|enfant|homme|femme|gamin|quelqu un) (?:est|et) dans l eau",
    r"au fond (?:du bassin|de l eau|de la piscine|du lac)",
    r"(?:enfant|gamin|gamine|petit|petite|garcon|fillette|homme|femme|quelqu un|personne|fille|fils|bebe|dame|"
    r"monsieur|nageur|baigneur)s? (?:qui |est en train de |sont en train de )coul",
    r"eau monte", r"eau (?:\w+ ){0,3}(?:arrete pas|n arrete pas|continue|commence) (?:de|a) monter",
    r"on est (?:bloque|coince)s?", r"(?:refugie|coince|bloque)e?s? (?:sur le toit|a l etage|dans le grenier)",
    r"digue", r"barrage (?:a )?(?:cede|lache)",
    r"(?:eau|inond\w*|crue) .{0,120}(?:peuvent|peut|arrivent|arrive) (?:pas|plus) (?:a )?(?:monter|sortir|bouger|partir"
    r"|quitter|descendre|evacuer)",
    # weapons, violence, intruders
    r"couteau", r"armes? ", r"pistolet", r"fusil(?:s|lade)? ", r"tire(?:nt)? sur", r"coups de feu", r"poignard",
    r"hache", r"machette", r"batte de", r"(?:menace|menacent|menacee?) avec", r"(?:est|sont) arme",
    r"me frappe", r"le frappe", r"la frappe", r"les frappe", r"nous frappe",
    r"(?:me|la|nous) (?:tape|tapent|cogne|cognent|bat|battent) (?!sur les nerfs|sur le systeme)",
    r"les (?:tape|cogne)nt? ",
    r"se battent", r"bagarre", r"(?:se fait|se font|m a|l a|a ete) agress",
    r"en train (?:de |d )(?:cambrioler|voler|frapper|forcer|entrer|rentrer|casser|attaquer|mordre|battre|tabasser)",
    r"en train de m ordre", r"menace de (?:me|le|la|nous)? ?(?:tuer|frapper)", r"se (?:sont |est )?jetee?s? sur",
    r"(?:la|le|les) lache(?:nt)? pas", r"cambrioleur", r"force la porte", r"forcer la porte",
    r"quelqu un (?:est )?(?:entre|rentre) chez",
    r"(?:un|des|le|les) (?:voleurs?|cambrioleurs?|intrus) (?:chez|dans) (?:moi|nous|la maison|l appartement|le jardin)",
    r"(?:chien|molosse|taureau|sanglier|vache)s? (?:\w+ ){0,3}(?:attaque|attaquent|s acharne|charge) "
    r"(?:un|une|mon|ma|le|la|des|les|notre) ",
    # children taken, lost or missing; vulnerable people gone
    r"(?:fille|fils|enfant|petit|petite|mere|pere|grand pere|grand mere|mari|femme|bebe)(?: de \w+ ans)? a disparu",
    r"(?:on|je) (?:le|la|les) cherche partout", r"je (?:le |la )?cherche partout",
    r"(?:on|je|la maitresse|la nounou|l ecole|la creche|personne) (?:ne )?(?:la|le|les) (?:trouve|retrouve) "
    r"(?:plus|pas)",
    r"perdu (?:mon|ma) (?:enfant|fils|fille|petit|petite)",
    r"ne (?:trouve|retrouve) plus (?:mon|ma) (?:enfant|fils|fille|petit|petite)",
    _CHILD + r"(?: de \w+ ans)? (?:il |elle )?est perdue?",
    r"kidnapp", _CHILD + r"s? (?:\w+ ){0,2}(?:a ete|ont ete|s est fait|se sont fait) (?:enleve|kidnapp)",
    r"(?:la|le|les) (?:reverrai|reverras|reverra|reverrez|reverrons|reverront) (?:jamais|plus)",
    r"(?:a|avait|ont) (?:trop )?bu .{0,60}"
    r"(?:roule|condui|au volant|(?:prend\w*|pris) (?:le volant|la route|la voiture))",
    # self-harm
    r"suicid", r"se tuer", r"me tuer", r"en finir", r"mettre fin a (?:ses|mes) jours", r"sauter du", r"va sauter",
    r"veut sauter", r"(?:messages?|lettre|mot) d adieu", r"(?:veut|va|vais|voulait) se (?:jeter|pendre|tailler|ouvrir)",
    r"(?:s est|se sont) pendu", r"(?:veut|veux|voulait) (?:plus|pas) vivre", r"(?:plus|pas) envie de vivre",
    r"(?:se|me) faire du mal", r"peur qu (?:il|elle|ils|elles) (?:ne )?(?:fasse|fassent|commette) (?:une|un) "
    r"(?:betise|connerie|geste|acte)", r"(?:va|veut|menace de) faire une (?:betise|connerie)",
    r"(?:pris|avale) (?:toute la |toutes les |tout le |une |des |plusieurs )?(?:boites?|tubes?|plaquettes?|flacons?) "
    r"(?:\w+ ){0,3}(?:medicaments|cachets|pilules|comprimes|somniferes|antidepresseurs)",
    r"(?:pris|avale) toute?s? (?:ses|mes|les|sa|la) (?:pilules|cachets|comprimes|somniferes)",
    r"avale (?:du|de la|des|un|une|les|mes|ses|sa|son)",
    # childbirth
    r"va accoucher", r"accouche (?:la|maintenant)", r"perdu les eaux", r"perd les eaux", r"contractions",
    r"poche (?:des eaux )?(?:est )?perce",
    # road and rail
    r"accident grave", r"grave accident", r"(?:sur|dans) les voies", r"(?:sur|vers) (?:la voie ferree|les rails)",
    r"(?:fauche|percute|renverse) (?:un|une|deux|trois|des|quelqu un|une personne|un pieton|un enfant|une? cycliste)",
    r"(?:vient|viennent) d etre (?:renvers|fauch|percut|poignard|agress|bless)",
    r"(?:faucher|percuter|renverser) (?:un pieton|une pietonne|un enfant|une? cycliste|quelqu un|une personne|une dame|"
    r"un monsieur|un homme|une femme|un gamin|une gamine|un petit|une petite)",
]
# Ordinary words that point to danger only with the classifier's agreement.
WEAK = [
    r"feu", r"brul", r"accident", r"tombe", r"blesse", r"inond", r"frappe", r"agress", r"cambriol", r"vol ",
    r"danger", r"urgen", r"vite", r"secours", r"mort", r"police", r"gaz", r"sang", r"fuite", r"crise", r"par terre",
    r"riviere", r"disparu", r"repond (?:plus|pas)", r"effondr", r"ecroul", r"coince", r"pompiers", r"tout mou",
    r"dans l eau", r"dedans", r"se sent pas bien", r"mal au", r"hopital", r"violen", r"menace", r"peur", r"noy",
    r"eau partout", r"alzheimer", r"toute? seule?", r"(?:trouve|retrouve) (?:plus|pas)", r"a terre", r"mordu",
    r"attaqu", r"toussent", r"produits?", r"recuper", r"sur le toit", r"allergi", r"gonfl", r"betise",
    r"oeufs? pourris?",
]
# Contexts where a strong word is ordinary: it then needs the classifier's agreement too.
BENIGN = [
    # fireworks, traffic lights, fire hydrants, drills, alarms, barbecues
    r"feux? d artifice", r"feux? (?:rouges?|tricolores?|verts?|orange|de circulation|de signalisation)",
    r"feu de la saint", r"detecteurs? de fumee", r"borne(?:s)? (?:a )?incendie", r"bouches? (?:a |d )incendie",
    r"exercice", r"alarme incendie", r"barbecue", r"petards?", r"feux? (?:pour les |des )?pietons?",
    # things to take away or repair: a gas cooker, a wreck, a burnt sofa
    r"(?:cuisinieres?|gazinieres?|chauffe eau|chaudieres?|bouteilles?|fours?|plaques?|rechauds?|radiateurs?|"
    r"bonbonnes?|poeles?) (?:a|au|de|du) gaz", r"epaves?", r"carcasses?",
    r"(?:voitures?|scooters?|motos?|velos?|vehicules?|canapes?|matelas|meubles?|poubelles?|containers?|conteneurs?|"
    r"bacs?) (?:accidentee?s?|calcinee?s?|incendiee?s?|brulees?|brules|cramees?|crames|(?:deja|tout|toute|"
    r"completement|a moitie|entierement) (?:brulee?s?|cramee?s?))\b",  # "la voiture brûle" is now: not this
    # words written on a wall are a quotation
    r"(?:y a |il y a |c est )?(?:ecrit|tague|marque|inscrit) (?:en gros )?(?:au feu|au secours|a l aide|danger)",
    # past events, dated
    r"l an (?:dernier|passe)", r"l annee (?:derniere|passee)",
    r"(?:la semaine|le mois) (?:derniere|dernier|passee|passe)",
    r"il y a (?:\w+ ){1,2}(?:jours?|semaines?|mois|ans?|annees?) ", r"l autre (?:jour|soir|nuit|semaine)",
    r"depuis des (?:mois|annees)",
    r"la nuit derniere", r"depuis l incendie", r"apres l incendie", r"(?:" + _DAY + ") dernier",
    r"(?:le soir|le jour|la nuit|le matin|la veille|le lendemain) (?:de l|du|de la|d une|d un|des) ",
    r"apres (?:son|sa|mon|ma|un|une|leur) (?:avc|accident|operation|infarctus|chute|malaise|crise)",
    r"(?:rentree?|sortie?|revenue?) de l hopital",
    # a death already past: its cause, paperwork, funeral, genealogy
    r"(?:mort|morte|morts|decedee?s?|tuee?s?|peri|perdu la vie) (?:dans|lors|pendant|suite a|a cause|d|de|en) "
    r"(?:l |la |le |une |un |d une |d un |les |des |sa |son )?(?:\w+ )?(?:incendie|explosion|accident|noyade|crise|"
    r"infarctus|avc|attentat|guerre|bombardement|inondation|tempete|naufrage|fusillade|chute|malaise|arret)",
    r"decede", r"est mort (?:il y a|la semaine|hier|le mois)", r"(?:la|une|sa|leur) tombe ", r"cimetiere",
    # paperwork, insurance, repairs done, rebuilding
    r"assurance", r"attestation", r"certificat", r"indemnis", r"rembours", r"facture", r"constat", r"formulaire",
    r"mes papiers", r"refaire", r"duplicata", r"degrevement",
    r"(?:ont|a|avez|ai|est|sont|ete|etait) (?:bien |deja |vite )?reparee?s? ", r"demolition", r"reconstru", r"deblai",
    r"(?:immeuble|maison|batiment|usine|ecole|grange|hangar|magasin|entrepot|gymnase|eglise|boulangerie|voiture|"
    r"appartement)s? incendiee?s?",
    # training, jobs, open days, shows, history
    r"cours de secourisme", r"formation", r"caserne", r"bal des pompiers", r"calendriers?", r"calendrier des pompiers",
    r"amicale", r"pompiers? volontaires?", r"devenir pompier", r"journaliste", r"spectacle", r"theatre",
    _SHOW + r" (?:\w+ ){0,2}(?:sur|avec|de|du|des|contre|pour|par|autour) (?:\w+ ){0,3}" + _DISASTER,
    r"(?<!pas le )(?<!pas les )numero (?:du samu|des pompiers|de la police)", r"l ancien",
    # nobody hurt, only a risk, a counterfactual, not serious, the hospital already
    r"personne (?:n )?(?:est|a ete) blesse", r"personne de blesse", r"aucun blesse", r"pas de blesse",
    r"va finir par", r"risque de", r"avant qu (?:un|une|il|elle|on)", r"(?:c est )?pas (?:violent|grave|dangereux)",
    r"(?:va|vont|vas) me tuer si", r"un jour (?:quelqu un|on|il)", r"quelqu un va se (?:tuer|blesser|faire)",
    r"(?:aurait|aurais|auraient|aurions) pu", r"aux urgences",
    r"(?:peut|pourrait|peuvent|pourraient|risque) (?:faire|avoir|declencher|provoquer) (?:un|une|des) "
    r"(?:chocs?|crises?|reactions?|malaises?|convulsions?)",
    r"(?:un|le|son|mon) pai ", r"projet d accueil",
    # an animal up a tree or on a roof
    r"(?:chat|chaton|oiseau|pigeon|perroquet|perruche|ecureuil|chouette|hibou)s? (?:\w+ ){0,4}(?:coince|bloque|"
    r"perche|en haut|dans (?:l|un|le|la) (?:arbre|platane|chene|cheminee|gouttiere))",
    # exasperation with the bot or a procedure ("au secours, je suis perdu dans vos menus")
    r"(?:perdue?|paumee?) dans (?:vos|les|ce|ces|votre|le) (?:menus?|touches|options|papiers|demarches|formulaires?|"
    r"site|standard|serveur)",
    r"j ai (?:rate|loupe|oublie|depasse) (?:la date|le delai|l inscription|la limite|le rendez vous)",
    r"(?:je veux|je voudrais|j aimerais) (?:juste|simplement|seulement) (?:les|le|la|un|une|des|savoir|connaitre)",
]
# Requests about a past event (paperwork for a death, a claim, a date to move): they make the danger words
# of their whole stretch of speech ordinary, across commas ("j'ai un décès à déclarer, un monsieur mort dans
# l'incendie"), but not across a change of subject ("mais là...") nor when the turn says it is happening now.
REQUEST = [
    r"acte de deces", r"declarer (?:le|un|son|sa) deces", r"deces a declarer", r"pompes funebres", r"concession",
    r"genealog", r"succession", r"(?:declarer|declaration de|dossier de) (?:un |le |mon )?sinistre",
    r"(?:le|la|les) refai(?:s|re|t) ",
    r"(?:decaler|reporter|repousser|annuler|deplacer|changer) (?:la date|le rendez vous|la ceremonie|le mariage|"
    r"notre mariage|la reservation|l inscription)",
]
# Habits and past events ("tous les soirs", "hier soir", "la dernière fois"): ordinary contexts too,
# unless the caller says it is still going on ("depuis hier soir", "toujours par terre", "ce matin").
PAST = [
    r"tous les (?:soirs|jours|matins|nuits|ans|week ends|weekends|etes|hivers|" + _DAY + "s)",
    r"chaque (?:soir|nuit|jour|annee|week end|weekend|semaine|ete|hiver|" + _DAY + ")",
    r"hier (?:soir|matin|apres midi)", r"il y a eu (?:un|une|des)", r"la derniere fois",
    r"l (?:ete|hiver|automne) (?:dernier|passe)", r"(?:au |le )?printemps (?:dernier|passe)",
    r"cet (?:hiver|ete|automne)", r"ce printemps", r"pendant (?:les vacances|la guerre|le confinement)",
    r"en (?:janvier|fevrier|mars|avril|mai|juin|juillet|aout|septembre|octobre|novembre|decembre) ",
    r"en (?:mille|dix neuf cent|deux mille|\d{4}|quatorze|quarante|trente|soixante) ",
    r"(?:du|le|ce) mois dernier", r"de la semaine derniere", r"au nouvel an", r"a (?:noel|la saint sylvestre|paques)",
    r"a chaque (?:pluie|orage|averse|fois)",
    r"parfois", r"souvent", r"des fois", r"de temps en temps", r"regulierement", r"sujet(?:te)? a",
    r"(?:quand|si|des qu|lorsqu) (?:il|elle|ils|elles|on|je|j) (?:a|ont|fait|font|monte) (?:de la |une |trop de )?"
    r"(?:fievre|temperature)",
]
NOW = [
    r"toujours", r"encore", r"depuis hier", r"depuis ce", r"depuis (?:\w+ )?(?:minutes?|heures?)", r"en ce moment",
    r"(?:la|ici) maintenant", r"ce (?:matin|soir|midi)", r"cette nuit", r"actuellement", r"(?:vient|viennent) de",
]
# "Nobody is hurt", "it is over": an ordinary call about a weak danger word, never about a strong one.
SAFE = [
    r"tout le monde va bien", r"personne n a rien", r"(?:on|nous) (?:va|allons) (?:tous )?bien",
    r"(?<!s )(?<!qu )(?:il|elle|ils|elles) (?:va|vont) (?:bien|mieux)", r"plus de peur que de mal",
    r"c est (?:degage|regle|repare|eteint)", r"(?:feu|incendie) est eteint",
]
# Long danger words matched through Whisper's slips ("un sandie", "inconsient"): same French
# phonetic spelling as the lexical scorer, at most one sound apart; not their ordinary relatives.
FUZZY = ["incendie", "inconscient", "inconsciente", "ambulance", "explosion", "electrocute", "noyade",
         "asphyxie", "hemorragie", "convulse", "convulsion"]
NOT_FUZZY = {"ambulancier", "ambulanciere", "ambulanciers", "ambulancieres"}
# Where callers change subject; "et là" only before what starts a clause ("et la fumée" is one clause).
CONNECTORS = [
    r"mais", r"attendez", r"attends", r"excusez moi", r"pardon", r"oh", r"ah", r"mon dieu", r"par contre",
    r"sauf que", r"d ailleurs", r"au fait", r"en plus",
    r"et la(?= (?:il|elle|ils|elles|on|je|j|ca|c|y|le|la|les|l|mon|ma|mes|ton|ta|son|sa|ses|un|une|des|tout|toute|"
    r"plus|d un coup|depuis|maintenant|personne|quelqu un|nous|vous|en|ya|y a|il y a) )",
]
# Names of streets and places: "rue du Gaz", "chemin du Feu", "12 rue de l'Incendie", "centre de secours"
# are where the caller is, not what is happening (while dictating an address they raised the alarm).
PLACE_KINDS = [
    r"rue", r"ruelle", r"avenue", r"boulevard", r"bd", r"chemin", r"impasse", r"place", r"allee", r"route",
    r"quartier", r"lotissement", r"residence", r"square", r"quai", r"cite", r"passage", r"sentier", r"hameau",
    r"lieu dit", r"rond point", r"carrefour", r"faubourg", r"esplanade", r"promenade", r"venelle", r"traverse",
    r"montee", r"parc", r"clos", r"domaine", r"centre", r"caserne", r"pont", r"cour",
]
PLACE_OF = [r"de la", r"de l", r"des", r"du", r"de", r"d", r"aux", r"au"]  # "rue [du] Gaz"
ESTATE_KINDS = [r"residence", r"lotissement", r"lieu dit", r"domaine", r"hameau", r"clos"]  # "résidence les Flammes"
# titles before a name: "rue du docteur Samu", "avenue du général Lefeu"
PLACE_TITLES = r"(?:docteur|general|marechal|president|saint|sainte|colonel|capitaine|commandant|abbe|pere|professeur)"
# landmarks named by what they are for: "en face des urgences de l'hôpital"
LANDMARKS = [
    r"(?:en face|a cote|pres|devant|derriere|parking|entree|sortie|au niveau|le long) (?:des|de l|du|de la) "
    r"(?:urgences|hopital|caserne|commissariat|centre de secours|gendarmerie)(?: de l hopital| du chu)?",
]
# Words a place name may hold that the layer or the recogniser would take for a danger.
PLACE_ALARMS = [
    r"gaz", r"feux?", r"incendies?", r"fumees?", r"secours", r"pompiers?", r"ambulances?", r"noy\w*", r"brul\w*",
    r"sang", r"morts?", r"urgences?", r"explosions?", r"inond\w*", r"crues?", r"samu", r"blesses?",
    r"flammes?", r"fusillades?", r"sinistres?", r"sanglante?s?", r"tue\w*", r"victimes?",
]
