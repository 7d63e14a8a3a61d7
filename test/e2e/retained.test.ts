import { afterEach, describe, expect, it } from "vitest";
import { closeAll, connect, recorder, roundTrip } from "../support/clients";
import { uid } from "../support/ids";

afterEach(closeAll);

describe.each([4, 5] as const)("retained messages, MQTT v%i", (version) => {
  it("stores, replaces and delivers with RETAIN=1 on subscribe [MQTT-3.3.1-5, 3.3.1-9] [MQTT311-3.3.1-5, 3.3.1-6, 3.3.1-8]", async () => {
    const topic = `${uid("r")}/state`;
    const pub = await connect(version);
    await pub.publishAsync(topic, "first", { qos: 1, retain: true });
    await pub.publishAsync(topic, "second", { qos: 1, retain: true });
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    const [m] = await rec.waitFor(1);
    expect(m.payload).toBe("second");
    expect(m.packet.retain).toBe(true);
    await roundTrip(sub); // retained messages leave right after the SUBACK
    expect(rec.messages).toHaveLength(1);
  });

  it("forwards a retained publish to existing subscribers with RETAIN=0 [MQTT-3.3.1-12] [MQTT311-3.3.1-9]", async () => {
    const topic = `${uid("r")}/live`;
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    const pub = await connect(version);
    await pub.publishAsync(topic, "live", { qos: 1, retain: true });
    const [m] = await rec.waitFor(1);
    expect(m.packet.retain).toBe(false);
  });

  it("deletes the retained message on an empty payload [MQTT-3.3.1-6, 3.3.1-7] [MQTT311-3.3.1-10, 3.3.1-11]", async () => {
    const topic = `${uid("r")}/gone`;
    const pub = await connect(version);
    await pub.publishAsync(topic, "x", { qos: 1, retain: true });
    await pub.publishAsync(topic, "", { qos: 1, retain: true });
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    await roundTrip(sub); // retained messages leave right after the SUBACK
    expect(rec.messages).toHaveLength(0);
  });

  it("gathers retained messages for wildcard filters from every shard", async () => {
    const root = uid("rw");
    const pub = await connect(version);
    const topics = Array.from({ length: 16 }, (_, i) => `${root}/d${i}/status`);
    for (const t of topics) await pub.publishAsync(t, t, { qos: 1, retain: true });
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(`${root}/+/status`, { qos: 0 });
    const got = await rec.waitFor(16);
    expect(got.map((m) => m.payload).sort()).toEqual([...topics].sort());
    expect(got.every((m) => m.packet.retain)).toBe(true);

    // A first-level wildcard spans every shard as well.
    const all = await connect(version);
    const recAll = recorder(all);
    await all.subscribeAsync(`+/d3/status`, { qos: 0 });
    await roundTrip(all); // retained messages leave right after the SUBACK
    expect(recAll.messages.map((m) => m.topic)).toContain(`${root}/d3/status`);
  });

  it("delivers retained messages at the lower of stored and granted QoS", async () => {
    const topic = `${uid("r")}/qos`;
    const pub = await connect(version);
    await pub.publishAsync(topic, "x", { qos: 2, retain: true });
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    expect((await rec.waitFor(1))[0].packet.qos).toBe(1);
  });

  it("sends the retained message again on a repeated SUBSCRIBE [MQTT-3.8.4-3, 3.8.4-4] [MQTT311-3.8.4-3]", async () => {
    const topic = `${uid("r")}/again`;
    const pub = await connect(version);
    await pub.publishAsync(topic, "x", { qos: 2, retain: true });
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 2 });
    await rec.waitFor(1);
    // The repeated SUBSCRIBE replaces the subscription: its new QoS holds, for the retained message
    // and for what is published next, and there is still one subscription (one copy) [MQTT-3.8.4-3].
    await sub.subscribeAsync(topic, { qos: 0 });
    await rec.waitFor(2);
    await pub.publishAsync(topic, "live", { qos: 2 });
    await rec.waitFor(3);
    await roundTrip(sub);
    expect(rec.messages.map((m) => [m.payload, m.packet.qos, m.packet.retain])).toEqual([
      ["x", 2, true],
      ["x", 0, true],
      ["live", 0, false],
    ]);
  });
});
