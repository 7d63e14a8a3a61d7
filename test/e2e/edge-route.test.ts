/**
 * Routing at the edge (ROUTE_AT_EDGE=1, on a broker of its own): the gateway, not the publisher's
 * Session object, calls the shard for a QoS 0/1 PUBLISH and sends the PUBACK
 * (src/gateway/edge-route.ts), so the Session object has no call pending on a shard. QoS 2 keeps the
 * session's path. The counters are the broker's (`/debug/counters`: under `wrangler dev` every object
 * and the Worker share one isolate).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Counters } from "../../src/observability/counters";
import { ReasonCode } from "../../src/protocol/constants";
import { rawClient as rawClientTo } from "../support/clients";
import { uid } from "../support/ids";
import { startBroker } from "./global-setup";

let broker: Awaited<ReturnType<typeof startBroker>>;
let url: string;
beforeAll(async () => {
  broker = await startBroker({
    ALLOW_ANONYMOUS: "true",
    CONNECT_RATE_LIMIT: "off",
    DEBUG_COUNTERS: "true",
    ROUTE_AT_EDGE: "1",
  });
  url = `${broker.base.replace("http", "ws")}/mqtt`;
}, 60000);
afterAll(() => broker?.stop());

const rawClient = (version: 4 | 5) => rawClientTo(version, "mqtt", url);
const counters = async (): Promise<Counters> =>
  (await fetch(`${broker.base}/debug/counters`)).json() as Promise<Counters>;

describe("a QoS 1 PUBLISH is routed from the gateway", () => {
  it("the publisher's Session object makes no publishMany call for QoS 0/1; it still does for QoS 2", async () => {
    const topic = `${uid("edge")}/t`;
    const sub = await rawClient(5);
    await sub.connect({ clientId: uid("edge-sub") });
    sub.autoAck = true;
    await sub.subscribe(topic, 1);
    const pub = await rawClient(5);
    await pub.connect({ clientId: uid("edge-pub") });
    const before = await counters();
    const n = 10;
    for (let i = 1; i <= n; i++) {
      pub.send({ cmd: "publish", topic, payload: Buffer.from(`m${i}`), qos: i % 2 ? 1 : 0, messageId: i });
      await sub.until(() => sub.all("publish").length === i); // one at a time: each is its own call
    }
    await pub.until(() => pub.all("puback").length === n / 2);
    const routed = await counters();
    expect(routed.gatewayPublishCalls - before.gatewayPublishCalls).toBe(n);
    expect(routed.sessionPublishCalls - before.sessionPublishCalls).toBe(0);
    // QoS 2 still goes from the session (its PUBREC waits for the shard there): the counter is live.
    pub.send({ cmd: "publish", topic, payload: Buffer.from("q2"), qos: 2, messageId: 100 });
    await pub.next("pubrec");
    const after = await counters();
    expect(after.sessionPublishCalls - before.sessionPublishCalls).toBe(1);
    expect(after.gatewayPublishCalls - before.gatewayPublishCalls).toBe(n);
    sub.close();
    pub.close();
  });

  it("a refused PUBLISH's PUBACK 0x87 waits for the routed one before it [MQTT-4.6.0-2] [MQTT-3.3.5-2]", async () => {
    const topic = `${uid("edge-order")}/t`;
    // Subscribers make the shard's answer slower than the refusal, which needs no shard.
    const subs = await Promise.all([1, 2, 3].map(() => rawClient(5)));
    for (const s of subs) {
      await s.connect({ clientId: uid("edge-order-sub") });
      s.autoAck = true;
      await s.subscribe(topic, 1);
    }
    const pub = await rawClient(5);
    await pub.connect({ clientId: uid("edge-order-pub") });
    for (let round = 0; round < 5; round++) {
      const id = round * 2 + 1;
      // One burst: a routed message, then one to `$SYS/...`, which a client may never publish (0x87).
      pub.send({ cmd: "publish", topic, payload: Buffer.from("routed"), qos: 1, messageId: id });
      pub.send({ cmd: "publish", topic: "$SYS/edge", payload: Buffer.from("refused"), qos: 1, messageId: id + 1 });
      await pub.until(() => pub.all("puback").length === id + 1);
    }
    const acks = pub.all("puback").map((a) => [a.messageId, a.reasonCode ?? 0]);
    const expected = [1, 2, 3, 4, 5].flatMap((r) => [
      [r * 2 - 1, ReasonCode.SUCCESS],
      [r * 2, ReasonCode.NOT_AUTHORIZED],
    ]);
    expect(acks).toEqual(expected);
    for (const s of subs) s.close();
    pub.close();
  });
});
