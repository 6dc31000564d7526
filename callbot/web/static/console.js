/* Console des agents : état chargé depuis /api/console/state, rechargé à chaque événement SSE.
 *
 * Alpine.js (build CSP, vendored) : pas de `eval`, donc toute la logique est ici, dans des
 * méthodes appelées depuis les attributs de console.html. Pas de rechargement de page :
 * le serveur envoie `event: refresh` quand quelque chose change, la page relit l'état.
 */
(function () {
  "use strict";

  var PRESENCE = {
    available: "Disponible",
    away: "Absent",
    offline: "Hors ligne",
    ringing: "Sonnerie",
    on_call: "En communication",
    wrap_up: "Après-appel"
  };
  var SWITCHBOARD_STATES = ["ringing", "on_call", "wrap_up"];
  var CALL_STATE = { waiting: "En attente", offered: "Proposé", connecting: "Mise en relation" };
  var SLOT = { matin: "Matin", apres_midi: "Après-midi", indifferent: "Indifférent", "": "—" };
  var REASON = {
    callback_key: "Demandé pendant l'attente",
    max_wait: "Attente trop longue",
    no_agent: "Aucun agent disponible",
    closed: "Appel hors horaires",
    flow: "Demande auprès du standard"
  };
  var POLL_MS = 30000; // filet de sécurité si un événement s'est perdu (offre expirée sans message…)

  var F = window.CallbotFormat;  // common.js

  /* La sonnerie d'un appel proposé : deux tons (440/480 Hz, comme un téléphone), toutes les 3 s tant que
   * l'offre est là. WebAudio, rien à télécharger ; les navigateurs ne laissent jouer du son qu'après un
   * geste de l'agent : le premier clic sur la page l'autorise. */
  var Ring = {
    ctx: null, timer: null, count: 0,
    unlock: function () {
      var AC = window.AudioContext || window.webkitAudioContext;
      if (!AC) return;
      if (!this.ctx) this.ctx = new AC();
      if (this.ctx.state === "suspended") this.ctx.resume();
    },
    burst: function () {
      var ctx = this.ctx;
      Ring.count += 1;
      document.body.setAttribute("data-rings", String(Ring.count));
      if (!ctx || ctx.state !== "running") return;
      var t = ctx.currentTime, gain = ctx.createGain();
      gain.gain.setValueAtTime(0, t);
      gain.gain.linearRampToValueAtTime(0.15, t + 0.05);
      gain.gain.setValueAtTime(0.15, t + 0.9);
      gain.gain.linearRampToValueAtTime(0, t + 1.0);
      gain.connect(ctx.destination);
      [440, 480].forEach(function (f) {
        var o = ctx.createOscillator();
        o.frequency.value = f;
        o.connect(gain);
        o.start(t);
        o.stop(t + 1.0);
      });
    },
    set: function (on) {
      if (on && !this.timer) { this.burst(); this.timer = setInterval(function () { Ring.burst(); }, 3000); }
      if (!on && this.timer) { clearInterval(this.timer); this.timer = null; }
    }
  };
  document.addEventListener("click", function () { Ring.unlock(); }, true);
  var capitalize = F.capitalize, humanKey = F.humanKey, valueText = F.valueText;

  /* Le temps écoulé, en secondes entières : la seconde en cours ne compte qu'une fois finie. */
  function duration(seconds) { return F.duration(Math.floor(seconds || 0)); }

  function switchboard() {
    return {
      ready: false,
      live: false,
      csrf: "",
      me: { name: "", display_name: "", services: [], role: "agent", presence: "offline" },
      services: [],
      offer: null,
      queue: [],
      callbacks: [],
      agents: [],
      tickets: [],
      loadedAt: Date.now(),
      now: Date.now(),
      notes: {},
      busy: false,
      flash: "",
      flashKind: "info",
      _timer: null,
      _flashTimer: null,
      _source: null,

      init: function () {
        var self = this;
        this.loadMe().then(function () { return self.load(); }).then(function () { self.connect(); });
        setInterval(function () { self.now = Date.now(); }, 1000);
        setInterval(function () { self.load(); }, POLL_MS);
        document.addEventListener("visibilitychange", function () {
          if (document.visibilityState === "visible") self.load();
        });
      },

      // ---- données
      loadMe: function () {
        var self = this;
        return fetch("/api/me", { credentials: "same-origin", cache: "no-store" }).then(function (r) {
          if (r.status === 401) { self.toLogin(); throw new Error("not logged in"); }
          return r.json();
        }).then(function (me) { self.csrf = me.csrf || ""; });
      },

      load: function () {
        var self = this;
        if (this._leaving) return Promise.resolve();  // logging out: no more reads with a dying session
        return fetch("/api/console/state", { credentials: "same-origin", cache: "no-store" }).then(function (r) {
          if (r.status === 401) { self.toLogin(); throw new Error("not logged in"); }
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        }).then(function (st) {
          self.me = st.me;
          self.services = st.services || [];
          self.offer = st.offer;
          self.queue = st.queue || [];
          self.callbacks = st.callbacks || [];
          self.agents = st.agents || [];
          self.tickets = st.tickets || [];
          self.loadedAt = Date.now();
          self.now = self.loadedAt;
          self.ready = true;
          document.title = st.offer ? "Appel entrant — " + (st.offer.caller || "numéro masqué") : "Console — standard";
          Ring.set(!!st.offer);
        }).catch(function (e) {
          if (String(e.message).indexOf("not logged in") < 0) self.say("Connexion au serveur perdue, nouvel essai…", "error");
        });
      },

      refreshSoon: function () {
        var self = this;
        if (this._timer) return;
        this._timer = setTimeout(function () { self._timer = null; self.load(); }, 120);
      },

      connect: function () {
        var self = this;
        var source = new EventSource("/api/console/events");
        this._source = source;
        source.addEventListener("hello", function () { self.live = true; self.refreshSoon(); });
        source.addEventListener("refresh", function () { self.live = true; self.refreshSoon(); });
        source.addEventListener("ping", function () { self.live = true; });
        source.addEventListener("logout", function () { source.close(); self.toLogin(); });
        source.onerror = function () {
          self.live = false;
          if (source.readyState === EventSource.CLOSED) { // refusé (session finie ?) : on vérifie, on réessaie
            setTimeout(function () { self.load().then(function () { self.connect(); }); }, 5000);
          }
        };
      },

      post: function (url, body) {
        var self = this;
        return fetch(url, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": this.csrf },
          body: JSON.stringify(body || {})
        }).then(function (r) {
          if (r.status === 401) { self.toLogin(); throw new Error("not logged in"); }
          return r.json().catch(function () { return {}; }).then(function (data) {
            return { ok: r.ok, status: r.status, data: data };
          });
        });
      },

      toLogin: function () { window.location.assign("/login?next=%2Fconsole"); },

      say: function (text, kind) {
        var self = this;
        this.flash = text;
        this.flashKind = kind || "info";
        clearTimeout(this._flashTimer);
        this._flashTimer = setTimeout(function () { self.flash = ""; }, 6000);
      },

      // ---- actions
      setPresence: function (state) {
        var self = this;
        if (this.busy) return;
        this.busy = true;
        this.post("/api/console/presence", { state: state }).then(function (res) {
          if (!res.ok) self.say(res.data.message || "Changement d'état refusé", "error");
          else self.me.presence = state;
          return self.load();
        }).finally(function () { self.busy = false; });
      },

      answer: function (accept) {
        var self = this;
        if (!this.offer || this.busy) return;
        this.busy = true;
        var id = encodeURIComponent(this.offer.call_id);
        this.post("/api/console/offers/" + id + (accept ? "/accept" : "/decline"), {}).then(function (res) {
          if (res.ok) self.say(accept ? "Appel accepté : votre téléphone va sonner." : "Appel refusé.", "ok");
          else self.say(res.data.message || "Cet appel ne vous est plus proposé.", "error");
          return self.load();
        }).finally(function () { self.busy = false; });
      },
      accept: function () { this.answer(true); },
      decline: function () { this.answer(false); },

      closeCallback: function (cb, outcome) {
        var self = this;
        if (this.busy) return;
        this.busy = true;
        this.post("/api/callbacks/" + encodeURIComponent(cb.id), { outcome: outcome, note: this.noteOf(cb.id) })
          .then(function (res) {
            if (res.ok) {
              self.say(outcome === "done" ? "Rappel de " + cb.number + " terminé." :
                "Pas de réponse au " + cb.number + " : le rappel reste à faire.", "ok");
              delete self.notes[cb.id];
            } else {
              self.say(res.data.message || "Enregistrement refusé", "error");
            }
            return self.load();
          }).finally(function () { self.busy = false; });
      },

      logout: function () {
        var self = this;
        this._leaving = true;
        Ring.set(false);
        if (this._timer) { clearTimeout(this._timer); this._timer = null; }
        if (this._source) this._source.close();
        this.post("/logout", {}).catch(function () {}).finally(function () { self.toLogin(); });
      },

      noteOf: function (id) { return this.notes[id] || ""; },
      setNote: function (id, value) { this.notes[id] = value; },

      // ---- affichage
      myName: function () { return this.me.display_name || this.me.name; },
      elapsed: function () { return (this.now - this.loadedAt) / 1000; },
      waitText: function (item) { return duration((item.wait_s || 0) + this.elapsed()); },
      ageText: function (item) { return duration((item.age_s || 0) + this.elapsed()); },
      forText: function (item) { return duration((item.for_s || 0) + this.elapsed()); },
      ringLeftText: function () {
        if (!this.offer || this.offer.ring_left_s === null || this.offer.ring_left_s === undefined) return "";
        var left = Math.max(0, Math.round(this.offer.ring_left_s - this.elapsed()));
        return left > 0 ? "Répondez dans " + left + " s" : "Délai dépassé";
      },
      presenceLabel: function (state) { return PRESENCE[state] || state; },
      isPresence: function (state) { return this.me.presence === state; },
      presenceClass: function (state) { return this.me.presence === state ? "seg active state-" + state : "seg"; },
      switchboardState: function () { return SWITCHBOARD_STATES.indexOf(this.me.presence) >= 0; },
      dotClass: function (state) { return "dot state-" + state; },
      sbClass: function () { return "sb-state state-" + this.me.presence; },
      agentLabel: function (a) { return a.name === this.me.name ? a.display_name + " (vous)" : a.display_name; },
      serviceLabel: function (name) {
        for (var i = 0; i < this.services.length; i++) {
          if (this.services[i].name === name) return capitalize(this.services[i].label);
        }
        return capitalize(name === "*" ? "tous les services" : name);
      },
      myServices: function () {
        var self = this;
        if (this.me.role === "ops" && (!this.me.services || !this.me.services.length)) return "Tous les services";
        return (this.me.services || []).map(function (s) { return self.serviceLabel(s); }).join(" · ");
      },
      roleLabel: function () { return this.me.role === "ops" ? "Supervision" : "Agent"; },
      hasOffer: function () { return !!this.offer; },
      noOffer: function () { return !this.offer; },
      offerTheme: function () { return this.offer ? F.theme(this.offer.intent_label, this.offer.intent) : ""; },
      offerCaller: function () { return this.offer ? F.caller(this.offer.caller) : ""; },
      offerService: function () { return this.offer ? capitalize(this.offer.service_label || this.offer.service) : ""; },
      offerSlots: function () {
        if (!this.offer || !this.offer.slots) return [];
        var slots = this.offer.slots;
        return Object.keys(slots).map(function (k) { return { key: k, label: humanKey(k), value: valueText(slots[k]) }; });
      },
      hasSlots: function () { return this.offerSlots().length > 0; },
      transcript: function () {
        if (!this.offer || !this.offer.transcript) return [];
        return this.offer.transcript.map(function (t, i) {
          return { i: i, who: t.who === "bot" ? "Standard automatique" : "Appelant", text: t.text,
                   cls: t.who === "bot" ? "turn from-bot" : "turn from-caller" };
        });
      },
      hasTranscript: function () { return this.transcript().length > 0; },
      queueGroups: function () {
        var groups = {}, order = [], self = this;
        this.queue.forEach(function (c) {
          if (!groups[c.service]) { groups[c.service] = { name: c.service, label: self.serviceLabel(c.service), calls: [] }; order.push(c.service); }
          groups[c.service].calls.push(c);
        });
        return order.map(function (n) { return groups[n]; });
      },
      queueEmpty: function () { return this.queue.length === 0; },
      queueCount: function () { return this.queue.length; },
      callTheme: function (c) { return F.theme(c.intent_label, c.intent); },
      callState: function (c) {
        var label = CALL_STATE[c.state] || c.state;
        return c.agent && c.state !== "waiting" ? label + " à " + this.agentName(c.agent) : label;
      },
      callRowClass: function (c) { return "state-" + c.state + (c.priority > 0 ? " priority" : ""); },
      agentName: function (name) {
        for (var i = 0; i < this.agents.length; i++) if (this.agents[i].name === name) return this.agents[i].display_name;
        return name;
      },
      callbacksEmpty: function () { return this.callbacks.length === 0; },
      callbackCount: function () { return this.callbacks.length; },
      slotLabel: function (cb) { return SLOT[cb.slot] || cb.slot; },
      reasonLabel: function (cb) { return REASON[cb.reason] || cb.reason || "—"; },
      attemptsText: function (cb) {
        return cb.attempts ? cb.attempts + (cb.attempts > 1 ? " essais sans réponse" : " essai sans réponse") : "";
      },
      ticketsEmpty: function () { return this.tickets.length === 0; },
      ticketDate: function (t) { return F.dateTime(t.ts, "short"); },
      ticketKind: function (t) { return humanKey(t.kind || "—"); },
      ticketFields: function (t) { return F.fields(t.fields, ["service"]); },
      ticketStatus: function (t) { return t.status === "open" ? "À traiter" : humanKey(t.status || ""); },
      flashClass: function () { return "flash " + this.flashKind; },
      hasFlash: function () { return !!this.flash; },
      liveText: function () { return this.live ? "En direct" : "Reconnexion…"; },
      liveClass: function () { return this.live ? "live on" : "live off"; }
    };
  }

  document.addEventListener("alpine:init", function () {
    window.Alpine.data("switchboard", switchboard);
  });
})();
