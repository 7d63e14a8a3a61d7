import { describe, expect, it } from "vitest";
import { filterCovers, filtersOverlap, isAllowed, parseAclRules, type AclPolicy } from "../../src/auth/acl";

describe("filter containment and overlap", () => {
  it.each([
    ["#", "a/b", true],
    ["a/#", "a/b/#", true],
    ["a/#", "a", true],
    ["a/+", "a/b", true],
    ["a/+", "a/#", false],
    ["a/+", "a/+/c", false],
    ["+/+", "a/+", true],
    ["a/b", "a/+", false],
    ["#", "$SYS/x", false],
    ["+/x", "$SYS/x", false],
  ])("%j covers %j: %s", (outer, inner, expected) => {
    expect(filterCovers(outer, inner)).toBe(expected);
  });
  it.each([
    ["a/#", "#", true],
    ["a/+", "+/b", true],
    ["a/b", "a/c", false],
    ["a/+/c", "a/b", false],
  ])("%j overlaps %j: %s", (a, b, expected) => {
    expect(filtersOverlap(a, b)).toBe(expected);
  });
});

describe("isAllowed", () => {
  const policy: AclPolicy = {
    rules: parseAclRules(
      JSON.stringify([
        { allow: true, action: "all", users: ["alice"], topics: ["users/%u/#"] },
        { allow: false, action: "all", users: ["alice"], topics: ["#"] },
        { allow: true, action: "subscribe", clients: ["dash-1"], topics: ["status/#"] },
        { allow: false, action: "publish", roles: ["readonly"], topics: ["#"] },
        { allow: true, action: "publish", topics: ["devices/%c/#"] },
      ]),
    ),
    defaultAllow: false,
  };
  const alice = { username: "alice" };
  it("substitutes %u and %c", () => {
    expect(isAllowed(policy, alice, "c1", "publish", "users/alice/x")).toBe(true);
    expect(isAllowed(policy, alice, "c1", "publish", "users/bob/x")).toBe(false);
    expect(isAllowed(policy, {}, "dev9", "publish", "devices/dev9/t")).toBe(true);
    expect(isAllowed(policy, {}, "dev9", "publish", "devices/dev8/t")).toBe(false);
  });
  it("needs a covering allow rule to subscribe to a wildcard", () => {
    expect(isAllowed(policy, alice, "c1", "subscribe", "users/alice/+")).toBe(true);
    expect(isAllowed(policy, alice, "c1", "subscribe", "users/+/x")).toBe(false);
    expect(isAllowed(policy, {}, "dash-1", "subscribe", "status/+/online")).toBe(true);
    expect(isAllowed(policy, {}, "dash-2", "subscribe", "status/+/online")).toBe(false);
  });
  it("denies by role and falls back to the default", () => {
    expect(isAllowed(policy, { username: "bob", roles: ["readonly"] }, "b", "publish", "devices/b/t")).toBe(false);
    expect(isAllowed(policy, { username: "carol" }, "c", "subscribe", "x")).toBe(false);
    expect(isAllowed({ rules: [], defaultAllow: true }, {}, "c", "subscribe", "#")).toBe(true);
  });
  it("limits to the grants a credential carries", () => {
    const id = { username: "d", grants: { publish: ["up/%c"], subscribe: [] } };
    const open: AclPolicy = { rules: [], defaultAllow: true };
    expect(isAllowed(open, id, "c7", "publish", "up/c7")).toBe(true);
    expect(isAllowed(open, id, "c7", "publish", "up/c8")).toBe(false);
    expect(isAllowed(open, id, "c7", "subscribe", "up/c7")).toBe(false);
  });
  it("rejects malformed rules with a message", () => {
    expect(() => parseAclRules('[{"action":"publish","topics":["a"]}]')).toThrow(/allow/);
    expect(() => parseAclRules('{"allow":true}')).toThrow(/array/);
  });
});
