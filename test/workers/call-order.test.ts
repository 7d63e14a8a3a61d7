/**
 * Calls between objects are handled in the order they were made, even when the runtime hands them
 * over in another order (util/ordered-calls.ts): the calls here arrive in reverse on purpose, through
 * the real TopicShard and Session objects, and a real client must still see the messages in order
 * [MQTT-4.6.0-5] [MQTT-4.6.0-6].
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { configFor } from "../../src/config";
import { topicShardStub } from "../../src/env";
import type { RoutedMessage } from "../../src/protocol/message";
import { shardForTopic } from "../../src/topics/shard-rule";
import { CALL_GAP_MS } from "../../src/util/ordered-calls";
import { rawClient } from "../support/workerd";
import { uid } from "../support/ids";

const message = (topic: string, payload: string): RoutedMessage => ({
  id: uid("m"),
  origin: "call-order-pub",
  topic,
  payload: new TextEncoder().encode(payload),
  qos: 0,
  retain: false,
  receivedAt: Date.now(),
});

async function subscriber(topic: string) {
  const clientId = uid("call-order-sub");
  const sub = await rawClient(5);
  await sub.connect({ clientId });
  await sub.subscribe(topic, 0);
  const payloads = () => sub.all("publish").map((p) => p.payload.toString());
  return { sub, clientId, payloads };
}

describe("calls between objects keep their order", () => {
  it("a shard handles one session's publishMany calls in the order made, not as they arrive", async () => {
    const topic = `${uid("call-order")}/t`;
    const { sub, payloads } = await subscriber(topic);
    const config = configFor(env);
    const shard = topicShardStub(env, shardForTopic(topic, config.shardCount, config.shardLevels));
    const from = uid("session-instance");
    const second = shard.publishMany([message(topic, "2"), message(topic, "3")], { from, seq: 1, after: 0 });
    const first = shard.publishMany([message(topic, "1")], { from, seq: 0, after: 0 });
    await Promise.all([first, second]);
    await sub.until(() => payloads().length === 3);
    expect(payloads()).toEqual(["1", "2", "3"]);
    sub.close();
  });

  it("a session handles one shard's deliver calls in the order made", async () => {
    const topic = `${uid("call-order")}/t`;
    const { sub, clientId, payloads } = await subscriber(topic);
    const session = env.SESSION.get(env.SESSION.idFromName(clientId));
    const from = uid("shard-instance");
    const delivery = (p: string) => ({ message: message(topic, p), qos: 0 as const, retain: false });
    const later = session.deliver([delivery("b")], false, { from, seq: 1, after: 0 });
    const earlier = session.deliver([delivery("a")], false, { from, seq: 0, after: 0 });
    await Promise.all([earlier, later]);
    await sub.until(() => payloads().length === 2);
    expect(payloads()).toEqual(["a", "b"]);
    sub.close();
  });

  it("a call whose predecessor never comes is handled after the gap time", async () => {
    const topic = `${uid("call-order")}/t`;
    const { sub, payloads } = await subscriber(topic);
    const config = configFor(env);
    const shard = topicShardStub(env, shardForTopic(topic, config.shardCount, config.shardLevels));
    const started = Date.now();
    await shard.publishMany([message(topic, "orphan")], { from: uid("lost"), seq: 1, after: 0 });
    const waited = Date.now() - started;
    await sub.until(() => payloads().length === 1);
    expect(payloads()).toEqual(["orphan"]);
    expect(waited).toBeGreaterThanOrEqual(CALL_GAP_MS - 50);
    sub.close();
  });
});
