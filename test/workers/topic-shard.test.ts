/** TopicShard on real SQLite inside workerd: retained limits and shared-subscription choice. */
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, type BrokerConfig } from "../../src/config";
import type { Delivery, DeliveryReply, RoutedMessage } from "../../src/protocol/message";
import { TopicShard } from "../../src/topics/topic-shard";
import { uid } from "../support/ids";
import { at } from "../support/elements";
import { sleep } from "../support/until";

const message = (topic: string, payload: string, retain = true): RoutedMessage => ({
  id: uid("m"),
  origin: "pub",
  topic,
  payload: new TextEncoder().encode(payload),
  qos: 1,
  retain,
  receivedAt: Date.now(),
});

async function withShard(
  config: Partial<BrokerConfig>,
  body: (shard: TopicShard, delivered: [string, Delivery[], boolean][], online: Set<string>) => Promise<void>,
) {
  const stub = env.TOPIC_SHARD.get(env.TOPIC_SHARD.idFromName(uid("shard-test")));
  await runInDurableObject(stub, async (_instance, state) => {
    const delivered: [string, Delivery[], boolean][] = [];
    const online = new Set<string>();
    const deliver = async (clientId: string, batch: Delivery[], onlyIfOnline: boolean): Promise<DeliveryReply> => {
      if (onlyIfOnline && !online.has(clientId)) return { outcome: "offline", spacingMs: 0 };
      delivered.push([clientId, batch, onlyIfOnline]);
      return { outcome: "ok", spacingMs: 0 };
    };
    await body(
      new TopicShard(state.storage.sql, { ...DEFAULT_CONFIG, ...config }, deliver, Date.now),
      delivered,
      online,
    );
  });
}

describe("TopicShard delivery batching (DELIVERY_BATCH_MS)", () => {
  const opts = { qos: 1 as const, noLocal: false, retainAsPublished: false, retainHandling: 0 as const };

  it("0: what arrives together goes in one call, a message arriving later in another", async () => {
    await withShard({ deliveryBatchMs: 0 }, async (shard, delivered) => {
      shard.subscribe("backend", [{ filter: "d/+/t", ...opts }], []);
      await Promise.all([shard.publish(message("d/1/t", "a", false)), shard.publish(message("d/2/t", "b", false))]);
      const third = shard.publish(message("d/3/t", "c", false));
      await third;
      expect(delivered.map(([, batch]) => batch.length)).toEqual([2, 1]);
    });
  });

  it("40 ms: messages within the window share one call per session", async () => {
    await withShard({ deliveryBatchMs: 40 }, async (shard, delivered) => {
      shard.subscribe("backend", [{ filter: "d/+/t", ...opts }], []);
      const first = shard.publish(message("d/1/t", "a", false));
      await sleep(10); // the premise: the second message arrives later, but within the 40 ms window
      const second = shard.publish(message("d/2/t", "b", false));
      await Promise.all([first, second]);
      expect(delivered.map(([, batch]) => batch.map((d) => new TextDecoder().decode(d.message.payload)))).toEqual([
        ["a", "b"],
      ]);
    });
  });
});

describe("TopicShard limits", () => {
  it("stops storing new retained topics at MAX_RETAINED_PER_SHARD but still replaces and deletes", async () => {
    await withShard({ maxRetainedPerShard: 2 }, async (shard) => {
      await shard.publish(message("r/1", "a"));
      await shard.publish(message("r/2", "b"));
      await shard.publish(message("r/3", "c")); // over the limit: delivered, not stored
      expect(
        shard
          .retainedMatching("r/#")
          .map((m) => m.topic)
          .sort(),
      ).toEqual(["r/1", "r/2"]);
      await shard.publish(message("r/1", "a2")); // replacing is allowed
      expect(at(shard.retainedMatching("r/1"), 0).payload).toEqual(new TextEncoder().encode("a2"));
      await shard.publish(message("r/2", "")); // deleting frees a place
      await shard.publish(message("r/3", "c"));
      expect(shard.retainedCount()).toBe(2);
    });
  });

  it("stops storing new retained topics at MAX_RETAINED_BYTES_PER_SHARD", async () => {
    await withShard({ maxRetainedBytesPerShard: 10 }, async (shard) => {
      await shard.publish(message("b/1", "123456"));
      await shard.publish(message("b/2", "123456")); // 12 bytes > 10: not stored
      expect(shard.retainedCount()).toBe(1);
      expect(shard.retainedBytes()).toBe(6);
    });
  });

  it("delivers a shared-subscription message to one member, a connected one first", async () => {
    await withShard({}, async (shard, delivered, online) => {
      const opts = { qos: 1 as const, noLocal: false, retainAsPublished: false, retainHandling: 0 as const };
      shard.subscribe("m1", [{ filter: "$share/g/jobs/#", ...opts }], []);
      shard.subscribe("m2", [{ filter: "$share/g/jobs/#", ...opts }], []);
      online.add("m2");
      for (let i = 0; i < 4; i++) await shard.publish(message("jobs/x", String(i), false));
      expect(delivered.map(([client]) => client)).toEqual(["m2", "m2", "m2", "m2"]);
      online.add("m1");
      delivered.length = 0;
      for (let i = 0; i < 4; i++) await shard.publish(message("jobs/x", String(i), false));
      expect(delivered.map(([client]) => client).sort()).toEqual(["m1", "m1", "m2", "m2"]);
      expect(delivered.every(([, batch]) => at(batch, 0).shareFilter === "$share/g/jobs/#")).toBe(true);
    });
  });

  it("offers a shared message to the next member when one may not read it; counts it not_authorized when none may", async () => {
    const stub = env.TOPIC_SHARD.get(env.TOPIC_SHARD.idFromName(uid("shard-test")));
    await runInDurableObject(stub, async (_instance, state) => {
      const opts = { qos: 1 as const, noLocal: false, retainAsPublished: false, retainHandling: 0 as const };
      const unreadable = new Set(["m1"]);
      const offered: string[] = [];
      const deliver = async (clientId: string): Promise<DeliveryReply> => {
        offered.push(clientId);
        return { outcome: unreadable.has(clientId) ? "unreadable" : "ok", spacingMs: 0 };
      };
      const shard = new TopicShard(state.storage.sql, DEFAULT_CONFIG, deliver, Date.now);
      shard.subscribe("m1", [{ filter: "$share/g/jobs/#", ...opts }], []);
      shard.subscribe("m2", [{ filter: "$share/g/jobs/#", ...opts }], []);
      for (let i = 0; i < 2; i++) await shard.publish(message("jobs/x", String(i), false));
      expect(offered.filter((c) => c === "m2")).toHaveLength(2); // each message reached m2
      unreadable.add("m2");
      offered.length = 0;
      await shard.publish(message("jobs/x", "nobody", false));
      expect(offered.sort()).toEqual(["m1", "m1", "m2", "m2"]); // each member once per pass, no more
      expect(shard.stats().dropped).toMatchObject({ not_authorized: 1 });
    });
  });
});

