/**
 * Inbound QoS 2 exactly once when the publisher's connection drops at each step of the flow and the
 * client resends on its next connection with the same packet id [MQTT-4.3.3-10] [MQTT311-4.3.3-2].
 * Absence of a second copy is checked after a later message has arrived.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { IConnectPacket } from "mqtt-packet";
import type { OutgoingPublish, PacketOf, RawClient } from "../support/raw-client";
import { E2E_VARS, startBroker } from "./global-setup";
import { brokerUrl, rawClient } from "../support/clients";
import { uid } from "../support/ids";

const persistent = (version: 4 | 5) =>
  version === 5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false };

const opened: RawClient[] = [];
afterEach(() => opened.splice(0).forEach((c) => c.close()));

/** A raw client connected with `fields`, closed after the test. */
async function client(
  version: 4 | 5,
  fields: Partial<IConnectPacket>,
  url = brokerUrl(),
): Promise<{ c: RawClient; connack: PacketOf<"connack"> }> {
  const c = await rawClient(version, "mqtt", url);
  opened.push(c);
  return { c, connack: await c.connect(fields) };
}

const text = (p: PacketOf<"publish">) => Buffer.from(p.payload).toString();
const copies = (c: RawClient, payload: string) => c.all("publish").filter((p) => text(p) === payload).length;
const arrived = (c: RawClient, payload: string) => c.until(() => copies(c, payload) > 0, 10000, `"${payload}"`);

/** Runs a whole inbound QoS 2 flow from `c` and resolves with its PUBCOMP. */
async function publishQos2(
  c: RawClient,
  topic: string,
  messageId: number,
  payload: string,
): Promise<PacketOf<"pubcomp">> {
  c.send({ cmd: "publish", topic, payload: Buffer.from(payload), qos: 2, messageId });
  await c.next("pubrec");
  c.send({ cmd: "pubrel", messageId });
  return c.next("pubcomp");
}

/** A QoS 2 subscriber finishes the next `n` messages it is sent (PUBREC, then PUBCOMP). */
async function finishQos2(c: RawClient, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const p = await c.next("publish", 10000);
    c.send({ cmd: "pubrec", messageId: p.messageId });
    await c.next("pubrel", 10000);
    c.send({ cmd: "pubcomp", messageId: p.messageId });
  }
}

describe("a drop after the PUBLISH reached the broker, before PUBREC", () => {
  // The routing is held open until the publisher has dropped and come back: a QoS 1 subscriber that
  // does not acknowledge holds the publisher's PUBREC for ACK_WAIT_MS (10 s on this broker).
  let held: Awaited<ReturnType<typeof startBroker>>;
  beforeAll(async () => {
    held = await startBroker({ ...E2E_VARS, ACK_WAIT_MS: "10000" });
  });
  afterAll(async () => held?.stop());

  // More QoS 2 messages than a subscriber session remembers finished (64) pass between the first
  // copy and the resend, so only the publisher's session can tell the resend is a copy.
  const FILLERS = 70;

  describe.each([4, 5] as const)("MQTT v%i", (version) => {
    it("the resend (DUP, same packet id) after reconnecting is answered PUBREC and reaches QoS 0, 1 and 2 subscribers once, even after 70 other QoS 2 messages [MQTT-4.3.3-8, 4.3.3-10] [MQTT311-4.3.3-2]", async () => {
      const url = `${held.base.replace("http", "ws")}/mqtt`;
      const topic = `${uid("q2drop")}/x`;
      const fillTopic = `${uid("q2fill")}/x`;
      const { c: sub0 } = await client(version, { clientId: uid("s0") }, url);
      await sub0.subscribe(topic, 0);
      const { c: gate } = await client(version, { clientId: uid("s1") }, url);
      await gate.subscribe(topic, 1);
      const { c: sub2 } = await client(version, { clientId: uid("s2") }, url);
      await sub2.subscribe(topic, 2, 1);
      await sub2.subscribe(fillTopic, 2, 2);

      const pubId = uid("pub");
      const { c: pub } = await client(version, { clientId: pubId, ...persistent(version) }, url);
      const first: OutgoingPublish = { cmd: "publish", topic, payload: Buffer.from("first"), qos: 2, messageId: 7 };
      pub.send(first);
      const gated = await gate.next("publish"); // routed; the publisher's PUBREC waits for this PUBACK
      await arrived(sub0, "first");
      pub.close(); // the connection drops before PUBREC
      expect(pub.all("pubrec")).toHaveLength(0);

      const { c: pub2, connack } = await client(version, { clientId: pubId, ...persistent(version) }, url);
      expect(connack.sessionPresent).toBe(true);
      // The routing completes now, after the connection that sent the message has gone.
      gate.send({ cmd: "puback", messageId: gated.messageId });
      gate.autoAck = true;
      await finishQos2(sub2, 1);
      const filler = (await client(version, { clientId: uid("fill") }, url)).c;
      for (let i = 1; i <= FILLERS; i++) await publishQos2(filler, fillTopic, i, `fill-${i}`);
      await finishQos2(sub2, FILLERS);

      // [MQTT-4.3.3-10] the client resends on its new connection: acknowledged, not delivered onward again
      pub2.send({ ...first, dup: true });
      expect((await pub2.next("pubrec")).messageId).toBe(7);
      pub2.send({ cmd: "pubrel", messageId: 7 });
      expect((await pub2.next("pubcomp")).messageId).toBe(7);

      sub2.autoAck = true; // the control message reaches it at QoS 1
      pub2.send({ cmd: "publish", topic, payload: Buffer.from("control"), qos: 1, messageId: 8 });
      await pub2.next("puback");
      for (const sub of [sub0, gate, sub2]) await arrived(sub, "control");
      expect([copies(sub0, "first"), copies(gate, "first"), copies(sub2, "first")]).toEqual([1, 1, 1]);
    });
  });
});

