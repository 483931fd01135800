// Orloj console: pages for tasks, one task, dead letters, approvals,
// agents, declared tools, schedules and the cluster, over the /v1 API, live
// through GET /v1/events. No framework: every element is built
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
  return (await request(path, opts)).body;
}

// apiList GETs a list: its items, and whether the node left some out (its
// limit; the X-Orloj-More header).
async function apiList(path) {
  const { body, resp } = await request(path, {});
  return { items: body, more: resp.headers.get("X-Orloj-More") === "true" };
}

async function request(path, opts) {
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
  return { body, resp };
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

// localTime reads a datetime-local value ("2026-12-02T09:30"), or null.
function localTime(v) {
  if (!v) return null;
  const d = new Date(v);
  return isNaN(d) ? null : d;
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
  // since and until are the datetime-local inputs' values, local time.
  const since = q.get("since") || "", until = q.get("until") || "";
  const sinceAt = localTime(since), untilAt = localTime(until);
  document.title = "Tasks · Orloj console";
  const countsList = h("ul", { class: "counts", "aria-label": "Tasks per state" });
  const tbody = h("tbody", {});
  const form = h("form", { class: "filters", method: "get", action: "/ui/tasks", role: "search" },
    h("div", {}, h("label", { for: "f-state" }, "State"),
      h("select", { id: "f-state", name: "state" }, h("option", { value: "" }, "any"),
        STATES.map((s) => h("option", { value: s, selected: s === state }, s)))),
    h("div", {}, h("label", { for: "f-agent" }, "Agent"),
      h("input", { id: "f-agent", name: "agent", value: agentName, placeholder: "any", autocomplete: "off" })),
    h("div", {}, h("label", { for: "f-since" }, "Submitted after"),
      h("input", { id: "f-since", name: "since", type: "datetime-local", step: 1, value: since })),
    h("div", {}, h("label", { for: "f-until" }, "Submitted before"),
      h("input", { id: "f-until", name: "until", type: "datetime-local", step: 1, value: until })),
    h("button", { type: "submit" }, "Filter"));
  render(h("h1", {}, "Tasks"), form, countsList,
    h("div", { class: "table-wrap" }, h("table", { class: "cards", id: "tasks" },
      h("caption", {}, "Newest first, at most 200" + (state ? "; state " + state : "") + (agentName ? "; agent " + agentName : "") +
        (sinceAt ? "; submitted at or after " + sinceAt.toLocaleString() : "") + (untilAt ? "; submitted before " + untilAt.toLocaleString() : "") +
        (sinceAt || untilAt ? " (the counts above are of every time)" : "")),
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
    if (sinceAt) p.set("since", sinceAt.toISOString());
    if (untilAt) p.set("until", untilAt.toISOString());
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
    // With a time filter, a task not on the page joins it only when it is
    // submitted now, inside the range: others were filtered out.
    if (!old && (sinceAt || untilAt) && (ev.from !== "" || (sinceAt && new Date(ev.at) < sinceAt) || (untilAt && new Date(ev.at) >= untilAt))) return;
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
    render(...(await taskView(t, calls, events, () => load().catch((e) => notify(e.message)))));
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  };
  stream("task=" + encodeURIComponent(id), debounce(() => load().catch((e) => notify(e.message)), 150), load);
  await load();
  // The page is built after it loads, so a link to a part of it (the DLQ's
  // "resolve" link) is followed here.
  const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (target) target.scrollIntoView();
}

async function taskView(t, calls, events, reload) {
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
  if (t.state === "dead_letter" && t.error && t.error.class === "in_doubt") out.push(await resolveForms(t, reload));
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

// resolveForms: for each call of an in_doubt dead letter that has no
// result and is not known unapplied, a form to record whether it took
// effect (POST /v1/dlq/{id}/resolve). A retry then replays the given
// result, or invokes the call again.
async function resolveForms(t, reload) {
  const entry = await api("/v1/dlq/" + encodeURIComponent(t.id));
  const open = entry.calls.filter((c) => !c.has_result && !c.not_applied);
  const sec = h("section", { "aria-labelledby": "resolve-h", class: "resolve" },
    h("h2", { id: "resolve-h" }, "Calls in doubt"),
    h("p", { class: "hint" }, "A call whose answer was lost may or may not have taken effect. Find out from the service, " +
      "record what you learned, then retry: a call that took effect is replayed with the result you give, one that did not is invoked again."));
  if (!open.length) sec.append(h("p", { class: "muted" }, "Every call is resolved: retry the task."));
  open.forEach((c, i) => {
    const k = "r" + i;
    const yes = h("input", { type: "radio", name: "applied-" + k, id: "applied-yes-" + k, value: "yes" });
    const no = h("input", { type: "radio", name: "applied-" + k, id: "applied-no-" + k, value: "no" });
    const result = h("textarea", { id: "result-" + k, rows: 3, placeholder: '{"status":200,"body":"..."}', "aria-describedby": "result-hint-" + k });
    const resultBox = h("div", { hidden: true }, h("label", { for: result.id }, "Result the call returned (JSON)"),
      h("p", { class: "hint", id: "result-hint-" + k }, "What a retry replays instead of invoking the call."), result);
    yes.addEventListener("change", () => { resultBox.hidden = false; });
    no.addEventListener("change", () => { resultBox.hidden = true; });
    const note = h("input", { id: "note-" + k, required: true, maxlength: 1024, autocomplete: "off" });
    const by = h("input", { id: "by-" + k, required: true, maxlength: 128, autocomplete: "name", value: sessionStorage.getItem("orloj.by") || "" });
    const go = h("button", { type: "submit", id: "resolve-" + k }, "Record");
    const form = h("form", { class: "resolve-call", "data-call": c.id, novalidate: true },
      h("fieldset", {}, h("legend", {}, "Call ", h("span", { class: "mono" }, c.id), " of " + c.tool + " (attempt " + c.attempt + ")"),
        h("div", { class: "choices" }, h("div", {}, yes, h("label", { for: yes.id }, "It took effect")),
          h("div", {}, no, h("label", { for: no.id }, "It did not take effect"))),
        resultBox,
        h("div", {}, h("label", { for: note.id }, "How you know"), note),
        h("div", {}, h("label", { for: by.id }, "Your name"), by),
        go));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!yes.checked && !no.checked) { notify("Say whether the call took effect."); yes.focus(); return; }
      if (!note.value.trim()) { notify("Say how you know."); note.focus(); return; }
      if (!by.value.trim()) { notify("Give your name: the journal records who decided."); by.focus(); return; }
      const body = { call_id: c.id, applied: yes.checked, note: note.value, by: by.value.trim() };
      if (yes.checked) {
        try { body.result = JSON.parse(result.value); } catch (e) { notify("The result is not JSON: " + e.message); result.focus(); return; }
      }
      go.disabled = true;
      try {
        await api("/v1/dlq/" + encodeURIComponent(t.id) + "/resolve", { method: "POST", body });
        sessionStorage.setItem("orloj.by", body.by);
        notify("Recorded call " + c.id + " as " + (body.applied ? "applied" : "not applied"), true);
        reload();
      } catch (e) { notify("Resolve refused: " + e.message); go.disabled = false; }
    });
    sec.append(form);
  });
  return sec;
}

// runEach acts on every listed task, four at a time, and reports each
// outcome in out as it comes; it answers how many succeeded.
async function runEach(ids, act, out) {
  const status = h("p", { role: "status", "aria-live": "polite", class: "progress" }, "0 of " + ids.length + " done");
  const list = h("ul", { class: "results" });
  out.replaceChildren(status, h("details", { open: ids.length <= 20 }, h("summary", {}, "Each entry"), list));
  let next = 0, done = 0, ok = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++];
      let line;
      try {
        await act(id);
        ok++;
        line = h("li", { class: "ok", "data-task": id }, h("span", { class: "mono" }, id), ": done");
      } catch (e) {
        line = h("li", { class: "error", "data-task": id }, h("span", { class: "mono" }, id), ": ", h("span", { class: "clip" }, e.message));
      }
      done++;
      list.append(line);
      status.textContent = done + " of " + ids.length + " done, " + ok + " succeeded, " + (done - ok) + " refused";
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return ok;
}

