// ftatlas ui: a hash-routed single page over the JSON API (/api/...) and the OpenAI chat API (/v1/...).
(() => {
"use strict";

const {h} = window.RecipeForm;
const main = () => document.getElementById("main");


async function api(path, body) {
  const res = await fetch(path, body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body)});
  let data = null;
  try { data = await res.json(); } catch (e) { data = {error: `${res.status} ${res.statusText}`}; }
  if (!res.ok && !(data && data.errors)) throw new Error((data && (data.error && (data.error.message || data.error))) || res.statusText);
  return data;
}

// Call fn every ms while the page that started it is shown and fn returns true (route() bumps window.uiPage).
function poll(fn, ms) {
  const page = window.uiPage;
  const id = setInterval(async () => {
    if (window.uiPage !== page) { clearInterval(id); return; }
    let again = false;
    try { again = await fn(); } catch (e) { again = true; }  // a failed poll (server busy) is retried
    if (!again || window.uiPage !== page) clearInterval(id);
  }, ms);
}

function table(rows, cols, opts = {}) {
  cols = cols || (rows.length ? Object.keys(rows[0]) : []);
  const state = {sort: null, dir: 1, filter: ""};
  const wrap = h("div", {class: "table-wrap"});
  const filter = opts.filter ? h("input", {class: "filter", placeholder: "filter rows…",
    oninput: e => { state.filter = e.target.value.toLowerCase(); draw(); }}) : null;
  const tbl = h("table", {class: opts.class || "data"});
  const cell = (r, c) => (opts.cell ? opts.cell(r, c) : r[c]);
  const text = v => (v === null || v === undefined ? "" : typeof v === "object" && !(v instanceof Node) ? JSON.stringify(v) : v);
  function draw() {
    let shown = rows.filter(r => !state.filter || cols.some(c => String(text(cell(r, c)) && (cell(r, c) instanceof Node ? cell(r, c).textContent : text(cell(r, c)))).toLowerCase().includes(state.filter)));
    if (state.sort !== null) {
      const key = r => { const v = opts.sortKey ? opts.sortKey(r, state.sort) : r[state.sort];
        const n = parseFloat(v); return Number.isNaN(n) ? String(v) : n; };
      shown = [...shown].sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * state.dir);
    }
    tbl.replaceChildren(
      h("thead", {}, h("tr", {}, cols.map(c => h("th", {onclick: () => { state.dir = state.sort === c ? -state.dir : 1;
        state.sort = c; draw(); }, title: "sort"}, c + (state.sort === c ? (state.dir > 0 ? " ▲" : " ▼") : ""))))),
      h("tbody", {}, shown.map(r => h("tr", {}, cols.map(c => { const v = cell(r, c);
        return h("td", {}, v instanceof Node ? v : String(text(v))); })))));
  }
  draw();
  wrap.append(...[filter, tbl].filter(Boolean));
  return wrap;
}

const pct = (v, own) => (v === null || v === undefined ? "-" : own ? v.toFixed(3) : (100 * v).toFixed(1));
const gib = b => (b ? (b / 2 ** 30).toFixed(2) + " GiB" : "-");
const secs = s => (s === null || s === undefined ? "-" : s < 10 ? s.toFixed(1) + " s" : s < 120 ? s.toFixed(0) + " s" : (s / 60).toFixed(1) + " min");

function metricText(run, m) {
  const v = run.metrics[m], ci = run.ci95[m];
  return ci ? `${pct(v)} [${pct(ci[0])}, ${pct(ci[1])}]` : pct(v);
}

// ---- pages ----

