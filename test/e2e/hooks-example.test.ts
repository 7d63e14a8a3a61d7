/**
 * examples/queue-forwarder: the broker as a library with user hooks, in its own Worker under
 * `wrangler dev`, with a real (local) Cloudflare Queue. Every hook is exercised by a real client.
 * HOOKS_EXAMPLE_CONFIG names another copy of the example: scripts/pack-check.mjs runs these tests
 * against one in a fresh project that installed the packed tarball (`npm pack`) as users do.
 */
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ORDERED, publishesIn, publishWith } from "../support/user-properties";
import { startBroker } from "./global-setup";
import { rawClient, recorder } from "../support/clients";
import { uid } from "../support/ids";
import { at } from "../support/elements";

const ADMIN_TOKEN = "hooks-example-admin";
let broker: Awaited<ReturnType<typeof startBroker>>;
const open: MqttClient[] = [];

beforeAll(async () => {
  broker = await startBroker(
    { ADMIN_TOKEN },
    process.env.HOOKS_EXAMPLE_CONFIG ?? "examples/queue-forwarder/wrangler.toml",
  );
}, 60000);

afterAll(async () => {
  await Promise.all(open.map((c) => c.endAsync(true).catch(() => undefined)));
  await broker.stop();
});

async function client(options: IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(`${broker.base.replace("http", "ws")}/mqtt`, {
    protocolVersion: 5,
    reconnectPeriod: 0,
    clientId: uid("hk"),
    ...options,
  });
  open.push(c);
  return c;
}

describe("user hooks (examples/queue-forwarder)", () => {
  it("authenticate: the hook admits its devices, refuses others, and defers the rest to the broker", async () => {
    const device = await client({ username: "device-7", password: "key-device-7" });
    expect(device.connected).toBe(true);
    await expect(client({ username: "device-7", password: "wrong" })).rejects.toThrow(/Bad User Name or Password/i);
    await expect(client({ username: "blocked", password: "x" })).rejects.toThrow(/Not authorized/);
    expect((await client()).connected).toBe(true); // anonymous: the broker's own rule (ALLOW_ANONYMOUS)
  });

  it("onConnect and onDisconnect announce clients, with the hook's identity", async () => {
    const watcher = await client();
    const rec = recorder(watcher);
    await watcher.subscribeAsync("events/#");
    const id = uid("announced");
    const device = await client({ clientId: id, username: "device-9", password: "key-device-9" });
    await device.endAsync();
    const got = await rec.waitFor(2);
    const mine = got.filter((m) => m.topic.endsWith(id));
    expect(mine.map((m) => m.topic)).toEqual([`events/connected/${id}`, `events/disconnected/${id}`]);
    expect(JSON.parse(at(mine, 0).payload)).toEqual({ version: 5, user: "device-9" });
  });

  it("authorizePublish and authorizeSubscribe refuse with 0x87", async () => {
    const c = await client();
    await expect(c.publishAsync("readonly/x", "no", { qos: 1 })).rejects.toThrow(/Not authorized/);
    await expect(c.subscribeAsync("private/x", { qos: 1 })).rejects.toThrow(/Not authorized/); // SUBACK 0x87
    const granted = await c.subscribeAsync("public/x", { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual([1]);
  });

  it("onPublish rewrites a message, drops another, keeps the order of the rest", async () => {
    const sub = await client();
    const rec = recorder(sub);
    await sub.subscribeAsync({ "telemetry/#": { qos: 1 }, "spam/#": { qos: 1 }, "plain/#": { qos: 1 } });
    const device = await client({ username: "device-3", password: "key-device-3" });
    await device.publishAsync("raw/d3", "21.5", { qos: 1 });
    await device.publishAsync("spam/x", "buy now", { qos: 1 }); // accepted (acknowledged), then dropped
    for (let i = 0; i < 5; i++) await device.publishAsync("plain/order", String(i), { qos: 1 });
    const got = await rec.waitFor(6);
    expect(got[0].topic).toBe("telemetry/d3");
    expect(JSON.parse(got[0].payload)).toEqual({ device: "d3", by: "device-3", value: "21.5" });
    expect(got.slice(1).map((m) => m.payload)).toEqual(["0", "1", "2", "3", "4"]);
    expect(rec.messages.some((m) => m.topic.startsWith("spam/"))).toBe(false);
  });

  it("onPublish returning the message unchanged keeps its User Properties in order [MQTT-3.3.2-17, 3.3.2-18]", async () => {
    const topic = `plain/${uid("up")}`;
    const url = `${broker.base.replace("http", "ws")}/mqtt`;
    const [sub, pub] = [await rawClient(5, "mqtt", url), await rawClient(5, "mqtt", url)];
    try {
      await sub.connect({ clientId: uid("hk") });
      await sub.subscribe(topic, 1);
      await pub.connect({ clientId: uid("hk") });
      pub.sendBytes(publishWith({ topic, payload: "p", qos: 1, messageId: 1, userProperties: ORDERED }));
      await pub.next("puback");
      await sub.until(() => publishesIn(sub.inbound).length > 0, 5000, "PUBLISH");
      expect(at(publishesIn(sub.inbound), 0).userProperties).toEqual(ORDERED);
    } finally {
      sub.close();
      pub.close();
    }
  });

  it("onPublish forwards to a Cloudflare Queue, whose consumer publishes back", async () => {
    const sub = await client();
    const rec = recorder(sub);
    await sub.subscribeAsync({ "forwarded/#": { qos: 1 }, "alerts/#": { qos: 1 } });
    const c = await client();
    await c.publishAsync("alerts/fire", "smoke in room 3", { qos: 1 });
    const got = await rec.waitFor(2, 15000);
    expect(got.map((m) => m.topic).sort()).toEqual(["alerts/fire", "forwarded/alerts/fire"]);
    expect(got.find((m) => m.topic === "forwarded/alerts/fire")!.payload).toBe("smoke in room 3");
  });

  it("a throwing hook refuses the action rather than crash the session", async () => {
    const sub = await client();
    const rec = recorder(sub);
    await sub.subscribeAsync("plain/after-crash");
    const c = await client();
    await expect(c.publishAsync("crash/now", "x", { qos: 1 })).rejects.toThrow(/Not authorized/);
    await c.publishAsync("plain/after-crash", "still here", { qos: 1 });
    expect((await rec.waitFor(1))[0].payload).toBe("still here");
    expect(c.connected).toBe(true);
  });

  it("the broker's dashboard works in this Worker: its page (JSX) and MQTT.js's bundle (the Text rule)", async () => {
    const headers = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const page = await fetch(`${broker.base}/dashboard`, { headers });
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/^<!DOCTYPE html>[\s\S]*<script src="\/dashboard\/app.js"/i);
    const bundle = await fetch(`${broker.base}/dashboard/mqtt.min.js`, { headers });
    expect(bundle.status).toBe(200);
    expect((await bundle.text()).length).toBeGreaterThan(100_000);
  });
});
