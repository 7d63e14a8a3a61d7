/**
 * Security review #11, protocol validation: repeated QoS 2 PUBLISHes and CONNECTs the broker used to
 * accept. Raw clients over real WebSockets into the Worker under wrangler dev.
 */
import mqtt from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { brokerUrl, closeAll, connect, rawClient, recorder } from "../support/clients";
import { uid } from "../support/ids";
import type { RawClient } from "../support/raw-client";

afterEach(closeAll);

const enc = new TextEncoder();
/** A length-prefixed MQTT string or binary field. */
const field = (value: string | number[]): number[] => {
  const bytes = typeof value === "string" ? [...enc.encode(value)] : value;
  return [bytes.length >> 8, bytes.length & 255, ...bytes];
};

/**
 * A CONNECT built byte by byte (mqtt-packet would refuse to write most of these): `props` is the v5
 * property block's content, `payload` the fields after it (client id first).
 */
function connectBytes(version: 4 | 5, flags: number, payload: number[], props: number[] = []): Uint8Array {
  const body = [
    ...field("MQTT"),
    version,
    flags,
    0,
    60,
    ...(version === 5 ? [props.length, ...props] : []),
    ...payload,
  ];
  if (body.length > 127) throw new Error("test CONNECT too long for a one-byte Remaining Length");
  return new Uint8Array([0x10, body.length, ...body]);
}

const CLEAN = 0x02;
const WILL = 0x04;
const PASSWORD = 0x40;
const USERNAME = 0x80;

/** Sends the CONNECT and resolves once the broker has closed the connection. */
async function sendConnect(version: 4 | 5, bytes: Uint8Array): Promise<RawClient> {
  const raw = await rawClient(version);
  raw.sendBytes(bytes);
  await raw.waitClosed();
  return raw;
}

/** [MQTT-3.1.4-1]: 5.0 answers CONNACK with the reason code and closes; 3.1.1 closes without CONNACK. */
async function expectRefused(version: 4 | 5, bytes: Uint8Array, reasonCode: number): Promise<void> {
  const raw = await sendConnect(version, bytes);
  const connacks = raw.all("connack");
  if (version === 5) expect(connacks.map((c) => c.reasonCode)).toEqual([reasonCode]);
  else expect(connacks).toEqual([]);
}

describe.each([4, 5] as const)("QoS 2 PUBLISH repeated before PUBREL is routed once, MQTT v%i", (version) => {
  /**
   * Publishes the same QoS 2 message (same packet id) `copies` times, by `send`, then a marker on the
   * same topic; the subscriber must see one copy, then the marker.
   */
  async function repeated(subQos: 0 | 1, send: (raw: RawClient, bytes: Uint8Array) => void) {
    const topic = `${uid("qos2dup")}/t`;
    const sub = await connect(version);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: subQos });
    const pub = await rawClient(version);
    await pub.connect({ clientId: uid("qos2dup-pub") });
    const bytes = new Uint8Array(
      mqtt.generate({ cmd: "publish", topic, payload: Buffer.from("once"), qos: 2, messageId: 7 } as mqtt.Packet, {
        protocolVersion: version,
      }),
    );
    send(pub, bytes);
    // Each copy is answered with PUBREC [MQTT-4.3.3-8]; then PUBREL ends the flow.
    await pub.until(() => pub.all("pubrec").length === 3, 5000, "three PUBRECs");
    expect(pub.all("pubrec").map((p) => p.messageId)).toEqual([7, 7, 7]);
    pub.send({ cmd: "pubrel", messageId: 7 });
    await pub.next("pubcomp");
    // The control message: published after the copies, on the same topic, so it arrives after them.
    pub.send({ cmd: "publish", topic, payload: Buffer.from("marker"), qos: 1, messageId: 8 });
    await pub.next("puback");
    await rec.waitFor(2);
    expect(rec.messages.map((m) => m.payload)).toEqual(["once", "marker"]);
  }

  it("three identical PUBLISHes in one WebSocket frame reach a subscriber once [MQTT-4.3.3-10] [MQTT311-4.3.3-2]", async () => {
    await repeated(1, (raw, bytes) => raw.sendBytes(new Uint8Array([...bytes, ...bytes, ...bytes])));
  });

  it("class: the copies in separate frames before PUBREC, to a QoS 0 subscriber, reach it once [MQTT-4.3.3-10] [MQTT311-4.3.3-2]", async () => {
    await repeated(0, (raw, bytes) => {
      for (let i = 0; i < 3; i++) raw.sendBytes(bytes);
    });
  });
});

