/**
 * Hostile input through the real gateway (fast-check, fixed seed, bounded runs): random bytes,
 * truncated packets, wrong lengths, invalid UTF-8, wildcards in PUBLISH, QoS 3, reserved flags,
 * oversized packets, packets before CONNECT, a second CONNECT, unknown properties. Each case gets
 * the spec's answer (a close, v5 with a DISCONNECT reason code), no object crashes, and a
 * well-behaved client connected all along loses nothing.
 */
import fc from "fast-check";
import mqtt from "mqtt-packet";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RawClient } from "../support/raw-client";
import { rawClient } from "../support/workerd";
import { uid } from "../support/ids";

const gen = (packet: Record<string, any>, version: 4 | 5) => [
  ...mqtt.generate(packet as mqtt.Packet, { protocolVersion: version }),
];
const connectBytes = (version: 4 | 5, clientId: string) =>
  gen({ cmd: "connect", protocolVersion: version, clientId, clean: true, keepalive: 30 }, version);
const willConnectBytes = (version: 4 | 5) =>
  gen(
    {
      cmd: "connect",
      protocolVersion: version,
      clientId: uid("will"),
      clean: true,
      keepalive: 30,
      will: { topic: "w", payload: Buffer.from("p"), qos: 1 },
    },
    version,
  );

/** What the broker may answer to hostile input, besides closing. */
const ALLOWED_ANSWERS = new Set([
  "connack",
  "disconnect",
  "suback",
  "unsuback",
  "puback",
  "pubrec",
  "pubrel",
  "pubcomp",
  "pingresp",
  "publish",
]);

let subscriber: RawClient;
let publisher: RawClient;
const topic = `${uid("fuzz")}/canary`;
let sent = 0;
let tried = 0;

/** The well-behaved pair: one more QoS 1 message through, checked at the end. */
async function canary(): Promise<void> {
  const id = ++sent;
  publisher.send({ cmd: "publish", topic, payload: Buffer.from(String(id)), qos: 1, messageId: id });
  await publisher.until(() => publisher.all("puback").some((p) => p.messageId === id), 5000, `puback ${id}`);
}

/** Sends the chunks of one hostile case on a fresh connection; returns what came back. */
async function hostile(
  version: 4 | 5,
  chunks: number[][],
  connectFirst: boolean,
): Promise<{ closed: boolean; answers: string[] }> {
  tried++;
  const client = await rawClient(version);
  if (connectFirst) {
    client.sendBytes(connectBytes(version, uid("hostile")));
    await client.next("connack", 3000).catch(() => undefined);
  }
  for (const chunk of chunks) client.sendBytes(chunk);
  await client.until(() => client.closed, 150, "close").catch(() => undefined);
  const answers = client.received.map((p) => p.cmd);
  const closed = client.closed;
  client.close();
  return { closed, answers };
}

beforeAll(async () => {
  subscriber = await rawClient(5);
  // keepalive 0: the Server Keep Alive (an hour) applies, longer than this file runs
  await subscriber.connect({
    clientId: uid("canary-sub"),
    keepalive: 0,
    clean: false,
    properties: { sessionExpiryInterval: 300 },
  });
  await subscriber.subscribe(topic, 1);
  publisher = await rawClient(5);
  await publisher.connect({ clientId: uid("canary-pub"), keepalive: 0 });
  subscriber.received.length = 0;
});

afterAll(async () => {
  // Nothing lost, nothing duplicated, in order, for the client that behaved.
  await subscriber.until(() => subscriber.all("publish").length >= sent, 10000, "every canary message");
  const payloads = subscriber.all("publish").map((p) => Number(p.payload.toString()));
  expect(payloads).toEqual(Array.from({ length: sent }, (_, i) => i + 1));
  console.log(`hostile inputs tried: ${tried}; canary messages delivered: ${payloads.length}/${sent}`);
});

const bytes = (min: number, max: number) =>
  fc.array(fc.integer({ min: 0, max: 255 }), { minLength: min, maxLength: max });
const settings = { seed: 20261125, numRuns: 50 };

