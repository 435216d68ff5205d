// The hl7gw operations console: keeps the overview current without a reload (polls
// /console/status.json and patches the page) and sends the stream page's retry, skip and
// open as POSTs carrying the page's CSRF token. Served from the binary.
"use strict";
(function () {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const SVG = "http://www.w3.org/2000/svg";

  function set(root, field, text) {
    const el = root.querySelector('[data-field="' + field + '"]');
    if (el) el.textContent = String(text);
  }

  function bars(svg, list, width) {
    if (!svg) return;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    for (const b of list) {
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("x", b.x); r.setAttribute("y", b.y);
      r.setAttribute("width", width); r.setAttribute("height", b.h);
      r.setAttribute("class", b.class);
      const t = document.createElementNS(SVG, "title");
      t.textContent = b.title;
      r.appendChild(t);
      svg.appendChild(r);
    }
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function streams(tbody, list) {
    if (!tbody) return;
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    if (list.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      cell(tr, "No outbound stream has messages.").colSpan = 7;
      tbody.appendChild(tr);
    }
    for (const s of list) {
      const tr = document.createElement("tr");
      tr.className = "stream " + s.state_class;
      const a = document.createElement("a");
      a.href = s.href; a.textContent = s.destination;
      cell(tr, "").appendChild(a);
      const state = document.createElement("span");
      state.className = "state " + s.state_class; state.textContent = s.state;
      cell(tr, "").appendChild(state);
      cell(tr, s.reason, "reason"); cell(tr, s.since); cell(tr, s.depth, "num");
      cell(tr, s.oldest_age); cell(tr, s.last_ack);
      tbody.appendChild(tr);
    }
  }

  function patch(overview) {
    set(document, "generated-at", overview.generated_at);
    const at = document.getElementById("generated-at");
    if (at) at.textContent = overview.generated_at;
    for (const p of overview.parts) {
      const root = document.querySelector('section[data-part="' + p.key + '"]');
      if (!root || root.classList.contains("stream-page")) continue;
      set(root, "received", p.received); set(root, "sent", p.sent);
      for (const k of ["aa", "ae", "ar"]) {
        set(root, "answered-" + k, p.answered[k]); set(root, "responses-" + k, p.responses[k]);
      }
      set(root, "certificate-days", p.certificate_days === null ? "-" : p.certificate_days);
      const tile = root.querySelector('[data-field="certificate-tile"]');
      if (tile) tile.classList.toggle("warn", p.certificate_warn);
      set(root, "open-connections", p.open_connections);
      const error = root.querySelector('[data-field="error"]');
      if (error) { error.hidden = !p.error; error.textContent = p.error || ""; }
      bars(root.querySelector('[data-chart="traffic"]'), p.traffic, 7);
      bars(root.querySelector('[data-chart="acks"]'), p.acks, 14);
      streams(root.querySelector("tbody[data-streams]"), p.streams);
    }
  }

  async function poll() {
    try {
      const r = await fetch("/console/status.json", { cache: "no-store" });
      if (r.ok) patch(await r.json());
    } catch (e) { /* the next poll tries again */ }
  }

  if (document.getElementById("parts")) setInterval(poll, 5000);

  const page = document.querySelector("section.stream-page");
  if (!page) return;
  const operator = document.getElementById("operator");
  const reason = document.getElementById("reason");
  const result = document.getElementById("action-result");
  try { operator.value = localStorage.getItem("hl7gw-operator") || ""; } catch (e) { /* private mode */ }

  async function act(action, id) {
    result.className = "";
    if (!operator.value.trim() || !reason.value.trim()) {
      result.className = "fail";
      result.textContent = "Give your name and a reason first: both are recorded in the audit trail.";
      return;
    }
    try { localStorage.setItem("hl7gw-operator", operator.value.trim()); } catch (e) { /* ignore */ }
    const url = "/console/" + page.dataset.part + "/messages/" + id + "/" + action;
    const r = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
      body: JSON.stringify({ operator: operator.value, reason: reason.value }),
    });
    const body = await r.json().catch(() => ({ error: "HTTP " + r.status }));
    if (!r.ok) { result.className = "fail"; result.textContent = body.error || ("HTTP " + r.status); return; }
    if (action === "open") {
      const pre = document.getElementById("opened");
      pre.hidden = false;
      pre.textContent = "message " + id + " (opening was recorded)\n\n" + body.raw;
      return;
    }
    window.location.reload();
  }

  page.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (b) act(b.dataset.action, b.dataset.id);
  });
})();
