/**
 * The stored credential a login is checked against. For a username that is not in AUTH_USERS it is
 * a stand-in derived from a server secret with HMAC-SHA-256: the same salt every time for that name,
 * the salt length and iteration count most real users have, and a hash no password reproduces.
 * Checking a password or a SCRAM proof against it costs what checking a real user costs, so neither
 * a refusal's timing nor SCRAM's server-first-message (salt, iterations) tells whether a user exists.
 */
import type { UserEntry } from "./auth-config";
import { DEFAULT_ITERATIONS, hmacSha256, parseHash, type ParsedHash } from "./password";

export interface UnknownUserPolicy {
  /** Key of the stand-ins: AUTH_SALT_SECRET, else the AUTH_USERS secret itself. */
  secret: string;
  iterations: number;
  saltBytes: number;
}

/** Who can log in with a password or SCRAM, and the stand-in for everyone else. */
export interface UserDirectory {
  users: Map<string, UserEntry>;
  unknownUsers: UnknownUserPolicy;
}

const SALT_BYTES = 16;
const HASH_BYTES = 32;
const encoder = new TextEncoder();

/** Stand-ins shaped like the most common real hash, so that one looks like a real user's. */
export function unknownUserPolicy(secret: string, users: Map<string, UserEntry>): UnknownUserPolicy {
  const shapes = new Map<string, { iterations: number; saltBytes: number; count: number }>();
  for (const { hash } of users.values()) {
    const parsed = parseHash(hash);
    if (!parsed) continue;
    const key = `${parsed.iterations}/${parsed.salt.length}`;
    const shape = shapes.get(key) ?? { iterations: parsed.iterations, saltBytes: parsed.salt.length, count: 0 };
    shape.count++;
    shapes.set(key, shape);
  }
  const common = [...shapes.values()].sort((a, b) => b.count - a.count)[0];
  return { secret, iterations: common?.iterations ?? DEFAULT_ITERATIONS, saltBytes: common?.saltBytes ?? SALT_BYTES };
}

/**
 * The user (when known, with a usable hash) and the credential to check against. The stand-in is
 * derived for every name, known or not, so that both paths do the same work.
 */
export async function storedCredential(
  username: string,
  directory: UserDirectory,
): Promise<{ user?: UserEntry; stored: ParsedHash }> {
  const { secret, iterations, saltBytes } = directory.unknownUsers;
  // A fixed prefix: never an empty HMAC key, and these keys serve no other purpose.
  const key = encoder.encode(`unknown-user\u0000${secret}`);
  const [salt, hash] = await Promise.all([
    derive(key, "salt", username, saltBytes),
    derive(key, "hash", username, HASH_BYTES),
  ]);
  const user = directory.users.get(username);
  const real = user ? parseHash(user.hash) : undefined;
  return real ? { user, stored: real } : { stored: { iterations, salt, hash } };
}

/** `bytes` bytes of HMAC-SHA-256 output under `key` for (label, username), in 32-byte blocks. */
async function derive(key: Uint8Array, label: string, username: string, bytes: number): Promise<Uint8Array> {
  const out = new Uint8Array(bytes);
  for (let block = 0; block * 32 < bytes; block++) {
    const mac = await hmacSha256(key, `${label}\u0000${block}\u0000${username}`);
    out.set(mac.subarray(0, bytes - block * 32), block * 32);
  }
  return out;
}
