/**
 * A 3.1.1 subscriber's live QoS 0 delivery is sent as the publisher's Session object encoded it
 * (protocol/codec.ts payloadInPublish): the bytes travel from the publisher's object through the
 * TopicShard to the subscriber's, and the subscriber's object sends them with no encoding of its own.
 * Every other delivery (a v5 subscriber, QoS 1, a retained copy, a rule's copy under another topic)
 * is encoded as usual. Under workerd, across the real RPC between the objects.
 */
import { describe, expect, it } from "vitest";
import { counters } from "../../src/observability/counters";
import { uid } from "../support/ids";
import { rawClient } from "../support/workerd";

async function client(version: 4 | 5, clientId = uid("pb")) {
  const c = await rawClient(version);
  await c.connect({ clientId });
  return c;
}

const text = (payload: unknown) => new TextDecoder().decode(payload as Uint8Array);

describe("PUBLISH bytes sent as given", () => {
  it("a 3.1.1 subscriber at QoS 0 gets the publisher's encoding; a v5 one, QoS 1 and retained copies are encoded", async () => {
    const topic = `pb/${uid("t")}/é`;
    const [v4, v5, v4q1, pub] = [await client(4), await client(5), await client(4), await client(4)];
    await v4.subscribe(topic, 0);
    await v5.subscribe(topic, 0);
    await v4q1.subscribe(topic, 1);
    const before = counters.publishesSentAsGiven;
    pub.send({ cmd: "publish", topic, payload: Buffer.from("zero"), qos: 0, retain: false, dup: false });
    pub.send({ cmd: "publish", topic, payload: Buffer.from("one"), qos: 1, messageId: 7, retain: false, dup: false });
    pub.send({ cmd: "publish", topic, payload: Buffer.from("kept"), qos: 0, retain: true, dup: false });
    for (const c of [v4, v5, v4q1]) await c.until(() => c.all("publish").length === 3, 5000, "three messages");
    for (const c of [v4, v5, v4q1]) {
      expect(c.all("publish").map((p) => [p.topic, text(p.payload)])).toEqual([
        [topic, "zero"],
        [topic, "one"],
        [topic, "kept"],
      ]);
      // A live message goes with RETAIN 0 unless Retain As Published [MQTT-3.3.1-12]
      expect(c.all("publish").map((p) => p.retain)).toEqual([false, false, false]);
    }
    expect(v4.all("publish").map((p) => p.qos)).toEqual([0, 0, 0]);
    expect(v4q1.all("publish").map((p) => p.qos)).toEqual([0, 1, 0]);
    // The 3.1.1 subscribers' QoS 0 deliveries: v4's three and v4q1's two at QoS 0.
    expect(counters.publishesSentAsGiven - before).toBe(5);

    // The retained copy: stored from the payload (a view into the packet's bytes) and sent with RETAIN 1.
    const late = await client(4);
    const sentBefore = counters.publishesSentAsGiven;
    await late.subscribe(topic, 0);
    await late.until(() => late.all("publish").length === 1, 5000, "the retained message");
    const [kept] = late.all("publish");
    expect([kept!.topic, text(kept!.payload), kept!.retain]).toEqual([topic, "kept", true]);
    expect(counters.publishesSentAsGiven).toBe(sentBefore);
    for (const c of [v4, v5, v4q1, pub, late]) c.close();
  });
});
