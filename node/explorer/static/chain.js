// Chain views: overview (head, validators with live status), blocks, a block with its
// transactions, a transaction with its receipt and proof, an account.

import { accountLink, ago, badge, blockLink, facts, fmtInt, fmtTime, h, leaseLink, orgLink, route, section,
  short, table, txLink, value, withQuery } from "./dom.js";
import { get } from "./api.js";
import { canVerify, checkProof } from "./verify.js";

const POLL_MS = 2000;
const BLOCKS_PER_PAGE = 20;
const TXS_PER_PAGE = 100;

// key -> org, from /v1/validators (the set deciding the next height)
async function validatorOrgs() {
  const { validators } = await get("/v1/validators");
  return Object.fromEntries(validators.map((v) => [v.key, v.org]));
}

async function blockRange(top, count) {
  const heights = [];
  for (let x = top; x >= 1 && heights.length < count; x--) heights.push(x);
  return Promise.all(heights.map((x) => get(`/v1/blocks/${x}`)));
}

function blockRows(blocks, orgs) {
  return blocks.map((b) => ({
    attrs: { "data-height": b.height },
    cells: [blockLink(b.height), h("span", { class: "mono", title: b.hash }, short(b.hash, 16)), fmtTime(b.header.time_ms),
      fmtInt(b.txs.length), orgs[b.header.proposer] || short(b.header.proposer), fmtInt(b.header.view),
      b.certificate ? `${b.certificate.signatures.length} signatures` : "—"],
  }));
}

const BLOCK_HEADERS = ["Height", "Hash", "Time", "Txs", "Proposer", "View", "Certificate"];

// -- overview ---------------------------------------------------------------------------------

function validatorTable(status, head) {
  const peers = Object.fromEntries(status.peers.map((p) => [p.key, p]));
  const signed = new Set(head && head.certificate ? head.certificate.signatures.map((s) => s.key) : []);
  const rows = status.validators.map((v) => {
    const peer = peers[v.key];
    let link;
    if (v.key === status.node_key) link = badge("this node", "ok");
    else if (!peer) link = badge("no link", "unknown");
    else if (peer.connected) link = badge("connected", "ok");
    else link = badge("disconnected", "bad");
    const seen = peer && peer.last_seen_ms !== null ? `seen ${fmtInt(Math.round(peer.last_seen_ms / 1000))}s ago` : "";
    return {
      attrs: { "data-key": v.key },
      cells: [orgLink(v.org), accountLink(v.address), h("span", { class: "mono", title: v.key }, short(v.key, 16)),
        v.key === status.primary ? badge("primary", "primary") : "", [link, " ", seen],
        head ? (signed.has(v.key) ? badge(`signed #${head.height}`, "ok") : badge(`missed #${head.height}`, "bad")) : "—",
        h("span", { class: "mono small" }, v.p2p || "")],
    };
  });
  return table(["Organisation", "Address", "Key", "Role", "Link from this node", "Head certificate", "p2p"],
    rows, { id: "validators" });
}

function statusFacts(status, orgs) {
  return facts([
    ["Chain", status.chain_id, "chain_id"],
    ["Height", blockLink(status.height), "height"],
    ["Head hash", h("span", { class: "mono wrap" }, status.head_hash), "head_hash"],
    ["State root", h("span", { class: "mono wrap" }, status.state_root), "state_root"],
    ["Head time", [fmtTime(status.time_ms), " ", h("span", { class: "muted" }, `(${ago(status.time_ms, status.now_ms)})`)], "time"],
    ["View", [fmtInt(status.view), h("span", { class: "muted" }, ` · ${fmtInt(status.view_changes)} view change(s)`)], "view"],
    ["Primary", status.primary ? [orgs[status.primary] || "", " ", h("span", { class: "mono" }, short(status.primary, 16))] : "—", "primary"],
    ["Mempool", `${fmtInt(status.mempool.txs)} txs (${fmtInt(status.mempool.ready)} ready, ${fmtInt(status.mempool.bytes)} bytes)`, "mempool"],
    ["Evidence", fmtInt(status.evidence), "evidence"],
    ["Genesis", h("span", { class: "mono wrap" }, status.genesis_hash), "genesis_hash"],
  ], { id: "status" });
}