describe.each([4, 5] as const)("hostile input, MQTT v%i", { timeout: 60000 }, (version) => {
  it("random bytes instead of CONNECT", async () => {
    await fc.assert(
      fc.asyncProperty(bytes(1, 64), async (junk) => {
        const { answers } = await hostile(version, [junk], false);
        expect(answers.every((a) => a === "connack")).toBe(true);
      }),
      settings,
    );
    await canary();
  });

  it("random bytes after a good CONNECT", async () => {
    await fc.assert(
      fc.asyncProperty(bytes(1, 64), async (junk) => {
        const { answers } = await hostile(version, [junk], true);
        expect(answers.every((a) => ALLOWED_ANSWERS.has(a))).toBe(true);
      }),
      settings,
    );
    await canary();
  });

  it("valid packets, truncated or with a corrupted byte", async () => {
    const packets = [
      gen({ cmd: "publish", topic: "a/b", payload: Buffer.from("hello"), qos: 1, messageId: 3 }, version),
      gen({ cmd: "subscribe", messageId: 4, subscriptions: [{ topic: "a/#", qos: 1 }] }, version),
      gen({ cmd: "unsubscribe", messageId: 5, unsubscriptions: ["a/#"] }, version),
      gen({ cmd: "pubrel", messageId: 6 }, version),
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...packets),
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        fc.boolean(),
        async (packet, at, value, truncate) => {
          const i = at % packet.length;
          const mutated = truncate ? packet.slice(0, i) : packet.map((b, k) => (k === i ? value : b));
          const { answers } = await hostile(version, [mutated], true);
          expect(answers.every((a) => ALLOWED_ANSWERS.has(a))).toBe(true);
        },
      ),
      settings,
    );
    await canary();
  });

  it("the named cases get the spec's answer [MQTT-4.13.1-1, 4.13.2-1, 3.14.4-1, 3.14.4-2, 3.14.0-1, 1.5.4-1, 3.1.2-3, 3.6.1-1, 3.10.1-1, 3.14.1-1, 3.15.1-1, 3.8.3-5, 3.1.4-1] [MQTT311-4.8.0-1, 1.5.3-1, 3.1.2-3, 3.6.1-1, 3.10.1-1, 3.8.3-4, 3.14.1-1, 3.1.4-1]", async () => {
    const v5 = version === 5;
    const cases: [string, number[][], boolean, number | undefined][] = [
      // name, chunks, CONNECT first, expected v5 DISCONNECT reason (undefined: closed, code not checked)
      ["wrong remaining length (too short)", [[0x30, 0x02, 0x00, 0x05, 0x61]], true, undefined],
      ["remaining length of 5 bytes", [[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]], true, 0x81],
      ["invalid UTF-8 in a topic", [[0x30, 0x05, 0x00, 0x02, 0xc3, 0x28, 0x78]], true, 0x81],
      [
        "wildcard in a PUBLISH topic",
        [gen({ cmd: "publish", topic: "a/#", payload: Buffer.from("x"), qos: 0 }, version)],
        true,
        0x90,
      ],
      ["QoS 3", [[0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]], true, 0x81],
      ["reserved flag bits in SUBSCRIBE", [[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00]], true, 0x81],
      ["oversized packet", [[0x30, 0xff, 0xff, 0x7f]], true, 0x95],
      [
        "PUBLISH before CONNECT",
        [gen({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 0 }, version)],
        false,
        undefined,
      ],
      ["a second CONNECT", [connectBytes(version, uid("again"))], true, 0x82],
      ["packet id 0", [[0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00]], true, 0x81],
      ["text frame bytes of an AUTH without method", [[0xf0, 0x00]], true, undefined],
    ];
    cases.push(
      [
        "CONNECT with the reserved flag set",
        [
          [
            0x10,
            0x0d,
            0x00,
            0x04,
            0x4d,
            0x51,
            0x54,
            0x54,
            version,
            0x03,
            0x00,
            0x3c,
            ...(v5 ? [0x00] : []),
            0x00,
            0x01,
            0x61,
          ].map((b, i) => (i === 1 ? (v5 ? 0x0e : 0x0d) : b)),
        ],
        false,
        undefined,
      ],
      ["PUBREL with flags 0000", [[0x60, 0x02, 0x00, 0x01]], true, 0x81],
      [
        "UNSUBSCRIBE with flags 0000",
        [
          [0xa0, 0x05, 0x00, 0x01, ...(v5 ? [0x00] : []), 0x00, 0x01, 0x61].map((b, i) =>
            i === 1 ? (v5 ? 0x06 : 0x05) : b,
          ),
        ],
        true,
        0x81,
      ],
      ["DISCONNECT with flags 0001", [[0xe1, 0x00]], true, 0x81],
      // Will QoS 3: malformed, and only the raw CONNECT check sees it (mqtt-packet accepts it) [MQTT-3.1.4-1] [MQTT311-3.1.4-1]
      [
        "CONNECT with Will QoS 3",
        [willConnectBytes(version).map((b, i) => (i === 9 ? b | 0x18 : b))],
        false,
        undefined,
      ],
      // refused with a CONNACK (0x85 / 0x02), then closed [MQTT-4.13.2-1]
      ["a client id over 256 bytes", [connectBytes(version, "x".repeat(257))], false, undefined],
      [
        "SUBSCRIBE with reserved option bits",
        [[0x82, v5 ? 0x07 : 0x06, 0x00, 0x01, ...(v5 ? [0x00] : []), 0x00, 0x01, 0x61, 0xc0]],
        true,
        0x81,
      ],
    );
    if (v5) {
      cases.push(["AUTH with flags 0001", [[0xf1, 0x00]], true, 0x81]);
      // PUBLISH with an unknown property identifier 0x7F
      cases.push(["unknown property", [[0x30, 0x07, 0x00, 0x01, 0x61, 0x02, 0x7f, 0x00, 0x78]], true, 0x81]);
    }
    for (const [name, chunks, connectFirst, reason] of cases) {
      const client = await rawClient(version);
      tried++;
      if (connectFirst) {
        client.sendBytes(connectBytes(version, uid("named")));
        await client.next("connack");
      }
      for (const chunk of chunks) client.sendBytes(chunk);
      await client.waitClosed(3000).catch(() => {
        throw new Error(`${name}: connection was not closed`);
      });
      if (v5 && reason !== undefined && connectFirst) {
        expect(client.all("disconnect")[0]?.reasonCode, name).toBe(reason);
      }
      const answers = client.received.map((p) => p.cmd);
      // [MQTT-3.14.4-1] nothing follows a DISCONNECT on the connection
      const at = answers.indexOf("disconnect");
      if (at >= 0) expect(answers.slice(at), name).toEqual(["disconnect"]);
      // [MQTT-3.14.0-1] no DISCONNECT before a CONNACK below 0x80
      if (!connectFirst) expect(answers, name).not.toContain("disconnect");
    }
    await canary();
  });

  it("a client id used for hostile input still works afterwards (its object did not crash)", async () => {
    const clientId = uid("victim");
    const bad = await rawClient(version);
    bad.sendBytes(connectBytes(version, clientId));
    await bad.next("connack");
    bad.sendBytes([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]);
    await bad.waitClosed();
    const good = await rawClient(version);
    expect((await good.connect({ clientId })).cmd).toBe("connack");
    expect((await good.subscribe("still/works", 1)).granted).toEqual([1]);
    good.close();
    await good.waitClosed();
  });
});
