/**
 * Every UTF-8 string a client sends is judged on its bytes: ill-formed UTF-8 (overlong forms,
 * encoded surrogates, stray bytes) or U+0000 anywhere (topic, filter, property, reason string) is a
 * Malformed Packet: 5.0 DISCONNECT 0x81 then close, 3.1.1 close. A well-formed U+FFFD is an ordinary
 * character. Raw clients over real WebSockets; packets are written by mqtt-packet with an ASCII
 * marker, then the marker's bytes are replaced with the bytes under test.
 */
import mqtt, { type Packet, type UserProperties } from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import { closeAll, rawClient } from "../support/clients";
import { uid } from "../support/ids";
import { at } from "../support/elements";
import type { OutgoingPacket, RawClient } from "../support/raw-client";

afterEach(closeAll);

const MARK = "~~~";
/** Byte sequences that are not well-formed UTF-8, or hold U+0000, each 3 bytes (the marker's length). */
const BAD: [string, number[]][] = [
  ["ill-formed sequence", [0x61, 0xc3, 0x28]],
  ["overlong encoding of '/'", [0x61, 0xc0, 0xaf]],
  ["encoded surrogate U+D800", [0xed, 0xa0, 0x80]],
  ["U+0000", [0x61, 0x00, 0x62]],
];

/** A packet's Reason Code, where its kind has one. */
const reasonCode = (p: Packet) => ("reasonCode" in p ? p.reasonCode : undefined);

/** The packet's bytes with the marker replaced by `bytes`. */
function withBytes(packet: OutgoingPacket, version: 4 | 5, bytes: number[]): Uint8Array {
  const out = new Uint8Array(mqtt.generate(packet as mqtt.Packet, { protocolVersion: version }));
  const mark = [...MARK].map((c) => c.charCodeAt(0));
  const at = out.findIndex((_, i) => mark.every((b, k) => out[i + k] === b));
  if (at < 0) throw new Error("marker not found");
  out.set(bytes, at);
  return out;
}

/** A connected subscriber to `topic` (QoS 1). */
async function subscriber(version: 4 | 5, topic: string): Promise<RawClient> {
  const sub = await rawClient(version);
  sub.autoAck = true;
  await sub.connect({ clientId: uid("utf8-sub") });
  await sub.subscribe(topic, 1);
  return sub;
}

/** Sends the bytes on a fresh connection; 5.0 must get DISCONNECT 0x81 and a close, 3.1.1 a close. */
async function expectMalformed(version: 4 | 5, bytes: Uint8Array, what: string): Promise<void> {
  const raw = await rawClient(version);
  await raw.connect({ clientId: uid("utf8-bad") });
  raw.sendBytes(bytes);
  await raw.waitClosed(5000).catch(() => {
    throw new Error(`${what}: connection not closed; received ${JSON.stringify(raw.received.map((p) => p.cmd))}`);
  });
  const answers = raw.received.filter((p) => p.cmd !== "connack").map((p) => `${p.cmd} ${reasonCode(p) ?? ""}`.trim());
  expect(answers, what).toEqual(version === 5 ? ["disconnect 129"] : []);
}

/** Sends a control message after the bad ones and checks it is all the subscriber got. */
async function expectOnlyControl(version: 4 | 5, topic: string, sub: RawClient): Promise<void> {
  const pub = await rawClient(version);
  await pub.connect({ clientId: uid("utf8-ctl") });
  pub.send({ cmd: "publish", topic, payload: Buffer.from("control"), qos: 1, messageId: 1 });
  await pub.next("puback");
  await sub.until(() => sub.all("publish").some((p) => p.payload.toString() === "control"), 5000, "control message");
  expect(sub.all("publish").map((p) => p.payload.toString())).toEqual(["control"]);
}

