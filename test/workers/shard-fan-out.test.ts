/**
 * A TopicShard wakes at most MAX_SHARD_DELIVERIES_IN_FLIGHT Session objects at once: one publish
 * matching many offline persistent sessions calls them a few at a time, in order, and every session
 * still gets its messages. The shard's core runs on a real shard object's storage, with the limit
 * set for this test; its calls go to the real Session objects, numbered as the shard object numbers them.
 */
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../../src/config";
import { sessionStub } from "../../src/env";
import { counters } from "../../src/observability/counters";
import type { RoutedMessage } from "../../src/protocol/message";
import { TopicShard } from "../../src/topics/topic-shard";
import { OrderedChannels } from "../../src/util/ordered-calls";
import { uid } from "../support/ids";
import { rawClient } from "../support/workerd";

const SESSIONS = 50;
const LIMIT = 4;

const message = (topic: string, payload: string): RoutedMessage => ({
  id: uid("m"),
  origin: "fan-out-pub",
  topic,
  payload: new TextEncoder().encode(payload),
  qos: 1,
  retain: false,
  receivedAt: Date.now(),
});

describe("a shard's deliveries toward offline sessions (MAX_SHARD_DELIVERIES_IN_FLIGHT)", () => {
  it("never has more than the limit in flight; every session gets every message, in order [MQTT-4.6.0-6]", async () => {
    const topic = `${uid("wake")}/t`;
    const ids = Array.from({ length: SESSIONS }, () => uid("sleeper"));
    // Persistent 3.1.1 sessions subscribed at QoS 1, then offline.
    await Promise.all(
      ids.map(async (clientId) => {
        const c = await rawClient(4);
        await c.connect({ clientId, clean: false });
        await c.subscribe(topic, 1);
        c.send({ cmd: "disconnect" });
        await c.waitClosed();
      }),
    );

    const stub = env.TOPIC_SHARD.get(env.TOPIC_SHARD.idFromName(uid("fan-out-shard")));
    await runInDurableObject(stub, async (_instance, state) => {
      const sessions = new OrderedChannels(
        (clientId: string) => sessionStub(env, clientId),
        () => crypto.randomUUID(),
        SESSIONS,
      );
      const shard = new TopicShard(
        state.storage.sql,
        { ...DEFAULT_CONFIG, maxShardDeliveriesInFlight: LIMIT },
        (clientId, batch, onlyIfOnline) =>
          sessions.call(clientId, (session, order) => session.deliver(batch, onlyIfOnline, order)),
        Date.now,
      );
      const opts = { qos: 1 as const, noLocal: false, retainAsPublished: false, retainHandling: 0 as const };
      for (const clientId of ids) shard.subscribe(clientId, [{ filter: topic, ...opts }], []);

      counters.shardDeliveriesInFlightPeak = 0;
      const waitedBefore = counters.shardDeliveriesWaited;
      // Two publishes in two flushes: the second's calls queue behind the first's.
      const first = shard.publish(message(topic, "one"));
      await new Promise((r) => setTimeout(r, 0));
      const second = shard.publish(message(topic, "two"));
      expect(await Promise.all([first, second])).toEqual([SESSIONS, SESSIONS]);
      expect(counters.shardDeliveriesInFlightPeak).toBe(LIMIT);
      expect(counters.shardDeliveriesWaited - waitedBefore).toBe(2 * SESSIONS - LIMIT);
    });

    for (const clientId of ids) {
      const back = await rawClient(4);
      expect((await back.connect({ clientId, clean: false })).sessionPresent).toBe(true);
      await back.until(() => back.all("publish").length >= 2);
      expect(back.all("publish").map((p) => p.payload.toString())).toEqual(["one", "two"]);
      back.close();
    }
  });
});
