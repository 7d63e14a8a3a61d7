/** Metrics through the real Worker: Prometheus text at /metrics, JSON, and $SYS topics. */
import { afterEach, describe, expect, it } from "vitest";
import { until } from "../support/until";
import { E2E_ADMIN_TOKEN, E2E_VARS } from "./global-setup";
import { brokerHttp, closeAll, connect, recorder, roundTrip } from "../support/clients";
import { uid } from "../support/ids";
import { parseExposition } from "../support/prometheus";

afterEach(closeAll);

const auth = { authorization: `Bearer ${E2E_ADMIN_TOKEN}` };

async function scrape(): Promise<Map<string, number>> {
  const res = await fetch(`${brokerHttp()}/metrics`, { headers: auth });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/text\/plain; version=0.0.4/);
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** Messages dropped for a full queue between two scrapes. */
function queueFullSince(before: Map<string, number>, after: Map<string, number>): number {
  const key = 'mqtt_messages_dropped_total{reason="queue_full"}';
  return (after.get(key) ?? 0) - (before.get(key) ?? 0);
}

describe("metrics", () => {
  it("is protected like the admin API", async () => {
    expect((await fetch(`${brokerHttp()}/metrics`)).status).toBe(401);
  });

  it("serves text a Prometheus parser reads: HELP and TYPE on every family, counters end in _total", async () => {
    const res = await fetch(`${brokerHttp()}/metrics`, { headers: auth });
    expect(res.status).toBe(200);
    const names = parseExposition(await res.text()).map((f) => f.name);
    expect(names).toEqual(
      expect.arrayContaining([
        "mqtt_connected_clients",
        "mqtt_messages_received_total",
        "mqtt_durable_object_invocations_total",
      ]),
    );
  });

  it("counts connections, messages and bytes per QoS, deliveries and drops, in Prometheus text", async () => {
    const before = await scrape();
    const at = (m: Map<string, number>, k: string) => m.get(k) ?? 0;
    expect(before.has('mqtt_messages_received_total{qos="1"}')).toBe(true);
    const topic = `metrics/${uid()}`;
    const sub = await connect(5);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    const pub = await connect(4);
    await pub.publishAsync(topic, "12345", { qos: 1 });
    await pub.publishAsync(topic, "abc", { qos: 0 });
    await pub.publishAsync(`${topic}/nobody`, "x", { qos: 0 });
    await rec.waitFor(2);
    // QoS 0 messages and connection reports arrive asynchronously: poll until every figure has moved.
    // Other test files run against the same broker at the same time: at least ours, then.
    const expected: [string, number][] = [
      ["mqtt_connections_total", 2],
      ['mqtt_messages_received_total{qos="1"}', 1],
      ['mqtt_messages_received_total{qos="0"}', 2],
      ["mqtt_received_bytes_total", 9],
      ['mqtt_messages_delivered_total{qos="1"}', 1],
      ['mqtt_messages_delivered_total{qos="0"}', 1],
      ['mqtt_messages_dropped_total{reason="no_subscribers"}', 1],
    ];
    let after = before;
    const moved = () => expected.filter(([k, n]) => at(after, k) - at(before, k) < n).map(([k]) => k);
    await until(
      async () => {
        after = await scrape();
        return moved().length === 0;
      },
      "every counter to move",
      5000,
      100,
    ).catch(() => undefined);
    expect(moved()).toEqual([]);
    expect(at(after, 'mqtt_connected_clients{protocol="5.0"}')).toBeGreaterThanOrEqual(1);
    expect(at(after, 'mqtt_connected_clients{protocol="3.1.1"}')).toBeGreaterThanOrEqual(1);
    expect(at(after, 'mqtt_durable_object_invocations_total{class="topic_shard"}')).toBeGreaterThan(0);
  });

  it("counts a full queue's drops and reports deep queues", async () => {
    const clientId = uid("deep");
    const topic = `deep/${clientId}`;
    const c = await connect(5, { clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
    await c.subscribeAsync(topic, { qos: 1 });
    await c.endAsync();
    const before = await scrape();
    const pub = await connect(5);
    // MAX_QUEUED_MESSAGES is 300 in the e2e broker: 310 messages, 10 dropped.
    await Promise.all(Array.from({ length: 310 }, (_, i) => pub.publishAsync(topic, String(i), { qos: 1 })));
    // drops and queue levels are reported asynchronously: poll until both show
    let m = before;
    const dropped = () => queueFullSince(before, m);
    await until(
      async () => {
        m = await scrape();
        return dropped() >= 10 && (m.get("mqtt_deep_queue_messages") ?? 0) >= 256;
      },
      "the drops and the deep queue to show",
      5000,
      100,
    ).catch(() => undefined);
    expect(dropped()).toBeGreaterThanOrEqual(10);
    expect(m.get("mqtt_deep_queues")).toBeGreaterThanOrEqual(1);
    expect(m.get("mqtt_deep_queue_messages")).toBeGreaterThanOrEqual(256);
  });

  it("drops only beyond the MAX_QUEUED_BYTES budget, the newest first, counted in /metrics", async () => {
    const clientId = uid("bytes");
    const topic = `bytes/${clientId}`;
    const c = await connect(5, { clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
    await c.subscribeAsync(topic, { qos: 1 });
    await c.endAsync();
    const publisher = uid("bpub");
    const pub = await connect(5, { clientId: publisher });
    // Each message counts its payload, topic, id (publisher:UUID), origin and 64 bytes for the row.
    const payload = Buffer.alloc(4096, 7);
    const size = payload.length + topic.length + (publisher.length + 37) + publisher.length + 64;
    const fits = Math.floor(Number(E2E_VARS.MAX_QUEUED_BYTES) / size);
    expect(fits).toBeLessThan(Number(E2E_VARS.MAX_QUEUED_MESSAGES)); // the premise: bytes bind, not the count
    const before = await scrape();
    const sent = fits + 5;
    for (let i = 0; i < sent; i++)
      await pub.publishAsync(topic, Buffer.concat([Buffer.from(`${i}:`), payload.subarray(String(i).length + 1)]), {
        qos: 1,
      });
    const client = await connect(5, { clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
    const rec = recorder(client);
    await rec.waitFor(fits, 20000);
    await roundTrip(client); // whatever else was queued has arrived by now
    expect(rec.messages.map((m) => Number(m.payload.split(":")[0]))).toEqual(Array.from({ length: fits }, (_, i) => i));
    // drops are reported asynchronously: poll until they show
    let dropped = 0;
    await until(async () => (dropped = queueFullSince(before, await scrape())) >= 5, "the drops", 5000, 100).catch(
      () => undefined,
    );
    expect(dropped).toBeGreaterThanOrEqual(5);
    const session = await fetch(`${brokerHttp()}/api/v1/client?clientId=${clientId}`, { headers: auth });
    expect(((await session.json()) as { droppedQueueFull: number }).droppedQueueFull).toBe(5);
  });

  it("serves the same figures as JSON for the dashboard", async () => {
    const res = await fetch(`${brokerHttp()}/api/v1/metrics`, { headers: auth });
    const body = (await res.json()) as Record<string, any>;
    expect(res.status).toBe(200);
    expect(body).toMatchObject({
      received: expect.any(Object),
      connected: expect.any(Number),
      invocations: { topicShard: expect.any(Number) },
    });
  });

  it("publishes $SYS/broker/... topics, retained, to a watching subscriber", async () => {
    const watcher = await connect(5);
    const rec = recorder(watcher);
    await watcher.subscribeAsync("$SYS/broker/#");
    // Retained copies come first and may be an old tick's (taken after its watcher left: 0 connected);
    // a live tick (RETAIN 0 to a subscriber [MQTT-3.3.1-12]) counts at least this watcher.
    const wanted = ["clients/connected", "messages/received", "load/bytes/sent"].map((t) => `$SYS/broker/${t}`);
    const live = () => new Map(rec.messages.filter((m) => !m.packet.retain).map((m) => [m.topic, m.payload]));
    await until(() => wanted.every((t) => live().has(t)), "a live $SYS tick", 8000);
    const values = live();
    expect(Number(values.get("$SYS/broker/clients/connected"))).toBeGreaterThanOrEqual(1);
    expect(Number(values.get("$SYS/broker/messages/received"))).toBeGreaterThanOrEqual(0);
    expect(values.has("$SYS/broker/load/bytes/sent")).toBe(true);
    // '#' does not match $SYS topics [MQTT-4.7.2-1]: a plain '#' subscriber sees none of them
    const all = await connect(5);
    const allRec = recorder(all);
    await all.subscribeAsync("#");
    // positive control: a tick published after the '#' subscription reached the watcher, then a round trip on '#'
    const ticks = () =>
      rec.messages.filter((m) => m.topic === "$SYS/broker/clients/connected" && !m.packet.retain).length;
    const seen = ticks();
    await until(() => ticks() > seen, "a $SYS tick after the '#' subscription", 8000);
    await roundTrip(all);
    expect(allRec.messages.filter((m) => m.topic.startsWith("$SYS"))).toHaveLength(0);
  });
});
