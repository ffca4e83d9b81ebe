// micro's dashboard: reads the gateway's /api, calls endpoints through the
// gateway, tails topics over a WebSocket. No framework, no build step.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

const tokenInput = () => $("#token");
const token = () => tokenInput().value.trim();

function headers(extra = {}) {
  const all = { ...extra };
  if (token()) all.Authorization = "Bearer " + token();
  return all;
}

// GET a JSON document of the gateway; throws micro's error detail.
async function api(path) {
  const reply = await fetch(path, { headers: headers() });
  const text = await reply.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  if (!reply.ok) {
    const detail = body && body.detail ? body.detail : text;
    throw new Error(`${reply.status}: ${detail}`);
  }
  return body;
}

function wsUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token()) url.searchParams.set("token", token());
  return url.href;
}

const pretty = (value) => (typeof value === "string" ? value : JSON.stringify(value, null, 2));

// --- services ---------------------------------------------------------

let chosen = null;

async function loadServices() {
  const list = $("#services");
  const status = $("#status");
  try {
    const rows = await api("/api/services");
    list.replaceChildren(
      ...(rows.length === 0 ? [el("li", { class: "muted", text: "no services found" })] : []),
      ...rows.map((row) =>
        el("li", {},
          el("a", {
            href: "#" + encodeURIComponent(row.name),
            "data-service": row.name,
            class: row.name === chosen ? "chosen" : null,
            onclick: (event) => { event.preventDefault(); showService(row.name); },
          }, row.name, el("span", { class: "count", text: `${row.nodes} node${row.nodes === 1 ? "" : "s"}` })))),
    );
    status.textContent = `${rows.length} service${rows.length === 1 ? "" : "s"}, ${new Date().toLocaleTimeString()}`;
    status.className = "muted";
  } catch (error) {
    status.textContent = "registry: " + error.message;
    status.className = "error";
  }
}

async function showService(name) {
  chosen = name;
  for (const a of document.querySelectorAll("#services a")) {
    a.classList.toggle("chosen", a.dataset.service === name);
  }
  history.replaceState(null, "", "#" + encodeURIComponent(name));
  const section = $("#service");
  section.replaceChildren(el("p", { class: "muted", text: `loading ${name}…` }));
  let records;
  try {
    records = await api("/api/services/" + encodeURIComponent(name));
  } catch (error) {
    section.replaceChildren(el("p", { class: "error", text: error.message }));
    return;
  }
  const health = el("div", { id: "health" });
  section.replaceChildren(
    el("div", { class: "row" },
      el("h2", { text: name }),
      el("button", { type: "button", id: "check-health", onclick: () => showHealth(name, health) }, "check health")),
    nodesTable(records),
    health,
    el("h3", { text: "Endpoints" }),
    ...endpoints(name, records),
  );
  showHealth(name, health);
}

function nodesTable(records) {
  const rows = records.flatMap((record) =>
    record.nodes.map((node) =>
      el("tr", { "data-node": node.id },
        el("td", {}, el("code", { text: node.id })),
        el("td", { text: node.address }),
        el("td", { text: record.version }),
        el("td", { class: "node-health muted", text: "…" }))));
  return el("table", { id: "nodes" },
    el("thead", {}, el("tr", {}, el("th", { text: "node" }), el("th", { text: "address" }), el("th", { text: "version" }), el("th", { text: "health" }))),
    el("tbody", {}, rows));
}

async function showHealth(name, box) {
  try {
    const nodes = await api("/api/health/" + encodeURIComponent(name));
    box.replaceChildren();
    for (const node of nodes) {
      const row = document.querySelector(`#nodes tr[data-node="${CSS.escape(node.node)}"] .node-health`);
      if (!row) continue;
      const checks = node.detail && Array.isArray(node.detail.checks)
        ? node.detail.checks.map((c) => `${c.name}=${c.status}`).join(" ")
        : (typeof node.detail === "string" ? node.detail : "");
      row.replaceChildren(el("span", { class: node.status, text: node.status }), checks ? " " + checks : "");
    }
  } catch (error) {
    box.replaceChildren(el("p", { class: "error", text: "health: " + error.message }));
  }
}

// --- endpoints and their forms -----------------------------------------

function endpoints(service, records) {
  const seen = new Set();
  const all = [];
  for (const record of records) {
    for (const endpoint of record.endpoints) {
      if (seen.has(endpoint.name)) continue;
      seen.add(endpoint.name);
      all.push(endpointCard(service, endpoint));
    }
  }
  return all.length ? all : [el("p", { class: "muted", text: "no endpoints" })];
}