describe("TopicShard offers to a shared subscription's members: batched and paced like any delivery", () => {
  const opts = { qos: 1 as const, noLocal: false, retainAsPublished: false, retainHandling: 0 as const };
  const texts = (batch: Delivery[]) => batch.map((d) => new TextDecoder().decode(d.message.payload));

  it("what arrives together goes to each connected member in one call, each message to one member", async () => {
    await withShard({}, async (shard, delivered, online) => {
      shard.subscribe("m1", [{ filter: "$share/g/jobs/#", ...opts }], []);
      shard.subscribe("m2", [{ filter: "$share/g/jobs/#", ...opts }], []);
      online.add("m1").add("m2");
      const payloads = Array.from({ length: 8 }, (_, i) => `j${i}`);
      await Promise.all(payloads.map((p) => shard.publish(message("jobs/x", p, false))));
      // before: 8 calls of one message each
      expect(delivered.map(([client, batch]) => [client, batch.length])).toEqual([
        ["m1", 4],
        ["m2", 4],
      ]);
      expect(delivered.flatMap(([, batch]) => texts(batch)).sort()).toEqual(payloads);
    });
  });

  it("a member's reply asking for spacing holds its next offers for one call", async () => {
    const stub = env.TOPIC_SHARD.get(env.TOPIC_SHARD.idFromName(uid("shard-test")));
    await runInDurableObject(stub, async (_instance, state) => {
      const calls: string[][] = [];
      const deliver = async (_clientId: string, batch: Delivery[]): Promise<DeliveryReply> => {
        calls.push(texts(batch));
        return { outcome: "ok", spacingMs: 200 }; // a hot member
      };
      const shard = new TopicShard(state.storage.sql, DEFAULT_CONFIG, deliver, Date.now);
      shard.subscribe("m1", [{ filter: "$share/g/jobs/#", ...opts }], []);
      await shard.publish(message("jobs/x", "first", false)); // its reply carries the spacing
      const later: Promise<number>[] = [];
      for (let i = 0; i < 3; i++) {
        later.push(shard.publish(message("jobs/x", `p${i}`, false)));
        await sleep(5);
      }
      await Promise.all(later);
      expect(calls).toEqual([["first"], ["p0", "p1", "p2"]]); // before: 4 calls
    });
  });

  it("a message a member declines in a batch (it may not read it) goes to the next member, once", async () => {
    const stub = env.TOPIC_SHARD.get(env.TOPIC_SHARD.idFromName(uid("shard-test")));
    await runInDurableObject(stub, async (_instance, state) => {
      const received: [string, string][] = [];
      const deliver = async (clientId: string, batch: Delivery[]): Promise<DeliveryReply> => {
        const declined: number[] = [];
        texts(batch).forEach((text, i) => {
          if (clientId === "m1" && text === "secret") declined.push(i);
          else received.push([clientId, text]);
        });
        return { outcome: "ok", spacingMs: 0, declined };
      };
      const shard = new TopicShard(state.storage.sql, DEFAULT_CONFIG, deliver, Date.now);
      shard.subscribe("m1", [{ filter: "$share/g/jobs/#", ...opts }], []);
      shard.subscribe("m2", [{ filter: "$share/g/jobs/#", ...opts }], []);
      // In turn: a to m1, b to m2, secret to m1 (declined there), c to m2.
      await Promise.all(["a", "b", "secret", "c"].map((p) => shard.publish(message("jobs/x", p, false))));
      expect(received.sort()).toEqual([
        ["m1", "a"],
        ["m2", "b"],
        ["m2", "c"],
        ["m2", "secret"],
      ]);
      expect(shard.stats().dropped).toEqual({});
    });
  });
});
