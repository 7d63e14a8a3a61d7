import { afterEach, describe, expect, it } from "vitest";
import { closeAll, connect, connectRecording, rawClient, recorder, roundTrip } from "../support/clients";
import { uid } from "../support/ids";
import type { OutgoingPublish } from "../support/raw-client";
import { sleep } from "../support/until";

afterEach(closeAll);

const persistent = (version: 4 | 5) =>
  version === 5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false };

describe.each([4, 5] as const)("persistent sessions, MQTT v%i", (version) => {
  it("keeps subscriptions and queues QoS 1/2 (not QoS 0) while offline [MQTT-3.1.2-5, 3.1.2-23, 3.2.2-3, 4.1.0-1] [MQTT311-3.1.2-4, 3.1.2-5, 3.2.2-2, 4.1.0-1, 4.1.0-2, 4.5.0-1]", async () => {
    const clientId = uid("p");
    const topic = `${uid("pt")}/x`;
    const first = await connect(version, { clientId, ...persistent(version) });
    await first.subscribeAsync(topic, { qos: 2 });
    await first.endAsync();

    const pub = await connect(version);
    await pub.publishAsync(topic, "q0", { qos: 0 });
    await pub.publishAsync(topic, "q1", { qos: 1 });
    await pub.publishAsync(topic, "q2", { qos: 2 });

    const { rec, connack } = await connectRecording(version, { clientId, ...persistent(version) });
    const got = await rec.waitFor(2);
    expect(connack.sessionPresent).toBe(true);
    expect(got.map((m) => m.payload)).toEqual(["q1", "q2"]);
    expect(got.map((m) => m.packet.qos)).toEqual([1, 2]);
    await pub.publishAsync(topic, "control", { qos: 1 });
    await rec.waitFor(3);
    expect(rec.messages.map((m) => m.payload)).toEqual(["q1", "q2", "control"]);
  });

  it("discards the session on a clean start [MQTT-3.1.2-4, 3.1.4-4, 3.2.2-2] [MQTT311-3.1.2-6, 3.1.4-3, 3.2.2-1]", async () => {
    const clientId = uid("clean");
    const topic = `${uid("ct")}/x`;
    const first = await connect(version, { clientId, ...persistent(version) });
    await first.subscribeAsync(topic, { qos: 1 });
    await first.endAsync();
    const pub = await connect(version);
    await pub.publishAsync(topic, "queued", { qos: 1 }); // waits in the offline session
    const raw = await rawClient(version);
    const connack = await raw.connect({ clientId, clean: true });
    expect(connack.sessionPresent).toBe(false);
    await pub.publishAsync(topic, "x", { qos: 1 });
    await raw.roundTrip();
    expect(raw.all("publish")).toHaveLength(0);
    raw.close();
  });

  it("takes over: a second connection with the same id closes the first [MQTT-3.1.4-3] [MQTT311-3.1.4-2]", async () => {
    const clientId = uid("take");
    const first = await rawClient(version);
    await first.connect({ clientId });
    const second = await rawClient(version);
    await second.connect({ clientId });
    if (version === 5) expect((await first.next("disconnect")).reasonCode).toBe(0x8e);
    await first.waitClosed();
    // The new connection is fully working.
    second.send({ cmd: "pingreq" });
    await second.next("pingresp");
    const suback = await second.subscribe("x/takeover", 1);
    expect(suback.granted).toEqual([1]);
    second.close();
  });

  it("delivers QoS 2 exactly once across reconnects mid-flow [MQTT-4.4.0-1, 3.3.1-1, 4.3.3-3, 4.3.3-4, 4.3.3-5, 4.3.3-6] [MQTT311-4.4.0-1, 3.3.1-1, 4.3.3-1, 2.3.1-6]", async () => {
    const clientId = uid("eo");
    const topic = `${uid("eot")}/x`;
    const sub = await rawClient(version);
    await sub.connect({ clientId, ...persistent(version) });
    await sub.subscribe(topic, 2);

    const pub = await connect(version);
    await pub.publishAsync(topic, "exactly-once", { qos: 2 });

    // 1. PUBLISH arrives; the subscriber drops the connection without answering.
    const p1 = await sub.next("publish");
    expect(p1.dup).toBe(false);
    sub.close();

    // 2. On reconnect it is sent again with DUP=1 and the same packet id [MQTT-4.4.0-1].
    const sub2 = await rawClient(version);
    expect((await sub2.connect({ clientId, ...persistent(version) })).sessionPresent).toBe(true);
    const p2 = await sub2.next("publish");
    expect(p2.dup).toBe(true);
    expect(p2.messageId).toBe(p1.messageId);
    sub2.send({ cmd: "pubrec", messageId: p2.messageId });
    await sub2.next("pubrel");
    sub2.close(); // drops before PUBCOMP

    // 3. The next connection gets PUBREL, not the message again.
    const sub3 = await rawClient(version);
    await sub3.connect({ clientId, ...persistent(version) });
    const rel = await sub3.next("pubrel");
    expect(rel.messageId).toBe(p1.messageId);
    sub3.send({ cmd: "pubcomp", messageId: rel.messageId });
    await sub3.roundTrip();
    expect(sub3.all("publish")).toHaveLength(0);
    sub3.close();

    // 4. And nothing is left for a fourth connection.
    const sub4 = await rawClient(version);
    await sub4.connect({ clientId, ...persistent(version) });
    await sub4.roundTrip();
    expect(sub4.all("publish")).toHaveLength(0);
    expect(sub4.all("pubrel")).toHaveLength(0);
    sub4.close();
  });

  it("routes an inbound QoS 2 message once even when the PUBLISH is repeated [MQTT-4.3.3-8, 4.3.3-10, 4.3.3-11] [MQTT311-4.3.3-2]", async () => {
    const topic = `${uid("in2")}/x`;
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 2 });
    // A QoS 0 subscriber keeps no message ids, so a second routing would reach it twice.
    const sub0 = await connect(version);
    const rec0 = recorder(sub0);
    await sub0.subscribeAsync(topic, { qos: 0 });
    const pub = await rawClient(version);
    await pub.connect({ clientId: uid() });
    const publish: OutgoingPublish = { cmd: "publish", topic, payload: Buffer.from("once"), qos: 2, messageId: 7 };
    pub.send(publish);
    await pub.next("pubrec");
    pub.send({ ...publish, dup: true });
    await pub.next("pubrec");
    pub.send({ cmd: "pubrel", messageId: 7 });
    expect((await pub.next("pubcomp")).messageId).toBe(7);
    pub.send({ ...publish, messageId: 8, payload: Buffer.from("control"), dup: false });
    await pub.next("pubrec");
    pub.send({ cmd: "pubrel", messageId: 8 });
    await pub.next("pubcomp");
    await rec.waitFor(2);
    await rec0.waitFor(2);
    expect(rec.messages.map((m) => m.payload)).toEqual(["once", "control"]);
    expect(rec0.messages.map((m) => m.payload)).toEqual(["once", "control"]);
    pub.close();
  });

  it("drops the newest QoS 1 messages beyond the queue limit (documented outcome)", async () => {
    const clientId = uid("full");
    const topic = `${uid("ft")}/x`;
    const first = await connect(version, { clientId, ...persistent(version) });
    await first.subscribeAsync(topic, { qos: 1 });
    await first.endAsync();
    const pub = await connect(version);
    const limit = 300; // MAX_QUEUED_MESSAGES in the e2e broker
    await Promise.all(Array.from({ length: limit + 10 }, (_, i) => pub.publishAsync(topic, String(i), { qos: 1 })));
    const { client, rec } = await connectRecording(version, { clientId, ...persistent(version) });
    const got = await rec.waitFor(limit, 20000);
    // Its PUBACKs go before the UNSUBSCRIBE: a queued 301st would be sent before the UNSUBACK.
    await roundTrip(client);
    expect(got).toHaveLength(limit);
    expect(got.map((m) => Number(m.payload))).toEqual(Array.from({ length: limit }, (_, i) => i));
  });
});

describe("session expiry (v5)", () => {
  it("ends the session when the expiry interval has passed [MQTT-4.1.0-2, 3.1.2-6]", async () => {
    const clientId = uid("exp");
    const first = await connect(5, { clientId, clean: false, properties: { sessionExpiryInterval: 1 } });
    await first.subscribeAsync("exp/x", { qos: 1 });
    await first.endAsync();
    await sleep(2500); // the premise: the 1 s session expiry passes
    const raw = await rawClient(5);
    const connack = await raw.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 1 } });
    expect(connack.sessionPresent).toBe(false);
    raw.close();
  });

  it("ends a session with expiry 0 at disconnect [MQTT-3.2.2-3]", async () => {
    const clientId = uid("exp0");
    const first = await connect(5, { clientId, clean: false });
    await first.subscribeAsync("exp0/x", { qos: 1 });
    await first.endAsync();
    const raw = await rawClient(5);
    expect((await raw.connect({ clientId, clean: false })).sessionPresent).toBe(false);
    raw.close();
  });
});