async function pageRuns() {
  const [runs, jobs] = await Promise.all([api("/api/runs"), api("/api/jobs")]);
  const metrics = [...new Set(runs.flatMap(r => Object.keys(r.metrics)))];
  const rows = runs.map(r => ({...r, _link: h("a", {href: `#run/${encodeURIComponent(r.name)}`}, r.name)}));
  const cols = ["run", "status", "method", "objective", "context", ...metrics, "peak memory", "train time", "tokens/s", "steps"];
  const cell = (r, c) => ({run: r._link, status: r.status, method: r.method, objective: r.objective, context: r.context,
    "peak memory": gib(r.peak_bytes), "train time": secs(r.train_seconds), "tokens/s": r.tokens_per_s ?? "-",
    steps: r.steps})[c] ?? (metrics.includes(c) ? metricText(r, c) : "");
  const sortKey = (r, c) => (metrics.includes(c) ? r.metrics[c] ?? -1 : c === "peak memory" ? r.peak_bytes || 0
    : c === "train time" ? r.train_seconds || 0 : c === "run" ? r.name : cell(r, c));
  const pick = name => h("select", {id: name}, runs.map(r => h("option", {value: r.name}, r.name)));
  main().replaceChildren(
    h("h1", {}, "Runs"), jobsPanel(jobs),
    h("p", {class: "muted"}, `metrics in % with bootstrap 95% intervals; ${runs.length} runs; click a header to sort`),
    table(rows, cols, {filter: true, cell, sortKey, class: "data runs-table"}),
    h("h2", {}, "Compare held-out predictions"),
    h("div", {class: "row"}, pick("cmp-a"), pick("cmp-b"), h("button", {onclick: () => {
      location.hash = `#compare/${encodeURIComponent(document.getElementById("cmp-a").value)}/${encodeURIComponent(document.getElementById("cmp-b").value)}`;
    }}, "compare")));
  if (runs.length > 1) document.getElementById("cmp-b").selectedIndex = 1;
  poll(async () => {
    const jobs = await api("/api/jobs"), el = document.querySelector(".jobs");
    if (el) el.replaceWith(jobsPanel(jobs));
    return true;
  }, 2000);
}

function jobsPanel(jobs) {
  if (!jobs.length) return h("div", {class: "jobs"});
  return h("div", {class: "jobs"}, h("h2", {}, "Queue"), table(jobs.map(j => ({...j,
    progress: j.total ? `${j.step}/${j.total} steps, ${j.elapsed} elapsed, ETA ${j.eta}` : j.state === "queued" ? "waiting" : "-",
    action: ["queued", "running"].includes(j.state) ? h("button", {class: "stop", onclick: async () => {
      await api(`/api/jobs/${j.id}/stop`, {}); route(); }}, "stop") : "",
    run: j.name.startsWith("arena:") ? h("a", {href: "#arenas"}, j.name)
      : h("a", {href: `#run/${encodeURIComponent(j.name)}`}, j.name)})), ["id", "run", "args", "state", "progress", "action"],
    {cell: (r, c) => (c === "args" ? r.args[0] : r[c])}));
}

