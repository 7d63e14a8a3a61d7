/**
 * Statements docs/CONFORMANCE.md used to justify by argument although a client can observe them:
 * packet identifiers echoed, DUP set by the broker alone, identifiers reused after an acknowledgement,
 * acknowledgement order, resends after expiry or refusal, and what a refused CONNECT may not do.
 * Raw clients over real WebSockets, so each packet field is visible.
 */
import { afterEach, describe, expect, it } from "vitest";
import { closeAll, connect, rawClient, recorder, REFUSAL_CLOSE_MS } from "../support/clients";
import { uid } from "../support/ids";
import { sleep } from "../support/until";
import type { IConnectPacket } from "mqtt-packet";
import type { OutgoingPacket, OutgoingPublish, RawClient } from "../support/raw-client";

afterEach(closeAll);

const persistent = (version: 4 | 5) =>
  version === 5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false };

const publish = (
  topic: string,
  payload: string,
  qos: 0 | 1 | 2,
  messageId?: number,
  extra: Partial<OutgoingPublish> = {},
): OutgoingPublish => ({
  cmd: "publish",
  topic,
  payload: Buffer.from(payload),
  qos,
  messageId,
  ...extra,
});

/** A raw subscriber on `topic`, connected with `fields`. */
async function subscriber(
  version: 4 | 5,
  topic: string,
  qos: 0 | 1 | 2,
  fields: Partial<IConnectPacket> = {},
): Promise<RawClient> {
  const raw = await rawClient(version);
  await raw.connect({ clientId: uid("sub"), ...fields });
  await raw.subscribe(topic, qos);
  return raw;
}

/** A raw publisher, connected. */
async function publisher(version: 4 | 5): Promise<RawClient> {
  const raw = await rawClient(version);
  await raw.connect({ clientId: uid("pub") });
  return raw;
}

