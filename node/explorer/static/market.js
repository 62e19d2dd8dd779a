// Market views: listings with filters, a listing, leases, a lease with its timeline and
// settlements, attestations.

import { accountLink, attestationLink, badge, blockLink, facts, fmtInt, fmtTime, h, leaseLink, listingLink, orgLink,
  section, short, table, txLink, withQuery } from "./dom.js";
import { all, get } from "./api.js";
import { leaseTable } from "./chain.js";

const MAX_LEASE_PAGES = 5;  // per provider, 200 leases a page

// -- listings -----------------------------------------------------------------------------------

// [query name, label, input type]; the same names as GET /v1/listings takes.
const FILTERS = [
  ["region", "Region", "text"], ["jurisdiction", "Jurisdiction", "text"], ["provider", "Provider", "text"],
  ["feature", "Features (comma-separated)", "text"], ["attested_by", "Attested by", "text"],
  ["gpu_model", "GPU model", "text"], ["min_vcpu_milli", "Min milli-vCPU", "number"],
  ["min_memory_mib", "Min memory MiB", "number"], ["min_storage_gib", "Min storage GiB", "number"],
  ["min_gpu_count", "Min GPUs", "number"], ["min_units", "Min free units", "number"],
  ["max_price", "Max price µcr/unit-h", "number"],
];
const STATUSES = ["active", "paused", "withdrawn", "any"];

function filterForm(query) {
  const inputs = FILTERS.map(([name, label, type]) => h("label", {}, label,
    h("input", { name, type, min: type === "number" ? 0 : null, value: query.get(name) || "" })));
  const status = h("select", { name: "status" }, STATUSES.map((s) =>
    h("option", { value: s, selected: (query.get("status") || "active") === s }, s)));
  const unavailable = h("input", { type: "checkbox", name: "include_unavailable", checked: query.get("include_unavailable") === "true" });
  const form = h("form", { id: "listing-filters", class: "filters" }, inputs, h("label", {}, "Status", status),
    h("label", { class: "check" }, unavailable, "outside availability window too"),
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Filter"), h("a", { href: "#/listings" }, "clear")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const params = {};
    for (const [name] of FILTERS) params[name] = form.elements[name].value.trim();
    if (status.value !== "active") params.status = status.value;
    if (unavailable.checked) params.include_unavailable = "true";
    location.hash = withQuery("#/listings", params);
  });
  return form;
}

const resources = (r) => [`${fmtInt(r.vcpu_milli / 1000)} vCPU`, `${fmtInt(r.memory_mib)} MiB`, `${fmtInt(r.storage_gib)} GiB`,
  r.gpu_count ? `${fmtInt(r.gpu_count)}× ${r.gpu_model}` : null].filter(Boolean).join(" · ");

const features = (list) => list.length ? list.map((f) => h("span", { class: "tag" }, f)) : "—";

function listingRows(items) {
  return items.map((l) => ({ attrs: { "data-listing": l.id }, cells: [listingLink(l.id), orgLink(l.provider), resources(l.resources),
    `${fmtInt(l.available_units)} / ${fmtInt(l.units)}`, l.region, l.jurisdiction, features(l.features), fmtInt(l.price),
    badge(l.status)] }));
}

export async function listings(ctx) {
  if (ctx.parts[1]) return listing(ctx);
  const qs = ctx.query.toString();  // passed on as given: the API checks every parameter
  const page = await get(qs ? `/v1/listings?${qs}` : "/v1/listings");
  let next = null;
  if (page.next_cursor !== null) {
    const q = new URLSearchParams(ctx.query);
    q.set("cursor", page.next_cursor);
    next = `#/listings?${q}`;
  }
  return {
    title: "Listings",
    node: h("div", {}, h("h1", {}, "Listings"), filterForm(ctx.query),
      section(`${fmtInt(page.items.length)} listing(s) at height ${fmtInt(page.height)}`,
        table(["Listing", "Provider", "Per unit", "Free / units", "Region", "Jurisdiction", "Features", "µcr / unit-h", "Status"],
          listingRows(page.items), { id: "listings", empty: "no listing matches" }),
        next ? h("p", { class: "pager" }, h("a", { href: next }, "next page →")) : "")),
  };
}

