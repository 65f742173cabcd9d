// The launch form, generated from the recipe's JSON schemas (/api/schema); errors shown next to their field.
(() => {
"use strict";

function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid);
  return el;
}

function resolveRef(schema, root) {
  if (schema.$ref) return root.$defs[schema.$ref.split("/").pop()];
  const any = schema.anyOf && schema.anyOf.find(s => s.type !== "null" && (s.$ref || s.type));
  if (any && any.$ref) return root.$defs[any.$ref.split("/").pop()];
  return schema;
}

// The input for one scalar field: enum -> select, bool -> select (so "default" stays possible), else text.
function fieldInput(path, prop, value) {
  const any = prop.anyOf || [];
  const enumVals = prop.enum || (any.find(s => s.enum) || {}).enum;
  const isBool = prop.type === "boolean" || any.some(s => s.type === "boolean");
  const cur = value === undefined ? "" : value;
  const types = [prop, ...any];
  const structured = types.some(s => (s.type === "array" && s.items && (s.items.type === "object" || s.items.$ref))
    || (s.type === "object" && !s.properties));
  if (structured) {  // lists of objects (e.g. GRPO rewards) and free-form mappings: edited as JSON
    return h("textarea", {name: path, "data-kind": "json", rows: 2,
      placeholder: prop.default === undefined || prop.default === null ? "JSON" : JSON.stringify(prop.default)},
      cur === "" ? "" : JSON.stringify(cur));
  }
  if (enumVals || isBool) {
    const opts = [...(isBool ? [true, false] : []), ...(enumVals || [])];
    const sel = h("select", {name: path, "data-kind": isBool ? "bool" : "enum"},
      h("option", {value: ""}, `(default: ${JSON.stringify(prop.default)})`),
      opts.map(o => h("option", {value: String(o), selected: String(cur) === String(o)}, String(o))));
    return sel;
  }
  const kind = prop.type === "integer" || prop.type === "number" ? prop.type
    : (any.find(s => s.type === "integer" || s.type === "number") || {}).type || (prop.type === "array" || any.some(s => s.type === "array") ? "array" : "string");
  return h("input", {name: path, "data-kind": kind, value: Array.isArray(cur) ? cur.join(",") : cur,
    placeholder: prop.default === undefined || prop.default === null ? "" : String(prop.default)});
}

function fieldRow(path, key, prop, value) {
  return h("div", {class: "field", "data-field": path},
    h("label", {for: path, title: prop.description || ""}, key),
    fieldInput(path, prop, value),
    h("div", {class: "help"}, prop.description || ""),
    h("div", {class: "field-error", "data-error-for": path}));
}

// A block (model, data, train, ...) from its schema; nested objects (eval.decode) become sub-blocks.
function blockFields(prefix, schema, root, values) {
  const out = [];
  for (const [key, prop0] of Object.entries(schema.properties || {})) {
    const prop = resolveRef(prop0, root);
    const path = `${prefix}.${key}`;
    if (prop.type === "object" && prop.properties) {
      out.push(h("fieldset", {class: "sub"}, h("legend", {}, path),
        blockFields(path, prop, root, (values || {})[key] || {})));
    } else {
      out.push(fieldRow(path, key, {...prop0, ...prop, description: prop0.description || prop.description,
        default: prop0.default}, (values || {})[key]));
    }
  }
  return out;
}

function axisBlock(axis, schema, values) {
  const names = Object.keys(schema.axes[axis]);
  const chosen = (values && values.name) || schema.axis_defaults[axis];
  const params = h("div", {class: "axis-params"});
  const render = name => {
    params.replaceChildren(...blockFields(axis, schema.axes[axis][name], schema.axes[axis][name],
      name === chosen ? values : {}));
  };
  const sel = h("select", {name: `${axis}.name`, "data-kind": "enum", onchange: e => render(e.target.value)},
    names.map(n => h("option", {value: n, selected: n === chosen}, n)));
  render(chosen);
  return h("fieldset", {class: "block", "data-block": axis}, h("legend", {}, axis),
    h("div", {class: "field", "data-field": `${axis}.name`}, h("label", {}, "name"), sel, h("div", {class: "help"},
      `registered ${axis}s; the fields below are that module's own parameters`),
      h("div", {class: "field-error", "data-error-for": `${axis}.name`})),
    h("div", {class: "field-error", "data-error-for": axis}), params);
}

