/* Tableau de bord de la supervision : chiffres de /api/stats, direct de /api/live, recherche et exports.
 *
 * Alpine.js (build CSP, vendored) : pas de `eval`, donc toute la logique est ici, dans des méthodes
 * appelées depuis dashboard.html. Les graphiques (Chart.js, vendored) sont créés ici aussi : la CSP
 * de la page interdit tout script en ligne. Les instances Chart.js restent hors de l'état Alpine
 * (un proxy réactif autour d'un graphique le casse) et reçoivent des copies des tableaux.
 */
(function () {
  "use strict";

  var LIVE_MS = 5000;       // tuiles « en ce moment »
  var STATS_MS = 60000;     // indicateurs : les appels terminés s'y ajoutent au fil de l'eau
  var COLORS = { bot: "#1b7f4b", agent: "#1f4e8c", botAbandon: "#e8590c", queueAbandon: "#b3261e",
                 callback: "#7b61ff", offered: "#5d6b7c", bar: "#3d6fb6" };
  var STATES = [
    { key: "available", label: "Disponibles" }, { key: "ringing", label: "Sonnerie" },
    { key: "on_call", label: "En communication" }, { key: "wrap_up", label: "Après-appel" },
    { key: "away", label: "Absents" }, { key: "offline", label: "Hors ligne" }
  ];
  /* Les cartes principales, dans l'ordre de lecture ; `extra` = l'indicateur à lire à côté. */
  var HEADLINE = [
    { key: "calls_offered", title: "Appels reçus", extra: "calls_answered" },
    { key: "pickup_rate", title: "Taux de décroché" },
    { key: "bot_abandonment_rate", title: "Abandon pendant le dialogue avec l'assistant" },
    { key: "queue_abandonment_rate", title: "Abandon en attente d'un agent", extra: "short_abandons" },
    { key: "service_level", title: "SL" },
    { key: "average_speed_of_answer_s", title: "Délai moyen de prise en charge (ASA)" },
    { key: "containment_rate", title: "Taux de résolution par l'assistant", extra: "deflection_rate",
      extraTitle: "Déviation brute" },
    { key: "transfer_rate", title: "Transferts" },
    { key: "callback_rate", title: "Rappels", extra: "callbacks_done_rate" },
    { key: "satisfaction_avg", title: "Satisfaction", extra: "satisfaction_response_rate" },
    { key: "v2v_p50_s", title: "Latence voix-à-voix p50 / p95", extra: "v2v_p95_s", extraTitle: "p95" }
  ];
  var WEEKDAYS = ["Lundi", "Mardi", "Mercredi", "Jeudi", "Vendredi", "Samedi", "Dimanche"];
  var charts = {};

  // ---- formats (fr-FR) : la base est dans common.js
  var F = window.CallbotFormat;
  var pad2 = F.pad2, num = F.num, pct = F.pct, capitalize = F.capitalize;
  function isoDay(d) { return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()); }
  function addDays(d, n) { var x = new Date(d.getFullYear(), d.getMonth(), d.getDate()); x.setDate(x.getDate() + n); return x; }
  function parseDay(s) { var p = String(s).split("-"); return new Date(+p[0], +p[1] - 1, +p[2]); }
  /* Comme F.duration, avec les centièmes sous 10 s (latences) : 1.87 -> "1,87 s" */
  function duration(seconds) {
    if (seconds < 10 && seconds % 1) return num(seconds, 2) + " s";
    return F.duration(seconds);
  }
  function kpiValue(k) {
    if (!k || k.value === null || k.value === undefined) return "—";
    if (k.unit === "ratio") return pct(k.value);
    if (k.unit === "seconds") return duration(k.value);
    if (k.unit === "score") return num(k.value, 1) + " / 5";
    return num(k.value, 1);
  }
  /* « numérateur / dénominateur » dans l'unité de l'indicateur ; vide pour un simple compte. */
  function kpiParts(k) {
    if (!k) return "";
    var hasNum = k.numerator !== null && k.numerator !== undefined;
    var hasDen = k.denominator !== null && k.denominator !== undefined;
    if (!hasDen) return "";
    if (!hasNum) return "sur " + num(k.denominator, 0) + " mesures";
    var top = k.unit === "seconds" ? duration(k.numerator) : num(k.numerator, 1);
    return top + " / " + num(k.denominator, 1);
  }
  function dayLabel(d, withYear, tz) {
    var o = withYear ? { weekday: "long", day: "numeric", month: "long", year: "numeric" }
                     : { weekday: "short", day: "2-digit", month: "2-digit" };
    if (tz) o.timeZone = tz;  // the town hall's days (the stats buckets'), whatever the browser's zone
    return d.toLocaleDateString("fr-FR", o);
  }
  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.status === 401) { toLogin(); throw new Error("not logged in"); }
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) { var e = new Error(data.message || ("HTTP " + r.status)); e.status = r.status; throw e; }
        return data;
      });
    });
  }
  function toLogin() { window.location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search)); }

  // ---- graphiques
  function chartDefaults() {
    if (!window.Chart) return false;
    Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif';
    Chart.defaults.color = "#1c2430";
    Chart.defaults.locale = "fr-FR";
    Chart.defaults.animation = false;  // lisible tout de suite, et rien ne bouge pendant une capture
    Chart.defaults.maintainAspectRatio = false;  // la hauteur est celle de .chart-box (CSS)
    return true;
  }

  function upsert(id, config) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    if (charts[id]) {
      charts[id].data = config.data;
      charts[id].options = config.options;
      charts[id].update();
    } else {
      charts[id] = new Chart(canvas, config);
    }
  }

  function seriesLabels(points, step, tz) {
    var zone = tz ? { timeZone: tz } : {};
    var day = new Intl.DateTimeFormat("fr-FR", Object.assign({ day: "2-digit", month: "2-digit" }, zone));
    var hour = new Intl.DateTimeFormat("fr-FR", Object.assign({ hour: "numeric", hourCycle: "h23" }, zone));
    var days = {};
    points.forEach(function (p) { days[day.format(new Date(p.t * 1000))] = true; });
    var manyDays = Object.keys(days).length > 1;
    return points.map(function (p) {
      var d = new Date(p.t * 1000);
      if (step === "day") return dayLabel(d, false, tz);
      var h = parseInt(hour.format(d), 10) + " h";
      return manyDays ? d.toLocaleDateString("fr-FR", Object.assign({ weekday: "short" }, zone)) + " " + h : h;
    });
  }

  function drawCharts(stats) {
    if (!chartDefaults()) return;
    var points = (stats.series && stats.series.points) || [];
    var step = (stats.series && stats.series.step) || "hour";
    function col(name) { return points.map(function (p) { return p[name] || 0; }); }
    function bars(label, name, color) {
      return { type: "bar", label: label, data: col(name), backgroundColor: color, stack: "issues", borderRadius: 2 };
    }
    var legend = { position: "bottom", labels: { boxWidth: 14, boxHeight: 14, padding: 14 } };
    upsert("chart-series", {
      type: "bar",
      data: {
        labels: seriesLabels(points, step, stats.timezone),
        datasets: [
          bars("Résolus par l'assistant", "resolved", COLORS.bot),
          bars("Mis en relation avec un agent", "agent", COLORS.agent),
          bars("Abandons pendant le dialogue", "bot_abandons", COLORS.botAbandon),
          bars("Abandons en attente d'un agent", "queue_abandons", COLORS.queueAbandon),
          bars("Rappels demandés", "callbacks", COLORS.callback),
          { type: "line", label: "Appels reçus", data: col("offered"), borderColor: COLORS.offered,
            backgroundColor: COLORS.offered, borderWidth: 2, pointRadius: 2, stack: "offered", cubicInterpolationMode: "monotone" }
        ]
      },
      options: {
        responsive: true, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
        plugins: { legend: legend },
        scales: { x: { stacked: true, grid: { display: false } },
                  y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "appels" } } }
      }
    });
    var simple = function (labels, data, label) {
      return {
        type: "bar",
        data: { labels: labels, datasets: [{ label: label, data: data, backgroundColor: COLORS.bar, borderRadius: 3 }] },
        options: { responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } },
                   scales: { x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true } },
                             y: { beginAtZero: true, ticks: { precision: 0 } } } }
      };
    };
    var hours = [];
    for (var h = 0; h < 24; h++) hours.push(h + " h");
    upsert("chart-hours", simple(hours, (stats.by_hour || []).slice(0, 24), "Appels reçus"));
    upsert("chart-weekdays", simple(WEEKDAYS.map(function (d) { return d.slice(0, 3) + "."; }),
                                    (stats.by_weekday || []).slice(0, 7), "Appels reçus"));
  }

  // ---- le composant
  function dashboard() {
    return {
      me: { name: "", display_name: "" },
      csrf: "",
      services: [],
      outcomes: [],
      period: "today",
      from: "",
      to: "",
      customFrom: "",
      customTo: "",
      service: "",
      stats: null,
      statsError: "Chargement des indicateurs…",
      loading: false,
      live: null,
      liveOk: false,
      q: "",
      outcome: "",
      searchScope: "period",
      searching: false,
      searched: false,
      results: [],
      searchInfo: null,
      flash: "",
      flashKind: "info",
      _flashTimer: null,
      _seq: 0,

      init: function () {
        var self = this;
        this.readUrl();
        getJSON("/api/me").then(function (me) { self.csrf = me.csrf || ""; }).catch(function () {});
        getJSON("/api/dashboard/meta").then(function (m) {
          self.me = m.me; self.services = m.services || []; self.outcomes = m.outcomes || [];
        }).catch(function (e) { self.say(e.message, "error"); });
        this.loadStats();
        this.loadLive();
        setInterval(function () { self.loadLive(); }, LIVE_MS);
        setInterval(function () { if (document.visibilityState === "visible") self.loadStats(true); }, STATS_MS);
      },

      // ---- période
      readUrl: function () {
        var p = new URLSearchParams(location.search);
        this.service = p.get("service") || "";
        var period = p.get("period") || "today";
        if (period === "custom" && p.get("from") && p.get("to")) {
          this.period = "custom"; this.from = this.customFrom = p.get("from"); this.to = this.customTo = p.get("to");
        } else {
          this.setRange(["today", "7d", "30d"].indexOf(period) >= 0 ? period : "today");
        }
      },
      writeUrl: function () {
        var p = new URLSearchParams();
        p.set("period", this.period);
        if (this.period === "custom") { p.set("from", this.from); p.set("to", this.to); }
        if (this.service) p.set("service", this.service);
        history.replaceState(null, "", "/dashboard?" + p.toString());
      },
      setRange: function (period) {
        var today = new Date();
        var back = { today: 0, "7d": 6, "30d": 29 }[period];
        this.period = period;
        this.from = isoDay(addDays(today, -back));
        this.to = isoDay(today);
        this.customFrom = this.from;
        this.customTo = this.to;
      },
      setPeriod: function (period) {
        if (period === "custom") { this.period = "custom"; return; }  // on attend les dates
        this.setRange(period);
        this.writeUrl();
        this.loadStats();
      },
      setCustomFrom: function (v) { this.customFrom = v; },
      setCustomTo: function (v) { this.customTo = v; },
      applyCustom: function () {
        if (!this.customFrom || !this.customTo) return;
        if (this.customTo < this.customFrom) { this.say("La date de fin est avant la date de début.", "error"); return; }
        this.from = this.customFrom; this.to = this.customTo;
        this.writeUrl();
        this.loadStats();
      },
      isPeriod: function (p) { return this.period === p; },
      periodClass: function (p) { return this.period === p ? "seg active" : "seg"; },
      setService: function (s) { this.service = s; this.writeUrl(); this.loadStats(); },
      isService: function (s) { return this.service === s; },
      query: function (withService) {
        var p = new URLSearchParams({ from: this.from, to: this.to });
        if (withService && this.service) p.set("service", this.service);
        return p.toString();
      },
      callsCsvUrl: function () { return "/api/calls.csv?" + this.query(false); },
      statsCsvUrl: function () { return "/api/stats.csv?" + this.query(true); },
      serviceLabel: function (name) {
        for (var i = 0; i < this.services.length; i++) if (this.services[i].name === name) return this.services[i].label;
        return name;
      },
      scopeText: function () {
        if (!this.from) return "";
        var a = parseDay(this.from), b = parseDay(this.to);
        var when = this.from === this.to ? "Le " + dayLabel(a, true) : "Du " + dayLabel(a, true) + " au " + dayLabel(b, true);
        var svc = this.service ? "service : " + capitalize(this.serviceLabel(this.service)) : "tous les services";
        return when + " (jours entiers) · 24 h/24, heures d'ouverture et de fermeture confondues · " + svc + ".";
      },

      // ---- chargements
      loadStats: function (quiet) {
        var self = this, seq = ++this._seq;
        if (!quiet) this.loading = true;
        return getJSON("/api/stats?" + this.query(true)).then(function (data) {
          if (seq !== self._seq) return;  // une réponse plus récente est déjà demandée
          drawCharts(data);  // avant l'état Alpine : Chart.js reçoit des tableaux neufs
          self.stats = data;
          self.statsError = "";
        }).catch(function (e) {
          if (seq !== self._seq) return;
          self.stats = null;
          self.statsError = "Indicateurs indisponibles : " + e.message;
        }).finally(function () { if (seq === self._seq) self.loading = false; });
      },
      loadLive: function () {
        var self = this;
        return getJSON("/api/live").then(function (data) { self.live = data; self.liveOk = true; })
          .catch(function () { self.liveOk = false; });
      },

      // ---- en ce moment
      liveValue: function (name) { return this.live && this.live[name] !== undefined ? num(this.live[name], 0) : "—"; },
      agentCount: function (state) {
        return this.live && this.live.agents ? num(this.live.agents[state] || 0, 0) : "—";
      },
      agentsLoggedText: function () {
        if (!this.live || !this.live.agents) return "";
        var a = this.live.agents, on = 0;
        ["available", "ringing", "on_call", "wrap_up"].forEach(function (s) { on += a[s] || 0; });
        return "sur " + on + " agent" + (on > 1 ? "s" : "") + " en service";
      },
      agentStates: function () {
        var a = (this.live && this.live.agents) || {};
        return STATES.map(function (s) { return { key: s.key, label: s.label, n: a[s.key] || 0, dot: "dot state-" + s.key }; });
      },
      longestWaitText: function () {
        var q = (this.live && this.live.queue) || [];
        if (!q.length) return "personne n'attend";
        var longest = 0;
        q.forEach(function (c) { longest = Math.max(longest, c.wait_s || 0); });
        return "la plus longue attente : " + duration(Math.round(longest));
      },
      waitingTileClass: function () {
        return this.live && this.live.waiting > 0 ? "tile warn" : "tile";
      },
      liveText: function () { return this.liveOk ? "En direct" : "Direct indisponible"; },
      liveClass: function () { return this.liveOk ? "live on" : "live off"; },

      // ---- indicateurs
      hasStats: function () { return !!this.stats; },
      noStats: function () { return !this.stats && !!this.statsError; },
      kpi: function (key) { return this.stats && this.stats.kpis ? this.stats.kpis[key] : null; },
      card: function (key, title) {
        var k = this.kpi(key);
        return { key: key, title: title || (k ? k.label : key), value: kpiValue(k), parts: kpiParts(k),
                 partsTitle: "numérateur / dénominateur", definition: k ? k.definition : "" };
      },
      cards: function () {
        if (!this.stats) return [];
        var self = this, sl = this.stats.settings || {};
        return HEADLINE.map(function (h) {
          var title = h.key === "service_level" ? "Niveau de service (80 % en " + num(sl.sl_threshold_s || 20, 0) + " s)" : h.title;
          var c = self.card(h.key, title);
          c.extra = h.extra && self.kpi(h.extra) ? self.card(h.extra, h.extraTitle) : null;
          var k = self.kpi(h.key);
          c.cls = "kpi" + (k && k.value === null ? " nodata" : "");
          return c;
        });
      },
      otherKpis: function () {
        if (!this.stats) return [];
        var shown = {}, self = this;
        HEADLINE.forEach(function (h) { shown[h.key] = true; if (h.extra) shown[h.extra] = true; });
        return Object.keys(this.stats.kpis).filter(function (k) { return !shown[k]; })
          .map(function (k) { return self.card(k); });
      },
      otherCount: function () { return this.otherKpis().length; },
      howToRead: function () {
        var s = (this.stats && this.stats.settings) || {};
        var sa = num(s.short_abandon_s === undefined ? 5 : s.short_abandon_s, 0) + " s";
        var sl = num(s.sl_threshold_s === undefined ? 20 : s.sl_threshold_s, 0) + " s";
        return [
          "Appels reçus : tous les appels arrivés sur la ligne, y compris refusés et raccrochés immédiatement. "
            + "Appels décrochés : l'assistant a parlé. Appels mis en file : l'appelant attend un agent.",
          "Chaque taux est affiché avec son numérateur / dénominateur ; « — » signifie qu'il n'y a aucun appel à compter.",
          "Deux abandons distincts, jamais additionnés : pendant le dialogue avec l'assistant, et en attente d'un agent. "
            + "Les appels raccrochés en moins de " + sa + " sont comptés dans les appels reçus mais exclus des taux d'abandon.",
          "Niveau de service : appels pris par un agent en " + sl + " ou moins / appels mis en file (hors raccrochés en moins de "
            + sa + ") ; abandons, rappels et sorties de file comptent contre. Objectif usuel : 80 %.",
          "Délai moyen de prise en charge (ASA) : compté à partir de la mise en file d'attente, sans le temps passé avec l'assistant.",
          "Résolution par l'assistant : sans agent, sans rappel et sans nouvel appel du même numéro dans les 24 h ; "
            + "la déviation brute compte tous les appels terminés sans agent, résolus ou non.",
          "Une demande de rappel n'est pas un abandon ; les appels hors horaires suivis d'un rappel sont comptés en rappels.",
          "Données conservées " + (s.retention_days || "?") + " jours ; une journée va de 0 h à 24 h, heure de la mairie."
        ].map(function (t, i) { return { i: i, text: t }; });
      },
      seriesCaption: function () {
        if (!this.stats || !this.stats.series) return "";
        return (this.stats.series.step === "day" ? "Par jour" : "Par heure")
          + " : barres empilées par issue de l'appel, ligne = appels reçus (la différence : refusés, raccrochés immédiats, urgences, erreurs).";
      },

      // ---- thèmes, non compris
      intentRows: function () {
        if (!this.stats) return [];
        return (this.stats.intents || []).map(function (r) {
          var none = r.recognised === false || r.intent === "_none";
          return { intent: r.intent, label: none ? "Aucune demande reconnue" : capitalize(r.label || r.intent),
                   calls: num(r.calls, 0), resolved: num(r.resolved, 0), agent: num(r.agent, 0),
                   abandoned: num(r.abandoned, 0), callback: num(r.callback, 0), rate: pct(r.resolution_rate),
                   cls: none ? "muted" : "" };
        });
      },
      intentsEmpty: function () { return this.intentRows().length === 0; },
      noMatch: function () {
        if (!this.stats) return [];
        return (this.stats.no_match || []).map(function (n) {
          return { text: n.text, quoted: "« " + n.text + " »", times: n.count + " fois" };
        });
      },
      noMatchEmpty: function () { return this.noMatch().length === 0; },
      noMatchEmptyText: function () {
        return this.service ? "La liste porte sur tous les services : choisissez « Tous les services »."
                            : "Rien de non compris sur la période.";
      },

      // ---- recherche
      setQ: function (v) { this.q = v; },
      setOutcome: function (v) { this.outcome = v; },
      setSearchScope: function (v) { this.searchScope = v; },
      runSearch: function () {
        var self = this;
        var p = new URLSearchParams({ q: this.q, limit: "50" });
        if (this.outcome) p.set("outcome", this.outcome);
        if (this.searchScope === "period") { p.set("from", this.from); p.set("to", this.to); }
        this.searching = true;
        return getJSON("/api/calls/search?" + p.toString()).then(function (data) {
          self.results = data.calls || [];
          self.searchInfo = data;
          self.searched = true;
        }).catch(function (e) { self.say("Recherche impossible : " + e.message, "error"); })
          .finally(function () { self.searching = false; });
      },
      hasResults: function () { return this.results.length > 0; },
      searchSummary: function () {
        var d = this.searchInfo;
        if (!d) return "";
        var n = this.results.length;
        var text = n === 0 ? "Aucun appel trouvé" : n + " appel" + (n > 1 ? "s" : "") + " trouvé" + (n > 1 ? "s" : "");
        text += " (" + d.scanned + " appel" + (d.scanned > 1 ? "s" : "") + " parcouru" + (d.scanned > 1 ? "s" : "") + ").";
        if (n >= 50) text += " Seuls les 50 plus récents sont affichés : précisez la recherche.";
        else if (d.truncated) text += " Recherche limitée aux appels les plus récents : précisez la période.";
        return text;
      },
      dateTime: function (ts) { return F.dateTime(ts, "medium"); },
      durationText: function (s) { return duration(s === null || s === undefined ? null : Math.round(s)); },
      callerText: function (c) { return F.caller(c.caller); },
      themeText: function (c) { return F.theme(c.intent_label, c.intent); },
      matchedText: function (c) { return c.matched && c.matched !== c.caller ? "« " + c.matched + " »" : ""; },
      outcomeClass: function (o) { return "pill outcome-" + o; },

      // ---- divers
      say: function (text, kind) {
        var self = this;
        this.flash = text; this.flashKind = kind || "info";
        clearTimeout(this._flashTimer);
        this._flashTimer = setTimeout(function () { self.flash = ""; }, 8000);
      },
      flashClass: function () { return "flash " + this.flashKind; },
      hasFlash: function () { return !!this.flash; },
      myName: function () { return this.me.display_name || this.me.name; },
      logout: function () {
        fetch("/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": this.csrf } })
          .catch(function () {}).finally(function () { window.location.assign("/login"); });
      }
    };
  }

  document.addEventListener("alpine:init", function () { window.Alpine.data("dashboard", dashboard); });

  // pour les tests et le débogage : les graphiques et les formats
  window.callbotDashboard = { charts: charts, duration: duration, kpiValue: kpiValue, kpiParts: kpiParts };
})();
