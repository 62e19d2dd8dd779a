// DOM building without HTML strings. Every value from the API (memos, listing regions,
// claims, org names) is attacker-controlled: it only ever becomes a Text node or an
// attribute value set through setAttribute, never markup. Links only go to this page's
// own routes (#/...) or to the same-origin JSON API (/v1/...).

const SAFE_HREF = /^(#\/|\/v1\/)/;

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "href") el.setAttribute("href", SAFE_HREF.test(value) ? value : "#/");
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  add(el, children);
  return el;
}

export function add(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// "#/tx/<hash>" with every segment URI-encoded, so API text cannot change the route.
export function route(...parts) {
  return "#/" + parts.map((p) => encodeURIComponent(String(p))).join("/");
}

export function withQuery(base, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else if (v !== null && v !== undefined && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `${base}?${s}` : base;
}

export const link = (href, ...children) => h("a", { href }, ...children);

export function short(hex, n = 12) {
  if (typeof hex !== "string") return String(hex);
  return hex.length > n + 2 ? hex.slice(0, n) + "…" : hex;
}

// Links for hashes, addresses and ids, the full value in the title.
export const txLink = (hash, full = false) =>
  h("a", { href: route("tx", hash), class: "mono", title: hash }, full ? hash : short(hash));
export const blockLink = (height) => h("a", { href: route("blocks", height) }, fmtInt(height));
export const accountLink = (addr, full = false) =>
  h("a", { href: route("accounts", addr), class: "mono", title: addr }, full ? addr : short(addr, 14));
export const orgLink = (org) => h("a", { href: route("orgs", org) }, org);
export const listingLink = (id) => h("a", { href: route("listings", id) }, `#${id}`);
export const leaseLink = (id) => h("a", { href: route("leases", id) }, `#${id}`);
export const attestationLink = (id) => h("a", { href: route("attestations", id) }, `#${id}`);
export const proposalLink = (id) => h("a", { href: route("proposals", id) }, `#${id}`);

export function fmtInt(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : n === null || n === undefined ? "—" : String(n);
}

export function fmtTime(ms) {
  if (typeof ms !== "number") return "—";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

export function ago(ms, now) {
  if (typeof ms !== "number") return "";
  const s = Math.round((now - ms) / 1000);
  const abs = Math.abs(s);
  const text = abs < 90 ? `${abs}s` : abs < 5400 ? `${Math.round(abs / 60)}m` : abs < 129600
    ? `${Math.round(abs / 3600)}h` : `${Math.round(abs / 86400)}d`;
  return s >= 0 ? `${text} ago` : `in ${text}`;
}

export const badge = (text, kind) => h("span", { class: `badge ${kind || String(text)}` }, text);

// A two-column table of [label, value] rows; a row with a null value is left out.
export function facts(rows, attrs = {}) {
  const body = rows.filter((r) => r && r[1] !== undefined).map(([label, value, key]) =>
    h("tr", key ? { "data-field": key } : {}, h("th", {}, label), h("td", {}, value === null ? "—" : value)));
  return h("table", { class: "facts", ...attrs }, h("tbody", {}, body));
}

// A table with a header row; each row is a list of cells, or {cells, attrs}.
export function table(headers, rows, attrs = {}) {
  const { empty, ...rest } = attrs;
  if (!rows.length) return h("p", { class: "empty", id: rest.id }, empty || "none");
  attrs = rest;
  return h("table", { class: "list", ...attrs },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((r) => Array.isArray(r)
      ? h("tr", {}, r.map((c) => h("td", {}, c)))
      : h("tr", r.attrs, r.cells.map((c) => h("td", {}, c))))));
}

export const section = (title, ...children) => h("section", {}, h("h2", {}, title), ...children);

const ADDRESS = /^cx1[02-9ac-hj-np-z]{38}$/;
const HASH = /^[0-9a-f]{64}$/;
const ID_LINKS = { listing: listingLink, lease: leaseLink, attestation: attestationLink, proposal: proposalLink };

// Any decoded payload/result value: ids and addresses become links, the rest text.
export function value(v, key) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number" && ID_LINKS[key]) return ID_LINKS[key](v);
  if (typeof v === "number") return fmtInt(v);
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "string") {
    if (ADDRESS.test(v)) return accountLink(v, true);
    if (key === "tx" && HASH.test(v)) return txLink(v, true);
    if (key === "org" || key === "provider" || key === "issuer") return orgLink(v);
    return h("span", { class: HASH.test(v) || v.length > 40 ? "mono wrap" : "" }, v);
  }
  if (Array.isArray(v)) {
    if (!v.length) return "[]";
    if (v.every((x) => typeof x !== "object" || x === null)) return add(h("span", {}), v.map((x, i) => [i ? ", " : "", value(x, key)]));
    return h("ol", { class: "plain" }, v.map((x) => h("li", {}, value(x, key))));
  }
  return facts(Object.entries(v).map(([k, x]) => [k, value(x, k), k]), { class: "facts nested" });
}