function buildRecipeForm(schema, values = {}) {
  const blocks = [];
  const order = ["model", "data", "method", "objective", "context", "train", "eval", "output"];
  for (const name of order) {
    if (schema.axes[name]) { blocks.push(axisBlock(name, schema, normalizeAxis(values[name]))); continue; }
    const sch = schema.sections[name];
    const vals = {...(values[name] || {})};
    if (name === "output" && !vals.dir) vals.dir = schema.runs_dir;
    blocks.push(h("fieldset", {class: "block", "data-block": name}, h("legend", {}, name),
      h("div", {class: "field-error", "data-error-for": name}), blockFields(name, sch, sch, vals)));
  }
  return h("form", {class: "recipe-form", id: "recipe-form", onsubmit: e => e.preventDefault()}, blocks);
}

function normalizeAxis(v) {
  if (typeof v === "string") return {name: v};
  if (v && v.mode && !v.name) { const {mode, ...rest} = v; return {name: mode, ...rest}; }
  return v || {};
}

function parseValue(el) {
  const raw = el.value.trim();
  if (raw === "") return undefined;
  switch (el.dataset.kind) {
    case "bool": return raw === "true";
    case "integer": case "number": { const n = Number(raw); return Number.isNaN(n) ? raw : n; }  // the server names bad input
    case "array": return raw.split(",").map(s => s.trim()).filter(Boolean);
    case "json": try { return JSON.parse(raw); } catch (e) { return raw; }  // the server names bad input
    default: return raw;
  }
}

// The form's values as a nested recipe dict (blank fields left out: the schema default applies).
function readRecipeForm(form) {
  const out = {};
  for (const el of form.querySelectorAll("input[name], select[name], textarea[name]")) {
    const v = parseValue(el);
    if (v === undefined) continue;
    const parts = el.name.split(".");
    let node = out;
    for (const p of parts.slice(0, -1)) node = node[p] = node[p] || {};
    node[parts[parts.length - 1]] = v;
  }
  return out;
}

// errors: {"train.lr": ["Input should be ..."], "": [...]}; each goes under its field, else the block, else the top.
function showErrors(form, errors, top) {
  form.querySelectorAll(".field-error").forEach(e => { e.textContent = ""; });
  form.querySelectorAll(".field.invalid").forEach(e => e.classList.remove("invalid"));
  const loose = [];
  for (const [path, msgs] of Object.entries(errors || {})) {
    let target = form.querySelector(`[data-error-for="${CSS.escape(path)}"]`);
    for (let p = path; !target && p.includes("."); ) {
      p = p.slice(0, p.lastIndexOf("."));
      target = form.querySelector(`[data-error-for="${CSS.escape(p)}"]`);
    }
    if (!target && path) target = form.querySelector(`[data-error-for="${CSS.escape(path.split(".")[0])}"]`);
    if (target) {
      target.textContent = (path && !target.dataset.errorFor.endsWith(path) ? path + ": " : "") + msgs.join("; ");
      const field = target.closest(".field");
      if (field) field.classList.add("invalid");
    } else loose.push(...msgs.map(m => (path ? path + ": " : "") + m));
  }
  top.textContent = loose.join("\n");
  const first = form.querySelector(".field.invalid");
  if (first) first.scrollIntoView({block: "center"});
}

window.RecipeForm = {h, buildRecipeForm, readRecipeForm, showErrors};
})();
