/**
 * User Properties keep their order and their repeated names through every hop: live delivery, the
 * retained store, a persistent session's queue, the will and HTTP publish. Sent and read as raw
 * bytes (test/support/user-properties.ts): an object form, MQTT.js's included, cannot show order.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { RawClient } from "../support/raw-client";
import { connectWithWill, ORDERED, publishesIn, publishWith } from "../support/user-properties";
import { E2E_API_TOKEN } from "./global-setup";
import { brokerHttp, rawClient } from "../support/clients";
import { uid } from "../support/ids";
import { atLeast } from "../support/elements";

const raws: RawClient[] = [];
afterEach(() => raws.splice(0).forEach((r) => r.close()));

async function client(fields: Record<string, unknown> = {}): Promise<RawClient> {
  const raw = await rawClient(5);
  raws.push(raw);
  raw.autoAck = true;
  const connack = await raw.connect({ clientId: uid("up"), ...fields });
  expect(connack.reasonCode).toBe(0);
  return raw;
}

/** A subscriber at QoS 1 that reads what it receives from the bytes. */
async function subscriber(topic: string, fields: Record<string, unknown> = {}): Promise<RawClient> {
  const raw = await client(fields);
  await raw.subscribe(topic, 1);
  return raw;
}

async function received<N extends number = 1>(raw: RawClient, n = 1 as N) {
  await raw.until(() => publishesIn(raw.inbound).length >= n, 5000, `${n} PUBLISH`);
  return atLeast(publishesIn(raw.inbound), n, "PUBLISH packets");
}

async function publishOrdered(topic: string, retain = false): Promise<void> {
  const pub = await client();
  pub.sendBytes(publishWith({ topic, payload: "p", qos: 1, messageId: 7, retain, userProperties: ORDERED }));
  expect((await pub.next("puback")).reasonCode ?? 0).toBeLessThan(0x80);
}

describe("User Property order, b=1 a=2 b=3 10=x a=4, end to end", () => {
  it("a PUBLISH is forwarded with all its User Properties, in order [MQTT-3.3.2-17, 3.3.2-18]", async () => {
    const topic = `${uid("up")}/live`;
    const sub = await subscriber(topic);
    await publishOrdered(topic);
    const [m] = await received(sub);
    expect(m.userProperties).toEqual(ORDERED);
  });

  it("a retained message keeps its User Properties in order [MQTT-3.3.2-18]", async () => {
    const topic = `${uid("up")}/retained`;
    await publishOrdered(topic, true);
    const sub = await subscriber(topic);
    const [m] = await received(sub);
    expect(m.userProperties).toEqual(ORDERED);
  });

  it("a message queued for an offline session keeps its User Properties in order [MQTT-3.3.2-18]", async () => {
    const topic = `${uid("up")}/queued`;
    const clientId = uid("up-offline");
    const persistent = { clientId, clean: false, properties: { sessionExpiryInterval: 300 } };
    const first = await subscriber(topic, persistent);
    first.send({ cmd: "disconnect" });
    await first.waitClosed();
    await publishOrdered(topic);
    const again = await client(persistent);
    const [m] = await received(again);
    expect(m.userProperties).toEqual(ORDERED);
  });

  it("the will is published with its User Properties in order [MQTT-3.1.3-10]", async () => {
    const topic = `${uid("up")}/will`;
    const sub = await subscriber(topic);
    const dying = await rawClient(5);
    raws.push(dying);
    dying.sendBytes(
      connectWithWill({ clientId: uid("up-will"), willTopic: topic, willPayload: "gone", userProperties: ORDERED }),
    );
    expect((await dying.next("connack")).reasonCode).toBe(0);
    dying.close(); // no DISCONNECT: the will goes
    const [m] = await received(sub);
    expect(m.payload).toBe("gone");
    expect(m.userProperties).toEqual(ORDERED);
  });

  it("HTTP publish with userProperties as a list of pairs delivers them in that order [MQTT-3.3.2-17, 3.3.2-18]", async () => {
    const topic = `${uid("up")}/http`;
    const sub = await subscriber(topic);
    const res = await fetch(`${brokerHttp()}/api/v1/publish`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${E2E_API_TOKEN}` },
      body: JSON.stringify({ topic, payload: "h", qos: 1, properties: { userProperties: ORDERED } }),
    });
    expect(res.status).toBe(200);
    const [m] = await received(sub);
    expect(m.userProperties).toEqual(ORDERED);
  });
});