// BULK_MAX caps one bulk action: the page acts on at most this many
// entries at a time (run it again for the rest).
const BULK_MAX = 1000;

// bulkBar: retry or discard every entry the filter matches, each through
// its own API call, after a confirmation that says how many. The entries
// are those listed when the confirmation is shown; one that has left the
// queue meanwhile is refused and reported as such.
function bulkBar(agentName, klass, entries) {
  const key = "bulk";
  const box = h("section", { class: "bulk", "aria-labelledby": "bulk-h" });
  const out = h("div", { class: "bulk-out" });
  const what = (agentName ? "agent " + agentName : "every agent") + ", " + (klass ? "class " + klass : "every class");
  box.append(h("h2", { id: "bulk-h" }, "All matching entries"));
  const versions = h("select", { id: "bulk-version", name: "version", disabled: !agentName, "aria-describedby": "bulk-version-hint" },
    h("option", { value: "" }, "each entry's own"));
  if (agentName) {
    agentVersions(agentName).then((vs) => vs.slice().reverse().forEach((v) => versions.append(h("option", { value: v }, v))), (e) => notify(e.message));
  }
  const reason = h("input", { id: "bulk-reason", name: "reason", maxlength: 1024, autocomplete: "off" });
  const confirmBox = h("div", { class: "confirm", role: "alertdialog", "aria-labelledby": "bulk-q", hidden: true });
  const ask = (verb, opener) => {
    const ids = entries().slice(0, BULK_MAX).map((t) => t.id);
    if (verb === "discard" && !reason.value.trim()) { notify("Give a reason to discard."); reason.focus(); return; }
    const on = verb === "retry" ? (versions.value ? " on " + agentName + "@" + versions.value : " on each entry's agent version") : "";
    const yes = h("button", { type: "button", id: "bulk-confirm", class: verb === "discard" ? "danger" : null }, (verb === "retry" ? "Retry " : "Discard ") + ids.length);
    const no = h("button", { type: "button", class: "secondary", id: "bulk-cancel" }, "Cancel");
    confirmBox.replaceChildren(...[h("p", { id: "bulk-q" }, (verb === "retry" ? "Retry " : "Discard ") + ids.length + " dead letter" + (ids.length === 1 ? "" : "s") +
      " (" + what + ")" + on + (verb === "discard" ? ", because: " : "?")), verb === "discard" ? h("p", { class: "clip" }, reason.value) : null,
      entries().length > BULK_MAX ? h("p", { class: "hint" }, "The first " + BULK_MAX + " of " + entries().length + "; run it again for the rest.") : null,
      h("div", { class: "actions" }, yes, no)].filter(Boolean));
    confirmBox.hidden = false;
    yes.focus();
    const cancel = () => { confirmBox.hidden = true; confirmBox.replaceChildren(); opener.focus(); };
    no.addEventListener("click", cancel);
    confirmBox.onkeydown = (e) => { if (e.key === "Escape" && !no.disabled) cancel(); };
    yes.addEventListener("click", async () => {
      yes.disabled = no.disabled = true;
      const body = verb === "retry" ? (versions.value ? { version: versions.value } : {}) : { reason: reason.value };
      const ok = await runEach(ids, (id) => api("/v1/dlq/" + encodeURIComponent(id) + "/" + verb, { method: "POST", body }), out);
      confirmBox.hidden = true;
      opener.focus();
      notify((verb === "retry" ? "Retried " : "Discarded ") + ok + " of " + ids.length, ok === ids.length);
    });
  };
  const count = h("p", { id: "bulk-count", role: "status" });
  const controls = h("div", { class: "actions", role: "group", "aria-label": "Act on all matching entries" },
      h("div", {}, h("label", { for: versions.id }, "Agent version"), versions,
        h("span", { class: "hint", id: "bulk-version-hint" }, agentName ? "" : "Filter by agent to choose one")),
      h("button", { type: "button", id: "bulk-retry", onclick: (e) => ask("retry", e.currentTarget) }, "Retry all…"),
      h("div", {}, h("label", { for: reason.id }, "Reason to discard"), reason),
      h("button", { type: "button", class: "danger", id: "bulk-discard", onclick: (e) => ask("discard", e.currentTarget) }, "Discard all…"));
  box.append(count, controls, confirmBox, out);
  let more = false; // the node listed only the first entries that match
  const update = (listMore) => {
    if (listMore !== undefined) more = listMore;
    const m = entries().length;
    count.textContent = m ? (more ? "More than " : "") + m + " entr" + (m === 1 && !more ? "y matches" : "ies match") + " (" + what + ")" +
      (m > BULK_MAX || more ? "; an action takes the first " + Math.min(m, BULK_MAX) : "") + "." : "No entry matches the filter.";
    count.dataset.count = m;
    controls.hidden = m === 0;
  };
  update();
  return { el: box, update };
}

