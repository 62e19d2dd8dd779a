// Governance views: proposals with votes, organisations with members and validators,
// chain parameters.

import { accountLink, badge, blockLink, facts, fmtInt, h, orgLink, proposalLink, section, short, table, value,
  withQuery } from "./dom.js";
import { all, get } from "./api.js";
import { leaseTable } from "./chain.js";

const PROPOSAL_STATUSES = ["", "open", "executed", "failed", "rejected", "expired"];
const VOTE_KIND = { yes: "ok", no: "bad", none: "unknown" };

function actionList(actions) {
  return h("ol", { class: "actions" }, actions.map((a) => h("li", {}, h("strong", {}, a.action), value(a.args))));
}

export async function proposals(ctx) {
  if (ctx.parts[1]) return proposal(ctx);
  const status = ctx.query.get("status") || "";
  const { items, complete } = await all("/v1/proposals", status ? { status, limit: 200 } : { limit: 200 }, 5);
  const rows = items.map((p) => ({ attrs: { "data-proposal": p.id }, cells: [proposalLink(p.id),
    p.actions.map((a) => a.action).join(", "), accountLink(p.proposer), badge(p.status),
    `${fmtInt(p.tally.yes)} yes · ${fmtInt(p.tally.no)} no · ${fmtInt(p.tally.not_voted)} not voted`,
    `${fmtInt(p.tally.yes_needed)} of ${fmtInt(p.tally.orgs)}`, blockLink(p.created_height), fmtInt(p.expires_height)] }));
  return {
    title: "Proposals",
    node: h("div", {}, h("h1", {}, "Governance proposals"),
      h("p", { class: "pager", id: "proposal-status-filter" }, "Status: ", PROPOSAL_STATUSES.map((s) =>
        h("a", { href: withQuery("#/proposals", { status: s }), class: status === s ? "active" : "" }, s || "all"))),
      table(["Proposal", "Actions", "Proposer", "Status", "Votes", "Yes needed", "Created", "Expires at"], rows,
        { id: "proposals", empty: "no proposals" }),
      complete ? "" : h("p", { class: "muted" }, "older proposals not shown")),
  };
}

// Widths through the CSSOM: the CSP forbids style attributes, not element.style.
function tallyBar(t, pct) {
  const yes = h("span", { class: "yes" }), no = h("span", { class: "no" });
  yes.style.width = pct(t.yes);
  no.style.width = pct(t.no);
  const needed = h("span", { class: "needed" });
  needed.style.left = pct(t.yes_needed);
  return h("div", { class: "bar", id: "tally-bar", title: `${t.yes} yes, ${t.no} no, ${t.yes_needed} needed` }, yes, no, needed);
}

async function proposal(ctx) {
  const p = await get(`/v1/proposals/${encodeURIComponent(ctx.parts[1])}`);
  const t = p.tally;
  const votes = p.votes.map((v) => ({ attrs: { "data-org": v.org }, cells: [orgLink(v.org),
    badge(v.vote, VOTE_KIND[v.vote] || "unknown")] }));
  const pct = (n) => `${t.orgs ? Math.round((100 * n) / t.orgs) : 0}%`;
  return {
    title: `Proposal ${p.id}`,
    node: h("div", {},
      h("h1", {}, `Proposal #${p.id} `, badge(p.status)),
      facts([
        ["Proposer", accountLink(p.proposer, true), "proposer"],
        ["Created at", blockLink(p.created_height), "created"],
        ["Expires at height", fmtInt(p.expires_height), "expires"],
        ["Decided at", p.decided_height ? blockLink(p.decided_height) : "not yet", "decided"],
        ["Threshold", `${t.threshold} of organisations: ${fmtInt(t.yes_needed)} yes of ${fmtInt(t.orgs)}`, "threshold"],
        ["Tally", `${fmtInt(t.yes)} yes · ${fmtInt(t.no)} no · ${fmtInt(t.not_voted)} not voted`, "tally"],
        ["Reason", p.reason, "reason"],
        ["Error code", p.error_code, "error_code"],
        ["Failed action", p.failed_action, "failed_action"],
      ], { id: "proposal" }),
      tallyBar(t, pct),
      section("Actions", actionList(p.actions)),
      section("Votes by organisation", table(["Organisation", "Vote"], votes, { id: "votes" }))),
  };
}