export async function overview(ctx) {
  const root = h("div", { class: "overview" });
  let lastHeight = -1, blocks = [];
  async function refresh() {
    const status = await get("/v1/status");
    const orgs = Object.fromEntries(status.validators.map((v) => [v.key, v.org]));
    if (status.height !== lastHeight) {
      blocks = status.height ? await blockRange(status.height, 10) : [];
      lastHeight = status.height;
    }
    const head = blocks[0] || null;
    root.replaceChildren(
      h("p", { class: "live", id: "live" }, badge("live", "ok"), ` updated ${fmtTime(status.now_ms)} · refreshes every ${POLL_MS / 1000}s`),
      section("Chain head", statusFacts(status, orgs)),
      section(`Validators (${status.validators.length})`, validatorTable(status, head)),
      section("Latest blocks", table(BLOCK_HEADERS, blockRows(blocks, orgs), { id: "latest-blocks", empty: "no blocks yet" }),
        h("p", {}, h("a", { href: "#/blocks" }, "all blocks →"))),
    );
    root.dataset.height = status.height;
  }
  await refresh();
  let busy = false;
  const timer = setInterval(async () => {
    if (busy || !ctx.live()) return;
    busy = true;
    try { await refresh(); } catch (err) {
      const live = root.querySelector("#live");
      if (live) live.replaceChildren(badge("offline", "bad"), ` ${err.message}`);
    } finally { busy = false; }
  }, POLL_MS);
  ctx.onLeave(() => clearInterval(timer));
  return { title: "Overview", node: root };
}

// -- blocks -----------------------------------------------------------------------------------

export async function blocks(ctx) {
  if (ctx.parts[1]) return block(ctx);
  const head = (await get("/v1/status")).height;
  const before = ctx.query.get("before");
  const top = before && /^\d+$/.test(before) ? Math.min(Number(before), head) : head;
  const [list, orgs] = await Promise.all([blockRange(top, BLOCKS_PER_PAGE), validatorOrgs()]);
  const older = top - BLOCKS_PER_PAGE;
  return {
    title: "Blocks",
    node: section(`Blocks ${top > 0 ? `${fmtInt(Math.max(1, older + 1))}–${fmtInt(top)}` : ""} of ${fmtInt(head)}`,
      table(BLOCK_HEADERS, blockRows(list, orgs), { id: "blocks", empty: "no blocks yet" }),
      h("p", { class: "pager" },
        top < head ? h("a", { href: withQuery("#/blocks", { before: Math.min(head, top + BLOCKS_PER_PAGE) }) }, "← newer") : "",
        older >= 1 ? h("a", { href: withQuery("#/blocks", { before: older }) }, "older →") : "")),
  };
}

async function txSummaries(hashes) {
  return Promise.all(hashes.map((x) => get(`/v1/txs/${x}`)));
}