async function listing(ctx) {
  const id = ctx.parts[1];
  const l = await get(`/v1/listings/${encodeURIComponent(id)}`);
  const leases = (await all("/v1/leases", { provider: l.provider, limit: 200 }, MAX_LEASE_PAGES)).items.filter((x) => x.listing === l.id);
  return {
    title: `Listing ${l.id}`,
    node: h("div", {},
      h("h1", {}, `Listing #${l.id}`),
      facts([
        ["Provider", orgLink(l.provider), "provider"],
        ["Status", badge(l.status), "status"],
        ["Per unit", resources(l.resources), "resources"],
        ["Units", `${fmtInt(l.units)} (${fmtInt(l.reserved)} reserved, ${fmtInt(l.available_units)} free)`, "units"],
        ["Region", l.region, "region"],
        ["Jurisdiction", l.jurisdiction, "jurisdiction"],
        ["Features", features(l.features), "features"],
        ["Price", `${fmtInt(l.price)} µcr per unit-hour`, "price"],
        ["Available", `${fmtTime(l.available_from_ms)} → ${fmtTime(l.available_until_ms)}`, "window"],
        ["SLA", `uptime ${fmtInt(l.sla.uptime_permille)}‰, penalty ${fmtInt(l.sla.penalty_permille)}‰ per ‰ missed, cap ${fmtInt(l.sla.penalty_cap_permille)}‰`, "sla"],
        ["Payee", accountLink(l.payee, true), "payee"],
        ["Created by", accountLink(l.created_by, true), "created_by"],
        ["Created / updated", `${fmtTime(l.created_ms)} / ${fmtTime(l.updated_ms)} (version ${fmtInt(l.version)})`, "times"],
      ], { id: "listing" }),
      section("Live attestations", attestationTable(l.attestations, "none live")),
      section("Leases on this listing", leaseTable(leases, "no leases"))),
  };
}

// -- leases -------------------------------------------------------------------------------------

export async function leases(ctx) {
  if (ctx.parts[1]) return lease(ctx);
  const tenant = ctx.query.get("tenant"), provider = ctx.query.get("provider"), status = ctx.query.get("status");
  const extra = status ? { status } : {};
  let items, scope;
  if (tenant || provider) {
    items = (await all("/v1/leases", { ...(tenant ? { tenant } : { provider }), ...extra, limit: 200 }, MAX_LEASE_PAGES)).items;
    scope = tenant ? `of tenant ${tenant}` : `provided by ${provider}`;
  } else {  // every organisation's leases as provider
    const orgs = (await get("/v1/orgs")).items;
    const pages = await Promise.all(orgs.map((o) => all("/v1/leases", { provider: o.id, ...extra, limit: 200 }, MAX_LEASE_PAGES)));
    items = pages.flatMap((p) => p.items).sort((a, b) => b.id - a.id);
    scope = "of every provider";
  }
  const statuses = ["", "pending", "active", "ended", "closed", "settled", "rejected", "cancelled", "expired"];
  const base = { tenant, provider };
  return {
    title: "Leases",
    node: h("div", {}, h("h1", {}, `Leases ${scope}`),
      h("p", { class: "pager", id: "lease-status-filter" }, "Status: ", statuses.map((s) =>
        h("a", { href: withQuery("#/leases", { ...base, status: s }), class: (status || "") === s ? "active" : "" }, s || "all"))),
      leaseTable(items, "no leases")),
  };
}

