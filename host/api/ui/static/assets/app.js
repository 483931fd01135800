// Orloj console: three pages (tasks, one task, dead letters) over the /v1
// API, live through GET /v1/events. No framework: every element is built
// with createElement and text goes in with textContent, never as HTML, so
// nothing a task carries can become markup.
"use strict";

const STATES = ["queued", "running", "waiting", "retry_pending", "succeeded", "dead_letter", "discarded", "cancelled"];
const LARGE = 2000; // characters of JSON past which a body starts collapsed
let csrf = "";

// h builds an element: h("td", {class: "num", "data-label": "Attempts"}, "3").
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

async function api(path, opts = {}) {
  const init = { method: opts.method || "GET", headers: {} };
  if (init.method !== "GET") init.headers["X-Orloj-CSRF"] = csrf;
  if (opts.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) {
    location.assign("/ui/login");
    throw new Error("not logged in");
  }
  const body = resp.status === 204 ? null : await resp.json().catch(() => null);
  if (!resp.ok) throw new Error(body && body.error ? body.error + " (" + body.code + ")" : "HTTP " + resp.status);
  return body;
}

function notify(msg, ok) {
  const n = document.getElementById("notice");
  n.textContent = msg;
  n.className = ok ? "notice ok" : "notice";
  n.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { n.hidden = true; }, ok ? 4000 : 10000);
}

function stateBadge(st, id) {
  return h("span", { class: "state state-" + st, id }, st.replace("_", " "));
}

// outcomeBadge: an attempt ends succeeded, cancelled or with its error class.
function outcomeBadge(o) {
  const cls = o === "succeeded" ? "state-succeeded" : o === "cancelled" ? "state-cancelled" : "state-dead_letter";
  return h("span", { class: "state " + cls }, o.replace("_", " "));
}

function when(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  return h("time", { datetime: ts, title: ts }, d.toLocaleString());
}

function duration(from, to) {
  if (!from || !to) return "—";
  const ms = new Date(to) - new Date(from);
  return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}

function short(id) { return id && id.length > 14 ? id.slice(0, 12) + "…" : id; }

// longText shows up to n characters and the rest behind a disclosure, in a
// block that wraps and scrolls: a 10,000-character error cannot widen the page.
function longText(s, n = 300) {
  if (!s) return h("span", { class: "muted" }, "—");
  if (s.length <= n) return h("span", { class: "clip" }, s);
  return h("details", {}, h("summary", {}, s.slice(0, n) + "… (" + s.length + " characters)"), h("pre", { class: "block" }, s));
}

function jsonBlock(label, value) {
  const text = value === null || value === undefined ? "null" : JSON.stringify(value, null, 2);
  return h("details", { open: text.length <= LARGE },
    h("summary", {}, label + (text.length > LARGE ? " (" + text.length + " characters)" : "")),
    h("pre", { class: "block" }, text));
}

function cell(label, ...kids) { return h("td", { "data-label": label }, ...kids); }

