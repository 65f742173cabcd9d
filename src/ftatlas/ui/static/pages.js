// Advise, launch, arenas and chat pages, and the router.
(() => {
"use strict";

const {api, table, pageRuns, pageRun, pageCompare, pct, secs} = window.Pages;
const {h, buildRecipeForm, readRecipeForm, showErrors} = window.RecipeForm;
const $ = id => document.getElementById(id);
const mainEl = () => document.getElementById("main");
let pendingRecipe = null;  // an advised recipe handed to the launch page by its "run" button

function labeled(label, input, help) {
  return h("label", {class: "inline"}, h("span", {}, label), input, help ? h("small", {class: "muted"}, help) : null);
}

async function pageAdvise() {
  const out = h("div", {id: "advice"});
  const goals = ["task", "style", "knowledge", "chat", "alignment", "reasoning"];
  mainEl().replaceChildren(h("h1", {}, "Advise"),
    h("form", {class: "advise-form", onsubmit: e => { e.preventDefault(); runAdvice(out); }},
      labeled("model", h("input", {id: "adv-model", value: "smollm2-135m"}), "alias, local dir, .gguf or hub id"),
      labeled("data", h("input", {id: "adv-data", value: "contacts"}), "file path or built-in dataset"),
      labeled("or upload", h("input", {id: "adv-upload", type: "file", accept: ".jsonl,.json,.txt"})),
      labeled("goal", h("select", {id: "adv-goal"}, goals.map(g => h("option", {value: g}, g)))),
      labeled("memory", h("input", {id: "adv-memory", placeholder: "this machine's", size: 10}), "e.g. 24GB"),
      labeled("batch", h("input", {id: "adv-batch", value: "8", size: 4})),
      labeled("max length", h("input", {id: "adv-len", value: "1024", size: 6})),
      h("button", {type: "submit", id: "adv-go"}, "advise")), out);
}

async function runAdvice(out) {
  const file = $("adv-upload").files[0];
  const req = {model: $("adv-model").value, data: $("adv-data").value, goal: $("adv-goal").value,
    memory: $("adv-memory").value, batch_size: $("adv-batch").value, max_length: $("adv-len").value};
  if (file) req.upload = {filename: file.name, text: await file.text()};
  out.replaceChildren(h("p", {class: "muted"}, "reading the model's config and templating the data…"));
  let a;
  try { a = await api("/api/advise", req); } catch (e) { out.replaceChildren(h("pre", {class: "error"}, e.message)); return; }
  out.replaceChildren(
    h("pre", {class: "summary"}, a.summary.join("\n")),
    h("h2", {}, "Decision map"), h("p", {class: "muted"}, "the seeds' flowchart; the path your facts take is highlighted"),
    h("div", {class: "map-wrap"}, Charts.decisionMap(a.map)),
    h("details", {}, h("summary", {}, "the walk, step by step"), h("pre", {}, a.walk.join("\n"))),
    h("details", {}, h("summary", {}, "mermaid source (ftatlas advise --format mermaid)"), h("pre", {}, a.mermaid)),
    h("h2", {}, "Every method (estimates)"), table(a.table, null, {class: "data advise-table",
      cell: (r, c) => (c === "method" && r.method === a.method ? h("b", {}, r.method + " ★") : r[c])}),
    h("pre", {class: "recommendation"}, a.recommendation.join("\n")),
    a.notes.length ? h("ul", {class: "notes"}, a.notes.map(n => h("li", {}, n))) : null,
    h("h2", {}, "Recipes"), h("div", {class: "recipes"}, a.recipes.map(r => h("div", {class: "recipe-card"},
      h("b", {}, r.purpose), h("code", {}, r.command), h("button", {class: "run-recipe", onclick: () => {
        pendingRecipe = r.recipe; location.hash = "#launch"; }}, "run…")))));
}

async function pageLaunch() {
  const schema = await api("/api/schema");
  const start = pendingRecipe || {data: {builtin: "contacts"}};
  pendingRecipe = null;
  const form = buildRecipeForm(schema, start);
  const top = h("pre", {class: "error", id: "form-errors"});
  const status = h("div", {id: "launch-status"});
  const act = async launch => {
    const recipe = readRecipeForm(form);
    const res = await api(launch ? "/api/launch" : "/api/validate", recipe);
    showErrors(form, res.errors || {}, top);
    if (!res.ok) { status.textContent = "the recipe does not validate (see the fields marked in red)"; return; }
    if (!launch) { status.textContent = "valid"; return; }
    location.hash = `#run/${encodeURIComponent(res.job.name)}`;
  };
  mainEl().replaceChildren(h("h1", {}, "Launch a run"),
    h("p", {class: "muted"}, "the form is the recipe schema; blank fields take their default. Runs queue and train one at a time."),
    top, form, h("div", {class: "actions"}, h("button", {id: "validate", onclick: () => act(false)}, "validate"),
      h("button", {id: "launch", class: "primary", onclick: () => act(true)}, "queue training")), status);
}

async function pageArenas() {
  const [arenas, files] = await Promise.all([api("/api/arenas"), api("/api/arena-files")]);
  const jobsBox = h("div", {class: "arena-jobs"}), msg = h("pre", {class: "error"});
  const live = jobs => jobs.filter(j => j.name.startsWith("arena:") && ["queued", "running", "stopping"].includes(j.state));
  let wasLive = false;
  const drawJobs = async () => {
    const jobs = (await api("/api/jobs")).filter(j => j.name.startsWith("arena:"));
    jobsBox.replaceChildren(...jobs.map(j => h("div", {class: `export-job ${j.state}`}, h("b", {}, j.args.join(" ")),
      ` ${j.state}`, h("pre", {class: "log"}, j.log_tail || "waiting for its turn in the queue…"))));
    const now = live(jobs).length > 0;
    if (wasLive && !now) setTimeout(window.route, 0);  // finished: list the new arena
    wasLive = now;
    return now;
  };
  const run = async file => {
    msg.textContent = "";
    try { await api(`/api/arena-files/${encodeURIComponent(file)}/run`, {}); } catch (e) { msg.textContent = e.message; return; }
    if (await drawJobs()) window.Pages.poll(drawJobs, 2000);
  };
  mainEl().replaceChildren(h("h1", {}, "Arenas"), arenas.length ? table(arenas.map(a => ({...a,
    name: h("a", {href: `#arena/${encodeURIComponent(a.name)}`}, a.name)})), ["name", "cells", "ok"])
    : h("p", {class: "muted"}, "no arena yet: ftatlas arena ARENA.yaml writes one"),
  h("h2", {}, "Arena files"), h("p", {class: "muted"}, "the arena YAMLs in the arenas folder; run queues ftatlas " +
    "arena FILE (cells train one after another; finished cells whose recipe is unchanged are reused)"),
  files.length ? table(files.map(f => ({...f, action: f.error ? h("span", {class: "error"}, f.error)
    : h("button", {class: "run-arena", "data-file": f.file, onclick: () => run(f.file)}, "run arena")})),
  ["file", "name", "cells", "action"]) : h("p", {class: "muted"}, "no *.yaml in the arenas folder"), msg, jobsBox);
  if (await drawJobs()) window.Pages.poll(drawJobs, 2000);
}

async function pageArena(name) {
  const a = await api(`/api/arenas/${encodeURIComponent(name)}`);
  const unit = a.own_scale ? a.metric : `${a.metric} (%)`;
  const scale = v => (a.own_scale ? v : 100 * v);
  const scatter = (key, label) => Charts.axesChart(a.points.filter(p => p.metric !== null).map(p => ({name: p.cell,
    points: [[p[key], scale(p.metric)]], ci: p.ci ? [[p[key], scale(p.ci[0]), scale(p.ci[1])]] : []})),
    {title: `${a.metric} vs ${label}`, xlabel: label, ylabel: unit, scatter: true});
  const left = ["cell", "method", "objective", "context", "verdict"];
  mainEl().replaceChildren(h("h1", {}, `Arena ${name}`),
    h("p", {class: "muted"}, "metrics in % (perplexity and judge scores on their own scale) with bootstrap 95% intervals; click a header to sort"),
    table(a.table, a.table.length ? [...left, ...Object.keys(a.table[0]).filter(c => !left.includes(c))] : [],
      {filter: true, class: "data arena-table"}),
    h("h2", {}, "Plots"), h("div", {class: "charts"},
      a.metric ? scatter("peak_gib", "peak memory (GiB)") : null,
      a.metric ? scatter("train_seconds", "train time (s)") : null,
      Charts.axesChart(a.points.filter(p => p.losses.length).map(p => ({name: p.cell, points: p.losses})),
        {title: "train loss", xlabel: "step", ylabel: "loss"})),
    a.plots.length ? h("details", {}, h("summary", {}, "the PNGs ftatlas arena wrote"), h("div", {class: "charts"},
      a.plots.map(p => h("img", {src: `/api/arenas/${encodeURIComponent(name)}/plots/${p}`, alt: p})))) : null);
}

// POST /v1/chat/completions with stream: true (ftatlas serve's SSE); onDelta(text) for each piece of the answer.
// Returns the run's context (the first chunk's "sources") and whether the stream ended with [DONE].
async function streamChat(body, onDelta) {
  const res = await fetch("/v1/chat/completions", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({...body, stream: true})});
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { const d = await res.json(); msg = (d.error && (d.error.message || d.error)) || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "", sources = null;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return {sources, complete: false};
    buf += value;
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const data = buf.slice(0, cut).split("\n").filter(l => l.startsWith("data: ")).map(l => l.slice(6)).join("");
      buf = buf.slice(cut + 2);
      if (!data) continue;
      if (data === "[DONE]") { reader.cancel(); return {sources, complete: true}; }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || "the server reported an error");
      if (chunk.sources) sources = chunk.sources;  // the run's context: RAG passages or few-shot examples
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) onDelta(delta.content);
    }
  }
}

