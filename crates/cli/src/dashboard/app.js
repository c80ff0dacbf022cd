// tether's status page: reads the agent's API through `tether dashboard` (which adds the user's token) and
// renders it. Every value from the API is set with textContent, never parsed as HTML.
"use strict";

(function () {
  // Sync state and workloads are cheap for the agent; the image list asks the registries, so less often.
  const REFRESH_MS = 5000;
  const IMAGES_MS = 60000;

  const $ = (id) => document.getElementById(id);

  // An element with a class (optional) and children: strings become text nodes.
  function el(tag, cls, ...children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }

  function setText(id, text, cls) {
    const e = $(id);
    e.textContent = text;
    if (cls !== undefined) e.className = cls;
  }

  function short(rev) {
    return rev ? String(rev).slice(0, 12) : "-";
  }

  function seconds(ms) {
    return typeof ms === "number" ? (ms / 1000).toFixed(2) + " s" : "-";
  }

  function ago(when) {
    const t = Date.parse(when);
    if (Number.isNaN(t)) return "";
    const s = Math.round((Date.now() - t) / 1000);
    if (s < 0) return "";
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 129600) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }

  function when(rfc3339) {
    if (!rfc3339) return "-";
    const t = new Date(rfc3339);
    if (Number.isNaN(t.getTime())) return String(rfc3339);
    const rel = ago(rfc3339);
    return t.toLocaleString() + (rel ? " (" + rel + ")" : "");
  }

  function counts(c) {
    if (!c) return "-";
    const parts = [
      "created " + c.created,
      "configured " + c.configured,
      "unchanged " + c.unchanged,
      "deleted " + c.deleted,
      "skipped " + c.skipped,
    ];
    if (c.wouldDelete) parts.push("would delete " + c.wouldDelete);
    if (c.gcKept) parts.push("kept " + c.gcKept);
    return parts.join(", ");
  }

  function firstLine(text) {
    return text ? String(text).split("\n")[0] : "-";
  }

  function result(r) {
    if (r.ok) return "ok";
    return "failed" + (r.reason ? " (" + r.reason + ")" : "");
  }

  // As `tether list-workloads` prints them (policies with a space after each comma).
  function rollout(r) {
    if (!r) return "-";
    if (r.status === "ready" || r.status === "updating") {
      return r.status + " " + r.ready + "/" + r.desired;
    }
    return String(r.status);
  }

  function policies(p) {
    if (!p) return "";
    const parts = [];
    if (p.automated) parts.push("automated");
    if (p.locked) {
      const who = [p.lockedUser, p.lockedMsg].filter((x) => x);
      parts.push(who.length ? "locked (" + who.join(": ") + ")" : "locked");
    }
    if (p.ignore) parts.push("ignore");
    for (const [c, v] of Object.entries(p.tags || {})) parts.push("tag." + c + "=" + v);
    return parts.join(", ");
  }

  // What a refused or failed call means for a person.
  function problem(res, what) {
    if (res.status === 401) return what + ": the agent refused your credentials: " + res.error;
    if (res.status === 403) return what + ": " + res.error;
    if (res.status === 0) return what + ": the status page's server does not answer (is `tether dashboard` still running?)";
    return what + ": " + res.error;
  }

  function showProblem(id, text) {
    const e = $(id);
    e.textContent = text || "";
    e.hidden = !text;
  }

  async function read(path) {
    let r;
    try {
      r = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    } catch (e) {
      return { ok: false, status: 0, error: String(e) };
    }
    let body = null;
    try {
      body = await r.json();
    } catch (e) {
      body = null;
    }
    if (!r.ok) {
      const error = body && typeof body.error === "string" ? body.error : r.status + " " + r.statusText;
      return { ok: false, status: r.status, error };
    }
    return { ok: true, status: r.status, body };
  }

  function replaceRows(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  function emptyRow(columns, text) {
    const td = el("td", "muted", text);
    td.colSpan = columns;
    return el("tr", "empty", td);
  }

  // The sync state: the applied revision and its commit, then the newest sync.
  function renderSync(res) {
    if (!res.ok) {
      showProblem("sync-problem", problem(res, "sync state"));
      return;
    }
    showProblem("sync-problem", "");
    const s = res.body;
    const history = Array.isArray(s.history) ? s.history : [];
    setText("sync-name", "sync " + s.syncName);
    setText("source", s.source + " @ " + s.branch);
    setText("revision", s.applied ? short(s.applied) : "nothing applied yet");
    $("revision").title = s.applied || "";
    const applied = history.find((r) => r.ok && r.revision === s.applied && r.commit)
      || history.find((r) => r.revision === s.applied && r.commit);
    const c = s.appliedCommit || (applied ? applied.commit : null);
    setText("commit-subject", c ? c.subject : "-");
    setText("commit-author", c ? c.author : "-");
    setText("commit-date", c ? when(c.date) : "-");
    const last = history[0];
    if (!last) {
      for (const id of ["sync-when", "sync-revision", "sync-duration", "sync-counts"]) setText(id, "-");
      setText("sync-result", "no sync yet", "");
    } else {
      setText("sync-when", when(last.started));
      setText("sync-revision", short(last.revision));
      setText("sync-duration", seconds(last.durationMs));
      setText("sync-result", result(last), last.ok ? "ok" : "failed");
      setText("sync-counts", last.ok ? counts(last.counts) : "-");
    }
    renderHistory(history);
    renderErrors(history);
    renderGc(history);
  }

  function renderHistory(history) {
    const rows = history.map((r) => {
      const tr = el(
        "tr",
        r.ok ? "ok" : "failed",
        el("td", null, when(r.started)),
        el("td", null, el("code", null, short(r.revision))),
        el("td", null, r.commit ? r.commit.subject : "-"),
        el("td", null, r.commit ? r.commit.author : "-"),
        el("td", "num", seconds(r.durationMs)),
        el("td", "result", result(r)),
        el("td", null, r.ok ? counts(r.counts) : firstLine(r.error)),
      );
      tr.dataset.revision = r.revision || "";
      return tr;
    });
    replaceRows($("history").tBodies[0], rows.length ? rows : [emptyRow(7, "no sync yet")]);
  }

  // The newest failed sync: its message and every object it names, with file:line.
  function renderErrors(history) {
    const box = $("errors");
    const i = history.findIndex((r) => !r.ok);
    if (i < 0) {
      box.replaceChildren(el("p", "muted", "no failed sync among the last " + history.length));
      return;
    }
    const r = history[i];
    const later = history.slice(0, i).some((x) => x.ok);
    const head = el(
      "p",
      later ? "resolved" : "current",
      "Sync of ",
      el("code", null, short(r.revision)),
      r.commit ? " (" + r.commit.subject + ", " + r.commit.author + ")" : "",
      " at " + when(r.started) + " failed" + (r.reason ? " (" + r.reason + ")" : ""),
      later ? "; a later sync succeeded." : ".",
    );
    const parts = [head];
    const objects = Array.isArray(r.objects) ? r.objects : [];
    if (objects.length) {
      const rows = objects.map((o) =>
        el(
          "tr",
          "object-error",
          el("td", "at", el("code", null, o.at)),
          el("td", "object", o.object || "-"),
          el("td", "message", o.message),
        ),
      );
      const table = el(
        "table",
        "object-errors",
        el("thead", null, el("tr", null, el("th", null, "File:line"), el("th", null, "Object"), el("th", null, "Problem"))),
        el("tbody", null, ...rows),
      );
      parts.push(table);
    }
    if (r.error) parts.push(el("pre", "error-message", r.error));
    box.replaceChildren(...parts);
  }

  function renderGc(history) {
    const box = $("gc");
    const runs = history.filter((r) => Array.isArray(r.collected) && r.collected.length);
    if (!runs.length) {
      box.replaceChildren(el("p", "muted", "nothing was collected in the last " + history.length + " syncs"));
      return;
    }
    const items = runs.map((r) => {
      const deleted = r.counts ? r.counts.deleted : r.collected.length;
      const more = deleted > r.collected.length ? " (the first " + r.collected.length + " listed)" : "";
      return el(
        "div",
        "gc-run",
        el("p", null, when(r.started) + ", revision ", el("code", null, short(r.revision)), ": deleted " + deleted + more),
        el("ul", null, ...r.collected.map((id) => el("li", null, el("code", null, id)))),
      );
    });
    box.replaceChildren(...items);
  }

  function renderWorkloads(res) {
    const tbody = $("workloads").tBodies[0];
    if (!res.ok) {
      showProblem("workloads-problem", problem(res, "workloads"));
      return;
    }
    showProblem("workloads-problem", "");
    const items = Array.isArray(res.body.items) ? res.body.items : [];
    const rows = [];
    for (const w of items) {
      const containers = w.containers && w.containers.length ? w.containers : [null];
      containers.forEach((c, i) => {
        const image = el("td", "image");
        if (c) {
          image.append(el("code", null, c.running || "not running"));
          if (c.git && c.git !== c.running) image.append(el("div", "muted", "Git: " + c.git));
        }
        const tr = el(
          "tr",
          w.error ? "failed" : null,
          el("td", "id", i === 0 ? w.id : ""),
          el("td", null, c ? c.name : "-"),
          image,
          el("td", i === 0 && w.rollout ? "rollout " + w.rollout.status : "rollout", i === 0 ? rollout(w.rollout) : ""),
          el("td", "policies", i === 0 ? policies(w.policies) : ""),
          el("td", "error", i === 0 ? w.error || "" : ""),
        );
        tr.dataset.workload = w.id;
        if (c) tr.dataset.container = c.name;
        rows.push(tr);
      });
    }
    replaceRows(tbody, rows.length ? rows : [emptyRow(6, "no workloads you may read")]);
  }

  function renderImages(res) {
    const tbody = $("images").tBodies[0];
    const note = $("images-note");
    if (!res.ok) {
      note.textContent = res.status === 409
        ? "image scanning is off: " + res.error
        : problem(res, "image automation");
      note.className = res.status === 409 ? "muted" : "problem";
      replaceRows(tbody, []);
      $("images").hidden = true;
      return;
    }
    $("images").hidden = false;
    const items = Array.isArray(res.body.items) ? res.body.items : [];
    const pending = items.filter((r) => r.next).length;
    note.textContent = "checked " + new Date().toLocaleTimeString() + ": "
      + (pending ? pending + " pending update" + (pending === 1 ? "" : "s") : "no pending updates");
    note.className = "muted";
    const rows = items.map((r) => {
      const state = r.locked ? "locked" : r.automated ? "automated" : "not automated";
      const next = r.next
        ? "→ " + r.next + (r.automated ? " (automation will deploy it)" : " (newest allowed; release it)")
        : "";
      const newest = (r.candidates || []).slice(0, 3).map((c) => c.tag + (c.current ? " (current)" : "")).join(", ");
      const tr = el(
        "tr",
        r.error ? "failed" : r.next ? "pending" : null,
        el("td", "id", r.workload),
        el("td", null, r.container),
        el("td", "image", el("code", null, r.image)),
        el("td", null, r.policy),
        el("td", null, state),
        el("td", "next", next),
        el("td", null, newest || "-"),
        el("td", "error", r.error || ""),
      );
      tr.dataset.workload = r.workload;
      tr.dataset.container = r.container;
      return tr;
    });
    replaceRows(tbody, rows.length ? rows : [emptyRow(8, "no containers you may read")]);
  }

  let lastImages = -Infinity;

  async function refresh() {
    try {
      const wantImages = Date.now() - lastImages >= IMAGES_MS;
      const [sync, workloads, images] = await Promise.all([
        read("/api/v1/sync"),
        read("/api/v1/workloads"),
        wantImages ? read("/api/v1/images?limit=5") : Promise.resolve(null),
      ]);
      renderSync(sync);
      renderWorkloads(workloads);
      if (images) {
        renderImages(images);
        lastImages = Date.now();
      }
      const down = [sync, workloads].every((r) => r.status === 0);
      showProblem("page-error", down ? problem(sync, "refresh") : "");
      setText("refreshed", "refreshed " + new Date().toLocaleTimeString());
    } catch (e) {
      showProblem("page-error", "the page could not render the agent's answer: " + e);
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  refresh();
})();