describe.each([4, 5] as const)("CONNECT validation, MQTT v%i", (version) => {
  const v5 = version === 5;
  const noWillProps = v5 ? [0] : [];
  const will = (props = noWillProps) => [...props, ...field("will/t"), ...field("bye")];

  it("refuses Will QoS 3 [MQTT-3.1.2-12] [MQTT311-3.1.2-14]", async () => {
    await expectRefused(version, connectBytes(version, CLEAN | WILL | 0x18, [...field(uid("wq3")), ...will()]), 0x81);
  });

  it("refuses a client id that is not well-formed UTF-8 [MQTT-1.5.4-1] [MQTT311-1.5.3-1]", async () => {
    await expectRefused(version, connectBytes(version, CLEAN, field([0x63, 0xc3, 0x28, 0xff])), 0x81);
  });

  it("class: refuses a user name that is not well-formed UTF-8 [MQTT-1.5.4-1] [MQTT311-1.5.3-1]", async () => {
    await expectRefused(
      version,
      connectBytes(version, CLEAN | USERNAME, [...field(uid("un")), ...field([0xed, 0xa0, 0x80])]),
      0x81,
    );
  });

  it("class: refuses a client id containing U+0000 [MQTT-1.5.4-2] [MQTT311-1.5.3-2]", async () => {
    await expectRefused(version, connectBytes(version, CLEAN, field("a\u0000b")), 0x81);
  });

  it("class: a second CONNECT closes the connection [MQTT-3.1.0-2] [MQTT311-3.1.0-2]", async () => {
    const raw = await rawClient(version);
    expect((await raw.connect({ clientId: uid("twice") }))[v5 ? "reasonCode" : "returnCode"]).toBe(0);
    raw.send({
      cmd: "connect",
      protocolVersion: version,
      protocolId: "MQTT",
      clean: true,
      keepalive: 60,
      clientId: uid("twice"),
    });
    await raw.waitClosed();
    expect(raw.all("connack")).toHaveLength(1);
    if (v5) expect(raw.all("disconnect").map((d) => d.reasonCode)).toEqual([0x82]);
  });

  it("closes at once, without CONNACK, when the first bytes are an HTTP request, not CONNECT [MQTT-3.1.0-1] [MQTT311-3.1.0-1]", async () => {
    // Shorter than the 71 bytes that 'G' 'E' (type 4, Remaining Length 69) would frame as a packet.
    const ws = new WebSocket(brokerUrl(), "mqtt");
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    const received: Buffer[] = [];
    ws.on("message", (d: Buffer) => received.push(d));
    const started = Date.now();
    const closed = new Promise<string>((resolve) => ws.once("close", (_code, reason) => resolve(reason.toString())));
    ws.send(enc.encode("GET / HTTP/1.1\r\nHost: broker\r\n\r\n"));
    const reason = await closed;
    // The broker's CONNECT timeout is 1500 ms here: the close must come from the first byte, not it.
    expect(reason).toBe("first packet is not CONNECT");
    expect(Date.now() - started).toBeLessThan(1500);
    expect(received).toEqual([]);
  });
});

describe("CONNECT validation, MQTT v4 only", () => {
  it("refuses a password without a user name [MQTT311-3.1.2-22]", async () => {
    await expectRefused(4, connectBytes(4, CLEAN | PASSWORD, [...field(uid("pw")), ...field("secret")]), 0);
  });
});

describe("CONNECT validation, MQTT v5 properties", () => {
  const int32 = (id: number, v: number) => [id, v >>> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255];
  const int16 = (id: number, v: number) => [id, v >> 8, v & 255];
  const connectWith = (props: number[], flags = CLEAN, payloadTail: number[] = []) =>
    connectBytes(5, flags, [...field(uid("props")), ...payloadTail], props);

  it("refuses a property included twice with 0x82 (Session Expiry Interval) [MQTT-3.1.4-1] [U-5.0-props-once]", async () => {
    await expectRefused(5, connectWith([...int32(0x11, 10), ...int32(0x11, 20)]), 0x82);
  });

  it("refuses Receive Maximum 0 with 0x82 [MQTT-3.1.4-1] [U-5.0-receive-max-0]", async () => {
    await expectRefused(5, connectWith(int16(0x21, 0)), 0x82);
  });

  it("class: refuses Maximum Packet Size 0 with 0x82 [MQTT-3.1.4-1] [U-5.0-max-packet-0]", async () => {
    await expectRefused(5, connectWith(int32(0x27, 0)), 0x82);
  });

  it("class: refuses Request Problem Information 2 with 0x82 [MQTT-3.1.4-1] [U-5.0-request-flags]", async () => {
    await expectRefused(5, connectWith([0x17, 2]), 0x82);
  });

  it("class: refuses a property included twice in the will properties with 0x82 [MQTT-3.1.4-1] [U-5.0-props-once]", async () => {
    const willProps = [...int32(0x18, 0), ...int32(0x18, 5)];
    await expectRefused(
      5,
      connectWith([], CLEAN | WILL, [willProps.length, ...willProps, ...field("will/t"), ...field("bye")]),
      0x82,
    );
  });

  it("class: refuses Authentication Data without an Authentication Method with 0x82 [MQTT-3.1.4-1] [U-5.0-auth-data-no-method]", async () => {
    await expectRefused(5, connectWith([0x16, ...field("data")]), 0x82);
  });

  it("class: refuses a property that a CONNECT may not carry (Topic Alias) with 0x81 [MQTT-3.1.4-1]", async () => {
    await expectRefused(5, connectWith(int16(0x23, 1)), 0x81);
  });

  it("still accepts Topic Alias Maximum 0 and repeated User Properties", async () => {
    const pair = [0x26, ...field("k"), ...field("v")];
    const raw = await rawClient(5);
    raw.sendBytes(connectWith([...int16(0x22, 0), ...pair, ...pair]));
    expect((await raw.next("connack")).reasonCode).toBe(0);
    raw.close();
  });
});
