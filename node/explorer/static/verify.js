// In-browser checks of GET /v1/txs/{hash}/proof: the transaction's hash, its RFC 6962
// inclusion under the header's txs_root, the receipt's under results_root, and the header's
// hash against the certificate. SHA-256 comes from WebCrypto, which browsers give only to
// secure contexts (https, or http on localhost / 127.0.0.1); elsewhere the checks are skipped.
// The certificate's signatures are counted here, not verified: `cxl audit` does that.

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

function unhex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
  return out;
}

async function sha256(...parts) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const buf = new Uint8Array(len);
  let at = 0;
  for (const p of parts) { buf.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
}

const LEAF = Uint8Array.of(0), NODE = Uint8Array.of(1);

// RFC 9162 §2.1.3.2, as ledger/merkle.py verify_inclusion.
async function inclusionRoot(leaf, index, size, path) {
  if (!(index >= 0 && index < size)) return null;
  let fn = index, sn = size - 1;
  let r = await sha256(LEAF, leaf);
  for (const p of path) {
    if (sn === 0) return null;
    if (fn & 1 || fn === sn) {
      r = await sha256(NODE, p, r);
      if (!(fn & 1)) while (fn && !(fn & 1)) { fn >>= 1; sn >>= 1; }
    } else {
      r = await sha256(NODE, r, p);
    }
    fn >>= 1; sn >>= 1;
  }
  return sn === 0 ? hex(r) : null;
}

export const canVerify = () => Boolean(globalThis.crypto && crypto.subtle);

// [{name, ok, detail}] for one proof.
export async function checkProof(proof) {
  const txBytes = unhex(proof.tx);
  const checks = [];
  const txHash = hex(await sha256(txBytes));
  checks.push({ name: "transaction hash", ok: txHash === proof.hash, detail: `SHA-256 of the signed transaction = ${txHash}` });
  const txRoot = await inclusionRoot(txBytes, proof.index, proof.tx_count, proof.tx_proof.map(unhex));
  checks.push({ name: "included in block", ok: txRoot === proof.header.txs_root,
    detail: `audit path of ${proof.tx_proof.length} hash(es) gives txs_root ${txRoot}` });
  const rcRoot = await inclusionRoot(unhex(proof.receipt_bytes), proof.index, proof.tx_count, proof.receipt_proof.map(unhex));
  checks.push({ name: "receipt in block", ok: rcRoot === proof.header.results_root,
    detail: `audit path of ${proof.receipt_proof.length} hash(es) gives results_root ${rcRoot}` });
  const headerHash = hex(await sha256(unhex(proof.header.bytes)));
  checks.push({ name: "header certified", ok: headerHash === proof.header.hash && headerHash === proof.certificate.block_hash,
    detail: `SHA-256 of the header = ${headerHash}; the certificate commits to ${proof.certificate.block_hash}` });
  return checks;
}
