/**
 * The publish rate limit with the shipped defaults (wrangler.toml: MAX_PUBLISH_RATE 5,000), on a
 * broker of its own: a QoS 0 firehose at the rate that used to be cut off (1,300/s) is delivered
 * whole; beyond the rate a publisher is slowed (QoS 0 dropped and counted in /metrics; shown on the
 * shared e2e broker, whose rate is lower), not cut;
 * beyond twice the rate it is cut with v5 DISCONNECT 0x96 and a reason string (3.1.1: closed), and
 * the operator log says who and how fast.
 */
import mqtt from "mqtt";
import mqttPacket from "mqtt-packet";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../../src/config";
import { E2E_ADMIN_TOKEN, E2E_VARS, startBroker } from "./global-setup";
import { brokerHttp, closeAll, connect, rawClient } from "../support/clients";
import { uid } from "../support/ids";
import type { RawClient } from "../support/raw-client";
import { sleep, until } from "../support/until";

const ADMIN = "rate-admin";
/** The default the broker runs with (wrangler.toml sets the same; the first test proves it is in force). */
const RATE = DEFAULT_CONFIG.maxPublishRate;

let broker: Awaited<ReturnType<typeof startBroker>>;
let url: string;

beforeAll(async () => {
  broker = await startBroker({ ALLOW_ANONYMOUS: "true", ADMIN_TOKEN: ADMIN });
  url = `${broker.base.replace("http", "ws")}/mqtt`;
}, 70000);

afterAll(async () => {
  await closeAll();
  await broker.stop();
});

/** The broker's JSON log lines with this event so far. */
function logged(event: string): Record<string, unknown>[] {
  return broker
    .output()
    .split("\n")
    .map((line) => line.replace(/\u001b\[[0-9;]*m/g, ""))
    .filter((line) => line.includes('{"level"'))
    .map((line) => JSON.parse(line.slice(line.indexOf('{"level"'))) as Record<string, unknown>)
    .filter((l) => l.event === event);
}

/** mqtt_messages_dropped_total{reason="publish_rate"} of the broker at `base`. */
async function droppedForRate(base: string, token: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  const line = text.split("\n").find((l) => l.startsWith('mqtt_messages_dropped_total{reason="publish_rate"}'));
  return Number(line?.split(" ")[1] ?? 0);
}

/** `count` QoS 0 PUBLISHes to `topic`, sent in frames of `perFrame` packets (as fast as the socket takes them). */
function flood(raw: RawClient, version: 4 | 5, topic: string, count: number, perFrame = 1000): void {
  const publish = { cmd: "publish", topic, payload: Buffer.from("x"), qos: 0, dup: false, retain: false } as const;
  const packet = mqttPacket.generate(publish, { protocolVersion: version });
  for (let sent = 0; sent < count; sent += perFrame) {
    raw.sendBytes(Buffer.concat(Array.from({ length: Math.min(perFrame, count - sent) }, () => packet)));
  }
}

describe("publish rate with the default MAX_PUBLISH_RATE", () => {
  it("delivers a 3.1.1 QoS 0 publisher at 1,300 msg/s for 5 s whole, without cutting it off", async () => {
    const topic = `fire/${uid()}`;
    const sub = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: uid("sub") });
    let received = 0;
    sub.on("message", () => received++);
    await sub.subscribeAsync(topic, { qos: 0 });
    const pub = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: uid("pub") });
    let closed = false;
    pub.on("close", () => (closed = true));
    const total = 6500; // the old default's burst (1,000) lasted 3.3 s at 300/s over its rate
    const start = Date.now();
    for (let i = 0; i < total; i += 13) {
      // 13 every 10 ms: 1,300/s, the rate the old default (1,000/s) cut off mid-run
      for (let k = 0; k < 13; k++) pub.publish(topic, String(i + k), { qos: 0 });
      const due = start + ((i + 13) / 1300) * 1000;
      await sleep(Math.max(0, due - Date.now()));
    }
    // the premise: it really was sent faster than the old default allowed
    expect(total / ((Date.now() - start) / 1000)).toBeGreaterThan(1200);
    await until(() => received >= total, `${total} messages (got ${received})`, 20000, 50);
    await pub.publishAsync(topic, "last", { qos: 1 }); // a round trip: the connection is still open
    expect(closed).toBe(false);
    expect(received).toBeGreaterThanOrEqual(total);
    await Promise.all([pub.endAsync(), sub.endAsync()]);
  }, 40000);

  it("slows a publisher between the rate and twice it: QoS 0 beyond the rate dropped and counted, not cut", async () => {
    // On the shared e2e broker, whose rate (500/s) is far under what a Session takes: one frame of
    // 1.8 times the rate is handled before the buckets refill much, so some of it must be dropped.
    const rate = Number(E2E_VARS.MAX_PUBLISH_RATE);
    const topic = `slow/${uid()}`;
    const sub = await connect(5);
    let received = 0;
    sub.on("message", () => received++);
    await sub.subscribeAsync(topic, { qos: 0 });
    const before = await droppedForRate(brokerHttp(), E2E_ADMIN_TOKEN);
    const raw = await rawClient(5);
    await raw.connect({ clientId: uid("slowed") });
    const total = Math.round(rate * 1.8);
    flood(raw, 5, topic, total, total);
    await raw.roundTrip(); // every PUBLISH went through the session
    expect(raw.closed).toBe(false);
    // each message was delivered or counted as dropped for the rate, none lost unaccounted
    let dropped = 0;
    await until(
      async () => {
        dropped = (await droppedForRate(brokerHttp(), E2E_ADMIN_TOKEN)) - before;
        return received + dropped === total;
      },
      `delivered + dropped = ${total}`,
      15000,
      200,
    ).catch(() => undefined);
    expect(received + dropped).toBe(total);
    expect(dropped).toBeGreaterThan(0);
    raw.close();
  }, 30000);

  it("cuts a v5 publisher far beyond the rate with DISCONNECT 0x96 and a reason string, and logs it", async () => {
    const clientId = uid("flood5");
    const raw = await rawClient(5, "mqtt", url);
    await raw.connect({ clientId });
    flood(raw, 5, `flood/${clientId}`, RATE * 6);
    const disconnect = await raw.next("disconnect", 15000);
    expect(disconnect.reasonCode).toBe(0x96);
    expect(disconnect.properties?.reasonString).toBe(`more than twice ${RATE} PUBLISH/s`);
    await raw.waitClosed();
    await until(() => logged("publish.rate_exceeded").some((l) => l.clientId === clientId), "the log line", 5000);
    const line = logged("publish.rate_exceeded").find((l) => l.clientId === clientId)!;
    expect(line.level).toBe("warn");
    expect(line.limit).toBe(RATE);
    expect(line.rate).toBeGreaterThan(2 * RATE);
  }, 30000);

  it("closes a 3.1.1 publisher far beyond the rate, and logs it", async () => {
    const clientId = uid("flood4");
    const raw = await rawClient(4, "mqtt", url);
    await raw.connect({ clientId });
    flood(raw, 4, `flood/${clientId}`, RATE * 6);
    await raw.waitClosed(15000);
    expect(raw.all("disconnect")).toEqual([]); // 3.1.1 has no server DISCONNECT
    await until(() => logged("publish.rate_exceeded").some((l) => l.clientId === clientId), "the log line", 5000);
  }, 30000);
});
