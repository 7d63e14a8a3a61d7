import type { ISubscription } from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import { closeAll, connect, rawClient, recorder, roundTrip } from "../support/clients";
import { uid } from "../support/ids";
import { at } from "../support/elements";

afterEach(closeAll);

describe.each([4, 5] as const)("publish and subscribe, MQTT v%i", (version) => {
  it.each([0, 1, 2] as const)(
    "delivers QoS %i end to end, DUP 0 on the first send [MQTT-3.3.4-1, 4.3.1-1, 4.3.2-2, 4.3.3-2, 3.3.1-2] [MQTT311-3.3.4-1, 4.3.1-1, 4.3.2-1, 2.3.1-5, 3.3.1-2]",
    async (qos) => {
      const topic = `${uid("t")}/qos`;
      const sub = await connect(version);
      const rec = recorder(sub);
      const granted = await sub.subscribeAsync(topic, { qos });
      expect(at(granted, 0).qos).toBe(qos);
      const pub = await connect(version);
      await pub.publishAsync(topic, `hello ${qos}`, { qos });
      const [m] = await rec.waitFor(1);
      expect(m.payload).toBe(`hello ${qos}`);
      expect(m.packet.qos).toBe(qos);
      expect(m.packet.retain).toBe(false);
      expect(m.packet.dup).toBe(false);
    },
  );

  it("downgrades to the granted QoS [MQTT-3.8.4-8] [MQTT311-3.8.4-6]", async () => {
    const topic = `${uid("t")}/down`;
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    const pub = await connect(version);
    await pub.publishAsync(topic, "x", { qos: 2 });
    expect((await rec.waitFor(1))[0].packet.qos).toBe(1);
  });

  it("routes through + and # wildcards across shards [MQTT-4.5.0-1, 3.3.2-3, 4.7.1-1, 4.7.1-2] [MQTT311-4.5.0-1, 3.3.2-3, 3.8.3-2, 4.7.1-2, 4.7.1-3]", async () => {
    const root = uid("w");
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync([`${root}/+/temp`, `${root}/#`], { qos: 1 });
    // [MQTT-4.5.0-1] every matching subscription gets the message, not only the first session's
    const other = await connect(version);
    const otherRec = recorder(other);
    await other.subscribeAsync(`${root}/+/temp`, { qos: 1 });
    const pub = await connect(version);
    const topics = Array.from({ length: 12 }, (_, i) => `${root}/dev${i}/temp`);
    for (const t of topics) await pub.publishAsync(t, t, { qos: 1 });
    await pub.publishAsync(root, "root", { qos: 1 }); // '#' matches the parent level
    const got = await rec.waitFor(13);
    expect(got.map((m) => m.topic).sort()).toEqual([...topics, root].sort());
    const otherGot = await otherRec.waitFor(12);
    expect(otherGot.map((m) => m.topic).sort()).toEqual([...topics].sort());
  });

  it("sends one copy at the highest QoS for overlapping subscriptions [MQTT-3.3.4-2] [MQTT311-3.3.5-1]", async () => {
    const root = uid("o");
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync({ [`${root}/a/+`]: { qos: 0 }, [`${root}/#`]: { qos: 2 }, [`${root}/a/b`]: { qos: 1 } });
    const pub = await connect(version);
    await pub.publishAsync(`${root}/a/b`, "once", { qos: 2 });
    await pub.publishAsync(`${root}/a/b`, "control", { qos: 2 });
    await rec.waitFor(2);
    expect(rec.messages.map((m) => m.payload)).toEqual(["once", "control"]);
    expect(at(rec.messages, 0).packet.qos).toBe(2);
  });

  it("does not match $ topics with a leading wildcard [MQTT-4.7.2-1] [MQTT311-4.7.2-1]", async () => {
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(["#", "+/x"], { qos: 0 });
    const sys = await connect(version);
    await sys.subscribeAsync("$test/x", { qos: 0 });
    const sysRec = recorder(sys);
    const pub = await connect(version);
    await pub.publishAsync("$test/x", "dollar", { qos: 1 });
    await sysRec.waitFor(1);
    await roundTrip(sub); // the PUBACK came after every copy was sent
    expect(rec.messages.filter((m) => m.topic.startsWith("$"))).toHaveLength(0);
  });

  it("stops delivery after UNSUBSCRIBE [MQTT-3.10.4-1, 3.10.4-2] [MQTT311-3.10.4-1, 3.10.4-2]", async () => {
    const topic = `${uid("u")}/x`;
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    const pub = await connect(version);
    await pub.publishAsync(topic, "1", { qos: 1 });
    await rec.waitFor(1);
    await sub.unsubscribeAsync(topic);
    await pub.publishAsync(topic, "2", { qos: 1 });
    await roundTrip(sub); // the PUBACK came after every copy was sent
    expect(rec.messages.map((m) => m.payload)).toEqual(["1"]);
  });

  it("keeps per-publisher order on a topic [MQTT-4.6.0-5, 4.6.0-6, 4.6.0-2] [MQTT311-4.6.0-5, 4.6.0-6, 4.6.0-2]", async () => {
    const topic = `${uid("ord")}/x`;
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    const pub = await connect(version);
    const n = 200;
    await Promise.all(Array.from({ length: n }, (_, i) => pub.publishAsync(topic, String(i), { qos: 1 })));
    const got = await rec.waitFor(n, 15000);
    expect(got.map((m) => Number(m.payload))).toEqual(Array.from({ length: n }, (_, i) => i));
  });

  it("keeps order for QoS 0 too", async () => {
    const topic = `${uid("ord0")}/x`;
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 0 });
    const pub = await connect(version);
    const n = 200;
    for (let i = 0; i < n; i++) pub.publish(topic, String(i), { qos: 0 });
    const got = await rec.waitFor(n, 15000);
    expect(got.map((m) => Number(m.payload))).toEqual(Array.from({ length: n }, (_, i) => i));
  });

  it("fans out to many subscribers", async () => {
    const topic = `${uid("fan")}/x`;
    const subs = await Promise.all(Array.from({ length: 10 }, () => connect(version)));
    const recs = subs.map(recorder);
    await Promise.all(subs.map((s) => s.subscribeAsync(topic, { qos: 1 })));
    const pub = await connect(version);
    await pub.publishAsync(topic, "all", { qos: 1 });
    await Promise.all(recs.map((r) => r.waitFor(1)));
  });
});