describe.each([4, 5] as const)("packet identifiers and flags, MQTT v%i", (version) => {
  it("echoes the Packet Identifier in PUBACK, PUBREC and PUBCOMP [MQTT-2.2.1-5, 4.3.2-4] [MQTT311-2.3.1-6]", async () => {
    const pub = await publisher(version);
    pub.send(publish(`${uid("id")}/x`, "one", 1, 4321));
    expect((await pub.next("puback")).messageId).toBe(4321);
    pub.send(publish(`${uid("id")}/x`, "two", 2, 54321));
    expect((await pub.next("pubrec")).messageId).toBe(54321);
    pub.send({ cmd: "pubrel", messageId: 54321 });
    expect((await pub.next("pubcomp")).messageId).toBe(54321);
  });

  it("echoes the Packet Identifier in SUBACK and UNSUBACK [MQTT-2.2.1-6] [MQTT311-2.3.1-7, 3.8.4-2, 3.10.4-4]", async () => {
    const raw = await publisher(version);
    expect((await raw.subscribe(`${uid("id")}/s`, 1, 777)).messageId).toBe(777);
    raw.send({ cmd: "unsubscribe", messageId: 4242, unsubscriptions: [`${uid("id")}/s`] });
    expect((await raw.next("unsuback")).messageId).toBe(4242);
  });

  it("sets DUP on a resent QoS 1 message and not on its first send [MQTT-4.3.2-2, 3.3.1-1] [MQTT311-3.3.1-1]", async () => {
    const clientId = uid("dup1");
    const topic = `${uid("dup1")}/x`;
    const first = await subscriber(version, topic, 1, { clientId, ...persistent(version) });
    const pub = await publisher(version);
    pub.send(publish(topic, "again", 1, 1));
    const p1 = await first.next("publish");
    expect(p1.dup).toBe(false);
    first.close(); // no PUBACK
    const second = await rawClient(version);
    expect((await second.connect({ clientId, ...persistent(version) })).sessionPresent).toBe(true);
    const p2 = await second.next("publish");
    expect([p2.dup, p2.messageId, p2.payload.toString()]).toEqual([true, p1.messageId, "again"]);
    second.send({ cmd: "puback", messageId: p2.messageId });
  });

  it("sets the outgoing DUP independently of the incoming one [MQTT-3.3.1-3] [MQTT311-3.3.1-3]", async () => {
    const topic = `${uid("dupin")}/x`;
    const sub = await subscriber(version, topic, 1);
    sub.autoAck = true;
    const pub = await publisher(version);
    pub.send(publish(topic, "marked", 1, 3, { dup: true }));
    await pub.next("puback");
    const p = await sub.next("publish");
    expect([p.payload.toString(), p.dup]).toEqual(["marked", false]);
  });

  /** Publishes "first" then "second" with QoS `qos` and packet id 9, each flow completed before the next. */
  async function reuseIdentifier(qos: 1 | 2): Promise<void> {
    const topic = `${uid("reuse")}/x`;
    const sub = await subscriber(version, topic, 1);
    sub.autoAck = true;
    const pub = await publisher(version);
    for (const payload of ["first", "second"]) {
      pub.send(publish(topic, payload, qos, 9));
      if (qos === 1) await pub.next("puback");
      else {
        await pub.next("pubrec");
        pub.send({ cmd: "pubrel", messageId: 9 });
        await pub.next("pubcomp");
      }
    }
    await sub.until(() => sub.all("publish").length === 2, 5000, "two messages");
    expect(sub.all("publish").map((p) => p.payload.toString())).toEqual(["first", "second"]);
  }

  it("treats a QoS 1 PUBLISH reusing an acknowledged identifier as a new message [MQTT-4.3.2-5] [MQTT311-4.3.2-2]", async () => {
    await reuseIdentifier(1);
  });

  it("treats a QoS 2 PUBLISH reusing an identifier after PUBCOMP as a new message [MQTT-4.3.3-12] [MQTT311-4.3.3-2]", async () => {
    await reuseIdentifier(2);
  });

  it("gives each unacknowledged QoS 1 and QoS 2 message its own non-zero identifier [MQTT-2.2.1-4, 4.3.2-1, 4.3.3-1] [MQTT311-2.3.1-4]", async () => {
    const topic = `${uid("ids")}/x`;
    const sub = await subscriber(version, topic, 2);
    const pub = await connect(version);
    for (let i = 0; i < 6; i++) await pub.publishAsync(topic, String(i), { qos: i % 2 === 0 ? 1 : 2 });
    await sub.until(() => sub.all("publish").length === 6, 5000, "six messages");
    const ids = sub.all("publish").map((p) => p.messageId);
    expect(sub.all("publish").map((p) => p.qos)).toEqual([1, 2, 1, 2, 1, 2]);
    expect(ids.every((id) => id !== undefined && id > 0)).toBe(true);
    expect(new Set(ids).size).toBe(6);
  });

  it("completes an in-flight QoS 1 message after its subscription is removed [MQTT-3.10.4-3] [MQTT311-3.10.4-3]", async () => {
    const clientId = uid("unsub");
    const topic = `${uid("unsub")}/x`;
    const first = await subscriber(version, topic, 1, { clientId, ...persistent(version) });
    const pub = await connect(version);
    await pub.publishAsync(topic, "started", { qos: 1 });
    const p1 = await first.next("publish");
    first.send({ cmd: "unsubscribe", messageId: 5, unsubscriptions: [topic] });
    await first.next("unsuback");
    first.close(); // the message is still unacknowledged
    const second = await rawClient(version);
    await second.connect({ clientId, ...persistent(version) });
    const p2 = await second.next("publish");
    expect([p2.messageId, p2.dup, p2.payload.toString()]).toEqual([p1.messageId, true, "started"]);
  });

  it("keeps U+FEFF in a topic name as it is [MQTT-1.5.4-3] [MQTT311-1.5.3-3]", async () => {
    const topic = `${uid("bom")}/\uFEFFx`;
    const sub = await subscriber(version, topic, 0);
    const pub = await publisher(version);
    pub.send(publish(topic, "bom", 0));
    const p = await sub.next("publish");
    expect([...Buffer.from(p.topic)].slice(-4)).toEqual([0xef, 0xbb, 0xbf, 0x78]);
  });
});

