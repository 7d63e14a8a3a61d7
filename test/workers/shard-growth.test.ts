/**
 * One parent and one child of a growth from 8 to 16 shards (src/topics/shard-growth.ts) on real
 * SQLite: what the parent serves before it lets go, the child's adoption in pages (and again after a
 * crash mid-way), the parent's clean-up, and the layouts a shard refuses. The whole broker growing
 * mid-traffic: test/e2e/shard-growth.test.ts.
 */
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, type BrokerConfig } from "../../src/config";
import type { Delivery, DeliveryReply, RoutedMessage, Subscription } from "../../src/protocol/message";
import { ADOPTION_PAGE_ROWS, ShardGrowth, type AdoptionPage } from "../../src/topics/shard-growth";
import { shardForTopic, shardsForFilter } from "../../src/topics/shard-rule";
import { TopicShard } from "../../src/topics/topic-shard";
import { uid } from "../support/ids";

const PARENT = 3;
const CHILD = 11;
const BEFORE = { ...DEFAULT_CONFIG, shardCount: 8, shardCountPrevious: 8 };
const AFTER = { ...DEFAULT_CONFIG, shardCount: 16, shardCountPrevious: 8 };
const opts = { qos: 1 as const, noLocal: false, retainAsPublished: false, retainHandling: 0 as const };

/** Topics (and literal filters) of shard 3 under 8 shards, enough for several pages when retained. */
const TOPICS = Array.from({ length: 12000 }, (_, i) => `dev/${i}/state`)
  .filter((t) => shardForTopic(t, 8, 2) === PARENT)
  .slice(0, ADOPTION_PAGE_ROWS * 3);
const moves = (topic: string) => shardForTopic(topic, 16, 2) === CHILD;

const retainedMessage = (topic: string): RoutedMessage => ({
  id: uid("m"),
  origin: "pub",
  topic,
  payload: new TextEncoder().encode(`state of ${topic}`),
  qos: 1,
  retain: true,
  receivedAt: Date.now(),
});

type Deliveries = [string, Delivery[]][];

/** A shard's storage (one Durable Object's SQLite), opened as often as a test restarts it. */
function storage() {
  const stub = env.TOPIC_SHARD.get(env.TOPIC_SHARD.idFromName(uid("growth-test")));
  return <R>(body: (sql: SqlStorage) => R | Promise<R>): Promise<R> =>
    runInDurableObject(stub, async (_instance, state) => body(state.storage.sql));
}

function open(sql: SqlStorage, index: number, config: BrokerConfig, delivered: Deliveries = []) {
  const growth = new ShardGrowth(sql, index, config);
  const deliver = async (clientId: string, batch: Delivery[]): Promise<DeliveryReply> => {
    delivered.push([clientId, batch]);
    return { outcome: "ok", spacingMs: 0 };
  };
  return { growth, shard: new TopicShard(sql, config, deliver, Date.now, undefined, undefined, growth) };
}

/** The parent under 8 shards: a wildcard, a shared wildcard, literal filters and retained topics. */
async function fillParent(parent: ReturnType<typeof storage>): Promise<void> {
  await parent((sql) => {
    const { shard } = open(sql, PARENT, BEFORE);
    const subs: Subscription[] = [
      { filter: "dev/+/state", ...opts },
      { filter: "$share/g/dev/+/state", ...opts },
      ...TOPICS.slice(0, 40).map((filter) => ({ filter, ...opts })),
    ];
    shard.subscribe("backend", subs, []);
    return Promise.all(TOPICS.map((t) => shard.publish(retainedMessage(t))));
  });
}

/** The child's adoption, every page read from the parent as the RPC does. */
async function adopt(parent: ReturnType<typeof storage>, child: ReturnType<typeof storage>, pages = Infinity) {
  await child((sql) => open(sql, CHILD, AFTER).growth.beginAdoption());
  for (const table of ["subs", "retained"] as const) {
    let after: string | null = null;
    do {
      if (pages-- <= 0) return false; // the crash
      const page: AdoptionPage = await parent((sql) => open(sql, PARENT, AFTER).growth.page(table, CHILD, after));
      await child((sql) => open(sql, CHILD, AFTER).growth.importRows(table, page.rows));
      after = page.next;
    } while (after !== null);
  }
  await child((sql) => open(sql, CHILD, AFTER).growth.adopted());
  return true;
}

const retainedTopics = (shard: TopicShard) =>
  shard
    .retainedMatching("#")
    .map((m) => m.topic)
    .sort();

