"use strict";
/* The overview page: polls /api/overview every 5 s and redraws in place (no reload). */
(function () {
  const POLL_MS = 5000;
  const SVG = "http://www.w3.org/2000/svg";
  const ruleSelect = document.getElementById("rule");
  let last = null;

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function drawChart(minutes) {
    const box = document.getElementById("chart");
    box.replaceChildren();
    if (!minutes || minutes.length === 0) { box.append(bw.el("p", "No overview from the workers yet.", "muted")); return; }
    const W = 600, H = 160, L = 34, B = 18;
    const max = Math.max(1, ...minutes.map((m) => m.newFailures));
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", preserveAspectRatio: "none",
      "aria-label": "failures per minute, last 60 minutes" });
    const bw_ = (W - L) / minutes.length;
    for (const frac of [0, 0.5, 1]) {
      const y = H - B - frac * (H - B - 6);
      s.append(svg("line", { x1: L, x2: W, y1: y, y2: y }));
      const t = svg("text", { x: 2, y: y + 3 }); t.textContent = bw.fmtInt(Math.round(max * frac)); s.append(t);
    }
    minutes.forEach((m, i) => {
      const h = (m.newFailures / max) * (H - B - 6);
      const r = svg("rect", { x: L + i * bw_ + 1, y: H - B - h, width: Math.max(bw_ - 2, 1), height: h });
      const title = svg("title", {});
      title.textContent = `${new Date(m.minute).toLocaleTimeString()}: ${bw.fmtInt(m.newFailures)} failures`;
      r.append(title); s.append(r);
    });
    for (const [i, anchor] of [[0, "start"], [Math.floor(minutes.length / 2), "middle"], [minutes.length - 1, "end"]]) {
      const t = svg("text", { x: L + (i + 0.5) * bw_, y: H - 4, "text-anchor": anchor });
      t.textContent = new Date(minutes[i].minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      s.append(t);
    }
    box.append(s);
  }

  function drawTop(id, list) {
    const ol = document.getElementById(id);
    ol.replaceChildren();
    if (!list || list.length === 0) { ol.append(bw.el("li", "none", "muted")); return; }
    for (const t of list) {
      const li = bw.el("li");
      li.append(bw.numberLink(t.number), " ", bw.el("span", bw.fmtInt(t.failures) + (t.failures === 1 ? " failure" : " failures"), "muted"));
      ol.append(li);
    }
  }

  function drawAlerts(data) {
    const rule = ruleSelect.value;
    const wanted = Object.keys(data.firingByRule);
    if (rule && !wanted.includes(rule)) wanted.push(rule);
    const have = Array.from(ruleSelect.options).map((o) => o.value).filter((v) => v);
    if (wanted.sort().join() !== have.sort().join()) {
      ruleSelect.replaceChildren(new Option("all rules", ""));
      for (const r of wanted.sort()) ruleSelect.append(new Option(`${r} (${data.firingByRule[r] || 0})`, r));
      ruleSelect.value = rule;
    }
    const rows = data.alerts.filter((a) => !rule || a.rule === rule);
    document.getElementById("alert-count").textContent = bw.fmtInt(rows.length) + " firing";
    const tbody = document.querySelector("#alerts tbody");
    tbody.replaceChildren();
    if (rows.length === 0) {
      const tr = bw.el("tr"); const td = bw.el("td", "Nothing firing.", "muted"); td.colSpan = 6; tr.append(td); tbody.append(tr);
    }
    for (const a of rows.slice(0, 500)) {
      const tr = bw.el("tr");
      tr.dataset.fingerprint = a.fingerprint;
      const num = bw.el("td");
      if (a.number) num.append(bw.numberLink(a.number));
      if (a.caller && a.did) num.append(" → ", bw.numberLink(a.did));
      const since = bw.el("td", bw.ago(a.since)); since.title = bw.time(a.since);
      const outage = bw.el("td");
      if (a.outage) { const l = bw.el("a", a.rule === "binding_outage" ? "this outage" : "outage"); l.href = "#outage"; outage.append(l); }
      tr.append(bw.el("td", a.rule), bw.el("td", a.severity, "sev-" + a.severity), num,
        bw.el("td", bw.fmtInt(a.count), "num"), since, outage);
      tbody.append(tr);
    }
    if (rows.length > 500) {
      const tr = bw.el("tr"); const td = bw.el("td", `… and ${bw.fmtInt(rows.length - 500)} more`, "muted"); td.colSpan = 6; tr.append(td); tbody.append(tr);
    }
  }

  function drawOutage(data) {
    const banner = document.getElementById("outage");
    const o = data.outage;
    if (!o) { banner.hidden = true; banner.textContent = ""; return; }
    banner.hidden = false;
    banner.textContent = `Binding outage (${o.severity}) since ${bw.time(o.since)}: ${bw.fmtInt(o.count)} failures ` +
      `in ${Math.round(o.windowSeconds / 60)} min (threshold ${bw.fmtInt(o.threshold)}). Per-number alerts below may be part of it.`;
  }

  function draw(data) {
    last = data;
    drawOutage(data);
    const ov = data.overview;
    drawChart(ov ? ov.minutes : null);
    drawTop("top-callers", ov ? ov.topCallers : null);
    drawTop("top-dids", ov ? ov.topDids : null);
    drawAlerts(data);
    const status = document.getElementById("status");
    const parts = [`Updated ${new Date().toLocaleTimeString()}`];
    if (!data.viewRebuilt) parts.push("the console is still reading the alerts topic");
    if (!ov) parts.push("no overview yet (" + (data.overviewMissing || "waiting") + ")");
    else parts.push(`overview from ${bw.ago(ov.generatedAt)}`);
    status.textContent = parts.join(" · ");
  }

  async function poll() {
    try {
      const r = await bw.get("/api/overview");
      if (r.ok) draw(await r.json());
      else document.getElementById("status").textContent = `The console answered ${r.status}; retrying.`;
    } catch (e) {
      document.getElementById("status").textContent = "The console cannot be reached; retrying.";
    }
    setTimeout(poll, POLL_MS);
  }
  ruleSelect.addEventListener("change", () => { if (last) drawAlerts(last); });
  poll();
})();