async function dlqPage() {
  const q = new URLSearchParams(location.search);
  const agentName = q.get("agent") || "", klass = q.get("class") || "";
  document.title = "Dead letters · Orloj console";
  const tbody = h("tbody", {});
  let current = [];
  const bulk = bulkBar(agentName, klass, () => current);
  render(h("h1", {}, "Dead letters"),
    h("form", { class: "filters", method: "get", action: "/ui/dlq", role: "search" },
      h("div", {}, h("label", { for: "f-agent" }, "Agent"), h("input", { id: "f-agent", name: "agent", value: agentName, placeholder: "any", autocomplete: "off" })),
      h("div", {}, h("label", { for: "f-class" }, "Class"),
        h("select", { id: "f-class", name: "class" }, h("option", { value: "" }, "any"),
          ["permanent", "policy", "budget", "in_doubt", "attempts_exhausted"].map((c) => h("option", { value: c, selected: c === klass }, c)))),
      h("button", { type: "submit" }, "Filter")),
    bulk.el,
    h("div", { class: "table-wrap" }, h("table", { class: "cards", id: "dlq" },
      h("caption", {}, "Oldest first"),
      h("thead", {}, h("tr", {}, ["Task", "Agent", "Class", "Reason", "Entered", "Actions"].map((x) => h("th", { scope: "col" }, x)))),
      tbody)));
  const load = async () => {
    const p = new URLSearchParams();
    if (agentName) p.set("agent", agentName);
    if (klass) p.set("class", klass);
    p.set("limit", String(BULK_MAX));
    const { items: ts, more } = await apiList("/v1/dlq?" + p);
    current = ts;
    bulk.update(more);
    const rows = [];
    for (const t of ts) {
      rows.push(h("tr", { "data-task": t.id },
        cell("Task", h("a", { href: "/ui/tasks/" + encodeURIComponent(t.id), class: "mono" }, t.id)),
        cell("Agent", t.agent + "@" + t.version),
        cell("Class", t.error ? t.error.class : "—"),
        cell("Reason", longText(t.error ? t.error.message : "")),
        cell("Entered", when(t.updated_at)),
        cell("Actions", t.error && t.error.class === "in_doubt" ?
          h("p", {}, h("a", { href: "/ui/tasks/" + encodeURIComponent(t.id) + "#resolve-h" }, "Resolve its calls in doubt"), " before a retry") : null,
        await dlqActions(t, () => {}))));
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
      current = current.filter((t) => t.id !== ev.task_id);
      bulk.update();
    }
    if (ev.state === "dead_letter") reload();
  }, reload);
  await load();
}

