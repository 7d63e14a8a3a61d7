/**
 * The raw check of a client's packets (src/protocol/packet-check.ts) and the fitting of the server's
 * packets to the client's Maximum Packet Size (encodeWithin in src/protocol/codec.ts), on their own.
 */
import fc from "fast-check";
import mqtt from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { encodeWithin } from "../../src/protocol/codec";
import { packetFault } from "../../src/protocol/packet-check";

const generate = (packet: Record<string, unknown>, version: 4 | 5) =>
  new Uint8Array(mqtt.generate(packet as unknown as mqtt.Packet, { protocolVersion: version }));
const text = fc.string({ minLength: 1, maxLength: 20, unit: "grapheme" }).filter((s) => !s.includes("\u0000"));

describe("packetFault", () => {
  it("passes every well-formed packet a client sends, whatever its strings (U+FFFD included)", () => {
    fc.assert(
      fc.property(text, text, text, (a, b, c) => {
        for (const version of [4, 5] as const) {
          const v5 = version === 5;
          const userProperties = { [a]: [b, c], "\uFFFD": "\uFFFD" };
          const packets: Record<string, unknown>[] = [
            {
              cmd: "publish",
              topic: `${a}/\uFFFD`,
              payload: Buffer.from(c),
              qos: 1,
              messageId: 9,
              properties: v5
                ? {
                    contentType: b,
                    responseTopic: c,
                    correlationData: Buffer.from([0, 0xff]),
                    userProperties,
                    payloadFormatIndicator: true,
                    messageExpiryInterval: 5,
                    topicAlias: 2,
                  }
                : undefined,
            },
            { cmd: "publish", topic: a, payload: Buffer.from([0xc3, 0x28, 0]), qos: 0 },
            {
              cmd: "puback",
              messageId: 1,
              reasonCode: 0x10,
              properties: v5 ? { reasonString: b, userProperties } : undefined,
            },
            { cmd: "pubrel", messageId: 1, reasonCode: 0x92, properties: v5 ? { reasonString: c } : undefined },
            {
              cmd: "subscribe",
              messageId: 2,
              subscriptions: [
                { topic: a, qos: 1 },
                { topic: `${b}/#`, qos: 2 },
              ],
              properties: v5 ? { subscriptionIdentifier: 300, userProperties } : undefined,
            },
            {
              cmd: "unsubscribe",
              messageId: 3,
              unsubscriptions: [a, c],
              properties: v5 ? { userProperties } : undefined,
            },
            {
              cmd: "disconnect",
              reasonCode: 4,
              properties: v5 ? { sessionExpiryInterval: 10, reasonString: b, userProperties } : undefined,
            },
            { cmd: "pingreq" },
          ];
          if (v5)
            packets.push({
              cmd: "auth",
              reasonCode: 0x18,
              properties: {
                authenticationMethod: a,
                authenticationData: Buffer.from(b),
                reasonString: c,
                userProperties,
              },
            });
          for (const packet of packets)
            expect(packetFault(generate(packet, version), version), `${packet.cmd} v${version}`).toBeUndefined();
        }
      }),
      { numRuns: 100, seed: 20261207 },
    );
  });

  it("refuses a Property Length that is not in its shortest form: 0x81 [MQTT-1.5.5-1]", () => {
    // PUBLISH, topic "t", QoS 0, Property Length 0 written as 0x80 0x00, payload "x"
    const longZero = new Uint8Array([0x30, 6, 0, 1, 0x74, 0x80, 0x00, 0x78]);
    expect(packetFault(longZero, 5)?.reasonCode).toBe(0x81);
    const shortZero = new Uint8Array([0x30, 5, 0, 1, 0x74, 0x00, 0x78]);
    expect(packetFault(shortZero, 5)).toBeUndefined();
  });

  it("finds ill-formed UTF-8 and U+0000 on the bytes: 0x81 [MQTT-1.5.4-1, 1.5.4-2, 1.5.7-1] [MQTT311-1.5.3-1, 1.5.3-2]", () => {
    const mark = (packet: Record<string, unknown>, version: 4 | 5, bytes: number[]) => {
      const out = generate(packet, version);
      const at = out.findIndex((_, i) => out[i] === 0x7e && out[i + 1] === 0x7e);
      out.set(bytes, at);
      return out;
    };
    for (const bytes of [
      [0xc3, 0x28],
      [0xc0, 0xaf],
      [0xed, 0xa0],
      [0x61, 0x00],
      [0xff, 0x61],
    ]) {
      // ED A0 alone is cut short; ED A0 80 (an encoded surrogate) is checked through the e2e suite
      expect(
        packetFault(mark({ cmd: "publish", topic: "a~~", payload: Buffer.from("x"), qos: 0 }, 4, bytes), 4)?.reasonCode,
      ).toBe(0x81);
      expect(
        packetFault(mark({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "~~", qos: 0 }] }, 5, bytes), 5)
          ?.reasonCode,
      ).toBe(0x81);
      expect(
        packetFault(
          mark(
            { cmd: "puback", messageId: 1, reasonCode: 0x10, properties: { userProperties: { k: "~~" } } },
            5,
            bytes,
          ),
          5,
        )?.reasonCode,
      ).toBe(0x81);
    }
    const surrogate = generate(
      { cmd: "publish", topic: "a~~~", payload: Buffer.from("x"), qos: 0, properties: { contentType: "x" } },
      5,
    );
    surrogate.set([0xed, 0xa0, 0x80], surrogate.indexOf(0x7e));
    expect(packetFault(surrogate, 5)).toEqual({ reasonCode: 0x81, reason: "Topic Name is not well-formed UTF-8" });
  });

  it("refuses a property not valid for the packet (0x81) and one given twice (0x82)", () => {
    // PUBLISH "a" with Session Expiry Interval, a CONNECT/DISCONNECT property
    expect(
      packetFault(new Uint8Array([0x30, 0x0a, 0x00, 0x01, 0x61, 0x05, 0x11, 0, 0, 0, 1, 0x78]), 5)?.reasonCode,
    ).toBe(0x81);
    // PUBLISH "a" with Content Type "x" twice
    expect(
      packetFault(new Uint8Array([0x30, 0x0c, 0x00, 0x01, 0x61, 0x08, 0x03, 0, 1, 0x78, 0x03, 0, 1, 0x78]), 5)
        ?.reasonCode,
    ).toBe(0x82);
  });
});