function endpointCard(service, endpoint) {
  const meta = endpoint.metadata || {};
  const badges = [];
  if (meta.stream) badges.push(el("span", { class: "badge", text: meta["stream.kind"] || "stream" }));
  if (meta.auth === "public") badges.push(el("span", { class: "badge", text: "public" }));
  if (meta.scopes) badges.push(el("span", { class: "badge", text: "scopes: " + meta.scopes }));
  // A protobuf service's endpoint is a gRPC method too: its path.
  if (meta.grpc) badges.push(el("span", { class: "badge", title: "gRPC method", text: "gRPC " + meta.grpc }));
  return el("div", { class: "endpoint", "data-endpoint": endpoint.name },
    el("div", {}, el("strong", { text: endpoint.name }), " ",
      el("code", { class: "muted", text: `${endpoint.request} → ${endpoint.response}` }), badges),
    meta.description ? el("p", { class: "description", text: meta.description }) : null,
    meta.stream ? streamForm(service, endpoint) : callForm(service, endpoint));
}

// Follows a local "$ref" ("#/$defs/Name") within the endpoint's schema.
function resolve(schema, root) {
  let current = schema;
  for (let hops = 0; current && current.$ref && hops < 16; hops++) {
    const path = current.$ref.replace(/^#\//, "").split("/");
    current = path.reduce((node, key) => (node ? node[key] : undefined), root);
  }
  return current || {};
}

// The values a schema allows, when it lists them: an enum, or a oneOf of
// constants (an enum whose variants have doc comments).
function choices(schema, root) {
  if (Array.isArray(schema.enum)) return schema.enum;
  const options = schema.oneOf || schema.anyOf;
  if (!Array.isArray(options)) return null;
  const values = [];
  for (const option of options) {
    const o = resolve(option, root);
    if (o.const !== undefined) values.push(o.const);
    else if (Array.isArray(o.enum) && o.enum.length === 1) values.push(o.enum[0]);
    else return null;
  }
  return values;
}

function typeOf(schema) {
  if (Array.isArray(schema.type)) return schema.type.find((t) => t !== "null") || "string";
  if (schema.type) return schema.type;
  if (schema.enum) return "string";
  if (schema.oneOf || schema.anyOf) return "json";
  return "json";
}

// An example value for a schema, to start the JSON box with.
function example(schema, root, depth = 0) {
  const s = resolve(schema, root);
  if (s.default !== undefined) return s.default;
  const allowed = choices(s, root);
  if (allowed && allowed.length) return allowed[0];
  if (s.oneOf && s.oneOf[0]) return example(s.oneOf[0], root, depth + 1);
  if (s.const !== undefined) return s.const;
  switch (typeOf(s)) {
    case "object": {
      const value = {};
      if (depth > 4) return value;
      const required = new Set(s.required || []);
      for (const [key, property] of Object.entries(s.properties || {})) {
        if (required.has(key)) value[key] = example(property, root, depth + 1);
      }
      return value;
    }
    case "array": return [];
    case "integer": case "number": return 0;
    case "boolean": return false;
    case "string": return "";
    default: return null;
  }
}

function callForm(service, endpoint) {
  const root = endpoint.request_schema || null;
  const top = root ? resolve(root, root) : null;
  const body = el("textarea", { name: "body", rows: 4, spellcheck: "false" });
  const result = el("pre", { class: "result", hidden: true });
  const fields = [];
  const fieldsBox = el("div", { class: "fields" });
  const initial = root ? example(root, root) : {};
  body.value = JSON.stringify(initial, null, 2);

  // One input per top-level property; nested values are JSON text.
  const sync = () => {
    let value;
    try { value = JSON.parse(body.value || "{}"); } catch { value = {}; }
    if (typeof value !== "object" || value === null || Array.isArray(value)) value = {};
    for (const field of fields) {
      const raw = field.read();
      if (raw === undefined) delete value[field.key];
      else value[field.key] = raw;
    }
    body.value = JSON.stringify(value, null, 2);
  };
  if (top && typeOf(top) === "object" && top.properties) {
    const required = new Set(top.required || []);
    for (const [key, property] of Object.entries(top.properties)) {
      const s = resolve(property, root);
      const kind = typeOf(s);
      const label = key + (required.has(key) ? " *" : "");
      const title = s.description || property.description || "";
      let input;
      let read;
      const allowed = choices(s, root);
      if (allowed) {
        input = el("select", { name: key, title }, ...(required.has(key) ? [] : [el("option", { value: "", text: "(none)" })]),
          ...allowed.map((v) => el("option", { value: JSON.stringify(v), text: String(v) })));
        read = () => (input.value === "" ? undefined : JSON.parse(input.value));
      } else if (kind === "boolean") {
        input = el("input", { type: "checkbox", name: key, title });
        read = () => input.checked;
      } else if (kind === "integer" || kind === "number") {
        input = el("input", { type: "number", name: key, title, step: kind === "integer" ? "1" : "any" });
        read = () => (input.value === "" ? (required.has(key) ? 0 : undefined) : Number(input.value));
      } else if (kind === "string") {
        input = el("input", { type: "text", name: key, title });
        read = () => (input.value === "" && !required.has(key) ? undefined : input.value);
      } else {
        input = el("input", { type: "text", name: key, title, placeholder: "JSON" });
        read = () => {
          if (input.value.trim() === "") return required.has(key) ? example(s, root) : undefined;
          try { return JSON.parse(input.value); } catch { return input.value; }
        };
      }
      input.addEventListener("input", sync);
      input.addEventListener("change", sync);
      fields.push({ key, read });
      fieldsBox.append(el("label", {}, el("span", { text: label }), input, title ? el("small", { class: "muted", text: " " + title }) : null));
    }
  }
  const form = el("form", {
    "data-endpoint": endpoint.name,
    onsubmit: async (event) => {
      event.preventDefault();
      result.hidden = false;
      result.className = "result muted";
      result.textContent = "calling…";
      const started = performance.now();
      try {
        const reply = await fetch(`/${encodeURIComponent(service)}/${encodeURIComponent(endpoint.name)}`, {
          method: "POST",
          headers: headers({ "Content-Type": "application/json" }),
          body: body.value,
        });
        const text = await reply.text();
        let shown;
        try { shown = pretty(JSON.parse(text)); } catch { shown = text; }
        const ms = Math.round(performance.now() - started);
        result.className = "result " + (reply.ok ? "ok" : "error");
        result.dataset.status = String(reply.status);
        result.textContent = `${reply.status} ${reply.statusText} · ${ms} ms\n${shown}`;
      } catch (error) {
        result.className = "result error";
        result.textContent = "the call failed: " + error.message;
      }
    },
  }, fieldsBox, el("label", {}, el("span", { text: "request JSON" })), body, el("button", { type: "submit", text: "call" }), result);
  return form;
}

function streamForm(service, endpoint) {
  const log = el("pre", { class: "result", hidden: true });
  const line = el("input", { type: "text", name: "message", placeholder: "a JSON message", size: 40 });
  let socket = null;
  const show = (text) => { log.hidden = false; log.textContent += text + "\n"; log.scrollTop = log.scrollHeight; };
  const open = el("button", { type: "button", text: "open" });
  const send = el("button", { type: "submit", text: "send", disabled: true });
  const end = el("button", { type: "button", text: "end", disabled: true });
  open.addEventListener("click", () => {
    log.textContent = "";
    socket = new WebSocket(wsUrl(`/${encodeURIComponent(service)}/${encodeURIComponent(endpoint.name)}`));
    socket.onopen = () => { show("open"); send.disabled = false; end.disabled = false; open.disabled = true; };
    socket.onmessage = (event) => show(event.data === "" ? "(the service ended its side)" : "← " + event.data);
    socket.onclose = (event) => {
      show(`closed ${event.code}${event.reason ? ": " + event.reason : ""}`);
      send.disabled = true; end.disabled = true; open.disabled = false;
    };
  });
  end.addEventListener("click", () => { if (socket) socket.send(""); end.disabled = true; send.disabled = true; });
  return el("form", {
    "data-endpoint": endpoint.name,
    onsubmit: (event) => {
      event.preventDefault();
      if (!socket || socket.readyState !== WebSocket.OPEN) return;
      try { JSON.parse(line.value); } catch { show("not JSON: " + line.value); return; }
      socket.send(line.value);
      show("→ " + line.value);
      line.value = "";
    },
  }, open, " ", line, send, end, log);
}

// --- live tail ----------------------------------------------------------

let tailing = null;

function startTail(topic) {
  stopTail();
  const list = $("#tail");
  const state = $("#tail-state");
  list.replaceChildren();
  state.textContent = "connecting…";
  state.className = "muted";
  tailing = new WebSocket(wsUrl("/api/topics/" + encodeURIComponent(topic)));
  tailing.onopen = () => { state.textContent = `tailing ${topic}`; $("#tail-stop").disabled = false; };
  tailing.onmessage = (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { message = { payload: event.data }; }
    list.prepend(el("li", {}, el("code", { class: "muted", text: `${new Date().toLocaleTimeString()} ${message.id || ""}` }), el("pre", { text: pretty(message.payload) })));
    while (list.children.length > 200) list.lastChild.remove();
  };
  tailing.onclose = (event) => {
    state.textContent = event.code === 1000 || event.code === 1005 ? "stopped" : `closed ${event.code} ${event.reason || ""}`;
    $("#tail-stop").disabled = true;
  };
}

function stopTail() {
  if (tailing) { tailing.close(1000); tailing = null; }
}

// --- start ---------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  tokenInput().value = sessionStorage.getItem("micro-token") || "";
  tokenInput().addEventListener("change", () => { sessionStorage.setItem("micro-token", token()); loadServices(); });
  $("#refresh").addEventListener("click", loadServices);
  $("#tail-form").addEventListener("submit", (event) => { event.preventDefault(); startTail($("#tail-topic").value.trim()); });
  $("#tail-stop").addEventListener("click", stopTail);
  loadServices().then(() => {
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (wanted) showService(wanted);
  });
  setInterval(loadServices, 10000);
});