function timeline(l, now) {
  const events = [
    [l.opened_ms, "opened", `by tenant, ${fmtInt(l.total)} µcr escrowed`],
    [l.status === "pending" ? l.accept_deadline_ms : null, "accept deadline", "the provider must accept before this"],
    [l.start_ms, "started", `accepted by ${l.accepted_by ? short(l.accepted_by, 14) : "the provider"}`],
    // a lease closed early never reaches its end; a settled one has no deadline left
    [l.closed_ms !== null && l.closed_ms < l.end_ms ? null : l.end_ms, l.end_ms > now ? "ends" : "ended", `${fmtInt(l.hours)} h after start`],
    [l.closed_ms, "closed", `${l.close_reason || ""}${l.closed_by ? ` by ${short(l.closed_by, 14)}` : ""}`],
    [l.settled_ms ? null : l.report_deadline_ms, "report deadline", "usage for the last periods must be reported by then"],
    ...l.reports.map((r) => [r.reported_ms, `usage reported (period ${r.period})`,
      `${fmtInt(r.unit_hours)} unit-h, uptime ${fmtInt(r.uptime_permille)}‰ — ${r.status}`]),
    ...l.settlement_records.map((s) => [s.time_ms, `settlement #${s.seq} (${s.kind})`,
      `provider ${fmtInt(s.provider_payout)} µcr, tenant refund ${fmtInt(s.tenant_refund)} µcr`]),
    [l.settled_ms, "settled", "escrow released"],
  ].filter(([t]) => typeof t === "number").sort((a, b) => a[0] - b[0]);
  return h("ol", { class: "timeline", id: "timeline" }, events.map(([t, what, detail]) =>
    h("li", { class: t > now ? "future" : "past" }, h("time", {}, fmtTime(t)), h("strong", {}, what),
      h("span", { class: "muted" }, ` ${detail}`), t > now ? badge("scheduled", "pending") : "")));
}

async function lease(ctx) {
  const l = await get(`/v1/leases/${encodeURIComponent(ctx.parts[1])}`);
  const { now_ms: now } = await get("/v1/status");
  const reports = l.reports.map((r) => ({ attrs: { "data-period": r.period }, cells: [fmtInt(r.period),
    `${fmtTime(r.period_start_ms)} → ${fmtTime(r.period_end_ms)}`, fmtInt(r.unit_hours), `${fmtInt(r.uptime_permille)}‰`,
    badge(r.status), fmtInt(r.charge), fmtInt(r.penalty), fmtTime(r.window_end_ms)] }));
  const settlements = l.settlement_records.map((s) => ({ attrs: { "data-seq": s.seq }, cells: [fmtInt(s.seq), s.kind,
    blockLink(s.height), txLink(s.tx), fmtInt(s.charge), fmtInt(s.penalty), fmtInt(s.provider_payout), fmtInt(s.tenant_refund),
    fmtInt(s.escrow_after)] }));
  return {
    title: `Lease ${l.id}`,
    node: h("div", {},
      h("h1", {}, `Lease #${l.id} `, badge(l.status)),
      facts([
        ["Listing", listingLink(l.listing), "listing"],
        ["Provider", orgLink(l.provider), "provider"],
        ["Tenant", [accountLink(l.tenant, true), l.tenant_org ? [" · ", orgLink(l.tenant_org)] : ""], "tenant"],
        ["Terms", `${fmtInt(l.units)} unit(s) × ${fmtInt(l.hours)} h at ${fmtInt(l.price)} µcr per unit-hour`, "terms"],
        ["Total", `${fmtInt(l.total)} µcr`, "total"],
        ["Escrow", `${fmtInt(l.escrow)} µcr`, "escrow"],
        ["Paid to provider", `${fmtInt(l.paid)} µcr`, "paid"],
        ["SLA penalties", `${fmtInt(l.penalties)} µcr`, "penalties"],
        ["Refunded", `${fmtInt(l.refunded)} µcr`, "refunded"],
        ["Required attested", features(l.required_attested || []), "required_attested"],
        ["Attestations used", l.attestations.length ? l.attestations.map((id, i) => [i ? ", " : "", attestationLink(id)]) : "none", "attestations"],
        ["Attestation digest", l.attestation_digest ? h("span", { class: "mono wrap" }, l.attestation_digest) : "—", "attestation_digest"],
        ["Access details", l.sealed_access ? `sealed to the tenant's key (${fmtInt(l.sealed_access.length / 2)} bytes)` : "—", "sealed_access"],
      ], { id: "lease" }),
      section("Timeline", timeline(l, now)),
      section("Usage reports", table(["Period", "Span", "Unit-hours", "Uptime", "Status", "Charge", "Penalty", "Window ends"],
        reports, { id: "reports", empty: "no usage reported" })),
      section("Settlements", table(["#", "Kind", "Block", "Tx", "Charge", "Penalty", "Provider payout", "Tenant refund", "Escrow after"],
        settlements, { id: "settlements", empty: "not settled yet" }))),
  };
}