describe("growing from 8 to 16 shards: one parent and its child", () => {
  it("the child adopts its keys in pages; the parent serves only its own until it lets go", async () => {
    const parent = storage();
    const child = storage();
    await fillParent(parent);
    const movedTopics = TOPICS.filter(moves).sort();
    const keptTopics = TOPICS.filter((t) => !moves(t)).sort();
    // The premise: several pages of rows, some moving and some staying.
    expect(movedTopics.length).toBeGreaterThan(ADOPTION_PAGE_ROWS);
    expect(keptTopics.length).toBeGreaterThan(0);

    // Deployed with 16: before the child adopts, the parent holds every row but serves its own only.
    await parent((sql) => {
      const { growth, shard } = open(sql, PARENT, AFTER);
      expect(growth.holdsMoved).toBe(true);
      expect(growth.pendingChildren()).toEqual([CHILD]);
      expect(retainedTopics(shard)).toEqual(keptTopics);
      expect(shard.stats().retainedMessages).toBe(keptTopics.length);
      const listed = shard.listSubscriptions(undefined, undefined, 1000).map((s) => s.filter);
      expect(listed).toContain("dev/+/state");
      expect(listed.filter((f) => !f.includes("+")).every((f) => !moves(f))).toBe(true);
    });
    expect(await child((sql) => open(sql, CHILD, AFTER).growth.mustAdopt)).toBe(true);

    // A crash after one page: the next adoption starts from scratch and ends with the same rows.
    expect(await adopt(parent, child, 2)).toBe(false);
    expect(await child((sql) => open(sql, CHILD, AFTER).growth.mustAdopt)).toBe(true);
    expect(await adopt(parent, child)).toBe(true);

    const delivered: Deliveries = [];
    await child(async (sql) => {
      const { growth, shard } = open(sql, CHILD, AFTER, delivered);
      expect(growth.mustAdopt).toBe(false);
      expect(growth.holdsMoved).toBe(false);
      expect(retainedTopics(shard)).toEqual(movedTopics);
      // Every filter it must hold: the wildcards, and the literal ones whose key it now owns.
      const filters = shard.listSubscriptions(undefined, undefined, 1000).map((s) => s.filter);
      const literal = TOPICS.slice(0, 40).filter(moves);
      expect(filters.sort()).toEqual(["$share/g/dev/+/state", "dev/+/state", ...literal].sort());
      expect(literal.length).toBeGreaterThan(0);
      // ... and matches them: a moved literal topic reaches the wildcard, the literal and the group.
      await shard.publish({ ...retainedMessage(literal[0]!), retain: false });
      expect(delivered.length).toBe(2); // the backend's own filters (one batch), the shared group
    });

    // The parent lets go: the moved rows are gone, the rest served as before, nothing pending.
    await parent((sql) => {
      const { growth, shard } = open(sql, PARENT, AFTER);
      growth.release(CHILD);
      shard.reload();
      expect(sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM retained`).one().n).toBe(keptTopics.length);
      const literal = sql
        .exec<{ filter: string }>(`SELECT filter FROM subs WHERE filter NOT LIKE '%+%'`)
        .toArray()
        .map((r) => r.filter);
      expect(literal.some(moves)).toBe(false);
      expect(literal.length).toBeGreaterThan(0);
    });
    await parent((sql) => {
      const { growth, shard } = open(sql, PARENT, AFTER);
      expect(growth.holdsMoved).toBe(false);
      expect(growth.pendingChildren()).toEqual([]);
      expect(retainedTopics(shard)).toEqual(keptTopics);
    });
  });

  it("refuses a shrink, and a count that forgets the growth still under way", async () => {
    const parent = storage();
    await fillParent(parent);
    await parent((sql) => open(sql, PARENT, AFTER)); // the growth starts: the parent records it
    // SHARD_COUNT_PREVIOUS dropped before the child adopted: the parent's moved rows would be lost.
    await expect(parent((sql) => open(sql, PARENT, { ...AFTER, shardCountPrevious: 16 }))).rejects.toThrow(
      /holds the keys of SHARD_COUNT 8/,
    );
    const child = storage();
    await adopt(parent, child);
    await expect(
      child((sql) => open(sql, CHILD, { ...DEFAULT_CONFIG, shardCount: 8, shardCountPrevious: 8 })),
    ).rejects.toThrow(/cannot follow/);
    // The shard rule agrees with what the child holds: every moved literal filter maps to it.
    expect(shardsForFilter(TOPICS.find(moves)!, 16, 2)).toEqual([CHILD]);
  });
});
