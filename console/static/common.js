"use strict";
/* Shared by the pages: formatting, fetching with the session cookie, the search box. */
const bw = {
  fmtInt(n) { return new Intl.NumberFormat().format(n); },
  /* International digits as people read them: "+852 1234 5678". */
  fmtNumber(n) {
    if (!n) return "";
    if (!/^\d+$/.test(n)) return n;
    if (n.startsWith("852") && n.length === 11) return "+852 " + n.slice(3, 7) + " " + n.slice(7);
    return "+" + n;
  },
  ago(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  },
  time(iso) { return new Date(iso).toLocaleString(); },
  /* Same rule as the gateway (schemas/numbers.py normalise_number). */
  normalise(raw) {
    let s = raw.trim().replace(/[\s\-().]/g, "");
    if (s.startsWith("+")) s = s.slice(1);
    else if (s.startsWith("00") && s.length > 2) s = s.slice(2);
    return s;
  },
  el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  },
  numberLink(n) {
    const a = bw.el("a", bw.fmtNumber(n));
    a.href = "/numbers/" + encodeURIComponent(n);
    return a;
  },
  async get(url) {
    const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) { location.href = "/signin?next=" + encodeURIComponent(location.pathname); }
    return r;
  },
};
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("search");
  if (!form) return;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const n = bw.normalise(document.getElementById("q").value);
    if (n) location.href = "/numbers/" + encodeURIComponent(n);
  });
});