describe.each([4, 5] as const)("a drop later in the inbound QoS 2 flow, MQTT v%i", (version) => {
  /** A QoS 0 subscriber to a fresh topic, and a publisher with a persistent session. */
  async function setUp() {
    const topic = `${uid("q2late")}/x`;
    const { c: sub } = await client(version, { clientId: uid("s0") });
    await sub.subscribe(topic, 0);
    const pubId = uid("pub");
    const { c: pub } = await client(version, { clientId: pubId, ...persistent(version) });
    const reconnect = async () => {
      const { c, connack } = await client(version, { clientId: pubId, ...persistent(version) });
      expect(connack.sessionPresent).toBe(true);
      return c;
    };
    const first: OutgoingPublish = { cmd: "publish", topic, payload: Buffer.from("first"), qos: 2, messageId: 7 };
    return { topic, sub, pub, reconnect, first };
  }

  it("after PUBREC, before PUBREL: the resent PUBLISH gets PUBREC and no second copy; PUBREL gets PUBCOMP; then the id is new again [MQTT-4.3.3-10, 4.3.3-11, 4.3.3-12] [MQTT311-4.3.3-2]", async () => {
    const { topic, sub, pub, reconnect, first } = await setUp();
    pub.send(first);
    await pub.next("pubrec");
    pub.close();

    const pub2 = await reconnect();
    pub2.send({ ...first, dup: true });
    const pubrec = await pub2.next("pubrec");
    expect(pubrec.messageId).toBe(7);
    if (version === 5) expect(pubrec.reasonCode ?? 0).toBe(0);
    pub2.send({ cmd: "pubrel", messageId: 7 });
    const pubcomp = await pub2.next("pubcomp");
    expect(pubcomp.messageId).toBe(7);
    if (version === 5) expect(pubcomp.reasonCode ?? 0).toBe(0);

    // [MQTT-4.3.3-12] after PUBCOMP, a PUBLISH with that packet id is a new message
    await publishQos2(pub2, topic, 7, "second");
    await arrived(sub, "second");
    expect(copies(sub, "first")).toBe(1);
  });

  it("after PUBREL, before PUBCOMP: the resent PUBREL gets PUBCOMP and nothing is delivered again [MQTT-4.3.3-11, 4.3.3-12] [MQTT311-4.3.3-2]", async () => {
    const { topic, sub, pub, reconnect, first } = await setUp();
    pub.send(first);
    await pub.next("pubrec");
    pub.send({ cmd: "pubrel", messageId: 7 });
    pub.close(); // whether or not the PUBREL was handled, its PUBCOMP never reached the client

    const pub2 = await reconnect();
    pub2.send({ cmd: "pubrel", messageId: 7 });
    const pubcomp = await pub2.next("pubcomp");
    expect(pubcomp.messageId).toBe(7);
    // 5.0: success whether the first PUBREL was handled (a released id is remembered) or not
    if (version === 5) expect(pubcomp.reasonCode ?? 0).toBe(0);

    await publishQos2(pub2, topic, 7, "second");
    await arrived(sub, "second");
    expect(copies(sub, "first")).toBe(1);
  });

  it("after PUBCOMP: a PUBREL resent on a new connection gets PUBCOMP 0x00 again, one for an id never used 0x92 [MQTT-4.3.3-11, 4.4.0-1] [MQTT311-4.3.3-2]", async () => {
    const { topic, sub, pub, reconnect, first } = await setUp();
    pub.send(first);
    await pub.next("pubrec");
    pub.send({ cmd: "pubrel", messageId: 7 });
    expect((await pub.next("pubcomp")).reasonCode ?? 0).toBe(0);
    pub.close(); // as if that PUBCOMP had been lost with the connection: the client resends its PUBREL

    const pub2 = await reconnect();
    pub2.send({ cmd: "pubrel", messageId: 7 });
    const again = await pub2.next("pubcomp");
    expect(again.messageId).toBe(7);
    pub2.send({ cmd: "pubrel", messageId: 99 });
    const unknown = await pub2.next("pubcomp");
    expect(unknown.messageId).toBe(99);
    // 5.0: the resent PUBREL is of a flow this session completed; 99 awaited nothing (3.1.1 has no code)
    if (version === 5) expect([again.reasonCode ?? 0, unknown.reasonCode]).toEqual([0, 0x92]);

    // [MQTT-4.3.3-12] the remembered id is still new to a PUBLISH, and nothing was delivered twice
    await publishQos2(pub2, topic, 7, "second");
    await arrived(sub, "second");
    expect(copies(sub, "first")).toBe(1);
  });
});
