import type { ISubscription } from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import { closeAll, connect, rawClient, recorder } from "../support/clients";
import { uid } from "../support/ids";

afterEach(closeAll);

describe.each([4, 5] as const)("keep-alive and bad input, MQTT v%i", (version) => {
  it("answers PINGREQ at the edge [MQTT-3.12.4-1] [MQTT311-3.12.4-1]", async () => {
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid() });
    for (let i = 0; i < 3; i++) raw.send({ cmd: "pingreq" });
    await raw.until(() => raw.all("pingresp").length === 3);
    raw.close();
  });

  it("closes only the offending connection on a malformed packet; others keep working [MQTT-3.8.1-1, 2.1.3-1] [MQTT311-3.8.1-1, 2.2.2-1, 2.2.2-2]", async () => {
    const topic = `${uid("bad")}/x`;
    const good = await connect(version);
    const rec = recorder(good);
    await good.subscribeAsync(topic, { qos: 1 });
    const bad = await rawClient(version);
    await bad.connect({ clientId: uid() });
    // SUBSCRIBE with reserved flags 0000 instead of 0010 [MQTT-3.8.1-1]
    bad.sendBytes([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00]);
    await bad.waitClosed();
    const pub = await connect(version);
    await pub.publishAsync(topic, "still fine", { qos: 1 });
    expect((await rec.waitFor(1))[0].payload).toBe("still fine");
  });

  it("refuses a packet over the maximum size (v5: DISCONNECT 0x95)", async () => {
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid() });
    raw.send({ cmd: "publish", topic: "big", payload: Buffer.alloc(20000), qos: 0 }); // MAX_PACKET_SIZE is 16384 here
    if (version === 5) expect((await raw.next("disconnect")).reasonCode).toBe(0x95);
    await raw.waitClosed();
  });

  it("closes the connection on a remaining length of five bytes [MQTT-1.5.5-1, 4.13.1-1]", async () => {
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid() });
    raw.sendBytes([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]);
    await raw.waitClosed();
    // [MQTT-4.13.1-1] v5: DISCONNECT 0x81 (Malformed Packet) before the close; 3.1.1 sends no DISCONNECT
    expect(raw.all("disconnect").map((p) => p.reasonCode)).toEqual(version === 5 ? [0x81] : []);
  });

  it("reassembles a packet split across WebSocket frames and packets sharing one frame [MQTT-6.0.0-2] [MQTT311-6.0.0-2]", async () => {
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid() });
    const sub = [0x82, 0x08, 0x00, 0x09, 0x00, 0x03, 0x73, 0x2f, 0x31, 0x00]; // SUBSCRIBE id 9 "s/1" QoS 0
    const bytes = version === 5 ? [0x82, 0x09, 0x00, 0x09, 0x00, 0x00, 0x03, 0x73, 0x2f, 0x31, 0x00] : sub;
    for (const b of bytes) raw.sendBytes([b]);
    await raw.next("suback");
    raw.sendBytes([0xc0, 0x00, 0xc0, 0x00]);
    await raw.until(() => raw.all("pingresp").length === 2);
    raw.close();
  });
});

describe.each([4, 5] as const)("topic limits, MQTT v%i", (version) => {
  it("refuses a filter longer than MAX_TOPIC_LENGTH in SUBACK and a long topic with a close [MQTT-4.7.3-3]", async () => {
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid() });
    const long = "x/".repeat(600) + "y"; // 1201 bytes > 1024
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: long, qos: 0 }] });
    expect((await raw.next("suback")).granted).toEqual([version === 5 ? 0x8f : 0x80]);
    raw.send({ cmd: "publish", topic: long, payload: Buffer.from("x"), qos: 0 });
    if (version === 5) expect((await raw.next("disconnect")).reasonCode).toBe(0x90);
    await raw.waitClosed();
  });

  it("refuses subscriptions beyond MAX_SUBSCRIPTIONS (v5 0x97, 3.1.1 0x80)", async () => {
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid() });
    const subscriptions: ISubscription[] = Array.from({ length: 21 }, (_, i) => ({ topic: `many/${i}`, qos: 0 })); // limit is 20 here
    raw.send({ cmd: "subscribe", messageId: 2, subscriptions });
    const granted = (await raw.next("suback")).granted;
    expect(granted.slice(0, 20)).toEqual(Array(20).fill(0));
    expect(granted[20]).toBe(version === 5 ? 0x97 : 0x80);
  });
});