export async function orgs(ctx) {
  if (ctx.parts[1]) return org(ctx);
  const { items, height } = await get("/v1/orgs");
  const rows = items.map((o) => ({ attrs: { "data-org": o.id }, cells: [orgLink(o.id), o.name, fmtInt(o.members.admin),
    fmtInt(o.members.operator), fmtInt(o.members.auditor), fmtInt(o.validators)] }));
  return { title: "Organisations", node: h("div", {}, h("h1", {}, `Organisations at height ${fmtInt(height)}`),
    table(["Id", "Name", "Admins", "Operators", "Auditors", "Validators"], rows, { id: "orgs" })) };
}

async function org(ctx) {
  const id = ctx.parts[1];
  const o = await get(`/v1/orgs/${encodeURIComponent(id)}`);
  const [listings, leases, atts] = await Promise.all([
    get("/v1/listings", { provider: o.id, status: "any", include_unavailable: "true", limit: 200 }),
    get("/v1/leases", { provider: o.id, limit: 200 }),
    get("/v1/attestations", { subject_type: "org", subject: o.id })]);
  const members = o.members.map((m) => ({ attrs: { "data-address": m.address }, cells: [accountLink(m.address, true), m.role,
    h("span", { class: "mono", title: m.key }, short(m.key, 16))] }));
  const vals = o.validators.map((v) => [h("span", { class: "mono", title: v.key }, short(v.key, 16)), accountLink(v.address),
    h("span", { class: "mono small" }, v.p2p || ""), h("span", { class: "mono small" }, v.api || "")]);
  return {
    title: o.name,
    node: h("div", {},
      h("h1", {}, o.name, " ", h("span", { class: "muted" }, `(${o.id})`)),
      section("Members", table(["Address", "Role", "Key"], members, { id: "members" })),
      section("Validators", table(["Key", "Address", "p2p", "API"], vals, { id: "org-validators", empty: "runs no validator" }),
        o.validators_next ? h("p", { class: "muted" }, `a change takes effect at height ${fmtInt(o.validators_next.height)}`) : ""),
      section("Listings", table(["Listing", "Region", "Free / units", "µcr / unit-h", "Status"], listings.items.map((l) =>
        [h("a", { href: `#/listings/${l.id}` }, `#${l.id}`), l.region, `${fmtInt(l.available_units)} / ${fmtInt(l.units)}`, fmtInt(l.price),
          badge(l.status)]), { id: "org-listings", empty: "no listings" })),
      section("Leases as provider", leaseTable(leases.items, "no leases")),
      section("Attestations about it", table(["Attestation", "Issuer", "Claim", "State"], atts.items.map((a) =>
        [h("a", { href: `#/attestations/${a.id}` }, `#${a.id}`), orgLink(a.issuer), a.claim, badge(a.live ? "live" : "not live", a.live ? "ok" : "bad")]),
      { id: "org-attestations", empty: "none" }))),
  };
}

export async function params() {
  const { params: ps, height } = await get("/v1/params");
  const rows = Object.entries(ps).map(([name, p]) => ({ attrs: { "data-param": name }, cells: [h("code", {}, name), fmtInt(p.value),
    p.default === null ? "—" : fmtInt(p.default), p.range ? `${fmtInt(p.range[0])} – ${fmtInt(p.range[1])}` : "fixed",
    p.value !== p.default && p.default !== null ? badge("changed", "pending") : ""] }));
  return { title: "Parameters", node: h("div", {}, h("h1", {}, `Chain parameters at height ${fmtInt(height)}`),
    table(["Name", "Value", "Default", "Governance may set", ""], rows, { id: "params" })) };
}
