// Renders /openapi.json without any external script (the app works offline).
"use strict";

(() => {
  const el = (tag, props = {}, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  };
  let spec = null;

  const refName = (ref) => ref.split("/").pop();
  function typeOf(s) {
    if (!s) return "";
    if (s.$ref) return refName(s.$ref);
    if (s.anyOf) return s.anyOf.map(typeOf).join(" | ");
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (s.type === "array") return `${typeOf(s.items)}[]`;
    let t = s.type || "object";
    const lim = [];
    if (s.minimum !== undefined) lim.push(`≥ ${s.minimum}`);
    if (s.exclusiveMinimum !== undefined) lim.push(`> ${s.exclusiveMinimum}`);
    if (s.maximum !== undefined) lim.push(`≤ ${s.maximum}`);
    if (s.maxLength !== undefined) lim.push(`max length ${s.maxLength}`);
    if (s.format) t += ` (${s.format})`;
    return lim.length ? `${t}, ${lim.join(", ")}` : t;
  }

  function schemaTable(schema) {
    if (schema && schema.$ref) schema = spec.components.schemas[refName(schema.$ref)];
    if (!schema || !schema.properties) return el("pre", {}, JSON.stringify(schema, null, 2));
    const req = new Set(schema.required || []);
    const t = el("table", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "default"), el("th", {}, "description")));
    for (const [name, p] of Object.entries(schema.properties)) {
      t.append(el("tr", {},
        el("td", {}, el("code", {}, name + (req.has(name) ? " *" : ""))),
        el("td", {}, typeOf(p)),
        el("td", {}, p.default === undefined ? "" : JSON.stringify(p.default)),
        el("td", {}, p.description || p.title || "")));
    }
    return t;
  }

  function operation(path, method, op) {
    const body = el("div", { class: "body" });
    if (op.description) body.append(el("p", {}, op.description));
    if (op.parameters && op.parameters.length) {
      body.append(el("h4", {}, "Parameters"));
      const t = el("table", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "description")));
      for (const p of op.parameters) {
        t.append(el("tr", {}, el("td", {}, el("code", {}, p.name + (p.required ? " *" : ""))), el("td", {}, p.in),
          el("td", {}, typeOf(p.schema)), el("td", {}, p.description || "")));
      }
      body.append(t);
    }
    if (op.requestBody) {
      for (const [ctype, media] of Object.entries(op.requestBody.content || {})) {
        body.append(el("h4", {}, `Request body (${ctype})`), schemaTable(media.schema));
      }
    }
    body.append(el("h4", {}, "Responses"));
    const t = el("table", {});
    for (const [code, r] of Object.entries(op.responses || {})) {
      const types = Object.keys(r.content || {}).join(", ");
      t.append(el("tr", {}, el("td", {}, el("code", {}, code)), el("td", {}, r.description || ""), el("td", {}, types)));
    }
    body.append(t);
    return el("details", { class: "op" },
      el("summary", {}, el("span", { class: `method m-${method}` }, method.toUpperCase()),
        el("span", { class: "path" }, path), el("span", { class: "summary" }, op.summary || "")),
      body);
  }

  async function init() {
    try {
      spec = await (await fetch("/openapi.json")).json();
    } catch (err) {
      document.getElementById("intro").textContent = `cannot load /openapi.json: ${err}`;
      return;
    }
    document.getElementById("intro").textContent = `${spec.info.title} ${spec.info.version}. ${spec.info.description || ""}`;
    const ops = document.getElementById("ops");
    const byTag = {};
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const tag = (op.tags && op.tags[0]) || "other";
        (byTag[tag] = byTag[tag] || []).push(operation(path, method, op));
      }
    }
    for (const [tag, list] of Object.entries(byTag)) {
      ops.append(el("h2", {}, tag), ...list);
    }
    const schemas = document.getElementById("schemas");
    for (const [name, s] of Object.entries((spec.components || {}).schemas || {})) {
      schemas.append(el("details", { class: "op" }, el("summary", {}, el("span", { class: "path" }, name)),
        el("div", { class: "body" }, schemaTable(s))));
    }
  }

  document.addEventListener("DOMContentLoaded", init);
})();
