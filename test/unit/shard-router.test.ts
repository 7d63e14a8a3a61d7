import { describe, expect, it } from "vitest";
import type { RoutedMessage } from "../../src/protocol/message";
import { shardForTopic } from "../../src/topics/shard-rule";
import { brokerMessage, groupByShard, routeToShards, ShardRouter } from "../../src/topics/shard-router";
import { at } from "../support/elements";

const layout = { shardCount: 4, shardLevels: 1 };
const message = (topic: string, text = topic) =>
  brokerMessage("test", { topic, payload: new TextEncoder().encode(text), qos: 1, retain: false }, 0);
const text = (m: RoutedMessage) => new TextDecoder().decode(m.payload);

/** Topics that land in two different shards under `layout`. */
const [a, b] = (() => {
  const first = "a";
  for (let i = 0; ; i++) if (shardForTopic(`t${i}`, 4, 1) !== shardForTopic(first, 4, 1)) return [first, `t${i}`];
})();

describe("shard router", () => {
  it("groups messages by the shard that owns their topic, in their order", () => {
    const groups = groupByShard([{ topic: `${a}/1` }, { topic: b }, { topic: `${a}/2` }], layout);
    expect(groups).toEqual(
      new Map([
        [shardForTopic(a, 4, 1), [0, 2]],
        [shardForTopic(b, 4, 1), [1]],
      ]),
    );
  });

  it("routes with one call per shard and gives each message its own result", async () => {
    const calls: [number, string[]][] = [];
    const messages = [message(a, "1"), message(b, "2"), message(a, "3")];
    const results = await routeToShards(messages, layout, async (index, batch) => {
      calls.push([index, batch.map(text)]);
      return batch.map((_, k) => index * 10 + k);
    });
    expect(calls).toEqual([
      [shardForTopic(a, 4, 1), ["1", "3"]],
      [shardForTopic(b, 4, 1), ["2"]],
    ]);
    const [sa, sb] = [shardForTopic(a, 4, 1), shardForTopic(b, 4, 1)];
    expect(results).toEqual([
      { id: at(messages, 0).id, matched: sa * 10 },
      { id: at(messages, 1).id, matched: sb * 10 },
      { id: at(messages, 2).id, matched: sa * 10 + 1 },
    ]);
  });

  it("gives the messages of a failed shard its error, and the others their counts", async () => {
    const messages = [message(a), message(b)];
    const failing = shardForTopic(a, 4, 1);
    const results = await routeToShards(messages, layout, async (index, batch) => {
      if (index === failing) throw new Error("shard down");
      return batch.map(() => 1);
    });
    expect(results).toEqual([
      { id: at(messages, 0).id, error: "shard down" },
      { id: at(messages, 1).id, matched: 1 },
    ]);
  });

  it("stamps broker messages with a source-prefixed unique id and no origin", () => {
    const [m1, m2] = [message(a), message(a)];
    expect(m1.id).toMatch(/^test:/);
    expect(m1.id).not.toBe(m2.id);
    expect(m1).toMatchObject({ origin: "", receivedAt: 0, topic: a, qos: 1, retain: false });
  });

  it("batches a session's messages per shard until the flush, each resolving with its own count", async () => {
    const calls: [number, string[]][] = [];
    let flush: () => void = () => {};
    const router = new ShardRouter(
      layout,
      async (index, batch) => {
        calls.push([index, batch.map(text)]);
        return batch.map((_, k) => k + 1);
      },
      (fn) => (flush = fn),
      2,
    );
    const routed = [router.route(message(a, "1")), router.route(message(b, "2")), router.route(message(a, "3"))];
    // A full batch goes at once, ahead of the message that did not fit.
    const third = router.route(message(a, "4"));
    expect(calls).toEqual([[shardForTopic(a, 4, 1), ["1", "3"]]]);
    flush();
    expect(await Promise.all([...routed, third])).toEqual([1, 1, 2, 1]);
    expect(calls).toEqual([
      [shardForTopic(a, 4, 1), ["1", "3"]],
      [shardForTopic(b, 4, 1), ["2"]],
      [shardForTopic(a, 4, 1), ["4"]],
    ]);
  });
});
