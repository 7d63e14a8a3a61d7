/**
 * The codec's hot path (PUBLISH without properties, 4-byte acknowledgements) against mqtt-packet,
 * on generated packets: the same packet objects out of the same bytes, the same bytes out of the
 * same packet objects, and mqtt-packet's answer for anything the hot path does not take.
 */
import fc from "fast-check";
import mqtt from "mqtt-packet";
import { describe, expect, it } from "vitest";
import {
  encodePacket,
  encodeSimpleAck,
  encodeSimplePublish,
  payloadInPublish,
  utf8Length,
  parsePacket,
  parseSimplePacket,
} from "../../src/protocol/codec";
import { connectWithWill, ORDERED, publishWith } from "../support/user-properties";
import { at } from "../support/elements";

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
  it("writes two-byte numbers as it goes, without mqtt-packet's cache of all 65,536", () => {
    // The cache is ~11 MB and 65,536 objects per isolate (src/protocol/codec.ts says why not).
    expect(mqtt.writeToStream.cacheNumbers).toBe(false);
    const suback = encodePacket({ cmd: "suback", messageId: 0x1234, granted: [1] }, 4);
    expect([...suback]).toEqual([0x90, 3, 0x12, 0x34, 1]);
  });

  it("parses what mqtt-packet generates exactly as mqtt-packet does", () => {
    fc.assert(
      fc.property(publishArb, ({ version, topic, payload, qos, retain, dup, messageId }) => {
        const packet = {
          cmd: "publish" as const,
          topic,
          payload: Buffer.from(payload),
          qos,
          retain,
          dup: qos > 0 && dup,
          messageId: qos ? messageId : undefined,
        };
        const bytes = new Uint8Array(mqtt.generate(packet as mqtt.IPublishPacket, { protocolVersion: version }));
        const fast = parseSimplePacket(bytes, version) as any;
        const reference = full(bytes, version);
        expect(fast).toBeDefined();
        for (const key of ["cmd", "topic", "qos", "retain", "dup", "messageId", "length"])
          expect(fast[key], key).toEqual(reference[key]);
        expect(new Uint8Array(fast.payload)).toEqual(new Uint8Array(reference.payload));
      }),
      { numRuns: 400, seed: 20261125 },
    );
  });

  it("encodes byte for byte as mqtt-packet does", () => {
    fc.assert(
      fc.property(publishArb, ({ version, topic, payload, qos, retain, dup, messageId }) => {
        const packet = {
          cmd: "publish" as const,
          topic,
          payload: Buffer.from(payload),
          qos,
          retain,
          dup,
          messageId: qos ? messageId : undefined,
        };
        const ours = encodeSimplePublish(packet as never, version);
        expect(ours).toBeDefined();
        expect(Buffer.from(ours!)).toEqual(mqtt.generate(packet as mqtt.IPublishPacket, { protocolVersion: version }));
      }),
      { numRuns: 400, seed: 20261125 },
    );
  });

  it("sends a payload from payloadInPublish as the 3.1.1 QoS 0 PUBLISH around it, and only that packet", () => {
    fc.assert(
      fc.property(publishArb, fc.string({ minLength: 1, maxLength: 20 }), (m, otherTopic) => {
        const payload = payloadInPublish(m.topic, m.payload);
        expect(payload).toEqual(m.payload);
        // As an RPC carries it: a structured clone keeps the view into its whole buffer.
        const carried = structuredClone(payload);
        const view = (p: Uint8Array) => Buffer.from(p.buffer, p.byteOffset, p.byteLength);
        const encode = (fields: Partial<typeof m>) => {
          const f = { ...m, ...fields };
          const packet = {
            cmd: "publish" as const,
            topic: f.topic,
            payload: view(carried),
            qos: f.qos,
            retain: f.retain,
            dup: f.dup,
            messageId: f.qos ? f.messageId : undefined,
          };
          const ours = encodeSimplePublish(packet as never, f.version)!;
          const theirs = mqtt.generate({ ...packet, payload: Buffer.from(m.payload) } as mqtt.IPublishPacket, {
            protocolVersion: f.version,
          });
          expect(Buffer.from(ours)).toEqual(theirs);
          return ours;
        };
        // The packet it was made for: the carried buffer itself, no copy.
        expect(encode({ version: 4, qos: 0, retain: false, dup: false }).buffer).toBe(carried.buffer);
        // Anything else is encoded: other flags, v5, or a copy of the message under another topic.
        for (const other of [
          { version: 5 as const, qos: 0 as const, retain: false, dup: false },
          { version: 4 as const, qos: 1 as const, retain: false, dup: false },
          { version: 4 as const, qos: 0 as const, retain: true, dup: false },
          { version: 4 as const, qos: 0 as const, retain: false, dup: false, topic: otherTopic },
        ]) {
          if (other.topic === m.topic) continue;
          expect(encode(other).buffer).not.toBe(carried.buffer);
        }
      }),
      { numRuns: 300, seed: 20261201 },
    );
    // A copy under a topic of the same length: compared byte for byte, not by length.
    const payload = payloadInPublish("a/b", new Uint8Array([1, 2, 3]));
    const copy = { cmd: "publish" as const, topic: "a/c", payload: Buffer.from(payload.buffer, payload.byteOffset, 3) };
    expect(Buffer.from(encodeSimplePublish({ ...copy, qos: 0, retain: false, dup: false }, 4)!)).toEqual(
      mqtt.generate({ ...copy, qos: 0, retain: false, dup: false }, { protocolVersion: 4 }),
    );
  });

  it("counts a string's UTF-8 bytes as TextEncoder writes them, lone surrogates included", () => {
    const encoder = new TextEncoder();
    for (const s of ["", "a/b", "é", "€", "𐀀", "a\ud800", "\udc00b", "\ud800\ud800\udc00"])
      expect(utf8Length(s), JSON.stringify(s)).toBe(encoder.encode(s).length);
    fc.assert(
      fc.property(fc.string({ maxLength: 60, unit: "binary" }), (s) => utf8Length(s) === encoder.encode(s).length),
      { numRuns: 1000, seed: 20261201 },
    );
  });

  it("encodes 4-byte acknowledgements byte for byte as mqtt-packet does, and leaves the others to it", () => {
    const cmds = ["puback", "pubrec", "pubrel", "pubcomp"] as const;
    fc.assert(
      fc.property(
        fc.constantFrom(...cmds),
        fc.constantFrom(4 as const, 5 as const),
        fc.integer({ min: 1, max: 65535 }),
        fc.constantFrom(undefined, 0, 0x10, 0x80, 0x92),
        fc.boolean(),
        (cmd, version, messageId, reasonCode, withProperty) => {
          const packet = {
            cmd,
            messageId,
            ...(reasonCode === undefined ? {} : { reasonCode }),
            ...(withProperty ? { properties: { reasonString: "r" } } : {}),
          };
          const ours = encodeSimpleAck(packet as never, version);
          const theirs = mqtt.generate(packet as never, { protocolVersion: version });
          // 3.1.1 has no reason code or properties: always the 4-byte form
          const short = version === 4 || (reasonCode === 0 && !withProperty);
          expect(ours !== undefined).toBe(short);
          if (ours) expect(Buffer.from(ours)).toEqual(theirs);
          expect(Buffer.from(encodePacket(packet as never, version))).toEqual(theirs);
        },
      ),
      { numRuns: 400, seed: 20261201 },
    );
    // a packet id mqtt-packet refuses is left to it, to refuse
    expect(encodeSimpleAck({ cmd: "puback", messageId: 0, reasonCode: 0 }, 5)).toBeUndefined();
    expect(encodeSimpleAck({ cmd: "puback", messageId: 65536, reasonCode: 0 }, 5)).toBeUndefined();
  });

  it("parses 4-byte acknowledgements and leaves everything unusual to mqtt-packet", () => {
    for (const cmd of ["puback", "pubrec", "pubrel", "pubcomp"] as const) {
      for (const version of [4, 5] as const) {
        const bytes = new Uint8Array(mqtt.generate({ cmd, messageId: 513 } as never, { protocolVersion: version }));
        if (bytes.length !== 4) continue; // v5 with a reason code: the full parser
        expect(parseSimplePacket(bytes, version)).toMatchObject({ cmd, messageId: 513 });
      }
    }
    // Each unusual packet with what parsePacket must answer beside mqtt-packet: the same packet, the
    // same refusal, or (`oursRefuses`) a refusal where mqtt-packet is lenient, with the reason.
    const unusual: { bytes: number[]; version: 4 | 5; oursRefuses?: string }[] = [
      { bytes: [0x62, 0x02, 0x00, 0x01], version: 4 }, // PUBREL is fine...
      { bytes: [0x60, 0x02, 0x00, 0x01], version: 4 }, // ...but PUBREL with flags 0000 is not [MQTT-3.6.1-1]
      { bytes: [0x40, 0x02, 0x00, 0x00], version: 4 }, // packet id 0 (a protocol error found after parsing)
      { bytes: [0x36, 0x07, 0x00, 0x01, 0x61, 0x00, 0x01, 0x00, 0x78], version: 4 }, // QoS 3
      { bytes: [0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00], version: 4 }, // QoS 1 with packet id 0 (likewise)
      {
        bytes: [0x30, 0x04, 0x00, 0x02, 0xc3, 0x28],
        version: 4,
        oursRefuses:
          "a topic that is not well-formed UTF-8 is malformed [MQTT-1.5.4-1]; mqtt-packet decodes it with replacement characters",
      },
      { bytes: [0x30, 0x03, 0x00, 0x00, 0x00], version: 5 }, // empty topic, no properties (the session refuses it: a v5 alias needs properties)
      {
        bytes: [0x30, 0x02, 0x00, 0x00],
        version: 5,
        oursRefuses: "a v5 PUBLISH without its Property Length is malformed [3.3.2.3]; mqtt-packet reads no properties",
      },
      { bytes: [0x30, 0x07, 0x00, 0x01, 0x61, 0x03, 0x23, 0x00, 0x01], version: 5 }, // properties (Topic Alias)
      {
        bytes: [0x30, 0x06, 0x00, 0x01, 0x61, 0x03, 0x23, 0x00, 0x01],
        version: 5,
        oursRefuses: "a Remaining Length shorter than the packet's fields is malformed; mqtt-packet reads past it",
      },
      {
        bytes: [0x30, 0x09, 0x00, 0x01, 0x61],
        version: 4,
        oursRefuses:
          "the framer hands over whole packets, so a length larger than the bytes is malformed; mqtt-packet waits for more",
      },
    ];
    for (const { bytes, version, oursRefuses } of unusual.slice(1)) {
      const name = JSON.stringify(bytes);
      expect(parseSimplePacket(new Uint8Array(bytes), version), name).toBeUndefined();
      // and parsePacket answers as mqtt-packet does: both refuse, or both accept with the same packet
      const ours = parsePacket(new Uint8Array(bytes), version);
      const reference = full(new Uint8Array(bytes), version);
      if (oursRefuses) {
        expect(ours, `${name}: ${oursRefuses}`).toHaveProperty("error");
        expect(reference?.error, `${name}: mqtt-packet is lenient here`).toBeUndefined();
      } else if (reference?.error) {
        expect(ours, `${name}: mqtt-packet refuses (${reference.error})`).toHaveProperty("error");
      } else {
        if ("error" in ours) throw new Error(`${name}: mqtt-packet accepts, ours refuses: ${ours.error}`);
        const packet = ours.packet as unknown as Record<string, unknown>;
        expect(Object.keys(packet).length, name).toBeGreaterThan(1);
        expect(reference, name).toMatchObject(packet); // every field we read, as mqtt-packet reads it
      }
    }
    expect(parseSimplePacket(new Uint8Array(at(unusual, 0).bytes), 4)).toMatchObject({ cmd: "pubrel", messageId: 1 });
  });

  it("leaves a PUBLISH with properties to mqtt-packet when encoding", () => {
    const packet = {
      cmd: "publish",
      topic: "t",
      payload: Buffer.from("x"),
      qos: 0,
      retain: false,
      dup: false,
      properties: { contentType: "a" },
    };
    expect(encodeSimplePublish(packet as never, 5)).toBeUndefined();
    expect(Buffer.from(encodePacket(packet as never, 5))).toEqual(
      mqtt.generate(packet as never, { protocolVersion: 5 }),
    );
  });
});

