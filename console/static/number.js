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
    const windows = {};
    if (data.asCaller) windows.asCaller = data.asCaller.windows;
    if (data.asDid) windows.asDid = data.asDid.windows;
    document.getElementById("windows").textContent = Object.keys(windows).length ? JSON.stringify(windows, null, 2) : "—";
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
