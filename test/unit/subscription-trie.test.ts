import { describe, expect, it } from "vitest";
import type { SubscriptionOptions } from "../../src/protocol/message";
import { SubscriptionTrie } from "../../src/topics/subscription-trie";

const opts = (qos: 0 | 1 | 2, extra: Partial<SubscriptionOptions> = {}): SubscriptionOptions => ({
  qos,
  noLocal: false,
  retainAsPublished: false,
  retainHandling: 0,
  ...extra,
});

describe("SubscriptionTrie", () => {
  it("matches wildcards and literals", () => {
    const t = new SubscriptionTrie();
    t.add("a/+/c", "c1", opts(0));
    t.add("a/#", "c2", opts(1));
    t.add("a/b/c", "c3", opts(2));
    t.add("x/#", "c4", opts(0));
    expect([...t.match("a/b/c").keys()].sort()).toEqual(["c1", "c2", "c3"]);
    expect([...t.match("a").keys()]).toEqual(["c2"]);
    expect([...t.match("x").keys()]).toEqual(["c4"]);
    expect(t.match("b").size).toBe(0);
  });

  it("gives one copy per client at the highest QoS with every subscription id [MQTT-3.3.4-2, 3.3.4-4] [MQTT311-3.3.5-1]", () => {
    const t = new SubscriptionTrie();
    t.add("a/+", "c", opts(0, { subscriptionId: 1 }));
    t.add("a/#", "c", opts(2, { subscriptionId: 2 }));
    t.add("a/b", "c", opts(1));
    const m = t.match("a/b").get("c")!;
    expect(m.qos).toBe(2);
    expect(m.subscriptionIds.sort()).toEqual([1, 2]);
    expect(t.match("a/b").size).toBe(1);
  });

  it("does not match $ topics with a first-level wildcard [MQTT-4.7.2-1] [MQTT311-4.7.2-1]", () => {
    const t = new SubscriptionTrie();
    t.add("#", "all", opts(0));
    t.add("+/x", "plus", opts(0));
    t.add("$SYS/#", "sys", opts(0));
    expect([...t.match("$SYS/x").keys()]).toEqual(["sys"]);
  });

  it("skips the publisher's own No Local subscriptions [MQTT-3.8.3-3]", () => {
    const t = new SubscriptionTrie();
    t.add("a", "me", opts(1, { noLocal: true }));
    t.add("a", "you", opts(1, { noLocal: true }));
    expect([...t.match("a", "me").keys()]).toEqual(["you"]);
  });

  it("removes and prunes", () => {
    const t = new SubscriptionTrie();
    t.add("a/b/c", "c1", opts(0));
    t.add("a/b/c", "c2", opts(0));
    expect(t.size).toBe(2);
    expect(t.remove("a/b/c", "c1")).toBe(true);
    expect(t.remove("a/b/c", "c1")).toBe(false);
    expect(t.remove("a/b", "c2")).toBe(false);
    expect([...t.match("a/b/c").keys()]).toEqual(["c2"]);
    expect(t.remove("a/b/c", "c2")).toBe(true);
    expect(t.size).toBe(0);
  });
});
