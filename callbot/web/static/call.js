/* Page d'un appel : /api/dashboard/calls/{id} déjà mis en forme par le serveur (libellés français,
 * décalages depuis le début de l'appel) ; ici on ne fait que l'afficher. Alpine.js build CSP. */
(function () {
  "use strict";

  var CHANNELS = { sip: "Téléphone (SIP)", twilio: "Téléphone (Twilio)", test: "Test" };
  var TICKET_STATUS = { open: "À traiter", done: "Traité", closed: "Clos" };
  var CALLBACK_STATUS = { open: "À rappeler", done: "Rappel fait", no_answer: "Pas de réponse" };

  var F = window.CallbotFormat;  // common.js
  var duration = F.duration, capitalize = F.capitalize, humanKey = F.humanKey;

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
      callerText: function () { return F.caller(this.call.caller); },
      outcomeClass: function () { return "pill big outcome-" + this.call.outcome; },
      startedText: function () { return F.dateTime(this.call.started, "long"); },
      durationText: function () { return duration(this.call.duration_s); },
      themeText: function () { return F.theme(this.call.intent_label, this.call.intent); },
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
      ticketFields: function (t) { return F.fields(t.fields); },
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