// ---- Approvals ----

async function approvalsPage() {
  const all = new URLSearchParams(location.search).get("all") === "true";
  document.title = "Approvals · Orloj console";
  const list = h("div", { id: "approvals" });
  const by = h("input", { id: "decider", autocomplete: "name", maxlength: 128, value: sessionStorage.getItem("orloj.by") || "" });
  render(h("h1", {}, "Approvals"),
    h("p", { class: "hint" }, "Calls of tools an agent's manifest lists under approve wait here, not sent, until someone approves or denies them."),
    h("form", { class: "filters", method: "get", action: "/ui/approvals" },
      h("div", {}, h("label", { for: "f-all" }, "Show"),
        h("select", { id: "f-all", name: "all" }, h("option", { value: "" }, "pending"), h("option", { value: "true", selected: all }, "pending and decided"))),
      h("button", { type: "submit" }, "Show")),
    h("div", { class: "filters" }, h("div", {}, h("label", { for: "decider" }, "Deciding as"), by,
      h("span", { class: "hint" }, "Recorded with each decision; \"admin\" if empty."))),
    list);
  const load = async () => {
    const as = await api("/v1/approvals" + (all ? "?all=true" : ""));
    list.replaceChildren(...(as.length ? as.map((a) => approvalCard(a, by, reload)) : [h("p", { class: "muted" }, all ? "No approvals." : "No call waits for an approval.")]));
  };
  const reload = debounce(() => load().catch((e) => notify(e.message)), 200);
  // A task comes to wait for an approval, or leaves the wait once decided.
  stream("", (ev) => { if (ev.state === "waiting" || ev.from === "waiting") reload(); }, reload);
  await load();
}

