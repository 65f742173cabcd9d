// The run page's export panel: one button per `ftatlas export` format (with its quant picker; formats this
// machine cannot run are greyed out with the reason the export code gives), the merge button, the run's
// export/merge jobs with their logs, and every export.json as the table `ftatlas export` prints.
(() => {
"use strict";

const {h} = window.RecipeForm;
const LIVE = ["queued", "running", "stopping"];
let formatsCache = null;

// The panel is built once per run page and updated in place, so a quant picked while a job runs is kept.
function exportPanel(name, onQueued) {
  const {api} = window.Pages;
  const buttons = h("div", {class: "export-buttons"}, h("p", {class: "muted"}, "loading export formats…"));
  const message = h("pre", {class: "error export-error"});
  const jobsBox = h("div", {class: "export-jobs"});
  const reports = h("div", {class: "export-reports"});
  const el = h("div", {class: "export"}, h("h2", {}, "Export"), h("p", {class: "muted"},
    "each button queues ftatlas export RUN --to FORMAT --quant Q: written to RUN/exports/FORMAT-Q, loaded in the " +
    "program that will run it, and re-scored on the run's held-out split next to the run"),
  buttons, message, jobsBox, reports);
  const queue = async (path, body) => {
    message.textContent = "";
    try { await api(path, body); onQueued(); } catch (e) { message.textContent = e.message; }
  };
  let drawnWeights;

  function drawButtons(formats, r) {
    const hasWeights = Boolean(r.weights) || r.method === "none";
    const rows = formats.map(f => {
      const why = f.unavailable || (hasWeights ? null : "no weights yet (the run is still training, or it failed)");
      const pick = f.quants.length ? h("select", {class: "quant", "data-format": f.name, disabled: Boolean(why),
        title: "quant"}, f.quants.map(q => h("option", {value: q}, q))) : null;
      const go = h("button", {class: "export-to", "data-format": f.name, disabled: Boolean(why), title: why || f.summary,
        onclick: () => queue(`/api/runs/${encodeURIComponent(name)}/export`, {to: f.name, quant: pick ? pick.value : null})},
      `export ${f.name}`);
      return h("div", {class: "export-format" + (why ? " unavailable" : ""), "data-format": f.name}, go, pick,
        h("small", {class: why ? "why" : "muted"}, why || `${f.summary} · checked in ${f.consumer}`));
    });
    if (r.weights === "adapter") rows.push(h("div", {class: "export-format"}, h("button", {class: "merge",
      onclick: () => queue(`/api/runs/${encodeURIComponent(name)}/merge`, {})}, "merge adapter"),
    h("small", {class: "muted"}, "ftatlas merge: the adapter folded into the base, re-scored against the adapter (merge.json)")));
    buttons.replaceChildren(...rows);
  }

  function drawJobs(jobs) {  // export and merge jobs of this run, newest first; finished ones show as reports
    const mine = jobs.filter(j => j.name === name && j.args[0] !== "train" && j.state !== "done");
    jobsBox.replaceChildren(...mine.map(j => h("div", {class: `export-job ${j.state}`},
      h("b", {}, j.args[0] === "export" ? `export ${j.args.slice(2).join(" ")}` : j.args[0]), ` ${j.state}`,
      LIVE.includes(j.state) ? h("button", {class: "stop", onclick: () => queue(`/api/jobs/${j.id}/stop`, {})}, "stop") : null,
      h("pre", {class: "log"}, j.log_tail || "waiting for its turn in the queue…"))));
  }

  function drawReports(exports) {
    reports.replaceChildren(...exports.map(x => {
      const cols = ["artifact", "consumer", "size", ...x.metrics, "gen tok/s"];
      const drops = Object.entries(x.drops);
      return h("div", {class: "export-report", "data-export": x.name},
        h("h3", {}, `${x.format}${x.quant ? " " + x.quant : ""} `, h("span", {class: x.ok ? "badge ok" : "badge bad"},
          x.ok ? "parity OK" : drops.length ? "metric drop" : "logits MISMATCH")),
        window.Pages.table(x.rows, cols, {class: "data parity-table", cell: (row, c) => (row.drops.includes(c)
          ? h("span", {class: "drop"}, `${row[c]} drop`) : row[c])}),
        h("p", {class: "logits"}, x.logits),
        drops.length ? h("ul", {class: "drops"}, drops.map(([m, why]) => h("li", {}, `drop: ${m} ${why}`))) : null,
        h("details", {}, h("summary", {}, `files (${x.dir})`), h("pre", {}, x.files.join("\n"))));
    }));
  }

  async function update(r, jobs) {
    if (formatsCache === null) formatsCache = await api("/api/export/formats");
    const key = `${r.weights}|${r.method}`;
    if (drawnWeights !== key) { drawButtons(formatsCache, r); drawnWeights = key; }
    drawJobs(jobs);
    drawReports(r.exports || []);
  }

  return {el, update, live: jobs => jobs.some(j => j.name === name && j.args[0] !== "train" && LIVE.includes(j.state))};
}

window.Export = {exportPanel};
})();
