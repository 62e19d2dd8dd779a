// Hash-based router: every view has a link (#/blocks/12, #/tx/<hash>, #/listings?region=…).
// A view is `async (ctx) => ({title, node})`; ctx.parts are the decoded path segments,
// ctx.query the URLSearchParams after "?", ctx.onLeave(fn) runs when the route changes.

import { h } from "./dom.js";
import { ApiError, find } from "./api.js";
import * as chain from "./chain.js";
import * as market from "./market.js";
import * as gov from "./gov.js";

const ROUTES = {
  "": chain.overview,
  blocks: chain.blocks,
  tx: chain.transaction,
  accounts: chain.account,
  listings: market.listings,
  leases: market.leases,
  attestations: market.attestations,
  proposals: gov.proposals,
  orgs: gov.orgs,
  params: gov.params,
};

const main = document.getElementById("view");
let current = { token: 0, leave: [] };

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?", 2);
  const parts = path.split("/").filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { parts, query: new URLSearchParams(qs || "") };
}

function showError(err) {
  const code = err instanceof ApiError ? err.code : "error";
  const message = err instanceof ApiError ? err.message.replace(/^[^:]*: /, "") : String(err && err.message || err);
  return h("div", { class: "error", role: "alert" }, h("strong", {}, code), " ", message);
}

async function render() {
  for (const fn of current.leave) fn();
  const token = current.token + 1;
  current = { token, leave: [] };
  const hash = location.hash;
  const { parts, query } = parseHash();
  const view = ROUTES[parts[0] || ""];
  const ctx = { parts, query, onLeave: (fn) => current.token === token && current.leave.push(fn),
                live: () => current.token === token };
  main.dataset.state = "loading";
  main.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.getAttribute("href") === `#/${parts[0] || ""}`);
  }
  let node, title, state = "ready";
  try {
    if (!view) throw new ApiError(404, "not_found", `no explorer page ${location.hash}`);
    ({ node, title } = await view(ctx));
  } catch (err) {
    node = showError(err);
    title = "error";
    state = "error";
  }
  if (current.token !== token) return;  // the user moved on while this one loaded
  document.title = `${title} · cxl explorer`;
  main.replaceChildren(node);
  main.dataset.state = state;
  main.dataset.route = parts[0] || "overview";
  main.dataset.hash = hash;  // which route is rendered (tests and scripts wait on it)
}

// Search: a height, a block or transaction hash, an address or public key, an org id.
async function search(text) {
  const q = text.trim();
  if (!q) return;
  if (/^\d+$/.test(q)) return (location.hash = `#/blocks/${q}`);
  if (/^cx1[02-9ac-hj-np-z]{38}$/.test(q)) return (location.hash = `#/accounts/${q}`);
  if (/^[0-9a-fA-F]{64}$/.test(q)) {
    const hex = q.toLowerCase();
    if (await find(`/v1/txs/${hex}`)) return (location.hash = `#/tx/${hex}`);
    if (await find(`/v1/blocks/${hex}`)) return (location.hash = `#/blocks/${hex}`);
    return (location.hash = `#/accounts/${hex}`);  // a public key
  }
  location.hash = `#/orgs/${encodeURIComponent(q)}`;
}

document.getElementById("search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("search-input");
  search(input.value).catch((err) => main.replaceChildren(showError(err)));
  input.value = "";
});

window.addEventListener("hashchange", render);
render();