function approvalCard(a, by, reload) {
  const key = a.id.replace(/[^A-Za-z0-9]/g, "");
  const note = h("input", { id: "note-" + key, maxlength: 1024, autocomplete: "off" });
  const reason = h("input", { id: "reason-" + key, maxlength: 1024, autocomplete: "off" });
  const decide = (verb, btn) => async () => {
    const body = { by: by.value.trim() };
    if (verb === "approve") body.note = note.value;
    else {
      if (!reason.value.trim()) { notify("Give a reason to deny: the agent is told it."); reason.focus(); return; }
      body.reason = reason.value;
    }
    btn.disabled = true;
    try {
      await api("/v1/approvals/" + encodeURIComponent(a.id) + "/" + verb, { method: "POST", body });
      if (body.by) sessionStorage.setItem("orloj.by", body.by);
      notify((verb === "approve" ? "Approved" : "Denied") + " the call of " + a.tool + " by task " + a.task_id, true);
      reload();
    } catch (e) { notify((verb === "approve" ? "Approval" : "Denial") + " refused: " + e.message); btn.disabled = false; }
  };
  const approve = h("button", { type: "button", id: "approve-" + key }, "Approve");
  const deny = h("button", { type: "button", class: "danger", id: "deny-" + key }, "Deny");
  approve.addEventListener("click", decide("approve", approve));
  deny.addEventListener("click", decide("deny", deny));
  return h("section", { class: "card", "data-approval": a.id, "aria-labelledby": "ap-" + key },
    h("h2", { id: "ap-" + key }, a.tool + " for ", h("a", { href: "/ui/tasks/" + encodeURIComponent(a.task_id), class: "mono" }, a.task_id), " ",
      h("span", { class: "state state-" + (a.state === "pending" ? "queued" : a.state === "approved" ? "succeeded" : "dead_letter") }, a.state)),
    h("dl", { class: "facts" },
      h("dt", {}, "Agent"), h("dd", {}, a.agent + "@" + a.version),
      h("dt", {}, "Call ID"), h("dd", { class: "mono" }, a.id),
      h("dt", {}, "Attempt"), h("dd", {}, String(a.attempt)),
      h("dt", {}, "Requested"), h("dd", {}, when(a.requested_at)),
      a.decided_at ? [h("dt", {}, "Decided"), h("dd", {}, when(a.decided_at), " by " + a.by)] : null,
      a.note ? [h("dt", {}, a.state === "denied" ? "Reason" : "Note"), h("dd", {}, longText(a.note))] : null),
    jsonBlock("Parameters" + (a.params_cut ? " (cut: the call's parameters were too large to keep whole)" : ""), a.params),
    a.state === "pending" ? h("div", { class: "actions", role: "group", "aria-label": "Decide the call of " + a.tool + " by task " + a.task_id },
      h("div", {}, h("label", { for: note.id }, "Note (optional)"), note), approve,
      h("div", {}, h("label", { for: reason.id }, "Reason to deny"), reason), deny) : null);
}

