"use strict";
/* One number's page: /api/numbers/{n}, refreshed every 5 s. */
(function () {
  const raw = decodeURIComponent(location.pathname.replace(/^\/numbers\//, ""));
  const number = bw.normalise(raw);
  document.getElementById("title").textContent = bw.fmtNumber(number);
  document.title = "bindwatch · " + bw.fmtNumber(number);

  function cellRow(cells) {
    const tr = bw.el("tr");
    for (const c of cells) tr.append(c instanceof Node ? c : bw.el("td", c));
    return tr;
  }

  function draw(status, data) {
    const st = document.getElementById("status");
    st.className = status === 200 ? "muted" : "error";
    st.textContent = status === 200 ? `Updated ${new Date().toLocaleTimeString()}` : data.message;
    const rows = [];
    for (const [as, rec] of [["caller", data.asCaller], ["DID", data.asDid]]) {
      if (!rec) continue;
      for (const f of rec.failures || []) rows.push({ as, f, caller: as === "caller" ? number : f.other, did: as === "DID" ? number : f.other });
    }
    rows.sort((a, b) => Date.parse(b.f.at) - Date.parse(a.f.at));
    const tb = document.querySelector("#failures tbody");
    tb.replaceChildren();
    for (const r of rows) {
      const when = bw.el("td", bw.time(r.f.at)); when.title = r.f.at;
      const c = bw.el("td"); c.append(bw.numberLink(r.caller));
      const d = bw.el("td"); d.append(bw.numberLink(r.did));
      const tr = cellRow([when, bw.el("td", r.as), c, d, bw.el("td", r.f.requestId)]);
      tr.className = "failure";
      tb.append(tr);
    }
    if (rows.length === 0) tb.append(cellRow([bw.el("td", status === 200 ? "none retained" : "—", "muted")]));
    const wb = document.querySelector("#windows tbody");
    wb.replaceChildren();
    for (const [as, rec] of [["caller", data.asCaller], ["DID", data.asDid]]) {
      if (!rec) continue;
      for (const [rule, w] of Object.entries(rec.windows || {})) {
        let n = w.count, note = "";
        if (w.distinctDids !== undefined) { n = w.distinctDids; note = "distinct DIDs"; }
        if (w.perDid) { const v = Object.values(w.perDid); n = v.length ? Math.max(...v) : 0; note = "most to one DID"; }
        if (w.explainedBy) note = (note ? note + "; " : "") + "explained by " + w.explainedBy.join(", ");
        const inWin = bw.el("td", bw.fmtInt(n || 0), "num" + ((n || 0) >= w.threshold ? " sev-critical" : ""));
        wb.append(cellRow([bw.el("td", as), bw.el("td", rule), inWin, bw.el("td", bw.fmtInt(w.threshold), "num"),
          bw.el("td", Math.round(w.windowSeconds / 60) + " min", "num"), bw.el("td", note, "muted")]));
      }
    }
    if (!wb.children.length) wb.append(cellRow([bw.el("td", "—", "muted")]));
    const at = document.querySelector("#number-alerts tbody");
    at.replaceChildren();
    for (const a of data.alerts) {
      const since = bw.el("td", bw.ago(a.since)); since.title = bw.time(a.since);
      at.append(cellRow([bw.el("td", a.rule), bw.el("td", a.status), bw.el("td", a.severity, "sev-" + a.severity),
        bw.el("td", bw.fmtInt(a.count), "num"), since]));
    }
    if (data.alerts.length === 0) at.append(cellRow([bw.el("td", "no alerts", "muted")]));
  }

  async function poll() {
    try {
      const r = await bw.get("/api/numbers/" + encodeURIComponent(number));
      const body = await r.json();
      draw(r.status, body);
    } catch (e) {
      const st = document.getElementById("status");
      st.className = "error"; st.textContent = "The console cannot be reached; retrying.";
    }
    setTimeout(poll, 5000);
  }
  poll();
})();