describe.each([4, 5] as const)("retained messages and sessions, MQTT v%i", (version) => {
  it("neither stores nor replaces a retained message for a PUBLISH with RETAIN 0 [MQTT-3.3.1-8] [MQTT311-3.3.1-12]", async () => {
    const topic = `${uid("noretain")}/x`;
    const pub = await connect(version);
    await pub.publishAsync(topic, "kept", { qos: 1, retain: true });
    await pub.publishAsync(topic, "live", { qos: 1 });
    await pub.publishAsync(`${topic}/other`, "not retained", { qos: 1 });
    const late = await subscriber(version, `${topic}/#`, 1);
    late.autoAck = true;
    await late.until(() => late.all("publish").length >= 1, 5000, "the retained message");
    await pub.publishAsync(`${topic}/control`, "control", { qos: 1 });
    await late.until(() => late.all("publish").some((p) => p.payload.toString() === "control"), 5000, "control");
    expect(late.all("publish").map((p) => [p.payload.toString(), p.retain])).toEqual([
      ["kept", true],
      ["control", false],
    ]);
  });

  it("keeps a retained message when the publisher's session ends, and a QoS 0 one replaces it [MQTT311-3.1.2-7, 3.3.1-7]", async () => {
    const topic = `${uid("keepret")}/x`;
    const pub = await connect(version, { clean: true });
    await pub.publishAsync(topic, "first", { qos: 1, retain: true });
    await pub.publishAsync(topic, "second", { qos: 0, retain: true });
    await pub.endAsync(); // a clean session ends with its connection
    const late = await subscriber(version, topic, 1);
    const p = await late.next("publish");
    expect([p.payload.toString(), p.retain]).toEqual(["second", true]);
  });

  it("accepts CleanSession 0 for an unknown id with Session Present 0 [MQTT-3.2.2-3] [MQTT311-3.2.2-3]", async () => {
    const raw = await rawClient(version);
    const connack = await raw.connect({ clientId: uid("fresh"), ...persistent(version) });
    expect([connack.sessionPresent, connack.reasonCode ?? connack.returnCode]).toEqual([false, 0]);
  });
});

describe.each([4, 5] as const)("acknowledgement order, MQTT v%i", (version) => {
  it("sends PUBRECs in the order the QoS 2 PUBLISHes arrived [MQTT-4.6.0-3] [MQTT311-4.6.0-3]", async () => {
    const topic = `${uid("recorder")}/x`;
    const pub = await publisher(version);
    const ids = [40, 12, 33, 7, 25];
    for (const id of ids) pub.send(publish(topic, String(id), 2, id));
    await pub.until(() => pub.all("pubrec").length === ids.length, 5000, "five PUBRECs");
    expect(pub.all("pubrec").map((p) => p.messageId)).toEqual(ids);
  });

  it("sends PUBRELs in the order the PUBRECs arrived [MQTT-4.6.0-4] [MQTT311-4.6.0-4]", async () => {
    const topic = `${uid("relorder")}/x`;
    const sub = await subscriber(version, topic, 2);
    const pub = await connect(version);
    for (let i = 0; i < 3; i++) await pub.publishAsync(topic, String(i), { qos: 2 });
    await sub.until(() => sub.all("publish").length === 3, 5000, "three messages");
    const ids = sub
      .all("publish")
      .map((p) => p.messageId)
      .reverse();
    for (const id of ids) sub.send({ cmd: "pubrec", messageId: id });
    await sub.until(() => sub.all("pubrel").length === 3, 5000, "three PUBRELs");
    expect(sub.all("pubrel").map((p) => p.messageId)).toEqual(ids);
  });
});

