/**
 * Security #11, finding: SCRAM revealed whether a user exists (a real user always got the same salt,
 * an unknown one a fresh random salt and 100,000 iterations each time). The class: no refusal may
 * reveal it, by salt, iteration count or work done. Unknown users get a stand-in credential keyed by
 * a server secret (src/auth/stored-credential.ts). The same through the Worker:
 * user-enumeration.e2e.test.ts.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { loadAuthConfig } from "../../src/auth/auth-config";
import { authenticate } from "../../src/auth/authenticate";
import { hashPassword } from "../../src/auth/password";
import { startScram } from "../../src/auth/scram";
import { at } from "../support/elements";

const bytes = (s: string) => new TextEncoder().encode(s);
const ITERATIONS = 1500; // not the default, so a stand-in that ignores the real users shows
const users = JSON.stringify({
  alice: await hashPassword("alice-pw", ITERATIONS),
  bob: await hashPassword("bob-pw", ITERATIONS),
});

afterEach(() => vi.restoreAllMocks());

/** The salt and iteration count a SCRAM challenge shows for `username`. */
async function challenge(
  env: Record<string, unknown>,
  username: string,
): Promise<{ salt: string; iterations: number; nonceLength: number }> {
  const exchange = await startScram(bytes(`n,,n=${username},r=clientnonce`), loadAuthConfig(env));
  const attrs = Object.fromEntries(exchange!.serverFirst.split(",").map((p) => [p[0], p.slice(2)]));
  return { salt: attrs.s, iterations: Number(attrs.i), nonceLength: attrs.r.length };
}

/** Counts the crypto operations `run` makes, by kind (PBKDF2 iterations included). */
async function cryptoWork(run: () => Promise<unknown>): Promise<string[]> {
  const ops: string[] = [];
  const subtle = crypto.subtle;
  const derive = subtle.deriveBits.bind(subtle);
  const sign = subtle.sign.bind(subtle);
  const digest = subtle.digest.bind(subtle);
  vi.spyOn(subtle, "deriveBits").mockImplementation((algorithm, key, length) => {
    ops.push(`pbkdf2:${(algorithm as { iterations?: number }).iterations}`);
    return derive(algorithm, key, length);
  });
  vi.spyOn(subtle, "sign").mockImplementation((algorithm, key, data) => {
    ops.push("hmac");
    return sign(algorithm, key, data);
  });
  vi.spyOn(subtle, "digest").mockImplementation((algorithm, data) => {
    ops.push("sha256");
    return digest(algorithm, data);
  });
  await run();
  vi.restoreAllMocks();
  return ops;
}

describe("finding: SCRAM salts and iteration counts", () => {
  const env = { AUTH_USERS: users, AUTH_SALT_SECRET: "salt-secret-1" };

  it("an unknown user's salt is stable per name, differs between names, and looks like a real user's", async () => {
    const [m1, m2, e1, e2, alice] = [
      await challenge(env, "mallory"),
      await challenge(env, "mallory"),
      await challenge(env, "eve"),
      await challenge(env, "eve"),
      await challenge(env, "alice"),
    ];
    expect(m1.salt).toBe(m2.salt);
    expect(e1.salt).toBe(e2.salt);
    expect(m1.salt).not.toBe(e1.salt);
    for (const c of [m1, e1]) {
      expect(c.salt).toHaveLength(alice.salt.length);
      expect(c.iterations).toBe(alice.iterations);
      expect(c.nonceLength).toBe(alice.nonceLength);
    }
    expect(alice.iterations).toBe(ITERATIONS);
  });

  it("the salts are keyed by the secret: the same across isolates (configs), different under another secret", async () => {
    expect((await challenge(env, "mallory")).salt).toBe((await challenge({ ...env }, "mallory")).salt);
    expect((await challenge({ ...env, AUTH_SALT_SECRET: "salt-secret-2" }, "mallory")).salt).not.toBe(
      (await challenge(env, "mallory")).salt,
    );
    // without AUTH_SALT_SECRET, the AUTH_USERS secret keys them: still stable
    expect((await challenge({ AUTH_USERS: users }, "mallory")).salt).toBe(
      (await challenge({ AUTH_USERS: users }, "mallory")).salt,
    );
  });

  it("verifying an unknown user's proof does the same work as a real user's wrong proof", async () => {
    const config = loadAuthConfig(env);
    const proofFor = async (username: string) => {
      const exchange = (await startScram(bytes(`n,,n=${username},r=abc`), config))!;
      const nonce = at(exchange.serverFirst.split(","), 0).slice(2);
      return () => exchange.finish(bytes(`c=biws,r=${nonce},p=${btoa("x".repeat(32))}`));
    };
    const [real, unknown] = [await proofFor("alice"), await proofFor("mallory")];
    const realWork = await cryptoWork(real);
    expect(realWork.length).toBeGreaterThan(0);
    expect(await cryptoWork(unknown)).toEqual(realWork);
    // and starting the exchange too
    expect(await cryptoWork(() => proofFor("mallory"))).toEqual(await cryptoWork(() => proofFor("alice")));
  });
});

describe("class: password login for an unknown user costs what a wrong password costs", () => {
  it("one PBKDF2 at the real users' iteration count, and the same refusal", async () => {
    const config = loadAuthConfig({ AUTH_USERS: users });
    const attempt = (username: string) => authenticate({ clientId: "c", username, password: bytes("wrong") }, config);
    const wrong = await cryptoWork(() => attempt("alice"));
    const unknown = await cryptoWork(() => attempt("mallory"));
    expect(wrong.filter((op) => op.startsWith("pbkdf2"))).toEqual([`pbkdf2:${ITERATIONS}`]);
    expect(unknown).toEqual(wrong);
    expect(await attempt("mallory")).toEqual(await attempt("alice"));
  });
});