function table(caption, headers, rows) {
  return h("div", { class: "table-wrap" }, h("table", { class: "cards" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col", class: x.num ? "num" : null }, x.t || x)))),
    h("tbody", {}, rows)));
}

// stream opens GET /v1/events; EventSource resends Last-Event-ID itself
// when it reconnects, so no change is missed across a dropped connection.
function stream(params, onTask, onReset, resumeFrom) {
  const live = document.getElementById("live");
  const q = new URLSearchParams(params || "");
  if (resumeFrom) q.set("last_event_id", resumeFrom);
  let last = resumeFrom || "";
  const es = new EventSource("/v1/events" + (q.toString() ? "?" + q : ""));
  es.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  es.onerror = () => {
    live.textContent = "reconnecting…";
    live.className = "live off";
    // A refused stream (the session ended) is not retried by the browser:
    // asking for the session sends the page to the login if so.
    if (es.readyState === EventSource.CLOSED) {
      api("/ui/session").then(() => setTimeout(() => stream(params, onTask, onReset, last), 2000), () => {});
    }
  };
  es.addEventListener("task", (e) => { last = e.lastEventId; onTask(JSON.parse(e.data)); });
  es.addEventListener("reset", (e) => { last = e.lastEventId; onReset(); });
  return es;
}

function debounce(fn, ms) {
  let t;
  return () => { clearTimeout(t); t = setTimeout(fn, ms); };
}

function main() { return document.getElementById("main"); }

function render(...kids) {
  const m = main();
  m.replaceChildren(...kids);
}

// ---- Tasks ----

async function tasksPage() {
  const q = new URLSearchParams(location.search);
  const state = q.get("state") || "", agentName = q.get("agent") || "";
  document.title = "Tasks · Orloj console";
  const countsList = h("ul", { class: "counts", "aria-label": "Tasks per state" });
  const tbody = h("tbody", {});
  const form = h("form", { class: "filters", method: "get", action: "/ui/tasks", role: "search" },
    h("div", {}, h("label", { for: "f-state" }, "State"),
      h("select", { id: "f-state", name: "state" }, h("option", { value: "" }, "any"),
        STATES.map((s) => h("option", { value: s, selected: s === state }, s)))),
    h("div", {}, h("label", { for: "f-agent" }, "Agent"),
      h("input", { id: "f-agent", name: "agent", value: agentName, placeholder: "any", autocomplete: "off" })),
    h("button", { type: "submit" }, "Filter"));
  render(h("h1", {}, "Tasks"), form, countsList,
    h("div", { class: "table-wrap" }, h("table", { class: "cards", id: "tasks" },
      h("caption", {}, "Newest first, at most 200" + (state ? "; state " + state : "") + (agentName ? "; agent " + agentName : "")),
      h("thead", {}, h("tr", {}, ["Task", "Agent", "State", { t: "Attempts", num: true }, "Error", "Updated"].map((x) =>
        h("th", { scope: "col", class: x.num ? "num" : null }, x.t || x)))),
      tbody)));

  const row = (t) => h("tr", { "data-task": t.id },
    cell("Task", h("a", { href: "/ui/tasks/" + encodeURIComponent(t.id), class: "mono" }, t.id)),
    cell("Agent", t.agent + "@" + t.version),
    cell("State", stateBadge(t.state)),
    h("td", { class: "num", "data-label": "Attempts" }, String(t.attempts)),
    cell("Error", t.error ? t.error.class : ""),
    cell("Updated", when(t.updated_at)));

  const loadCounts = async () => {
    const counts = await api("/v1/tasks/counts" + (agentName ? "?agent=" + encodeURIComponent(agentName) : ""));
    countsList.replaceChildren(...STATES.map((s) => {
      const p = new URLSearchParams({ state: s });
      if (agentName) p.set("agent", agentName);
      return h("li", {}, h("a", { href: "/ui/tasks?" + p, "aria-current": s === state ? "true" : null, "data-state": s },
        s.replace("_", " ") + " ", h("span", { class: "n" }, String(counts[s] || 0))));
    }));
  };
  const loadRows = async () => {
    const p = new URLSearchParams({ order: "newest", limit: "200" });
    if (state) p.set("state", state);
    if (agentName) p.set("agent", agentName);
    const ts = await api("/v1/tasks?" + p);
    tbody.replaceChildren(...(ts.length ? ts.map(row) : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No tasks."))]));
  };
  const reload = () => Promise.all([loadCounts(), loadRows()]).catch((e) => notify(e.message));
  const recount = debounce(() => loadCounts().catch((e) => notify(e.message)), 300);
  const sp = new URLSearchParams();
  if (agentName) sp.set("agent", agentName);
  stream(sp.toString(), (ev) => {
    recount();
    const old = tbody.querySelector(`tr[data-task="${CSS.escape(ev.task_id)}"]`);
    if (state && ev.state !== state) {
      if (old) old.remove();
      return;
    }
    const t = { id: ev.task_id, agent: ev.agent, version: ev.version, state: ev.state, attempts: ev.attempt,
      error: ev.class ? { class: ev.class } : null, updated_at: ev.at };
    const r = row(t);
    r.className = "flash";
    if (old) old.replaceWith(r);
    else {
      const empty = tbody.querySelector("td[colspan]");
      if (empty) empty.parentElement.remove();
      tbody.prepend(r);
    }
  }, reload);
  await reload();
}

// ---- Task ----

async function taskPage(id) {
  document.title = "Task " + id + " · Orloj console";
  const load = async () => {
    const [t, calls, events] = await Promise.all([
      api("/v1/tasks/" + encodeURIComponent(id)),
      api("/v1/tasks/" + encodeURIComponent(id) + "/calls"),
      api("/v1/tasks/" + encodeURIComponent(id) + "/events"),
    ]);
    const focused = document.activeElement && document.activeElement.id;
    render(...(await taskView(t, calls, events)));
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  };
  stream("task=" + encodeURIComponent(id), debounce(() => load().catch((e) => notify(e.message)), 150), load);
  await load();
}

async function taskView(t, calls, events) {
  const spent = t.spent || { calls: 0, tokens: 0, by_attempt: [] };
  const out = [
    h("p", {}, h("a", { href: "/ui/tasks" }, "← Tasks")),
    h("h1", {}, "Task ", h("span", { class: "mono" }, t.id), " ", stateBadge(t.state, "task-state")),
    h("dl", { class: "facts" },
      h("dt", {}, "Agent"), h("dd", {}, t.agent + "@" + t.version),
      h("dt", {}, "Attempts"), h("dd", {}, t.attempts + " of " + t.max_attempts),
      h("dt", {}, "Submitted"), h("dd", {}, when(t.created_at)),
      h("dt", {}, "Updated"), h("dd", {}, when(t.updated_at)),
      t.next_at && t.state === "retry_pending" ? [h("dt", {}, "Next attempt"), h("dd", {}, when(t.next_at))] : null,
      h("dt", {}, "Spent"), h("dd", {}, spent.calls + " calls, " + spent.tokens + " tokens"),
      t.idempotency_key ? [h("dt", {}, "Idempotency key"), h("dd", { class: "mono" }, t.idempotency_key)] : null,
      t.discard_reason ? [h("dt", {}, "Discarded because"), h("dd", {}, longText(t.discard_reason))] : null),
  ];
  if (t.state === "dead_letter") out.push(await dlqActions(t, () => {}));
  if (t.error) {
    out.push(h("section", { "aria-labelledby": "err-h" }, h("h2", { id: "err-h" }, "Last error: " + t.error.class),
      h("pre", { class: "block error" }, t.error.message),
      t.error.stderr_tail ? h("details", {}, h("summary", {}, "stderr tail"), h("pre", { class: "block" }, t.error.stderr_tail)) : null));
  }
  out.push(h("h2", {}, "Input and output"), jsonBlock("Input", t.input), jsonBlock("Output", t.output));

  out.push(h("h2", {}, "Attempts"));
  if (!t.history.length) out.push(h("p", { class: "muted" }, "No attempt has started."));
  // Attempt numbers start again at 1 after a retry from the dead-letter
  // queue, so an attempt's calls and logs are those with its number that
  // happened between its start and the next attempt's.
  const retries = events.filter((e) => e.type === "dlq_retried");
  t.history.forEach((a, i) => {
    const from = new Date(a.started_at);
    const next = t.history[i + 1];
    const until = next ? new Date(next.started_at) : null;
    const inside = (e) => e.attempt === a.n && new Date(e.at) >= from && (!until || new Date(e.at) < until);
    const mine = calls.filter(inside);
    const logs = events.filter((e) => e.type === "log" && inside(e));
    const tally = {};
    let tokens = 0;
    for (const c of mine) {
      tally[c.outcome] = (tally[c.outcome] || 0) + 1;
      tokens += c.tokens || 0;
    }
    for (const r of retries) {
      const at = new Date(r.at);
      if (at <= from && (i === 0 || at > new Date(t.history[i - 1].started_at))) {
        out.push(h("p", { class: "retried" }, "Retried from the dead-letter queue as " + r.message + " · ", when(r.at)));
      }
    }
    out.push(h("section", { class: "attempt", "aria-label": "Attempt " + a.n + " (lease token " + a.token + ")", "data-attempt": a.n, "data-token": a.token },
      h("h3", {}, "Attempt " + a.n, a.outcome ? outcomeBadge(a.outcome) : stateBadge("running")),
      h("p", { class: "meta" }, "node " + a.node + " · lease token " + a.token + " · started ", when(a.started_at),
        " · " + (a.ended_at ? "took " + duration(a.started_at, a.ended_at) : "running"),
        a.retry_delay ? " · retry in " + a.retry_delay : "",
        " · " + (tally.invoked || 0) + " calls invoked, " + tokens + " tokens spent"),
      a.error ? longText(a.error) : null,
      mine.length ? table(Object.entries(tally).map(([k, v]) => v + " " + k.replace("_", " ")).join(", "),
        ["Outcome", "Tool", "Status", { t: "Duration", num: true }, "Call ID", { t: "Tokens", num: true }, "Reason"],
        mine.map((c) => h("tr", {},
          cell("Outcome", h("span", { class: "state o-" + c.outcome }, c.outcome.replace("_", " "))),
          cell("Tool", c.tool), cell("Status", c.status || "—"),
          h("td", { class: "num", "data-label": "Duration" }, c.duration_us ? (c.duration_us / 1000).toFixed(1) + " ms" : "—"),
          cell("Call ID", h("span", { class: "mono", title: c.id }, short(c.id))),
          h("td", { class: "num", "data-label": "Tokens" }, String(c.tokens || 0)),
          cell("Reason", longText(c.reason, 160))))) : h("p", { class: "muted" }, "No tool calls."),
      logs.length ? h("details", {}, h("summary", {}, logs.length + " log lines"),
        h("pre", { class: "block" }, logs.map((e) => e.message).join("\n"))) : null));
  });
  out.push(h("details", {}, h("summary", {}, "Journal (" + events.length + " events)"),
    table("Every event, in order", ["Seq", "At", "Type", "Attempt", "Message"], events.map((e) => h("tr", {},
      cell("Seq", h("span", { class: "mono" }, String(e.seq))), cell("At", when(e.at)), cell("Type", e.type),
      cell("Attempt", e.attempt ? String(e.attempt) : "—"), cell("Message", longText(e.message, 200)))))));
  return out;
}

// ---- Dead letters ----

const versionsOf = {};
async function agentVersions(name) {
  if (!versionsOf[name]) versionsOf[name] = api("/v1/agents/" + encodeURIComponent(name)).then((d) => d.versions.map((v) => v.version));
  return versionsOf[name];
}

// dlqActions: retry (on the version chosen) and discard (with a reason).
async function dlqActions(t, done) {
  let versions = [t.version];
  try { versions = await agentVersions(t.agent); } catch (e) { notify(e.message); }
  const key = t.id.replace(/[^A-Za-z0-9]/g, "");
  const sel = h("select", { id: "ver-" + key, name: "version" },
    versions.slice().reverse().map((v) => h("option", { value: v, selected: v === t.version }, v + (v === t.version ? " (current)" : ""))));
  const reason = h("input", { id: "why-" + key, name: "reason", required: true, maxlength: 1024, autocomplete: "off" });
  const retry = h("button", { type: "button", id: "retry-" + key, onclick: async () => {
    retry.disabled = true;
    try {
      await api("/v1/dlq/" + encodeURIComponent(t.id) + "/retry", { method: "POST", body: { version: sel.value } });
      notify("Retried " + t.id + " on " + t.agent + "@" + sel.value, true);
      done();
    } catch (e) { notify("Retry refused: " + e.message); retry.disabled = false; }
  } }, "Retry");
  const discard = h("button", { type: "button", class: "danger", id: "discard-" + key, onclick: async () => {
    if (!reason.value.trim()) { notify("Give a reason to discard."); reason.focus(); return; }
    discard.disabled = true;
    try {
      await api("/v1/dlq/" + encodeURIComponent(t.id) + "/discard", { method: "POST", body: { reason: reason.value } });
      notify("Discarded " + t.id, true);
      done();
    } catch (e) { notify("Discard refused: " + e.message); discard.disabled = false; }
  } }, "Discard");
  return h("div", { class: "actions", role: "group", "aria-label": "Dead letter actions for " + t.id },
    h("div", {}, h("label", { for: sel.id }, "Agent version"), sel), retry,
    h("div", {}, h("label", { for: reason.id }, "Reason to discard"), reason), discard);
}

async function dlqPage() {
  const q = new URLSearchParams(location.search);
  const agentName = q.get("agent") || "", klass = q.get("class") || "";
  document.title = "Dead letters · Orloj console";
  const tbody = h("tbody", {});
  render(h("h1", {}, "Dead letters"),
    h("form", { class: "filters", method: "get", action: "/ui/dlq", role: "search" },
      h("div", {}, h("label", { for: "f-agent" }, "Agent"), h("input", { id: "f-agent", name: "agent", value: agentName, placeholder: "any", autocomplete: "off" })),
      h("div", {}, h("label", { for: "f-class" }, "Class"),
        h("select", { id: "f-class", name: "class" }, h("option", { value: "" }, "any"),
          ["permanent", "policy", "budget", "in_doubt", "attempts_exhausted"].map((c) => h("option", { value: c, selected: c === klass }, c)))),
      h("button", { type: "submit" }, "Filter")),
    h("div", { class: "table-wrap" }, h("table", { class: "cards", id: "dlq" },
      h("caption", {}, "Oldest first"),
      h("thead", {}, h("tr", {}, ["Task", "Agent", "Class", "Reason", "Entered", "Actions"].map((x) => h("th", { scope: "col" }, x)))),
      tbody)));
  const load = async () => {
    const p = new URLSearchParams();
    if (agentName) p.set("agent", agentName);
    if (klass) p.set("class", klass);
    const ts = await api("/v1/dlq?" + p);
    const rows = [];
    for (const t of ts) {
      rows.push(h("tr", { "data-task": t.id },
        cell("Task", h("a", { href: "/ui/tasks/" + encodeURIComponent(t.id), class: "mono" }, t.id)),
        cell("Agent", t.agent + "@" + t.version),
        cell("Class", t.error ? t.error.class : "—"),
        cell("Reason", longText(t.error ? t.error.message : "")),
        cell("Entered", when(t.updated_at)),
        cell("Actions", await dlqActions(t, () => {}))));
    }
    tbody.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "The dead-letter queue is empty."))]));
  };
  const reload = debounce(() => load().catch((e) => notify(e.message)), 200);
  const sp = new URLSearchParams();
  if (agentName) sp.set("agent", agentName);
  stream(sp.toString(), (ev) => {
    if (ev.from === "dead_letter") {
      const old = tbody.querySelector(`tr[data-task="${CSS.escape(ev.task_id)}"]`);
      if (old) old.remove();
    }
    if (ev.state === "dead_letter") reload();
  }, reload);
  await load();
}

// ---- Start ----

async function start() {
  try {
    const s = await api("/ui/session");
    csrf = s.csrf;
  } catch (e) { return; }
  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("/ui/logout", { method: "POST" }); } catch (e) { /* gone already */ }
    location.assign("/ui/login");
  });
  const path = location.pathname;
  const nav = path.startsWith("/ui/dlq") ? "nav-dlq" : "nav-tasks";
  document.getElementById(nav).setAttribute("aria-current", "page");
  try {
    if (path === "/ui/dlq") await dlqPage();
    else if (path.startsWith("/ui/tasks/")) await taskPage(decodeURIComponent(path.slice("/ui/tasks/".length)));
    else await tasksPage();
  } catch (e) {
    render(h("h1", {}, "Cannot show this page"), h("pre", { class: "block error" }, e.message));
  }
}

start();