describe("User Properties keep the wire order", () => {
  const pairArb = fc.array(fc.tuple(fc.constantFrom("a", "b", "10", "é", ""), fc.string({ maxLength: 8 })), {
    minLength: 1,
    maxLength: 8,
  });

  it("are read from the bytes as pairs in order, repeats and integer-like names included", () => {
    const parsed = parsePacket(
      publishWith({ topic: "t", payload: "p", qos: 1, messageId: 9, userProperties: ORDERED }),
      5,
    );
    expect("packet" in parsed && (parsed.packet as any).properties.userProperties).toEqual(ORDERED);
    const connect = parsePacket(
      connectWithWill({ clientId: "c", willTopic: "w", willPayload: "x", userProperties: ORDERED }),
      undefined,
    );
    expect("packet" in connect && (connect.packet as any).will.properties.userProperties).toEqual(ORDERED);
  });

  it("are written in the order given, and read back the same, beside other properties", () => {
    fc.assert(
      fc.property(pairArb, fc.constantFrom(0, 1, 2), fc.boolean(), (pairs, qos, alias) => {
        const properties: Record<string, unknown> = {
          contentType: "c",
          userProperties: pairs,
          ...(alias ? { topicAlias: 3 } : {}),
        };
        const packet = {
          cmd: "publish",
          topic: "a/b",
          payload: Buffer.from("xyz"),
          qos,
          retain: false,
          dup: false,
          messageId: qos ? 5 : undefined,
          properties,
        };
        const bytes = encodePacket(packet as never, 5);
        // the whole packet is what mqtt-packet reads too (lengths right), with the same values
        const reference = full(bytes, 5);
        expect(reference.topic).toBe("a/b");
        expect(reference.payload.toString()).toBe("xyz");
        expect(reference.properties.contentType).toBe("c");
        const parsed = parsePacket(bytes, 5);
        expect("packet" in parsed && (parsed.packet as any).properties.userProperties).toEqual(pairs);
      }),
      { numRuns: 300, seed: 20261125 },
    );
  });

  it("are written byte for byte as mqtt-packet writes the same order", () => {
    const object = { "10": "x", b: ["1", "3"], a: ["2", "4"] };
    const packet = {
      cmd: "publish",
      topic: "t",
      payload: Buffer.from("p"),
      qos: 0,
      retain: false,
      dup: false,
      properties: { contentType: "c", userProperties: object },
    };
    const pairs = [
      ["10", "x"],
      ["b", "1"],
      ["b", "3"],
      ["a", "2"],
      ["a", "4"],
    ];
    const ours = encodePacket({ ...packet, properties: { contentType: "c", userProperties: pairs } } as never, 5);
    expect(Buffer.from(ours)).toEqual(mqtt.generate(packet as never, { protocolVersion: 5 }));
  });
});
