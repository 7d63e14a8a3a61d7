import { describe, expect, it } from "vitest";
import { isAllowed, parseAclRules, subscribeGrant, type AclPolicy } from "../../src/auth/acl";
import { filterCovers, filtersOverlap } from "../../src/protocol/topic";

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
    ["#", "$SYS/x", false],
    ["+/x", "$SYS/+", false],
    ["$SYS/#", "$SYS/x", true],
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
  it("grants a wildcard wholly when an allow rule covers it, in part when one only overlaps it", () => {
    expect(subscribeGrant(policy, alice, "c1", "users/alice/+")).toBe("full");
    // alice's own level is under users/+/x; the deny rule after it narrows the rest
    expect(subscribeGrant(policy, alice, "c1", "users/+/x")).toBe("partial");
    expect(isAllowed(policy, alice, "c1", "subscribe", "users/alice/x")).toBe(true);
    expect(isAllowed(policy, alice, "c1", "subscribe", "users/bob/x")).toBe(false);
    expect(subscribeGrant(policy, {}, "dash-1", "status/+/online")).toBe("full");
    // no allow rule could match anything under it: refused
    expect(subscribeGrant(policy, {}, "dash-2", "status/+/online")).toBe("refused");
    expect(subscribeGrant(policy, alice, "c1", "other/#")).toBe("refused");
  });
  it("narrows a wildcard with a deny rule instead of refusing it; refuses what a deny rule covers", () => {
    const open: AclPolicy = {
      rules: parseAclRules(JSON.stringify([{ allow: false, action: "subscribe", topics: ["test/nosubscribe"] }])),
      defaultAllow: true,
    };
    for (const filter of ["#", "+/+", "test/#", "test/+"])
      expect(subscribeGrant(open, {}, "c", filter)).toBe("partial");
    expect(subscribeGrant(open, {}, "c", "TopicA/#")).toBe("full");
    expect(subscribeGrant(open, {}, "c", "test/nosubscribe")).toBe("refused");
    expect(isAllowed(open, {}, "c", "subscribe", "test/nosubscribe")).toBe(false);
    expect(isAllowed(open, {}, "c", "subscribe", "test/other")).toBe(true);
    const secrets: AclPolicy = {
      rules: parseAclRules(JSON.stringify([{ allow: false, action: "all", topics: ["secret/#"] }])),
      defaultAllow: true,
    };
    expect(subscribeGrant(secrets, {}, "c", "secret/+/x")).toBe("refused");
    expect(subscribeGrant(secrets, {}, "c", "+/a")).toBe("partial");
  });
  it("keeps a deny rule on # over $ topics (fail closed), while an allow # does not reach them", () => {
    const denyAll: AclPolicy = {
      rules: parseAclRules('[{"allow":false,"action":"all","topics":["#"]}]'),
      defaultAllow: true,
    };
    expect(subscribeGrant(denyAll, {}, "c", "$SYS/#")).toBe("refused");
    const allowAll: AclPolicy = {
      rules: parseAclRules('[{"allow":true,"action":"all","topics":["#"]}]'),
      defaultAllow: false,
    };
    expect(subscribeGrant(allowAll, {}, "c", "$SYS/#")).toBe("refused");
    expect(subscribeGrant(allowAll, {}, "c", "#")).toBe("full");
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
    const reader = { username: "r", grants: { subscribe: ["up/%c/#"] } };
    expect(subscribeGrant(open, reader, "c7", "up/c7/+")).toBe("full");
    expect(subscribeGrant(open, reader, "c7", "up/#")).toBe("partial");
    expect(isAllowed(open, reader, "c7", "subscribe", "up/c8/x")).toBe(false);
    expect(subscribeGrant(open, reader, "c7", "down/#")).toBe("refused");
  });
  it("rejects malformed rules with a message", () => {
    expect(() => parseAclRules('[{"action":"publish","topics":["a"]}]')).toThrow(/allow/);
    expect(() => parseAclRules('{"allow":true}')).toThrow(/array/);
  });
});
