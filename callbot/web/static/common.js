/* Mises en forme communes (fr-FR) à la console des agents, au tableau de bord et à la page d'un appel.
 *
 * Des fonctions pures, sans dépendance, exposées sur `window.CallbotFormat` ; chargé (defer) avant le
 * script de la page, qui les reprend dans ses méthodes Alpine. Pas d'eval, pas de script en ligne (CSP).
 */
(function () {
  "use strict";

  function pad2(n) { return (n < 10 ? "0" : "") + n; }

  /* 7 -> "7 s", 125 -> "2 min 05", 3725 -> "1 h 02 min" ; null, undefined, NaN -> "—" */
  function duration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "—";
    var s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + pad2(s % 60);
    return Math.floor(m / 60) + " h " + pad2(m % 60) + " min";
  }

  /* 1234.5 -> "1 234,5" (au plus `digits` décimales, 1 par défaut) */
  function num(v, digits) {
    return Number(v).toLocaleString("fr-FR", { maximumFractionDigits: digits === undefined ? 1 : digits });
  }

  /* 0.125 -> "12,5 %" ; null -> "—" */
  function pct(v) { return v === null || v === undefined ? "—" : num(v * 100, 1) + " %"; }

  function capitalize(text) {
    text = String(text || "");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  /* "etat_civil" -> "Etat civil" */
  function humanKey(key) { return capitalize(String(key).replace(/_/g, " ")); }

  /* Valeur d'une information recueillie ou d'un champ de signalement. */
  function valueText(v) {
    if (v === null || v === undefined || v === "") return "—";
    if (typeof v === "object") return Array.isArray(v) ? v.join(", ") : JSON.stringify(v);
    if (v === true) return "oui";
    if (v === false) return "non";
    return String(v);
  }

  /* { clé: valeur } -> [{ key, label, value }] pour une liste <dl>, sans les valeurs vides ni les clés `omit`. */
  function fields(obj, omit) {
    var f = obj || {}, skip = omit || [];
    return Object.keys(f).filter(function (k) { return skip.indexOf(k) < 0 && f[k] !== ""; })
      .map(function (k) { return { key: k, label: humanKey(k), value: valueText(f[k]) }; });
  }

  /* Le numéro de l'appelant, ou « Numéro masqué ». */
  function caller(number) { return number || "Numéro masqué"; }

  /* Le thème d'un appel : son libellé, sinon le nom de l'intention, sinon « — ». */
  function theme(label, intent) { return capitalize(label) || humanKey(intent || "—"); }

  var DATE_STYLES = {
    short: { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit" },
    medium: { weekday: "short", day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit" },
    long: { weekday: "long", day: "numeric", month: "long", year: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" }
  };

  /* Un horodatage Unix (secondes) en date et heure locales ; style "short", "medium" (défaut) ou "long". */
  function dateTime(ts, style) {
    return ts ? new Date(ts * 1000).toLocaleString("fr-FR", DATE_STYLES[style || "medium"]) : "—";
  }

  window.CallbotFormat = {
    pad2: pad2, duration: duration, num: num, pct: pct, capitalize: capitalize, humanKey: humanKey,
    valueText: valueText, fields: fields, caller: caller, theme: theme, dateTime: dateTime
  };
})();
