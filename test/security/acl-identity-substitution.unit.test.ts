/**
 * Security #11: an identity substituted into an ACL pattern (`%c`, `%u`) must never widen a grant.
 * The finding: with `devices/%c/#`, client id `#` was granted `devices/#`. The class: any value with
 * `+`, `#`, `/`, U+0000, a leading `$`, or an empty/absent one. Decision (src/auth/acl.ts): such a
 * substitution makes an allow pattern match nothing and a deny pattern match everything.
 */
import { describe, expect, it } from "vitest";
import { isAllowed, parseAclRules, unsafeIdentityValue, type AclPolicy, type Identity } from "../../src/auth/acl";

const policy = (rules: unknown[], defaultAllow = false): AclPolicy => ({
  rules: parseAclRules(JSON.stringify(rules)),
  defaultAllow,
});
const devices = policy([{ allow: true, action: "all", topics: ["devices/%c/#"] }]);
const users = policy([{ allow: true, action: "all", topics: ["users/%u/#"] }]);

describe("finding: wildcards in %c and %u", () => {
  it("client ids # and + are not granted other devices' topics by devices/%c/#", () => {
    for (const clientId of ["#", "+"]) {
      for (const action of ["publish", "subscribe"] as const) {
        expect(isAllowed(devices, {}, clientId, action, "devices/victim/state")).toBe(false);
      }
      expect(isAllowed(devices, {}, clientId, "subscribe", "devices/#")).toBe(false);
      expect(isAllowed(devices, {}, clientId, "subscribe", "devices/+/state")).toBe(false);
    }
  });

  it("usernames # and + are not granted other users' topics by users/%u/#", () => {
    for (const username of ["#", "+"]) {
      expect(isAllowed(users, { username }, "c1", "publish", "users/alice/x")).toBe(false);
      expect(isAllowed(users, { username }, "c1", "subscribe", "users/#")).toBe(false);
    }
  });

  it("a credential's own grants (JWT mqtt claim, hook) with %c do not widen either", () => {
    const open = policy([], true);
    const device: Identity = { username: "d", grants: { publish: ["devices/%c/up"], subscribe: ["devices/%c/#"] } };
    expect(isAllowed(open, device, "#", "subscribe", "devices/#")).toBe(false);
    expect(isAllowed(open, device, "+", "publish", "devices/victim/up")).toBe(false);
    // the same grant still works for an ordinary id
    expect(isAllowed(open, device, "d7", "subscribe", "devices/d7/#")).toBe(true);
  });
});

describe("class: no identity value widens a pattern", () => {
  it.each([
    ["a level separator", "victim/x"],
    ["U+0000", "vic\u0000tim"],
    ["a leading $", "$SYS"],
    ["a + inside a level", "a+b"],
  ])("client id with %s matches no allow rule", (_what, clientId) => {
    expect(isAllowed(devices, {}, clientId, "publish", `devices/${clientId}/t`)).toBe(false);
    expect(isAllowed(devices, {}, clientId, "subscribe", "devices/victim/x/#")).toBe(false);
    // `%c/#` with `$SYS` would otherwise be `$SYS/#`
    expect(
      isAllowed(policy([{ allow: true, action: "all", topics: ["%c/#"] }]), {}, clientId, "subscribe", `${clientId}/#`),
    ).toBe(false);
  });

  it("a username with / cannot reach another user's subtree", () => {
    expect(isAllowed(users, { username: "alice/private" }, "c1", "subscribe", "users/alice/private/#")).toBe(false);
    expect(isAllowed(users, { username: "alice/private" }, "c1", "publish", "users/alice/private/x")).toBe(false);
  });

  it("an absent or empty username matches no %u allow rule", () => {
    expect(isAllowed(users, {}, "c1", "publish", "users//x")).toBe(false);
    expect(isAllowed(users, { username: "" }, "c1", "publish", "users//x")).toBe(false);
  });

  it("a username holding %c is not substituted a second time with the client id", () => {
    expect(isAllowed(users, { username: "%c" }, "alice", "publish", "users/alice/x")).toBe(false);
    expect(isAllowed(users, { username: "%c" }, "alice", "publish", "users/%c/x")).toBe(true);
  });

  it("a deny rule with a hostile %c still denies (fail closed), for the hostile id only", () => {
    const denyThenAllow = policy([
      { allow: false, action: "all", topics: ["devices/%c/secret"] },
      { allow: true, action: "all", topics: ["devices/#"] },
    ]);
    for (const clientId of ["#", "+", "a/b", "$x", "x\u0000"]) {
      expect(isAllowed(denyThenAllow, {}, clientId, "subscribe", "devices/victim/secret")).toBe(false);
      expect(isAllowed(denyThenAllow, {}, clientId, "publish", "devices/victim/secret")).toBe(false);
      expect(isAllowed(denyThenAllow, {}, clientId, "publish", "devices/other/t")).toBe(false);
    }
    // an ordinary id is denied its own secret only
    expect(isAllowed(denyThenAllow, {}, "d1", "publish", "devices/d1/secret")).toBe(false);
    expect(isAllowed(denyThenAllow, {}, "d1", "publish", "devices/victim/secret")).toBe(true);
  });

  it("ordinary values are still substituted", () => {
    expect(isAllowed(devices, {}, "dev-9.a_b", "publish", "devices/dev-9.a_b/t")).toBe(true);
    expect(isAllowed(users, { username: "alice@example.com" }, "c", "subscribe", "users/alice@example.com/#")).toBe(
      true,
    );
    expect(["#", "+", "a/b", "\u0000", "$x", "", undefined].every((v) => unsafeIdentityValue(v) !== undefined)).toBe(
      true,
    );
    expect(unsafeIdentityValue("dev$ok")).toBeUndefined();
  });
});
