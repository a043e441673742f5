// backorder console: the little that needs a script. Pages work without it.
"use strict";

// A form that moves stock is sent once: the button is disabled on submit (a double click
// would otherwise restock twice).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-confirm-once")) return;
  for (const button of form.querySelectorAll("button[type=submit]")) button.disabled = true;
});

// Events: follow the feed without a reload, newest on top.
function followEvents(table) {
  const body = table.tBodies[0];
  const state = document.getElementById("feed-state");
  const source = table.dataset.source;
  let after = table.dataset.after || "0";
  const KEEP = 500;

  function row(e) {
    const tr = document.createElement("tr");
    tr.dataset.id = e.id;
    tr.className = "fresh";
    const cells = [e.id, e.created_at, null, null];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      if (i === 0) td.className = "n";
      if (i === 2) {
        const span = document.createElement("span");
        span.className = "type";
        span.textContent = e.type;
        td.appendChild(span);
      } else if (i === 3) {
        const code = document.createElement("code");
        code.textContent = e.data;
        td.appendChild(code);
      } else {
        td.textContent = text;
      }
      tr.appendChild(td);
    });
    return tr;
  }

  async function poll() {
    let delay = 2000;
    if (!document.hidden) {
      try {
        const r = await fetch(`${source}?after=${encodeURIComponent(after)}`, {
          credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store",
        });
        if (r.status === 401) {
          const why = (await r.json()).reason || "";
          window.location.assign(`/console/sign-in${why ? `?reason=${encodeURIComponent(why)}` : ""}`);
          return;
        }
        if (r.ok) {
          const page = await r.json();
          for (const e of page.events) body.insertBefore(row(e), body.firstChild);
          while (body.rows.length > KEEP) body.deleteRow(-1);
          if (page.events.length) {
            const empty = document.getElementById("no-events");
            if (empty) empty.remove();
          }
          after = page.after;
          table.dataset.after = after;
          if (page.more) delay = 0;
          if (state) state.textContent = `newest first; following (last look ${new Date().toLocaleTimeString()})`;
        } else if (state) {
          state.textContent = `could not read the feed (${r.status}); trying again`;
        }
      } catch (err) {
        if (state) state.textContent = "offline; trying again";
      }
    }
    window.setTimeout(poll, delay);
  }
  window.setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("events");
  if (table) followEvents(table);
});