describe("UTF-8 strings in v5 properties", () => {
  it("a PUBLISH whose User Property is ill-formed UTF-8 or holds U+0000 is malformed and not forwarded [MQTT-1.5.7-1, 1.5.4-1, 1.5.4-2]", async () => {
    const topic = `${uid("utf8-up")}/t`;
    const sub = await subscriber(5, topic);
    for (const [name, bytes] of BAD) {
      for (const userProperties of [{ key: MARK }, { [MARK]: "value" }] as UserProperties[]) {
        const packet: OutgoingPacket = {
          cmd: "publish",
          topic,
          payload: Buffer.from("bad"),
          qos: 1,
          messageId: 1,
          properties: { userProperties },
        };
        await expectMalformed(
          5,
          withBytes(packet, 5, bytes),
          `User Property ${Object.keys(userProperties)[0] === MARK ? "name" : "value"}, ${name}`,
        );
      }
    }
    await expectOnlyControl(5, topic, sub);
  });

  it("a PUBLISH whose Content Type or Response Topic is ill-formed UTF-8 is malformed and not forwarded [MQTT-3.3.2-19, 1.5.4-1, 1.5.4-2]", async () => {
    const topic = `${uid("utf8-ct")}/t`;
    const sub = await subscriber(5, topic);
    for (const [name, bytes] of BAD) {
      for (const properties of [{ contentType: MARK }, { responseTopic: `r/${MARK}` }]) {
        const packet: OutgoingPacket = {
          cmd: "publish",
          topic,
          payload: Buffer.from("bad"),
          qos: 1,
          messageId: 1,
          properties,
        };
        await expectMalformed(5, withBytes(packet, 5, bytes), `${Object.keys(properties)[0]}, ${name}`);
      }
    }
    await expectOnlyControl(5, topic, sub);
  });

  it("a Reason String or User Property that is ill-formed UTF-8 in PUBACK, SUBSCRIBE, UNSUBSCRIBE or DISCONNECT is malformed [MQTT-1.5.4-1, 1.5.7-1]", async () => {
    const [name, bytes] = at(BAD, 2);
    const packets: OutgoingPacket[] = [
      { cmd: "puback", messageId: 1, reasonCode: 0x10, properties: { reasonString: MARK } },
      { cmd: "pubrec", messageId: 1, reasonCode: 0x10, properties: { userProperties: { k: MARK } } },
      {
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [{ topic: "a/b", qos: 0 }],
        properties: { userProperties: { k: MARK } },
      },
      { cmd: "unsubscribe", messageId: 1, unsubscriptions: ["a/b"], properties: { userProperties: { [MARK]: "v" } } },
      { cmd: "disconnect", reasonCode: 0, properties: { reasonString: MARK } },
    ];
    for (const packet of packets) await expectMalformed(5, withBytes(packet, 5, bytes), `${packet.cmd}, ${name}`);
  });
});

describe.each([4, 5] as const)("UTF-8 strings in topics and filters, MQTT v%i", (version) => {
  it("a PUBLISH topic that is ill-formed UTF-8 (overlong, encoded surrogate) or holds U+0000 is malformed [MQTT-1.5.4-1, 1.5.4-2] [MQTT311-1.5.3-1, 1.5.3-2]", async () => {
    for (const [name, bytes] of BAD) {
      for (const properties of version === 5 ? [undefined, { contentType: "text/plain" }] : [undefined]) {
        const packet: OutgoingPacket = {
          cmd: "publish",
          topic: `t/${MARK}`,
          payload: Buffer.from("bad"),
          qos: 0,
          properties,
        };
        await expectMalformed(
          version,
          withBytes(packet, version, bytes),
          `topic, ${name}${properties ? ", with properties" : ""}`,
        );
      }
    }
  });

  it("a SUBSCRIBE or UNSUBSCRIBE filter that is ill-formed UTF-8 is malformed, not a refused filter [MQTT-1.5.4-1, 1.5.4-2] [MQTT311-1.5.3-1, 1.5.3-2]", async () => {
    for (const [name, bytes] of BAD) {
      const subscribe: OutgoingPacket = {
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [
          { topic: "ok/#", qos: 0 },
          { topic: `f/${MARK}`, qos: 0 },
        ],
      };
      await expectMalformed(version, withBytes(subscribe, version, bytes), `SUBSCRIBE filter, ${name}`);
      const unsubscribe: OutgoingPacket = { cmd: "unsubscribe", messageId: 1, unsubscriptions: [`f/${MARK}`] };
      await expectMalformed(version, withBytes(unsubscribe, version, bytes), `UNSUBSCRIBE filter, ${name}`);
    }
  });

  it("a topic holding a well-formed U+FFFD (EF BF BD) or a leading U+FEFF is accepted and delivered byte for byte [MQTT-1.5.4-1, 1.5.4-3, 3.3.2-20] [MQTT311-1.5.3-1]", async () => {
    // U+FEFF first, where a decoder might take it for a byte order mark and strip it
    const topic = `\uFEFF${uid("fffd")}/\uFFFD/x`;
    const sub = await subscriber(version, topic);
    const pub = await rawClient(version);
    await pub.connect({ clientId: uid("fffd-pub") });
    const sent = new Uint8Array(
      mqtt.generate(
        { cmd: "publish", topic, payload: Buffer.from("replacement character"), qos: 1, messageId: 2 } as mqtt.Packet,
        { protocolVersion: version },
      ),
    );
    expect(Buffer.from(sent).includes(Buffer.from([0x2f, 0xef, 0xbf, 0xbd, 0x2f]))).toBe(true);
    expect(Buffer.from(sent).includes(Buffer.from([0xef, 0xbb, 0xbf]))).toBe(true);
    pub.sendBytes(sent);
    expect((await pub.next("puback")).messageId).toBe(2);
    const got = await sub.next("publish");
    expect(Buffer.from(got.topic, "utf8")).toEqual(Buffer.from(topic, "utf8"));
    expect(got.payload.toString()).toBe("replacement character");
    if (version === 5) {
      // and in a property, forwarded unaltered
      pub.send({
        cmd: "publish",
        topic,
        payload: Buffer.from("p"),
        qos: 1,
        messageId: 3,
        properties: { contentType: "\uFFFD", userProperties: { "\uFFFD": "\uFFFD" } },
      });
      const withProps = await sub.next("publish");
      expect(withProps.properties).toMatchObject({ contentType: "\uFFFD", userProperties: { "\uFFFD": "\uFFFD" } });
    }
  });
});
