// Verify an imgcdn webhook (docs/webhooks.md). Node 16+, no packages.
//
//     WEBHOOK_SECRET=... node verify_webhook.mjs "<Imgcdn-Signature header>" < body.json
//
// prints `ok` and exits 0 for a genuine, fresh delivery; prints `refused` and exits 1 else.
// In a receiver, call verifyWebhook() on the raw request body (a Buffer, e.g. from
// express.raw({ type: "application/json" })), before parsing it as JSON.
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const TOLERANCE_S = 300; // refuse signatures older (or further ahead) than 5 minutes

export function verifyWebhook(secret, header, body, now = Date.now() / 1000) {
  const tValues = [];
  const signatures = [];
  for (const part of header.split(",")) {
    const at = part.indexOf("=");
    if (at < 0) continue;
    const key = part.slice(0, at).trim();
    const value = part.slice(at + 1).trim();
    if (key === "t") tValues.push(value);
    else if (key === "v1") signatures.push(value);
  }
  if (tValues.length !== 1 || !/^\d+$/.test(tValues[0])) return false;
  const t = Number(tValues[0]);
  if (Math.abs(now - t) > TOLERANCE_S) return false;
  const expected = createHmac("sha256", secret).update(`${t}.`).update(body).digest();
  // timingSafeEqual: the time taken does not tell an attacker how much of a guess matched.
  // It throws on different lengths, so those (and bad hex, which decodes short) are checked first.
  return signatures.some((signature) => {
    const given = Buffer.from(signature, "hex");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const secret = process.env.WEBHOOK_SECRET ?? "";
  if (!secret || process.argv.length !== 3) {
    console.error('usage: WEBHOOK_SECRET=... node verify_webhook.mjs "<Imgcdn-Signature>" < body');
    process.exit(2);
  }
  const ok = verifyWebhook(secret, process.argv[2], readFileSync(0));
  console.log(ok ? "ok" : "refused");
  process.exit(ok ? 0 : 1);
}