describe("outbound flows after expiry or refusal (v5)", () => {
  it("resends an in-flight QoS 1 message whose expiry has passed, and completes a QoS 2 flow after it [MQTT-4.3.3-7, 4.3.3-13]", async () => {
    const clientId = uid("expflight");
    const topic = `${uid("expflight")}/x`;
    const first = await subscriber(5, topic, 2, { clientId, ...persistent(5) });
    const pub = await connect(5);
    await pub.publishAsync(topic, "sent", { qos: 2, properties: { messageExpiryInterval: 1 } });
    const p1 = await first.next("publish");
    first.close(); // neither PUBREC nor PUBCOMP
    await sleep(2200); // the premise: the message's one-second expiry passes while it is in flight
    const second = await rawClient(5);
    await second.connect({ clientId, ...persistent(5) });
    const p2 = await second.next("publish");
    expect([p2.messageId, p2.dup, p2.payload.toString()]).toEqual([p1.messageId, true, "sent"]);
    second.send({ cmd: "pubrec", messageId: p2.messageId });
    expect((await second.next("pubrel")).messageId).toBe(p1.messageId);
    second.send({ cmd: "pubcomp", messageId: p1.messageId });
  });

  it("does not resend a message its receiver refused with PUBACK 0x80 [MQTT-4.4.0-2]", async () => {
    const clientId = uid("refused");
    const topic = `${uid("refused")}/x`;
    const first = await subscriber(5, topic, 1, { clientId, ...persistent(5) });
    const pub = await publisher(5);
    pub.send(publish(topic, "refused", 1, 1));
    const p1 = await first.next("publish");
    first.send({ cmd: "puback", messageId: p1.messageId, reasonCode: 0x80 });
    // the refusal is recorded once a later message is delivered after it
    pub.send(publish(topic, "control-1", 1, 2));
    const c1 = await first.next("publish");
    first.send({ cmd: "puback", messageId: c1.messageId });
    await first.subscribe(`${topic}/barrier`, 0, 99); // answered after the session has taken the PUBACK
    first.close();
    const second = await rawClient(5);
    await second.connect({ clientId, ...persistent(5) });
    pub.send(publish(topic, "control-2", 1, 3));
    await second.until(
      () => second.all("publish").some((p) => p.payload.toString() === "control-2"),
      5000,
      "control-2",
    );
    expect(second.all("publish").map((p) => p.payload.toString())).toEqual(["control-2"]);
  });
});