async function pageRun(name) {
  const box = h("div", {class: "run-page"});
  main().replaceChildren(h("h1", {}, `Run ${name}`), box);
  let polling = false;
  const watch = () => {  // poll while a job of this run (training, export, merge) is queued or running
    if (polling) return;
    polling = true;
    poll(async () => { const again = await draw(); if (!again) polling = false; return again; }, 1500);
  };
  const exports = window.Export.exportPanel(name, async () => { if (await draw()) watch(); });
  const draw = async () => {
    const jobs = await api("/api/jobs");
    const trains = jobs.filter(j => j.name === name && j.args[0] === "train");  // newest first
    const job = trains.find(j => ["queued", "running", "stopping"].includes(j.state));
    let r;
    try { r = await api(`/api/runs/${encodeURIComponent(name)}`); } catch (e) {
      if (!job && !trains.length) throw e;
      const last = trains[0];  // queued, or its process has not made the run dir yet
      box.replaceChildren(h("p", {}, "status ", h("b", {class: "status"}, job ? job.state : last.state)),
        h("pre", {class: "log"}, last.log_tail || "waiting for its turn in the queue…"));
      return Boolean(job);
    }
    const ended = trains[0];
    await exports.update(r, jobs);
    const curve = key => r.curves.filter(m => m[key] !== undefined && m[key] !== null).map(m => [m.step, m[key]]);
    const kids = [
      h("p", {}, `${r.method} · ${r.objective} · ${r.context} · ${r.model} · status `, h("b", {class: "status"}, r.status)),
      job ? h("div", {class: "progress"}, h("progress", {max: job.total || 1, value: job.step || 0}),
        ` ${job.state}: ` + (!job.total ? "starting…" : job.step < job.total
          ? `step ${job.step}/${job.total}, ${job.elapsed} elapsed, ETA ${job.eta}`
          : `trained ${job.total} steps in ${job.elapsed}; evaluating and writing the report`),
        h("button", {class: "stop", onclick: async () => { await api(`/api/jobs/${job.id}/stop`, {}); }}, "stop"),
        h("pre", {class: "log"}, job.log_tail)) : null,
      !job && ended && ended.state !== "done" ? h("div", {class: "error"}, `the last job ${ended.state}:`,
        h("pre", {class: "log"}, ended.log_tail)) : null,
      !job && r.status !== "done" && r.has_checkpoint ? h("button", {onclick: async () => {
        await api(`/api/runs/${encodeURIComponent(name)}/resume`, {}); window.route(); }}, "resume from last checkpoint")
        : null,
      h("div", {class: "charts"},
        Charts.axesChart([{name: "train loss", points: curve("loss")}, {name: "eval loss", points: curve("eval_loss")}],
          {title: "loss", xlabel: "step", ylabel: "loss"}),
        Charts.axesChart([{name: "lr", points: curve("lr")}], {title: "learning rate", xlabel: "step", ylabel: "lr"}),
        Charts.axesChart([{name: "tokens/s", points: curve("tokens_per_s")}], {title: "tokens per second",
          xlabel: "step", ylabel: "tokens/s"})),
      Object.keys(r.metrics).length ? h("div", {}, h("h2", {}, `Held-out metrics (n=${r.n})`), table(
        Object.keys(r.metrics).map(m => ({metric: m, value: metricText(r, m)})))) : null,
      exports.el,
      r.examples.length ? h("div", {}, h("h2", {}, "Held-out examples"), table(r.examples.map(e =>
        ({prompt: e.prompt, reference: e.reference, prediction: e.prediction})), null, {class: "data examples"})) : null,
      h("details", {}, h("summary", {}, "recipe.yaml"), h("pre", {}, r.recipe_yaml)),
      r.problems.length ? h("pre", {class: "error"}, r.problems.join("\n")) : null,
    ];
    box.replaceChildren(...kids.filter(Boolean));
    // a run training from the terminal updates too
    return Boolean(job) || exports.live(jobs) || (r.status === "started" && !ended);
  };
  if (await draw()) watch();
}

function wordDiff(a, b) {  // LCS over words; returns [[op, word]] with op in "=", "-", "+"
  const x = (a || "").split(/(\s+)/), y = (b || "").split(/(\s+)/);
  const n = x.length, m = y.length, L = Array.from({length: n + 1}, () => new Int32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { out.push(["=", x[i]]); i++; j++; } else if (L[i + 1][j] >= L[i][j + 1]) out.push(["-", x[i++]]);
    else out.push(["+", y[j++]]);
  }
  while (i < n) out.push(["-", x[i++]]);
  while (j < m) out.push(["+", y[j++]]);
  return out;
}

function diffView(ops, side) {
  return h("span", {}, ops.filter(([op]) => op === "=" || op === side).map(([op, w]) =>
    op === "=" ? w : h(side === "-" ? "del" : "ins", {}, w)));
}

async function pageCompare(a, b) {
  const pairs = await api(`/api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
  const rows = pairs.map(p => { const ops = wordDiff(p.a, p.b);
    return {prompt: p.prompt, reference: p.reference, [a]: diffView(ops, "-"), [b]: diffView(ops, "+"),
      same: p.a === p.b ? "=" : "≠"}; });
  main().replaceChildren(h("h1", {}, `${a} vs ${b}`), h("p", {class: "muted"},
    `${pairs.length} held-out prompts both runs kept in eval.json; words only in one side are highlighted`),
    table(rows, ["prompt", "reference", a, b, "same"], {filter: true, class: "data examples"}));
}

window.Pages = {api, poll, table, pageRuns, pageRun, pageCompare, jobsPanel, pct, secs, gib};
})();
