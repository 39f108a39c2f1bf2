"use strict";
(function () {
  const q = new URLSearchParams(location.search);
  const err = document.getElementById("error");
  if (q.get("error") === "wrong") {
    err.textContent = "Wrong token: sign-in refused.";
    err.hidden = false;
  }
  const next = q.get("next");
  if (next && next.startsWith("/") && !next.startsWith("//")) {
    document.getElementById("next").value = next;
  }
})();