async function block(ctx) {
  const [b, orgs, status] = await Promise.all([get(`/v1/blocks/${encodeURIComponent(ctx.parts[1])}`), validatorOrgs(),
    get("/v1/status")]);
  const from = Math.max(0, Number(ctx.query.get("from")) || 0);
  const txs = await txSummaries(b.txs.slice(from, from + TXS_PER_PAGE));
  const hd = b.header;
  const signers = (b.certificate ? b.certificate.signatures : []).map((s) =>
    [orgs[s.key] || "", h("span", { class: "mono", title: s.key }, short(s.key, 16)), h("span", { class: "mono small" }, short(s.signature, 32))]);
  const rows = txs.map((t, i) => ({
    attrs: { "data-tx": t.hash },
    cells: [fmtInt(from + i), txLink(t.hash), t.tx.type, accountLink(t.tx.sender_address), fmtInt(t.tx.nonce),
      badge(t.receipt.code, t.receipt.code === "ok" ? "ok" : "bad")],
  }));
  return {
    title: `Block ${b.height}`,
    node: h("div", {},
      h("h1", {}, `Block ${fmtInt(b.height)}`),
      h("p", { class: "pager" },
        b.height > 1 ? h("a", { href: route("blocks", b.height - 1) }, "← parent") : "",
        b.height < status.height ? h("a", { href: route("blocks", b.height + 1) }, "child →") : h("span", { class: "muted" }, "the head"),
        h("a", { href: `/v1/blocks/${b.height}` }, "JSON")),
      section("Header", facts([
        ["Hash", h("span", { class: "mono wrap" }, b.hash), "hash"],
        ["Time", fmtTime(hd.time_ms), "time"],
        ["Proposer", [orgs[hd.proposer] || "", " ", h("span", { class: "mono" }, short(hd.proposer, 16))], "proposer"],
        ["View", fmtInt(hd.view), "view"],
        ["Parent", hd.height > 1 ? h("a", { href: route("blocks", hd.parent_hash), class: "mono wrap" }, hd.parent_hash) : h("span", { class: "mono wrap" }, hd.parent_hash), "parent_hash"],
        ["Transactions root", h("span", { class: "mono wrap" }, hd.txs_root), "txs_root"],
        ["Results root", h("span", { class: "mono wrap" }, hd.results_root), "results_root"],
        ["State root (parent)", h("span", { class: "mono wrap" }, hd.state_root), "state_root"],
        ["Validator set hash", h("span", { class: "mono wrap" }, hd.validator_set_hash), "validator_set_hash"],
      ], { id: "header" })),
      section(`Transactions (${fmtInt(b.txs.length)})`,
        table(["#", "Hash", "Type", "Sender", "Nonce", "Result"], rows, { id: "block-txs", empty: "no transactions" }),
        b.txs.length > from + TXS_PER_PAGE ? h("a", { href: withQuery(route("blocks", b.height), { from: from + TXS_PER_PAGE }) }, "more →") : ""),
      section(`Commit certificate (${signers.length} signatures)`,
        table(["Organisation", "Validator key", "Signature"], signers, { id: "certificate", empty: "not certified yet" }))),
  };
}

// -- a transaction ------------------------------------------------------------------------------

function proofSection(proof, checks) {
  const path = (hashes) => hashes.length ? h("ol", { class: "plain mono small" }, hashes.map((x) => h("li", {}, x))) : "— (the only leaf)";
  const checkRows = checks === null
    ? [h("p", { class: "muted" }, "not checked: this browser gives SHA-256 only to secure contexts (https or localhost)")]
    : [table(["Check", "Result", "Detail"], checks.map((c) => ({ attrs: { "data-check": c.name },
      cells: [c.name, badge(c.ok ? "verified" : "FAILED", c.ok ? "ok" : "bad"), h("span", { class: "mono small wrap" }, c.detail)] })),
    { id: "proof-checks" })];
  return section("Proof",
    facts([
      ["Block", blockLink(proof.height)],
      ["Position", `${fmtInt(proof.index)} of ${fmtInt(proof.tx_count)}`],
      ["Transaction path", path(proof.tx_proof)],
      ["Receipt path", path(proof.receipt_proof)],
      ["Certificate", `${proof.certificate.signatures.length} signatures over block ${short(proof.certificate.block_hash, 16)}`],
    ], { id: "proof" }),
    ...checkRows,
    h("p", {}, h("a", { href: `/v1/txs/${proof.hash}/proof` }, "proof JSON"), " — verify offline against the genesis file with ",
      h("code", {}, "cxl audit"), "."));
}

