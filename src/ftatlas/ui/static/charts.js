// Plain SVG charts (no library): line charts, scatter plots with intervals, the decision map.
(() => {
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

function svgEl(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function niceTicks(lo, hi, n = 5) {
  if (!isFinite(lo) || !isFinite(hi)) return [];
  if (lo === hi) { lo -= 1; hi += 1; }
  const step0 = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= step0);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  out.step = step;
  return out;
}

// A tick label with as many decimals as the tick step needs (10.78, 10.80 rather than 10.8, 10.8).
function tickText(v, step) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-4) return v.toExponential(1);
  return v.toFixed(Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9))));
}

function fmt(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e5 || a < 1e-3 ? v.toExponential(2) : +v.toPrecision(4) + "";
}

// series: [{name, points: [[x, y], ...]}]; opts: {title, xlabel, ylabel, width, height, ci: bool}
function axesChart(series, opts) {
  const W = opts.width || 520, H = opts.height || 300, m = {l: 64, r: opts.scatter ? 70 : 16, t: 30, b: 44};
  const svg = svgEl("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": opts.title});
  const pts = series.flatMap(s => s.points.concat(s.ci ? s.ci.flatMap(([x, lo, hi]) => [[x, lo], [x, hi]]) : []));
  svg.appendChild(svgEl("text", {x: W / 2, y: 18, class: "chart-title", "text-anchor": "middle"}, opts.title));
  if (!pts.length) {
    svg.appendChild(svgEl("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "muted"}, "no data yet"));
    return svg;
  }
  let [x0, x1] = [Math.min(...pts.map(p => p[0])), Math.max(...pts.map(p => p[0]))];
  let [y0, y1] = [Math.min(...pts.map(p => p[1])), Math.max(...pts.map(p => p[1]))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (opts.scatter) { const px = (x1 - x0) * 0.08; x0 -= px; x1 += px; }
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const pad = (y1 - y0) * 0.08; y0 -= pad; y1 += pad;
  const sx = x => m.l + (x - x0) / (x1 - x0) * (W - m.l - m.r);
  const sy = y => H - m.b - (y - y0) / (y1 - y0) * (H - m.t - m.b);
  const yt = niceTicks(y0, y1), xt = niceTicks(x0, x1);
  for (const t of yt) {
    svg.appendChild(svgEl("line", {x1: m.l, x2: W - m.r, y1: sy(t), y2: sy(t), class: "grid"}));
    svg.appendChild(svgEl("text", {x: m.l - 6, y: sy(t) + 4, "text-anchor": "end", class: "tick"}, tickText(t, yt.step)));
  }
  for (const t of xt) {
    svg.appendChild(svgEl("text", {x: sx(t), y: H - m.b + 16, "text-anchor": "middle", class: "tick"}, tickText(t, xt.step)));
  }
  svg.appendChild(svgEl("text", {x: (W + m.l) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label"},
    opts.xlabel || ""));
  svg.appendChild(svgEl("text", {x: 14, y: (H - m.b + m.t) / 2, "text-anchor": "middle", class: "axis-label",
    transform: `rotate(-90 14 ${(H - m.b + m.t) / 2})`}, opts.ylabel || ""));
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const g = svgEl("g", {class: "series", "data-name": s.name});
    if (opts.scatter) {
      for (const [x, lo, hi] of s.ci || []) {
        g.appendChild(svgEl("line", {x1: sx(x), x2: sx(x), y1: sy(lo), y2: sy(hi), stroke: color, "stroke-width": 2}));
      }
      for (const [x, y] of s.points) {
        const c = svgEl("circle", {cx: sx(x), cy: sy(y), r: 6, fill: color, class: "point"});
        c.appendChild(svgEl("title", {}, `${s.name}: ${fmt(y)} at ${fmt(x)}`));
        g.appendChild(c);
        g.appendChild(svgEl("text", {x: sx(x) + 9, y: sy(y) - 7, class: "point-label"}, s.name));
      }
    } else {
      const d = s.points.map(([x, y], j) => `${j ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("");
      g.appendChild(svgEl("path", {d, fill: "none", stroke: color, "stroke-width": 2}));
      for (const [x, y] of s.points) {
        const c = svgEl("circle", {cx: sx(x), cy: sy(y), r: 3, fill: color, class: "point"});
        c.appendChild(svgEl("title", {}, `${s.name} step ${x}: ${fmt(y)}`));
        g.appendChild(c);
      }
    }
    svg.appendChild(g);
  });
  if (series.length > 1 && !opts.scatter) {
    series.forEach((s, i) => {
      const y = m.t + 4 + i * 15;
      svg.appendChild(svgEl("rect", {x: W - m.r - 120, y: y - 8, width: 10, height: 10,
        fill: PALETTE[i % PALETTE.length]}));
      svg.appendChild(svgEl("text", {x: W - m.r - 106, y: y + 1, class: "legend"}, s.name));
    });
  }
  return svg;
}

// The seeds' decision map: the questions down the left column, each "yes" leaf to its right, the taken path
// highlighted; edges between leaves of one column (to the hybrids) run down a bus on the right.
function decisionMap(map) {
  const BW = 350, BH = 50, GX = 70, GY = 24, BUS = 40;
  const cols = Math.max(...map.nodes.map(n => n.col)) + 1;
  const rows = Math.max(...map.nodes.map(n => n.layer)) + 1;
  const W = GX / 2 + cols * (BW + GX) + BUS, H = rows * (BH + GY) + GY;
  const pos = {};
  for (const n of map.nodes) pos[n.id] = {x: GX / 2 + n.col * (BW + GX), y: GY / 2 + n.layer * (BH + GY)};
  const svg = svgEl("svg", {viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "decision-map", role: "img",
    "aria-label": "decision map"});
  const defs = svgEl("defs");
  for (const [id, color] of [["arrow", "#98a2b3"], ["arrow-hot", "#e65100"]]) {
    const mk = svgEl("marker", {id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 11, markerHeight: 11,
      markerUnits: "userSpaceOnUse", orient: "auto-start-reverse"});
    mk.appendChild(svgEl("path", {d: "M0,0 L10,5 L0,10 z", fill: color}));
    defs.appendChild(mk);
  }
  svg.appendChild(defs);
  let bus = 0;
  const edges = [...map.edges].sort((a, b) => a.taken - b.taken);  // the taken path is drawn last, on top
  for (const e of edges) {
    const a = pos[e.from], b = pos[e.to];
    let d, lx, ly;
    if (a.y === b.y) {  // a question to its "yes" leaf
      d = `M${a.x + BW},${a.y + BH / 2} H${b.x}`;
      [lx, ly] = [a.x + BW + 8, a.y + BH / 2 - 6];
    } else if (a.x === b.x && b.y - a.y <= BH + GY) {  // down the column to the next row
      d = `M${a.x + BW / 2},${a.y + BH} V${b.y}`;
      [lx, ly] = [a.x + BW / 2 + 6, a.y + BH + GY / 2 + 4];
    } else {  // a leaf to a node further down its column: out to the right, down the bus, back in
      const x = b.x + BW + 12 + (bus++) * 9;
      d = `M${a.x + BW},${a.y + BH / 2} H${x} V${b.y + BH / 2} H${b.x + BW}`;
      [lx, ly] = [x, a.y];
    }
    svg.appendChild(svgEl("path", {d, fill: "none", class: e.taken ? "edge taken" : "edge",
      "marker-end": `url(#${e.taken ? "arrow-hot" : "arrow"})`}));
    if (e.label) svg.appendChild(svgEl("text", {x: lx, y: ly, class: "edge-label"}, e.label));
  }
  for (const n of map.nodes) {
    const {x, y} = pos[n.id];
    const g = svgEl("g", {class: "node" + (n.taken ? " taken" : "") + (n.question ? " question" : ""),
      "data-id": n.id});
    g.appendChild(svgEl("rect", {x, y, width: BW, height: BH, rx: n.question ? 18 : 4}));
    g.appendChild(svgEl("text", {x: x + BW / 2, y: y + 21, "text-anchor": "middle", class: "node-en"},
      `${n.id}: ${n.english}`));
    g.appendChild(svgEl("text", {x: x + BW / 2, y: y + 39, "text-anchor": "middle", class: "node-ru"},
      n.label.length > 50 ? n.label.slice(0, 49) + "…" : n.label));
    g.appendChild(svgEl("title", {}, `${n.label}\n${n.english}`));
    svg.appendChild(g);
  }
  return svg;
}

window.Charts = {axesChart, decisionMap};
})();
