// The public client API, same origin only. Every error is {"error": {code, message}}.

const TIMEOUT_MS = 15000;  // a stopped or paused node must not leave a view loading forever

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

export async function get(path, params) {
  const q = params ? new URLSearchParams(params).toString() : "";
  let resp;
  try {
    resp = await fetch(q ? `${path}?${q}` : path, { headers: { Accept: "application/json" }, cache: "no-store",
                                                   signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (err) {
    throw new ApiError(0, "unreachable", `the node did not answer ${path} (${err.message})`);
  }
  let body;
  try {
    body = await resp.json();
  } catch {
    throw new ApiError(resp.status, "bad_response", `${path} answered ${resp.status} without JSON`);
  }
  if (!resp.ok) {
    const e = body && body.error ? body.error : { code: `http_${resp.status}`, message: path };
    throw new ApiError(resp.status, e.code, e.message);
  }
  return body;
}

// GET or null on a 404 (an unknown id is an answer, not a failure).
export async function find(path, params) {
  try {
    return await get(path, params);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

// Every page of a paged list (bounded: at most `maxPages` requests).
export async function all(path, params = {}, maxPages = 20) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const page = await get(path, cursor === null ? params : { ...params, cursor });
    items.push(...page.items);
    if (page.next_cursor === null || page.next_cursor === undefined) return { items, complete: true };
    cursor = page.next_cursor;
  }
  return { items, complete: false };
}