export async function transaction(ctx) {
  const hash = (ctx.parts[1] || "").toLowerCase();
  const t = await get(`/v1/txs/${encodeURIComponent(hash)}`);
  const tx = t.tx;
  const parts = [
    h("h1", {}, "Transaction"),
    facts([
      ["Hash", h("span", { class: "mono wrap" }, t.hash), "hash"],
      ["Status", badge(t.status, t.status === "committed" ? "ok" : "pending"), "status"],
      ["Block", t.height === undefined ? undefined : [blockLink(t.height), ` · position ${fmtInt(t.index)}`], "block"],
      ["Type", tx.type, "type"],
      ["Sender", accountLink(tx.sender_address, true), "sender"],
      ["Nonce", fmtInt(tx.nonce), "nonce"],
      ["Expiry height", tx.expiry ? fmtInt(tx.expiry) : "none", "expiry"],
      ["Signature", h("span", { class: "mono wrap small" }, tx.signature), "signature"],
    ], { id: "tx" }),
    section("Payload", h("div", { id: "payload" }, value(tx.payload))),
  ];
  if (t.status === "committed") {
    const r = t.receipt;
    parts.push(section("Receipt", facts([
      ["Code", badge(r.code, r.code === "ok" ? "ok" : "bad"), "code"],
      ["Message", r.message || "—", "message"],
      ["Result", value(r.result), "result"],
    ], { id: "receipt" })));
    const proof = await get(`/v1/txs/${encodeURIComponent(hash)}/proof`);
    parts.push(proofSection(proof, canVerify() ? await checkProof(proof) : null));
  } else {
    parts.push(h("p", { class: "muted" }, t.ready ? "waiting in this node's mempool for a block" : "waiting for an earlier nonce"));
  }
  return { title: `Tx ${short(t.hash)}`, node: h("div", {}, parts) };
}

// -- an account ---------------------------------------------------------------------------------

export async function account(ctx) {
  const addr = ctx.parts[1] || "";
  if (!addr) return { title: "Accounts", node: h("p", {}, "Open an account from a transaction, an organisation's members, or the search box.") };
  const a = await get(`/v1/accounts/${encodeURIComponent(addr)}`);
  const leases = await get("/v1/leases", { tenant: a.address, limit: 200 });
  const m = a.member;
  return {
    title: `Account ${short(a.address)}`,
    node: h("div", {},
      h("h1", {}, "Account"),
      facts([
        ["Address", h("span", { class: "mono wrap" }, a.address), "address"],
        ["Balance", `${fmtInt(a.balance)} µcr`, "balance"],
        ["In escrow (as tenant)", `${fmtInt(a.escrow_as_tenant)} µcr`, "escrow"],
        ["Open leases", a.open_leases.length ? a.open_leases.map((id, i) => [i ? ", " : "", leaseLink(id)]) : "none", "open_leases"],
        ["Next nonce", `${fmtInt(a.nonce)} (with pending: ${fmtInt(a.pending_nonce)})`, "nonce"],
        ["Member", m ? [orgLink(m.org), ` · ${m.role}`] : "not a member of any organisation", "member"],
        ["Public key", m ? h("span", { class: "mono wrap" }, m.key) : undefined, "key"],
        ["As of height", blockLink(a.height), "as_of"],
      ], { id: "account" }),
      section("Leases as tenant", leaseTable(leases.items, "no leases"))),
  };
}

export function leaseTable(items, empty) {
  return table(["Lease", "Listing", "Provider", "Tenant", "Units × hours", "Total µcr", "Escrow", "Paid", "Status"],
    items.map((l) => ({ attrs: { "data-lease": l.id }, cells: [leaseLink(l.id), h("a", { href: route("listings", l.listing) }, `#${l.listing}`),
      orgLink(l.provider), accountLink(l.tenant), `${fmtInt(l.units)} × ${fmtInt(l.hours)}`, fmtInt(l.total), fmtInt(l.escrow),
      fmtInt(l.paid), badge(l.status)] })), { class: "list", empty, id: "leases" });
}