describe("CONNECT outcomes", () => {
  it.each([4, 5] as const)(
    "allows a 23-character id of [0-9a-zA-Z], MQTT v%i [MQTT-3.1.3-5] [MQTT311-3.1.3-5]",
    async (version) => {
      const raw = await rawClient(version);
      const connack = await raw.connect({ clientId: `0aZ${Date.now().toString(36)}`.padEnd(23, "9").slice(0, 23) });
      expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(0);
    },
  );

  it.each([4, 5] as const)(
    "refuses a 257-byte client id with CONNACK 0x85 / 0x02 and closes, MQTT v%i [MQTT-3.1.3-8] [MQTT311-3.1.3-9]",
    async (version) => {
      const raw = await rawClient(version);
      const connack = await raw.connect({ clientId: "x".repeat(257) });
      expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(version === 5 ? 0x85 : 2);
      await raw.waitClosed(REFUSAL_CLOSE_MS);
    },
  );

  it.each([4, 5] as const)(
    "processes nothing sent after a refused CONNECT, MQTT v%i [MQTT-3.1.4-6] [MQTT311-3.1.4-5]",
    async (version) => {
      const topic = `${uid("after")}/x`;
      const watcher = await connect(version);
      const rec = recorder(watcher);
      await watcher.subscribeAsync(topic, { qos: 1 });
      const raw = await rawClient(version);
      raw.send({
        cmd: "connect",
        protocolVersion: version,
        protocolId: "MQTT",
        clean: true,
        keepalive: 60,
        clientId: "x".repeat(257),
      });
      raw.send(publish(topic, "after-refusal", 1, 1));
      await raw.waitClosed();
      const pub = await connect(version);
      await pub.publishAsync(topic, "control", { qos: 1 });
      await rec.waitFor(1);
      expect(rec.messages.map((m) => m.payload)).toEqual(["control"]);
      expect(raw.all("puback")).toEqual([]);
    },
  );

  it.each([4, 5] as const)(
    "closes a CONNECT with a wrong Protocol Name without accepting it, MQTT v%i [MQTT-3.1.2-1] [MQTT311-3.1.2-1]",
    async (version) => {
      const raw = await rawClient(version);
      const protocolId = "MQTX" as string as IConnectPacket["protocolId"]; // a name mqtt-packet's type does not allow
      raw.send({ cmd: "connect", protocolVersion: version, protocolId, clean: true, keepalive: 60, clientId: uid() });
      raw.send({ cmd: "pingreq" });
      await raw.waitClosed();
      expect(raw.all("connack").filter((c) => (c.reasonCode ?? c.returnCode) === 0)).toEqual([]);
      expect(raw.all("pingresp")).toEqual([]);
    },
  );

  it("returns no Response Information when the client asks for none [MQTT-3.1.2-28]", async () => {
    const raw = await rawClient(5);
    const connack = await raw.connect({ clientId: uid(), properties: { requestResponseInformation: false } });
    expect([connack.reasonCode, connack.properties?.responseInformation]).toEqual([0, undefined]);
  });

  it("uses the client's Keep Alive when it sends no Server Keep Alive [MQTT-3.2.2-22]", async () => {
    const raw = await rawClient(5);
    const start = Date.now(); // the broker counts silence from the CONNECT, not from its CONNACK
    const connack = await raw.connect({ clientId: uid(), keepalive: 1 });
    expect(connack.properties?.serverKeepAlive).toBeUndefined();
    await raw.waitClosed(4000); // 1.5 x 1 s of silence, well before the broker's own maximum
    expect(Date.now() - start).toBeGreaterThanOrEqual(1400);
  });
});

describe("v5 flow control, topic aliases and Response Topic", () => {
  it("treats a wildcard in a Response Topic as a protocol error [MQTT-3.3.2-14]", async () => {
    const raw = await publisher(5);
    raw.send(publish(`${uid("resp")}/x`, "q", 1, 1, { properties: { responseTopic: "replies/#" } }));
    expect((await raw.next("disconnect")).reasonCode).toBe(0x82);
    await raw.waitClosed();
    expect(raw.all("puback")).toEqual([]);
  });

  it("answers PINGREQ and SUBSCRIBE while its Receive Maximum window is full [MQTT-3.3.4-10, 4.9.0-3]", async () => {
    const topic = `${uid("window")}/x`;
    const sub = await subscriber(5, topic, 1, { properties: { receiveMaximum: 1 } });
    const pub = await publisher(5);
    pub.send(publish(topic, "held", 1, 1));
    pub.send(publish(topic, "waiting", 1, 2));
    await pub.until(() => pub.all("puback").length === 2, 5000, "two PUBACKs");
    await sub.next("publish"); // the window is now full: "waiting" is queued
    pub.send(publish(topic, "qos0", 0));
    sub.send({ cmd: "pingreq" });
    await sub.next("pingresp");
    expect((await sub.subscribe(`${uid("window")}/y`, 1, 2)).messageId).toBe(2);
    await sub.until(() => sub.all("publish").some((p) => p.payload.toString() === "qos0"), 5000, "the QoS 0 message");
    expect(sub.all("publish").map((p) => p.payload.toString())).toEqual(["held", "qos0"]);
  });

  it("gives each copy the Subscription Identifier of its own subscription when a shared and a plain one overlap [MQTT-3.3.4-5]", async () => {
    const topic = `${uid("copies")}/x`;
    const sub = await rawClient(5);
    await sub.connect({ clientId: uid("copies") });
    sub.send({
      cmd: "subscribe",
      messageId: 2,
      subscriptions: [{ topic: `$share/g/${topic}`, qos: 0 }],
      properties: { subscriptionIdentifier: 7 },
    });
    await sub.next("suback");
    sub.send({
      cmd: "subscribe",
      messageId: 3,
      subscriptions: [{ topic, qos: 0 }],
      properties: { subscriptionIdentifier: 8 },
    });
    await sub.next("suback");
    const pub = await publisher(5);
    pub.send(publish(topic, "twice", 1, 1));
    await sub.until(() => sub.all("publish").length === 2, 5000, "two copies");
    const ids = sub.all("publish").map((p) => [p.payload.toString(), ...[p.properties?.subscriptionIdentifier].flat()]);
    expect(ids.sort()).toEqual([
      ["twice", 7],
      ["twice", 8],
    ]);
  });

  it("sends QoS 0 PUBLISHes without a Packet Identifier or a Topic Alias to a client that announced no Topic Alias Maximum [MQTT-3.1.2-27, 2.2.1-2]", async () => {
    const topic = `${uid("alias")}/x`;
    const sub = await subscriber(5, topic, 0);
    const pub = await publisher(5);
    for (let i = 0; i < 3; i++) pub.send(publish(topic, String(i), 0));
    await sub.until(() => sub.all("publish").length === 3, 5000, "three messages");
    expect(
      sub.all("publish").map((p) => [p.topic, p.messageId, p.properties?.topicAlias, p.payload.toString()]),
    ).toEqual(["0", "1", "2"].map((payload) => [topic, undefined, undefined, payload]));
  });
});

