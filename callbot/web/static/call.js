/* Page d'un appel : /api/dashboard/calls/{id} déjà mis en forme par le serveur (libellés français,
 * décalages depuis le début de l'appel) ; ici on ne fait que l'afficher. Alpine.js build CSP. */
(function () {
  "use strict";

  var CHANNELS = { sip: "Téléphone (SIP)", twilio: "Téléphone (Twilio)", test: "Test" };
  var TICKET_STATUS = { open: "À traiter", done: "Traité", closed: "Clos" };
  var CALLBACK_STATUS = { open: "À rappeler", done: "Rappel fait", no_answer: "Pas de réponse" };

  function pad2(n) { return (n < 10 ? "0" : "") + n; }
  function duration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "—";
    var s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + pad2(s % 60);
    return Math.floor(m / 60) + " h " + pad2(m % 60) + " min";
  }
  function capitalize(t) { t = String(t || ""); return t.charAt(0).toUpperCase() + t.slice(1); }
  function humanKey(k) { return capitalize(String(k).replace(/_/g, " ")); }
  function valueText(v) {
    if (v === null || v === undefined || v === "") return "—";
    if (typeof v === "object") return Array.isArray(v) ? v.join(", ") : JSON.stringify(v);
    if (v === true) return "oui";
    if (v === false) return "non";
    return String(v);
  }

  function callPage() {
    return {
      callId: decodeURIComponent(location.pathname.split("/").pop() || ""),
      call: null,
      errorText: "",
      technical: false,

      init: function () {
        var self = this;
        fetch("/api/dashboard/calls/" + encodeURIComponent(this.callId), { credentials: "same-origin", cache: "no-store" })
          .then(function (r) {
            if (r.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(location.pathname)); throw new Error(""); }
            return r.json().then(function (data) {
              if (!r.ok) throw new Error(data.message || ("HTTP " + r.status));
              return data;
            });
          })
          .then(function (data) {
            self.call = data;
            document.title = "Appel " + (data.caller || "numéro masqué") + " — standard";
          })
          .catch(function (e) { if (e.message) self.errorText = e.message; });
      },

      backHref: function () {
        return document.referrer && document.referrer.indexOf(location.origin + "/dashboard?") === 0
          ? document.referrer.slice(location.origin.length) : "/dashboard";
      },
      hasCall: function () { return !!this.call; },
      hasError: function () { return !!this.errorText; },
      callerText: function () { return this.call.caller || "Numéro masqué"; },
      outcomeClass: function () { return "pill big outcome-" + this.call.outcome; },
      startedText: function () {
        return this.call.started ? new Date(this.call.started * 1000).toLocaleString("fr-FR", {
          weekday: "long", day: "numeric", month: "long", year: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit"
        }) : "—";
      },
      durationText: function () { return duration(this.call.duration_s); },
      themeText: function () { return capitalize(this.call.intent_label || (this.call.intent ? humanKey(this.call.intent) : "—")); },
      serviceText: function () { return capitalize(this.call.service_label || "—"); },
      agentText: function () { return this.call.agent_name || "—"; },
      waitText: function () { return this.call.queue_wait_s === null ? "—" : duration(this.call.queue_wait_s); },
      channelText: function () { return CHANNELS[this.call.channel] || this.call.channel || "—"; },
      latencyText: function () {
        var l = this.call.latency || {};
        if (!l.turns) return "—";
        return "moyenne " + l.mean_s.toFixed(2).replace(".", ",") + " s, max " + l.max_s.toFixed(2).replace(".", ",")
          + " s (" + l.turns + " tour" + (l.turns > 1 ? "s" : "") + ")";
      },
      hasSurvey: function () { return this.call.survey !== null && this.call.survey !== undefined; },
      surveyText: function () { return this.call.survey + " / 5"; },
      hasEmergency: function () { return !!(this.call && this.call.emergencies && this.call.emergencies.length); },
      emergencyText: function (e) { return e.text ? "« " + e.text + " »" : ""; },
      turns: function () {
        return (this.call.transcript || []).map(function (t, i) {
          return { i: i, who: t.who === "bot" ? "Assistant" : "Appelant", text: t.text, at: t.at,
                   cls: t.who === "bot" ? "turn from-bot" : "turn from-caller" };
        });
      },
      noTranscript: function () { return this.turns().length === 0; },
      hasPath: function () { return !!(this.call && this.call.transfer_path && this.call.transfer_path.length); },
      pathClass: function (s) { return "step step-" + s.type; },
      hasCallbacks: function () { return !!(this.call && this.call.callbacks && this.call.callbacks.length); },
      slotText: function (cb) { return "· " + cb.slot; },
      callbackStatus: function (cb) {
        var text = CALLBACK_STATUS[cb.status] || cb.status;
        if (cb.attempts) text += " · " + cb.attempts + " essai" + (cb.attempts > 1 ? "s" : "");
        if (cb.agent) text += " · " + cb.agent;
        return text;
      },
      callbackClass: function (cb) { return "pill cb-" + cb.status; },
      hasTickets: function () { return !!(this.call && this.call.tickets && this.call.tickets.length); },
      ticketKind: function (t) { return humanKey(t.kind || "—"); },
      ticketStatus: function (t) { return TICKET_STATUS[t.status] || humanKey(t.status || ""); },
      ticketFields: function (t) {
        var f = t.fields || {};
        return Object.keys(f).filter(function (k) { return f[k] !== ""; })
          .map(function (k) { return { key: k, label: humanKey(k), value: valueText(f[k]) }; });
      },
      setTechnical: function (on) { this.technical = !!on; },
      timeline: function () {
        var all = this.technical;
        return (this.call.timeline || []).map(function (e, i) {
          return { i: i, at: e.at, label: e.label, detail: e.detail, technical: e.technical,
                   cls: e.cls + (e.technical ? " technical" : "") };
        }).filter(function (e) { return all || !e.technical; });
      }
    };
  }

  document.addEventListener("alpine:init", function () { window.Alpine.data("callPage", callPage); });
})();