async function pageChat() {
  let models = [];
  try {
    models = (await api("/v1/models")).data.filter(m => !(m.ftatlas && m.ftatlas.kind === "reward")).map(m => m.id);
  } catch (e) { /* shown below as an empty list */ }
  const history = [];
  const pick = h("select", {id: "chat-models", multiple: true, size: Math.min(6, Math.max(2, models.length))},
    models.map((m, i) => h("option", {value: m, selected: i === 0}, m)));
  const cols = h("div", {class: "chat-cols"});
  const input = h("textarea", {id: "chat-input", rows: 2, placeholder: "your message (Enter sends)"});
  const maxTok = h("input", {id: "chat-max", placeholder: "run's", size: 5});
  const temp = h("input", {id: "chat-temp", placeholder: "run's", size: 5});
  const send = async () => {
    const text = input.value.trim();
    const chosen = [...pick.selectedOptions].map(o => o.value);
    if (!text || !chosen.length) return;
    input.value = "";
    history.push({role: "user", content: text});
    cols.replaceChildren(...chosen.map(m => h("div", {class: "chat-col", "data-model": m}, h("h3", {}, m),
      h("div", {class: "msgs"}, history.filter(x => x.role === "user" || x.model === m).map(x =>
        h("div", {class: `msg ${x.role}`}, x.content)), h("div", {class: "msg pending"}, "…")))));
    await Promise.all(chosen.map(async m => {
      const col = cols.querySelector(`[data-model="${CSS.escape(m)}"]`);
      const live = col.querySelector(".pending");  // "msg streaming" while tokens arrive, "msg assistant" once done
      const msgs = history.filter(x => x.role === "user" || x.model === m).map(({role, content}) => ({role, content}));
      let reply = "", info = null;
      try {
        const body = {model: m, messages: msgs};  // decoding left out = the run's own (its recipe's eval.decode)
        if (maxTok.value.trim()) body.max_tokens = +maxTok.value;
        if (temp.value.trim()) body.temperature = +temp.value;
        const res = await streamChat(body, piece => {
          reply += piece;
          live.className = "msg streaming";
          live.textContent = reply;
        });
        info = res.sources;
        col.dataset.stream = res.complete ? "done" : "cut";
      } catch (e) { reply = `error: ${e.message}`; }
      history.push({role: "assistant", content: reply, model: m});
      live.replaceWith(reply.trim() ? h("div", {class: "msg assistant"}, reply)
        : h("div", {class: "msg assistant muted"}, "(an empty answer: the model stopped at once)"),
        info && Object.keys(info).length ? h("details", {class: "sources"}, h("summary", {}, "context (sources)"),
          h("pre", {}, JSON.stringify(info, null, 2))) : "");
    }));
  };
  input.addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); } });
  mainEl().replaceChildren(h("h1", {}, "Chat"),
    h("p", {class: "muted"}, "pick one run, or several (Ctrl/Shift-click) to see them side by side on the same prompt; " +
      "each answers with its own chat template, context and decoding (blank fields: the run's eval.decode), streamed " +
      "through ftatlas serve's OpenAI API at /v1/chat/completions"),
    h("div", {class: "row"}, pick, labeled("max tokens", maxTok), labeled("temperature", temp)),
    cols, h("div", {class: "row"}, input, h("button", {id: "chat-send", class: "primary", onclick: send}, "send")));
}

const ROUTES = {advise: pageAdvise, launch: pageLaunch, runs: pageRuns, run: pageRun, compare: pageCompare,
  arenas: pageArenas, arena: pageArena, chat: pageChat};

async function route() {
  window.uiPage = (window.uiPage || 0) + 1;  // stops the previous page's polling
  const [page, ...args] = (location.hash.slice(1) || "runs").split("/").map(decodeURIComponent);
  document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", a.getAttribute("href") === `#${page}`));
  try { await (ROUTES[page] || pageRuns)(...args); } catch (e) {
    mainEl().replaceChildren(h("h1", {}, "error"), h("pre", {class: "error"}, e.message));
  }
}
window.route = route;
window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
})();