describe("encodeWithin", () => {
  const disconnect = {
    cmd: "disconnect",
    reasonCode: 0x8d,
    properties: { reasonString: "keep alive timeout" },
  } as mqtt.Packet;

  it("sends a packet as it is when it fits or there is no limit", () => {
    expect(encodeWithin(disconnect, 5, undefined)).toHaveLength(25);
    expect(encodeWithin(disconnect, 5, 25)).toHaveLength(25);
  });

  it("leaves out the Reason String, then the User Properties, to fit [MQTT-3.14.2-3, 3.14.2-4, 3.2.2-19, 3.2.2-20]", () => {
    expect([...encodeWithin(disconnect, 5, 24)!]).toEqual([0xe0, 0x02, 0x8d, 0x00]);
    const withUser = {
      cmd: "puback",
      messageId: 1,
      reasonCode: 0x10,
      properties: { reasonString: "r".repeat(10), userProperties: { k: "v" } },
    } as mqtt.Packet;
    expect(encodeWithin(withUser, 5, 13)).toHaveLength(13); // without the Reason String: 5 + 1 + 7
    expect(encodeWithin(withUser, 5, 12)).toHaveLength(6); // without both
  });

  it("leaves out CONNACK properties that restate their defaults, never the others; undefined when it cannot fit", () => {
    const connack = {
      cmd: "connack",
      reasonCode: 0,
      sessionPresent: false,
      properties: {
        receiveMaximum: 10,
        serverKeepAlive: 60,
        retainAvailable: true,
        wildcardSubscriptionAvailable: true,
        subscriptionIdentifiersAvailable: true,
        sharedSubscriptionAvailable: true,
      },
    } as mqtt.Packet;
    const fitted = encodeWithin(connack, 5, 11);
    expect(fitted).toHaveLength(11);
    const parsed: any[] = [];
    const parser = mqtt.parser({ protocolVersion: 5 });
    parser.on("packet", (p) => parsed.push(p));
    parser.parse(Buffer.from(fitted!));
    expect(parsed[0].properties).toEqual({ receiveMaximum: 10, serverKeepAlive: 60 });
    expect(encodeWithin(connack, 5, 10)).toBeUndefined();
  });

  it("discards a PUBLISH whole rather than strip its properties [MQTT-3.1.2-25]", () => {
    const publish = {
      cmd: "publish",
      topic: "t",
      payload: Buffer.from("x"),
      qos: 0,
      retain: false,
      dup: false,
      properties: { userProperties: { k: "v" } },
    } as mqtt.Packet;
    const size = encodeWithin(publish, 5, undefined)!.length;
    expect(encodeWithin(publish, 5, size - 1)).toBeUndefined();
    expect(encodeWithin(publish, 5, size)).toHaveLength(size);
  });
});