describe("v5 protocol errors the specification states without a number", () => {
  /** Sends `packet` after CONNECT (with `fields`) and expects DISCONNECT `code`, then the close. */
  async function expectDisconnect(
    packet: OutgoingPacket,
    code: number,
    fields: Partial<IConnectPacket> = {},
  ): Promise<void> {
    const raw = await rawClient(5);
    await raw.connect({ clientId: uid("perr"), ...fields });
    raw.send(packet);
    expect((await raw.next("disconnect")).reasonCode).toBe(code);
    await raw.waitClosed();
  }

  it("disconnects with 0x94 on a PUBLISH with Topic Alias 0 [U-5.0-topic-alias-0]", async () => {
    await expectDisconnect(publish(`${uid("alias0")}/x`, "x", 0, undefined, { properties: { topicAlias: 0 } }), 0x94);
  });

  it("disconnects with 0x82 on a SUBSCRIBE with Subscription Identifier 0 [U-5.0-sub-id-0]", async () => {
    await expectDisconnect(
      {
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [{ topic: "a/b", qos: 0 }],
        properties: { subscriptionIdentifier: 0 },
      },
      0x82,
    );
  });

  it("closes the connection on a SUBSCRIBE with Retain Handling 3 [U-5.0-retain-handling-3]", async () => {
    const raw = await rawClient(5);
    await raw.connect({ clientId: uid("rh3") });
    // SUBSCRIBE id 1, no properties, "a/b" with options 0x30 (Retain Handling 3); mqtt-packet will not write it
    raw.sendBytes([0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03, 0x61, 0x2f, 0x62, 0x30]);
    await raw.waitClosed();
    expect(raw.all("suback")).toEqual([]);
    // the codec cannot parse the options, so the answer is 0x81 (Malformed Packet) rather than 0x82
    expect([0x81, 0x82]).toContain(raw.all("disconnect")[0]?.reasonCode);
  });

  it("disconnects with 0x82 on a DISCONNECT that sets a Session Expiry Interval after a CONNECT with none [U-5.0-disconnect-expiry]", async () => {
    const clientId = uid("dexp");
    await expectDisconnect({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 60 } }, 0x82, {
      clientId,
      clean: false,
    });
    const again = await rawClient(5);
    expect((await again.connect({ clientId, clean: false })).sessionPresent).toBe(false);
  });
});
