import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { loadAuthConfig } from "../../src/auth/auth-config";
import { hashPassword, parseHash, verifyPassword } from "../../src/auth/password";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("password hashes (PBKDF2-SHA-256)", () => {
  it("verify the right password only, with a random salt", async () => {
    const a = await hashPassword("s3cret", 1000);
    const b = await hashPassword("s3cret", 1000);
    expect(a).not.toBe(b);
    expect(await verifyPassword(bytes("s3cret"), a)).toBe(true);
    expect(await verifyPassword(bytes("s3cret!"), a)).toBe(false);
    expect(await verifyPassword(bytes("s3cret"), "plain-text")).toBe(false);
    expect(parseHash(a)?.iterations).toBe(1000);
  });

  it("npm run hash-password prints a hash the broker verifies", async () => {
    const out = execFileSync("node", ["scripts/hash-password.mjs", "from-the-script"]).toString().trim();
    expect(await verifyPassword(bytes("from-the-script"), out)).toBe(true);
  });
});

describe("auth config", () => {
  it("refuses anonymous clients unless ALLOW_ANONYMOUS is set", () => {
    expect(loadAuthConfig({}).allowAnonymous).toBe(false);
    expect(loadAuthConfig({ ALLOW_ANONYMOUS: "true" }).allowAnonymous).toBe(true);
  });
  it("denies what no rule allows once ACL rules exist", () => {
    expect(loadAuthConfig({}).acl.defaultAllow).toBe(true);
    expect(loadAuthConfig({ ACL: '[{"allow":true,"action":"all","topics":["a"]}]' }).acl.defaultAllow).toBe(false);
  });
  it("names the variable when it is malformed", () => {
    expect(() => loadAuthConfig({ AUTH_USERS: "{" })).toThrow(/AUTH_USERS/);
    expect(() => loadAuthConfig({ ACL: "[1]" })).toThrow(/ACL/);
    expect(() => loadAuthConfig({ ACL_DENIAL_REASON: "0x80" })).toThrow(/ACL_DENIAL_REASON/);
  });
  it("hides the denial reason only when ACL_DENIAL_REASON is unspecified", () => {
    expect(loadAuthConfig({}).acl.hideDenialReason).toBe(false);
    expect(loadAuthConfig({ ACL_DENIAL_REASON: "unspecified" }).acl.hideDenialReason).toBe(true);
  });
});