// ---- Agents ----

function manifest(v) {
  const b = v.budget || {};
  const budget = Object.entries(b).filter(([, x]) => x).map(([k, x]) => k.replace(/_/g, " ") + " " + x).join(", ");
  return h("dl", { class: "facts" },
    h("dt", {}, "Tools"), h("dd", {}, v.tools && v.tools.length ? v.tools.join(", ") : "none"),
    h("dt", {}, "Need approval"), h("dd", {}, v.approve && v.approve.length ? v.approve.join(", ") : "none"),
    h("dt", {}, "Memory limit"), h("dd", {}, bytes(v.memory_limit)),
    h("dt", {}, "Timeout"), h("dd", {}, v.timeout),
    h("dt", {}, "Max attempts"), h("dd", {}, String(v.max_attempts)),
    h("dt", {}, "Budget"), h("dd", {}, budget || "none"));
}

function bytes(n) {
  if (n === undefined || n === null) return "—";
  if (n < 1024) return n + " B";
  const u = ["KiB", "MiB", "GiB"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(n < 10 ? 1 : 0) + " " + u[i];
}

async function agentsPage() {
  document.title = "Agents · Orloj console";
  const as = await api("/v1/agents");
  render(h("h1", {}, "Agents"),
    as.length ? table("The newest version of each agent", ["Agent", "Newest version", "Digest", { t: "Size", num: true }, "Tools", "Pushed"],
      as.map((a) => h("tr", { "data-agent": a.name },
        cell("Agent", h("a", { href: "/ui/agents/" + encodeURIComponent(a.name) }, a.name)),
        cell("Newest version", a.version),
        cell("Digest", h("span", { class: "mono digest" }, a.digest)),
        h("td", { class: "num", "data-label": "Size" }, bytes(a.size)),
        cell("Tools", (a.tools || []).join(", ") || "none"),
        cell("Pushed", when(a.created_at))))) : h("p", { class: "muted" }, "No agent is pushed. Push one with orlojd agent push."));
}

async function agentPage(name) {
  document.title = "Agent " + name + " · Orloj console";
  const d = await api("/v1/agents/" + encodeURIComponent(name));
  render(h("p", {}, h("a", { href: "/ui/agents" }, "← Agents")),
    h("h1", {}, "Agent " + name),
    h("p", {}, h("a", { href: "/ui/tasks?agent=" + encodeURIComponent(name) }, "Its tasks"), " · ",
      h("a", { href: "/ui/dlq?agent=" + encodeURIComponent(name) }, "its dead letters")),
    ...d.versions.slice().reverse().map((v) => h("section", { class: "card", "data-version": v.version, "aria-labelledby": "v-" + v.version.replace(/[^A-Za-z0-9]/g, "") },
      h("h2", { id: "v-" + v.version.replace(/[^A-Za-z0-9]/g, "") }, "Version " + v.version + (v.version === d.agent.version ? " (newest)" : "")),
      h("dl", { class: "facts" },
        h("dt", {}, "Digest"), h("dd", { class: "mono digest" }, v.digest),
        h("dt", {}, "Size"), h("dd", {}, bytes(v.size) + " (" + v.size + " bytes)"),
        h("dt", {}, "Pushed"), h("dd", {}, when(v.created_at))),
      h("h3", {}, "Manifest"), manifest(v))));
}

// ---- Tools ----

async function toolsPage() {
  document.title = "Tools · Orloj console";
  const ts = await api("/v1/tools");
  render(h("h1", {}, "Declared tools"),
    h("p", { class: "hint" }, "Tools declared through the API. A definition names the secrets it uses; their values are held by the nodes only and never shown."),
    ts.length ? h("div", { id: "tools" }, ts.map((t) => h("section", { class: "card", "data-tool": t.name, "aria-labelledby": "t-" + t.name.replace(/[^A-Za-z0-9]/g, "") },
      h("h2", { id: "t-" + t.name.replace(/[^A-Za-z0-9]/g, "") }, t.name + " ", h("span", { class: "muted" }, "version " + t.version)),
      h("dl", { class: "facts" },
        h("dt", {}, "Kind"), h("dd", {}, t.kind + (t.semantics ? " (" + t.semantics + ")" : "")),
        h("dt", {}, "Secrets it uses"), h("dd", {}, t.secrets && t.secrets.length ? t.secrets.join(", ") : "none"),
        h("dt", {}, "Digest"), h("dd", { class: "mono digest" }, t.digest),
        h("dt", {}, "Declared"), h("dd", {}, when(t.created_at))),
      jsonBlock("Definition", t.definition)))) : h("p", { class: "muted" }, "No tool is declared."));
}

// ---- Schedules ----

async function schedulesPage() {
  document.title = "Schedules · Orloj console";
  const tbody = h("tbody", {});
  render(h("h1", {}, "Schedules"),
    h("div", { class: "table-wrap" }, h("table", { class: "cards", id: "schedules" },
      h("caption", {}, "Every schedule, by name"),
      h("thead", {}, h("tr", {}, ["Schedule", "Agent", "When", "State", "Next", "Last fired", "Last task", { t: "Fired", num: true }, { t: "Skipped", num: true }, "Last error", "Action"]
        .map((x) => h("th", { scope: "col", class: x.num ? "num" : null }, x.t || x)))),
      tbody)));
  const load = async () => {
    const ss = await api("/v1/schedules");
    tbody.replaceChildren(...(ss.length ? ss.map((sc) => {
      const key = sc.name.replace(/[^A-Za-z0-9]/g, "");
      const verb = sc.paused ? "resume" : "pause";
      const btn = h("button", { type: "button", class: "secondary", id: verb + "-" + key, "aria-label": (sc.paused ? "Resume " : "Pause ") + sc.name },
        sc.paused ? "Resume" : "Pause");
      btn.addEventListener("click", async () => {
        btn.disabled = true;
        try {
          await api("/v1/schedules/" + encodeURIComponent(sc.name) + "/" + verb, { method: "POST", body: {} });
          notify((sc.paused ? "Resumed " : "Paused ") + sc.name, true);
          await load();
          const again = document.getElementById((sc.paused ? "pause-" : "resume-") + key);
          if (again) again.focus();
        } catch (e) { notify(e.message); btn.disabled = false; }
      });
      return h("tr", { "data-schedule": sc.name },
        cell("Schedule", sc.name),
        cell("Agent", sc.agent + (sc.version ? "@" + sc.version : " (newest)")),
        cell("When", h("span", { class: "mono" }, sc.cron), " " + sc.timezone),
        cell("State", h("span", { class: "state " + (sc.paused ? "state-queued" : "state-succeeded"), "data-state": sc.paused ? "paused" : "active" }, sc.paused ? "paused" : "active")),
        cell("Next", sc.paused ? "—" : when(sc.next)),
        cell("Last fired", when(sc.last_fire)),
        cell("Last task", sc.last_task ? h("a", { href: "/ui/tasks/" + encodeURIComponent(sc.last_task), class: "mono" }, short(sc.last_task)) : "—"),
        h("td", { class: "num", "data-label": "Fired" }, String(sc.fired)),
        h("td", { class: "num", "data-label": "Skipped" }, String(sc.skipped)),
        cell("Last error", longText(sc.last_error, 160)),
        cell("Action", btn));
    }) : [h("tr", {}, h("td", { colspan: 11, class: "muted" }, "No schedule."))]));
  };
  await load();
}

// ---- Cluster ----

async function clusterPage() {
  document.title = "Cluster · Orloj console";
  const body = h("div", { id: "cluster" });
  render(h("h1", {}, "Cluster"), body);
  const load = async () => {
    const [members, state, leases] = await Promise.all([api("/v1/cluster/members"), api("/v1/cluster/state"), api("/v1/leases")]);
    const leader = members.find((m) => m.role === "leader");
    body.replaceChildren(
      h("dl", { class: "facts" },
        h("dt", {}, "Leader"), h("dd", { id: "leader" }, leader ? leader.id : "none known"),
        h("dt", {}, "This node"), h("dd", {}, state.node),
        h("dt", {}, "Applied index"), h("dd", {}, String(state.applied_index)),
        h("dt", {}, "Term"), h("dd", {}, String(state.term)),
        h("dt", {}, "State hash"), h("dd", { class: "mono digest" }, state.hash),
        h("dt", {}, "Stale writes refused"), h("dd", {}, String(state.fence_rejections))),
      table("Members (" + members.length + ")", ["Member", "Raft address", "Role", "Suffrage", "Last contact", { t: "Applied index", num: true }, { t: "Term", num: true }],
        members.map((m) => h("tr", { "data-member": m.id },
          cell("Member", m.id), cell("Raft address", h("span", { class: "mono" }, m.address)),
          cell("Role", h("span", { class: "state " + (m.role === "leader" ? "state-succeeded" : m.role === "follower" ? "state-running" : "state-dead_letter") }, m.role)),
          cell("Suffrage", m.suffrage), cell("Last contact", m.last_contact || "—"),
          h("td", { class: "num", "data-label": "Applied index" }, m.applied_index === null ? "—" : String(m.applied_index)),
          h("td", { class: "num", "data-label": "Term" }, m.term ? String(m.term) : "—")))),
      leases.length ? table("Leases (" + leases.length + "): the attempts running now", ["Task", "Node", { t: "Attempt", num: true }, { t: "Lease token", num: true }, "Granted", "Expires", "TTL"],
        leases.map((l) => h("tr", { "data-lease": l.task_id },
          cell("Task", h("a", { href: "/ui/tasks/" + encodeURIComponent(l.task_id), class: "mono" }, l.task_id)), cell("Node", l.node),
          h("td", { class: "num", "data-label": "Attempt" }, String(l.attempt)), h("td", { class: "num", "data-label": "Lease token" }, String(l.token)),
          cell("Granted", when(l.granted_at)), cell("Expires", when(l.expires_at)), cell("TTL", l.ttl)))) :
        h("p", { class: "muted" }, "No lease: no attempt is running."));
  };
  // Leases come and go with the tasks; members and indexes change without
  // a task event, so the page also re-reads every few seconds.
  const reload = debounce(() => load().catch((e) => notify(e.message)), 300);
  stream("", (ev) => { if (ev.state === "running" || ev.from === "running") reload(); }, reload);
  setInterval(reload, 5000);
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
  const section = path.split("/")[2] || "tasks";
  const nav = document.getElementById("nav-" + section) || document.getElementById("nav-tasks");
  nav.setAttribute("aria-current", "page");
  try {
    if (path === "/ui/dlq") await dlqPage();
    else if (path.startsWith("/ui/tasks/")) await taskPage(decodeURIComponent(path.slice("/ui/tasks/".length)));
    else if (path === "/ui/approvals") await approvalsPage();
    else if (path === "/ui/agents") await agentsPage();
    else if (path.startsWith("/ui/agents/")) await agentPage(decodeURIComponent(path.slice("/ui/agents/".length)));
    else if (path === "/ui/tools") await toolsPage();
    else if (path === "/ui/schedules") await schedulesPage();
    else if (path === "/ui/cluster") await clusterPage();
    else await tasksPage();
  } catch (e) {
    render(h("h1", {}, "Cannot show this page"), h("pre", { class: "block error" }, e.message));
  }
}

start();
