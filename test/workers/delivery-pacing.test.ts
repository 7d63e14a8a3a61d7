/**
 * Deliveries toward one hot session adapt (util/call-pacing.ts, util/batcher.ts): through the real
 * TopicShard and Session objects, a session called often asks the shard to space its calls, and what
 * arrives meanwhile travels in one call; a lone message to a quiet session still goes in a call of
 * its own, as it arrives. Counted by the objects' own counters (observability/counters.ts).
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { configFor } from "../../src/config";
import { topicShardStub } from "../../src/env";
import { counters } from "../../src/observability/counters";
import type { RoutedMessage } from "../../src/protocol/message";
import { shardForTopic } from "../../src/topics/shard-rule";
import { OrderedChannels } from "../../src/util/ordered-calls";
import { rawClient } from "../support/workerd";
import { uid } from "../support/ids";
import { sleep } from "../support/until";

const message = (topic: string, payload: string): RoutedMessage => ({
  id: uid("m"),
  origin: "pacing-pub",
  topic,
  payload: new TextEncoder().encode(payload),
  qos: 0,
  retain: false,
  receivedAt: Date.now(),
});

describe("deliveries toward one hot session adapt", () => {
  it("a hot session gets fewer deliver calls than messages, in order; a lone message one call", async () => {
    const topic = `${uid("pacing")}/t`;
    const clientId = uid("pacing-sub");
    const sub = await rawClient(5);
    await sub.connect({ clientId });
    await sub.subscribe(topic, 0);
    const payloads = () => sub.all("publish").map((p) => p.payload.toString());
    const config = configFor(env);
    const shardIndex = shardForTopic(topic, config.shardCount, config.shardLevels);
    // The publishing session's side: numbered calls to the shard, as a Session object makes them.
    const toShard = new OrderedChannels(
      () => topicShardStub(env, shardIndex),
      () => uid("pub-session"),
      1,
    );
    const publish = (payload: string) =>
      toShard.call(0, (shard, order) => shard.publishMany([message(topic, payload)], order));

    // A quiet session: a lone message is delivered in one call, when it arrives.
    let before = counters.sessionDeliverCalls;
    await publish("lone");
    await sub.until(() => payloads().length === 1);
    expect(counters.sessionDeliverCalls - before).toBe(1);

    // Make the session hot, as if 100 shards had been calling it: 499 calls within the last second,
    // over 90% of DELIVERY_CALL_RATE (500/s), from 100 callers: each is asked for 100 x 1000 / 500 = 200 ms.
    const session = env.SESSION.get(env.SESSION.idFromName(clientId));
    await Promise.all([
      ...Array.from({ length: 400 }, () => session.deliver([], false)),
      ...Array.from({ length: 99 }, () => session.deliver([], false, { from: uid("other-shard"), seq: 0, after: 0 })),
    ]);

    // One message first: its call's reply carries the spacing, so the shard is paced from here on
    // (messages published while that first reply is on its way would each still go in a call).
    await publish("warm");
    await sub.until(() => payloads().length === 2);

    // Under load: 40 messages arriving one by one, each in its own event (unpaced: about one call each).
    before = counters.sessionDeliverCalls;
    const started = Date.now();
    const sent: Promise<number[]>[] = [];
    const expected: string[] = [];
    for (let i = 0; i < 40; i++) {
      expected.push(`m${i}`);
      sent.push(publish(`m${i}`));
      await sleep(2);
    }
    const elapsed = Date.now() - started;
    await Promise.all(sent);
    await sub.until(() => payloads().length === 42);
    const calls = counters.sessionDeliverCalls - before;
    console.log(`40 messages toward a hot session over ${elapsed} ms: ${calls} deliver calls`);
    expect(calls).toBeGreaterThan(0);
    expect(calls).toBeLessThan(20);
    expect(calls).toBeLessThanOrEqual(Math.ceil(elapsed / 200) + 1); // one per 200 ms, and the last
    expect(payloads().slice(2)).toEqual(expected); // per-publisher order kept [MQTT-4.6.0-5]

    // Quiet again (more than a second later): a lone message goes in one call of its own.
    await sleep(1200);
    before = counters.sessionDeliverCalls;
    await publish("quiet");
    await sub.until(() => payloads().length === 43);
    expect(counters.sessionDeliverCalls - before).toBe(1);
    sub.close();
  });
});