// -- attestations -----------------------------------------------------------------------------

function attestationTable(items, empty) {
  return table(["Attestation", "Issuer", "Subject", "Claim", "Evidence digest", "Issued", "Expires", "State"],
    items.map((a) => ({ attrs: { "data-attestation": a.id }, cells: [attestationLink(a.id), orgLink(a.issuer),
      a.subject_type === "listing" ? ["listing ", listingLink(a.subject)] : ["org ", orgLink(a.subject)], a.claim,
      h("span", { class: "mono", title: a.evidence_digest }, short(a.evidence_digest, 16)), fmtTime(a.issued_ms), fmtTime(a.expires_ms),
      a.revoked_ms ? badge("revoked", "bad") : a.live === false ? badge("expired", "bad") : badge("live", "ok")] })),
    { id: "attestations", empty });
}

export async function attestations(ctx) {
  if (ctx.parts[1]) return attestation(ctx);
  const type = ctx.query.get("subject_type"), subject = ctx.query.get("subject");
  let items, scope;
  if (type && subject) {
    items = (await get("/v1/attestations", { subject_type: type, subject })).items;
    scope = `about ${type} ${subject}`;
  } else {  // about every organisation and every listing of the first pages
    const [orgs, lists] = await Promise.all([get("/v1/orgs"),
      all("/v1/listings", { status: "any", include_unavailable: "true", limit: 200 }, 2)]);
    const pages = await Promise.all([
      ...orgs.items.map((o) => get("/v1/attestations", { subject_type: "org", subject: o.id })),
      ...lists.items.map((l) => get("/v1/attestations", { subject_type: "listing", subject: String(l.id) }))]);
    const byId = new Map(pages.flatMap((p) => p.items).map((a) => [a.id, a]));
    items = [...byId.values()].sort((a, b) => b.id - a.id);
    scope = "about every organisation and listing";
  }
  return { title: "Attestations", node: h("div", {}, h("h1", {}, `Attestations ${scope}`), attestationTable(items, "no attestations")) };
}

async function attestation(ctx) {
  const a = await get(`/v1/attestations/${encodeURIComponent(ctx.parts[1])}`);
  return {
    title: `Attestation ${a.id}`,
    node: h("div", {}, h("h1", {}, `Attestation #${a.id} `, a.live ? badge("live", "ok") : badge(a.revoked_ms ? "revoked" : "expired", "bad")),
      facts([
        ["Issuer", orgLink(a.issuer), "issuer"],
        ["Issued by", accountLink(a.issued_by, true), "issued_by"],
        ["Subject", a.subject_type === "listing" ? ["listing ", listingLink(a.subject)] : ["organisation ", orgLink(a.subject)], "subject"],
        ["Claim", a.claim, "claim"],
        ["Evidence digest", h("span", { class: "mono wrap" }, a.evidence_digest), "evidence_digest"],
        ["Issued", fmtTime(a.issued_ms), "issued"],
        ["Expires", fmtTime(a.expires_ms), "expires"],
        ["Revoked", a.revoked_ms ? fmtTime(a.revoked_ms) : "no", "revoked"],
      ], { id: "attestation" })),
  };
}

