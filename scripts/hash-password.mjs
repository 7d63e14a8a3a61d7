#!/usr/bin/env node
// Prints a PBKDF2-SHA-256 hash for AUTH_USERS: `npm run hash-password -- <password>` (or on stdin).
import { webcrypto as crypto } from "node:crypto";
import { readFileSync } from "node:fs";

const ITERATIONS = 100_000;
const password = process.argv[2] ?? readFileSync(0, "utf8").replace(/\r?\n$/, "");
if (!password) {
  console.error("usage: npm run hash-password -- <password>   (or pipe the password on stdin)");
  process.exit(2);
}
const salt = crypto.getRandomValues(new Uint8Array(16));
const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, ["deriveBits"]);
const bits = await crypto.subtle.deriveBits(
  { name: "PBKDF2", hash: "SHA-256", salt, iterations: ITERATIONS },
  key,
  256,
);
const b64 = (u8) => Buffer.from(u8).toString("base64");
console.log(`pbkdf2-sha256$${ITERATIONS}$${b64(salt)}$${b64(new Uint8Array(bits))}`);
