// boostkernel dashboard: renders the pages from the JSON API and the server-sent events (no build step).
"use strict";
(function () {
  const page = document.body.dataset.page;
  const admin = document.body.dataset.role === "admin";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const esc = (v) => String(v === null || v === undefined ? "" : v)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  const num = (v, d) => (v === null || v === undefined ? "-" : Number(v).toFixed(d === undefined ? 1 : d));
  const ms = (s) => (s === null || s === undefined ? "-" : (s * 1000).toFixed(1) + " ms");
  const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "-");
  const short = (v, n) => { const s = typeof v === "string" ? v : JSON.stringify(v); return s && s.length > n ? s.slice(0, n) + "…" : s; };
  const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";

  function toast(text, bad) {
    const t = $("#toast");
    t.textContent = text; t.hidden = false; t.className = "toast" + (bad ? " bad" : "");
    clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  async function post(url, data) {
    const r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(data || {}),
    });
    const out = await r.json().catch(() => ({ error: r.statusText }));
    if (!r.ok) { toast(out.error || r.statusText, true); throw new Error(out.error || r.statusText); }
    return out;
  }
  async function get(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (!r.ok) throw new Error(r.statusText);
    return r.json();
  }

  let source = null;
  function live(params, onData) {
    if (source) source.close();
    source = new EventSource("/events" + (params ? "?" + params : ""));
    source.onmessage = (e) => { $("#live").classList.add("on"); onData(JSON.parse(e.data)); };
    source.onerror = () => { $("#live").classList.remove("on"); };
  }

  // --- Queues ---------------------------------------------------------------------------------
  function queueRow(q) {
    const paused = q.paused === null ? "n/a" : (q.paused ? "paused" : "no");
    let actions = "";
    if (admin) {
      actions = `<td class="actions">` +
        (q.paused ? `<button data-act="resume">Resume</button>` : `<button data-act="pause">Pause</button>`) +
        `<button data-act="purge" class="danger">Purge</button>` +
        `<button data-act="replay" ${q.dlq ? "" : "disabled"}>Replay DLQ</button></td>`;
    }
    return `<tr data-queue="${esc(q.queue)}"><td class="name">${esc(q.queue)}</td><td>${esc(q.broker)}</td>` +
      `<td class="depth">${esc(q.depth === null ? "?" : q.depth)}</td><td class="dlq">${esc(q.dlq === null ? "?" : q.dlq)}</td>` +
      `<td>${num(q.publish_rate)}</td><td>${num(q.success_rate)}</td><td>${num(q.failure_rate)}</td>` +
      `<td>${ms(q.avg_duration)}</td><td>${esc(q.running)}</td><td>${esc(q.consumers)}</td>` +
      `<td class="paused ${q.paused ? "warn" : ""}">${paused}</td>${actions}</tr>`;
  }
  function initQueues() {
    const tbody = $("#queues tbody");
    tbody.addEventListener("click", async (e) => {
      const btn = e.target.closest("button[data-act]");
      if (!btn) return;
      const queue = btn.closest("tr").dataset.queue, act = btn.dataset.act;
      if (act === "purge" && !confirm(`Delete every waiting message of ${queue}?`)) return;
      const out = await post(`/api/queues/${encodeURIComponent(queue)}/${act}`);
      toast(`${queue}: ${act} done ` + JSON.stringify(out));
    });
    live("", (d) => { tbody.innerHTML = d.queues.map(queueRow).join(""); });
  }

  // --- Workers --------------------------------------------------------------------------------
  function initWorkers() {
    const tbody = $("#workers tbody");
    live("", (d) => {
      tbody.innerHTML = d.workers.map((w) => `<tr data-worker="${esc(w.worker)}"><td>${esc(w.worker)}</td>` +
        `<td>${esc(w.host)}</td><td>${esc(w.pid)}</td><td>${esc(w.queues.join(", "))}</td>` +
        `<td>${esc(w.concurrency)}</td><td>${esc(w.workers)}</td><td class="running">${esc(w.running)}</td>` +
        `<td>${num(w.heartbeat_age)} s</td><td>${when(w.started_at)}</td></tr>`).join("") ||
        `<tr><td colspan="9" class="hint">no worker reports (start workers with monitor=True)</td></tr>`;
    });
  }

  // --- Task records ---------------------------------------------------------------------------
  function taskRow(t) {
    let outcome = "";
    if (t.status === "success") outcome = short(t.result, 80);
    else if (t.error) outcome = `${t.error.type}: ${t.error.message}`;
    const args = short({ args: t.args, kwargs: t.kwargs }, 80);
    return `<tr data-task="${esc(t.task_id)}" data-status="${esc(t.status)}">` +
      `<td><a href="/tasks/${encodeURIComponent(t.task_id)}"><code>${esc(t.task_id)}</code></a></td>` +
      `<td>${esc(t.queue)}</td><td><span class="status s-${esc(t.status)}">${esc(t.status)}</span></td>` +
      `<td>${when(t.published_at)}</td><td>${ms(t.duration)}</td><td>${esc(t.attempt)}</td><td>${esc(t.worker)}</td>` +
      `<td><code>${esc(args)}</code></td><td class="result"><code>${esc(short(outcome, 120))}</code></td></tr>`;
  }
  function initTasks() {
    const form = $("#search"), tbody = $("#tasks tbody");
    const params = new URLSearchParams(location.search);
    for (const [k, v] of params) { const el = form.elements[k]; if (el) el.value = v; }
    function subscribe() {
      const p = new URLSearchParams();
      for (const el of form.elements) {
        if (!el.name || !el.value) continue;
        p.set(el.name, el.type === "datetime-local" ? String(new Date(el.value).getTime() / 1000) : el.value);
      }
      p.set("tasks", "1");
      live(p.toString(), (d) => {
        tbody.innerHTML = (d.tasks || []).map(taskRow).join("") ||
          `<tr><td colspan="9" class="hint">no record matches</td></tr>`;
      });
    }
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const p = new URLSearchParams(new FormData(form));
      for (const [k, v] of [...p]) if (!v) p.delete(k);
      history.replaceState(null, "", "/tasks" + (p.toString() ? "?" + p : ""));
      subscribe();
    });
    subscribe();
  }

  // --- Charts ---------------------------------------------------------------------------------
  function initCharts() {
    const root = $("#charts"), charts = {};
    function draw(series) {
      for (const [queue, points] of Object.entries(series)) {
        const t = points.map((p) => p.at);
        const rates = [t, points.map((p) => p.publish_rate), points.map((p) => p.success_rate), points.map((p) => p.failure_rate)];
        const dur = [t, points.map((p) => (p.avg_duration === null ? null : p.avg_duration * 1000)), points.map((p) => p.depth)];
        if (!charts[queue]) {
          const box = document.createElement("section");
          box.className = "card chart"; box.dataset.queue = queue;
          box.innerHTML = `<h2>${esc(queue)}</h2><div class="r"></div><div class="d"></div>`;
          root.appendChild(box);
          const width = Math.max(320, Math.min(900, root.clientWidth - 40));
          charts[queue] = {
            rates: new uPlot({ title: "rates (/s)", width, height: 220, series: [{}, { label: "publish", stroke: "#2563eb" },
              { label: "success", stroke: "#16a34a" }, { label: "failure", stroke: "#dc2626" }] }, rates, $(".r", box)),
            dur: new uPlot({ title: "avg duration (ms) and depth", width, height: 220, scales: { d: {} },
              series: [{}, { label: "avg ms", stroke: "#9333ea" }, { label: "depth", stroke: "#f59e0b", scale: "d" }],
              axes: [{}, {}, { scale: "d", side: 1 }] }, dur, $(".d", box)),
          };
        } else {
          charts[queue].rates.setData(rates); charts[queue].dur.setData(dur);
        }
      }
    }
    const refresh = () => get("/api/series").then(draw).catch(() => {});
    refresh();
    let last = 0;
    live("", () => { const now = Date.now(); if (now - last > 1500) { last = now; refresh(); } });
  }

  // --- Actions --------------------------------------------------------------------------------
  function initActions() {
    $("#publish").addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = e.target;
      let args, kwargs;
      try { args = JSON.parse(f.args.value || "[]"); kwargs = JSON.parse(f.kwargs.value || "{}"); }
      catch (err) { toast("args/kwargs are not JSON: " + err.message, true); return; }
      $("#publish-result").textContent = "publishing…";
      const out = await post("/api/publish", { queue: f.queue.value, args, kwargs, wait: Number(f.wait.value || 0) })
        .catch((err) => ({ error: err.message }));
      $("#publish-result").textContent = JSON.stringify(out, null, 2);
    });
    $("#cancel").addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = e.target;
      const out = await post(`/api/tasks/${encodeURIComponent(f.task_id.value.trim())}/cancel`, { queue: f.queue.value })
        .catch((err) => ({ error: err.message }));
      $("#cancel-result").textContent = JSON.stringify(out, null, 2);
    });
    const dlqBody = $("#dlq-table tbody");
    async function loadDlq() {
      const q = $("#d-queue").value;
      const recs = await get(`/api/dlq/${encodeURIComponent(q)}`);
      dlqBody.innerHTML = recs.map((r) => `<tr><td><input type="checkbox" value="${esc(r.id)}"></td><td><code>${esc(r.id)}</code></td>` +
        `<td>${when(r.failed_at)}</td><td>${esc(r.reason)}</td><td><code>${esc(short(r.body, 120))}</code></td></tr>`).join("") ||
        `<tr><td colspan="5" class="hint">empty</td></tr>`;
    }
    $("#dlq").addEventListener("submit", (e) => { e.preventDefault(); loadDlq(); });
    async function replay(ids) {
      const out = await post(`/api/queues/${encodeURIComponent($("#d-queue").value)}/replay`, ids ? { ids } : {});
      toast(`replayed ${out.replayed}`); loadDlq();
    }
    $("#dlq-replay-selected").addEventListener("click", () => {
      const ids = [...dlqBody.querySelectorAll("input:checked")].map((i) => i.value);
      if (ids.length) replay(ids);
    });
    $("#dlq-replay-all").addEventListener("click", () => replay(null));
    loadDlq();
    const sched = $("#schedules tbody");
    async function loadSchedules() {
      const rows = await get("/api/schedules");
      sched.innerHTML = rows.map((s) => `<tr data-queue="${esc(s.queue)}" data-id="${esc(s.id)}"><td>${esc(s.queue)}</td>` +
        `<td><code>${esc(s.id)}</code></td><td><code>${esc(JSON.stringify(s.trigger))}</code></td>` +
        `<td><code>${esc(short({ args: s.args, kwargs: s.kwargs }, 60))}</code></td><td>${s.paused ? "paused" : "active"}</td>` +
        `<td>${admin ? `<button data-act="${s.paused ? "resume" : "pause"}">${s.paused ? "Resume" : "Pause"}</button>` +
          `<button data-act="run">Run now</button>` : ""}</td></tr>`).join("") ||
        `<tr><td colspan="6" class="hint">no schedules</td></tr>`;
    }
    sched.addEventListener("click", async (e) => {
      const btn = e.target.closest("button[data-act]");
      if (!btn) return;
      const tr = btn.closest("tr");
      const out = await post(`/api/schedules/${encodeURIComponent(tr.dataset.queue)}/${encodeURIComponent(tr.dataset.id)}/${btn.dataset.act}`);
      toast(JSON.stringify(out)); loadSchedules();
    });
    loadSchedules();
    live("", () => {});
  }

  function initTask() {
    const btn = $("button[data-cancel]");
    if (btn) btn.addEventListener("click", async () => {
      await post(`/api/tasks/${encodeURIComponent(btn.dataset.cancel)}/cancel`, { queue: btn.dataset.queue });
      toast("cancel requested"); setTimeout(() => location.reload(), 1000);
    });
  }

  const init = { queues: initQueues, workers: initWorkers, tasks: location.pathname === "/tasks" ? initTasks : initTask,
    charts: initCharts, actions: initActions }[page];
  if (init) init();
})();