describe.each([4, 5] as const)("SUBSCRIBE validation, MQTT v%i", (version) => {
  it("answers an invalid filter with a failure code and keeps the valid ones [MQTT-3.8.4-1, 3.8.4-2, 3.8.4-5, 3.8.4-6, 3.8.4-7, 3.9.3-1, 3.9.3-2] [MQTT311-3.8.4-1, 3.8.4-2, 3.8.4-4, 3.8.4-5, 3.9.3-1, 3.9.3-2, 2.3.1-7]", async () => {
    const root = uid("sv");
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid() });
    raw.autoAck = true;
    // The valid filters before and after the refused one are each subscribed, as if sent alone [MQTT-3.8.4-5].
    const subscriptions: ISubscription[] = [
      { topic: `${root}/ok/#`, qos: 1 },
      { topic: "a/#/b", qos: 1 },
      { topic: `${root}/late`, qos: 0 },
    ];
    raw.send({ cmd: "subscribe", messageId: 5, subscriptions });
    const suback = await raw.next("suback");
    expect(suback.messageId).toBe(5);
    expect(suback.granted).toEqual([1, version === 5 ? 0x8f : 0x80, 0]);
    const pub = await connect(version);
    await pub.publishAsync(`${root}/ok/x`, "first", { qos: 1 });
    await pub.publishAsync(`${root}/late`, "third", { qos: 1 });
    await raw.until(() => raw.all("publish").length === 2, 5000, "a message on each valid filter");
    expect(raw.all("publish").map((p) => [p.topic, p.qos])).toEqual([
      [`${root}/ok/x`, 1],
      [`${root}/late`, 0],
    ]);
    raw.close();
  });

  it("closes the connection on a wildcard in a PUBLISH topic [MQTT-3.3.2-2, 4.7.0-1] [MQTT311-3.3.2-2, 4.7.1-1]", async () => {
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid() });
    raw.send({ cmd: "publish", topic: "a/+", payload: Buffer.from("x"), qos: 0 });
    if (version === 5) expect((await raw.next("disconnect")).reasonCode).toBe(0x90);
    await raw.waitClosed();
  });

  it("answers UNSUBSCRIBE with UNSUBACK (v5: a code per filter) [MQTT-3.10.4-4, 3.10.4-5, 3.10.4-6, 3.11.3-1, 3.11.3-2] [MQTT311-3.10.4-4, 3.10.4-5, 3.10.4-6]", async () => {
    const root = uid("us");
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid() });
    await raw.subscribe(`${root}/a`, 0, 1);
    await raw.subscribe(`${root}/b`, 0, 3);
    await raw.subscribe(`${root}/kept`, 0, 4);
    // Every filter listed is removed, not only the first [MQTT-3.10.4-6]; the UNSUBACK comes anyway [MQTT-3.10.4-5].
    raw.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: [`${root}/a`, "not/subscribed", `${root}/b`] });
    const unsuback = await raw.next("unsuback");
    expect(unsuback.messageId).toBe(2);
    if (version === 5) expect(unsuback.granted).toEqual([0x00, 0x11, 0x00]);
    const pub = await connect(version);
    await pub.publishAsync(`${root}/a`, "a", { qos: 1 });
    await pub.publishAsync(`${root}/b`, "b", { qos: 1 });
    await pub.publishAsync(`${root}/kept`, "control", { qos: 1 });
    await raw.until(() => raw.all("publish").length > 0, 5000, "the control message");
    await raw.roundTrip();
    expect(raw.all("publish").map((p) => p.topic)).toEqual([`${root}/kept`]);
    raw.close();
  });
});
