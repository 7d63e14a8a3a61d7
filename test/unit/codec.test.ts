/**
 * The codec's hot path (PUBLISH without properties, 4-byte acknowledgements) against mqtt-packet,
 * on generated packets: the same packet objects out of the same bytes, the same bytes out of the
 * same packet objects, and mqtt-packet's answer for anything the hot path does not take.
 */
import fc from "fast-check";
import mqtt from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { encodePacket, encodeSimplePublish, parsePacket, parseSimplePacket } from "../../src/protocol/codec";

const full = (bytes: Uint8Array, version: 4 | 5) => {
  const parser = mqtt.parser({ protocolVersion: version });
  const out: any[] = [];
  let error: string | undefined;
  parser.on("packet", (p) => out.push(p));
  parser.on("error", (e) => (error ??= e.message));
  parser.parse(Buffer.from(bytes));
  return error ? { error } : out[0];
};

const publishArb = fc.record({
  version: fc.constantFrom(4 as const, 5 as const),
  topic: fc.string({ minLength: 1, maxLength: 40, unit: "grapheme" }),
  payload: fc.uint8Array({ maxLength: 300 }),
  qos: fc.constantFrom(0 as const, 1 as const, 2 as const),
  retain: fc.boolean(),
  dup: fc.boolean(),
  messageId: fc.integer({ min: 1, max: 65535 }),
});

describe("codec hot path", () => {
  it("parses what mqtt-packet generates exactly as mqtt-packet does", () => {
    fc.assert(
      fc.property(publishArb, ({ version, topic, payload, qos, retain, dup, messageId }) => {
        const packet = { cmd: "publish" as const, topic, payload: Buffer.from(payload), qos, retain, dup: qos > 0 && dup, messageId: qos ? messageId : undefined };
        const bytes = new Uint8Array(mqtt.generate(packet as mqtt.IPublishPacket, { protocolVersion: version }));
        const fast = parseSimplePacket(bytes, version) as any;
        const reference = full(bytes, version);
        expect(fast).toBeDefined();
        for (const key of ["cmd", "topic", "qos", "retain", "dup", "messageId", "length"]) expect(fast[key], key).toEqual(reference[key]);
        expect(new Uint8Array(fast.payload)).toEqual(new Uint8Array(reference.payload));
      }),
      { numRuns: 400, seed: 20261125 },
    );
  });

  it("encodes byte for byte as mqtt-packet does", () => {
    fc.assert(
      fc.property(publishArb, ({ version, topic, payload, qos, retain, dup, messageId }) => {
        const packet = { cmd: "publish" as const, topic, payload: Buffer.from(payload), qos, retain, dup, messageId: qos ? messageId : undefined };
        const ours = encodeSimplePublish(packet as never, version);
        expect(ours).toBeDefined();
        expect(Buffer.from(ours!)).toEqual(mqtt.generate(packet as mqtt.IPublishPacket, { protocolVersion: version }));
      }),
      { numRuns: 400, seed: 20261125 },
    );
  });

  it("parses 4-byte acknowledgements and leaves everything unusual to mqtt-packet", () => {
    for (const cmd of ["puback", "pubrec", "pubrel", "pubcomp"] as const) {
      for (const version of [4, 5] as const) {
        const bytes = new Uint8Array(mqtt.generate({ cmd, messageId: 513 } as never, { protocolVersion: version }));
        if (bytes.length !== 4) continue; // v5 with a reason code: the full parser
        expect(parseSimplePacket(bytes, version)).toMatchObject({ cmd, messageId: 513 });
      }
    }
    const unusual: [number[], 4 | 5][] = [
      [[0x62, 0x02, 0x00, 0x01], 4], // PUBREL is fine...
      [[0x60, 0x02, 0x00, 0x01], 4], // ...but PUBREL with flags 0000 is not [MQTT-3.6.1-1]
      [[0x40, 0x02, 0x00, 0x00], 4], // packet id 0
      [[0x36, 0x07, 0x00, 0x01, 0x61, 0x00, 0x01, 0x00, 0x78], 4], // QoS 3
      [[0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00], 4], // QoS 1 with packet id 0
      [[0x30, 0x04, 0x00, 0x02, 0xc3, 0x28], 4], // ill-formed UTF-8 topic
      [[0x30, 0x02, 0x00, 0x00], 5], // empty topic (a v5 alias needs properties)
      [[0x30, 0x06, 0x00, 0x01, 0x61, 0x03, 0x23, 0x00, 0x01], 5], // properties (Topic Alias)
      [[0x30, 0x09, 0x00, 0x01, 0x61], 4], // length larger than the bytes
    ];
    for (const [bytes, version] of unusual.slice(1)) {
      expect(parseSimplePacket(new Uint8Array(bytes), version), JSON.stringify(bytes)).toBeUndefined();
      // and parsePacket answers as mqtt-packet would
      const ours = parsePacket(new Uint8Array(bytes), version);
      const reference = full(new Uint8Array(bytes), version);
      if ("error" in ours) expect(reference?.error ?? "no packet").toBeTruthy();
      else expect((ours.packet as any).cmd).toBe(reference.cmd);
    }
    expect(parseSimplePacket(new Uint8Array(unusual[0][0]), 4)).toMatchObject({ cmd: "pubrel", messageId: 1 });
  });

  it("leaves a PUBLISH with properties to mqtt-packet when encoding", () => {
    const packet = { cmd: "publish", topic: "t", payload: Buffer.from("x"), qos: 0, retain: false, dup: false, properties: { contentType: "a" } };
    expect(encodeSimplePublish(packet as never, 5)).toBeUndefined();
    expect(Buffer.from(encodePacket(packet as never, 5))).toEqual(mqtt.generate(packet as never, { protocolVersion: 5 }));
  });
});
