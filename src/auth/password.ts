/**
 * Salted, slow password hashes: PBKDF2-HMAC-SHA-256 via WebCrypto (Workers and Node alike).
 * Encoded as `pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>`.
 */

export const DEFAULT_ITERATIONS = 100_000;
const HASH_BYTES = 32;

const encoder = new TextEncoder();

export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function fromBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** PBKDF2-HMAC-SHA-256 of the password (also SCRAM's SaltedPassword). */
export async function pbkdf2(password: Uint8Array, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", password, "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    key,
    HASH_BYTES * 8,
  );
  return new Uint8Array(bits);
}

export async function hashPassword(password: string, iterations = DEFAULT_ITERATIONS): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const hash = await pbkdf2(encoder.encode(password), salt, iterations);
  return `pbkdf2-sha256$${iterations}$${toBase64(salt)}$${toBase64(hash)}`;
}

export interface ParsedHash {
  iterations: number;
  salt: Uint8Array;
  hash: Uint8Array;
}

export function parseHash(encoded: string): ParsedHash | undefined {
  const parts = encoded.split("$");
  const [scheme, rounds, salt, hash] = parts;
  if (parts.length !== 4 || scheme !== "pbkdf2-sha256" || salt === undefined || hash === undefined) return undefined;
  const iterations = Number(rounds);
  if (!Number.isInteger(iterations) || iterations < 1) return undefined;
  try {
    return { iterations, salt: fromBase64(salt), hash: fromBase64(hash) };
  } catch {
    return undefined;
  }
}

/** Compares in time independent of where the bytes differ. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!; // equal lengths, checked above
  return diff === 0;
}

export async function verifyPassword(password: Uint8Array, encoded: string): Promise<boolean> {
  const parsed = parseHash(encoded);
  return parsed !== undefined && (await passwordMatches(password, parsed));
}

/** One PBKDF2 at the stored cost, then a constant-time comparison. */
export async function passwordMatches(password: Uint8Array, stored: ParsedHash): Promise<boolean> {
  return constantTimeEqual(await pbkdf2(password, stored.salt, stored.iterations), stored.hash);
}

/** HMAC-SHA-256 of a text under a key (SCRAM's HMAC, and the unknown-user stand-ins). */
export async function hmacSha256(key: Uint8Array, data: string): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, encoder.encode(data)));
}
