/**
 * Issue #13: counters never go backwards. Five HTTP publishes showed
 * `mqtt_messages_received_total{qos="0"} 5`, and after the objects went idle and were evicted, `0`:
 * increments were written only on the next increment. Each object now writes its counters (one row)
 * with an alarm FLUSH_AFTER_MS after the first unwritten increment (src/observability/totals.ts).
 * Here every object's pending alarm is run (the seconds passing), then every object is restarted.
 */
import { abortAllDurableObjects, env, runDurableObjectAlarm, runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../../src/config";
import { registryStub, topicShardStub } from "../../src/env";
import { FLUSH_AFTER_MS } from "../../src/observability/totals";
import { shardForTopic } from "../../src/topics/shard-rule";
import { until } from "../support/until";
import { rawClient, flushCounters } from "../support/workerd";
import { uid } from "../support/ids";

const admin = { authorization: "Bearer workers-test-admin" };

/** The counter samples of `/metrics` (lines under `# TYPE <name> counter`), by name and labels. */
async function counterSamples(): Promise<Map<string, number>> {
  const res = await SELF.fetch("http://broker/metrics", { headers: admin });
  expect(res.status).toBe(200);
  const counters = new Set<string>();
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    const type = /^# TYPE (\S+) counter$/.exec(line);
    if (type) counters.add(type[1]!); // group 1 is not optional
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    const key = line.slice(0, at);
    if (counters.has(key.replace(/\{.*$/, ""))) samples.set(key, Number(line.slice(at + 1)));
  }
  return samples;
}

/** The monotonic figures of `GET /api/v1/metrics` (the same totals feed `$SYS` and the dashboard). */
async function jsonTotals(): Promise<Map<string, number>> {
  const res = await SELF.fetch("http://broker/api/v1/metrics", { headers: admin });
  expect(res.status).toBe(200);
  const m = (await res.json()) as Record<string, unknown>;
  const out = new Map<string, number>();
  const flat = (prefix: string, value: unknown) => {
    if (typeof value === "number") out.set(prefix, value);
    else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) flat(`${prefix}.${k}`, v);
  };
  for (const key of [
    "connectsTotal",
    "disconnectsTotal",
    "received",
    "receivedBytes",
    "delivered",
    "deliveredBytes",
    "dropped",
    "deliveryFailures",
    "invocations",
  ]) {
    flat(key, m[key]);
  }
  return out;
}

/** Names whose value in `after` is lower than in `before` (or missing). */
const wentBackwards = (before: Map<string, number>, after: Map<string, number>) =>
  [...before].filter(([k, v]) => (after.get(k) ?? -1) < v).map(([k, v]) => `${k}: ${v} -> ${after.get(k)}`);

describe("a TopicShard's counters' write", () => {
  it("comes FLUSH_AFTER_MS after its first unwritten increment, from a timer: no alarm (a row and a request each)", async () => {
    await flushCounters(); // what earlier tests counted (their timers may still be pending)
    const topic = `${uid("flush")}/t`;
    const shard = topicShardStub(env, shardForTopic(topic, DEFAULT_CONFIG.shardCount, DEFAULT_CONFIG.shardLevels));
    const written = () =>
      runInDurableObject(shard, (_, state) => {
        const row = state.storage.sql.exec<{ counts: string }>("SELECT counts FROM counter_totals").toArray()[0];
        return (JSON.parse(row?.counts ?? "{}") as Record<string, number>)["published:1"] ?? 0;
      });
    const pub = await rawClient(5);
    await pub.connect({ clientId: uid("flush-pub") });
    // A count written at once leaves its timer pending: 2 s later, that timer must not write the next
    // count early, 3 s after it.
    pub.send({ cmd: "publish", topic, payload: Buffer.from("x"), qos: 1, messageId: 1 });
    await pub.next("puback");
    await flushCounters();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const before = await written();
    pub.send({ cmd: "publish", topic, payload: Buffer.from("y"), qos: 1, messageId: 2 });
    await pub.next("puback"); // the shard has counted it
    const countedAt = Date.now();
    expect(await runInDurableObject(shard, (_, state) => state.storage.getAlarm())).toBeNull();
    await until(
      async () => (await written()) === before + 1,
      "the shard's timer to write its counters",
      FLUSH_AFTER_MS + 5000,
    );
    expect(Date.now() - countedAt).toBeGreaterThanOrEqual(FLUSH_AFTER_MS - 1000); // not at once: on its timer
    expect(await runInDurableObject(shard, (_, state) => state.storage.getAlarm())).toBeNull();
    pub.close();
  });
});

describe("counters survive eviction and restart", () => {
  it("every counter in /metrics and /api/v1/metrics is at least what it was after every object restarts", async () => {
    const topic = `${uid("durable-metrics")}/t`;
    const sub = await rawClient(5);
    await sub.connect({ clientId: uid("m-sub") });
    await sub.subscribe(topic, 1);
    const pub = await rawClient(4);
    await pub.connect({ clientId: uid("m-pub") });
    for (let i = 0; i < 3; i++) pub.send({ cmd: "publish", topic, payload: Buffer.from(`q0-${i}`), qos: 0 });
    pub.send({ cmd: "publish", topic, payload: Buffer.from("q1"), qos: 1, messageId: 1 });
    await pub.next("puback");
    await sub.until(() => sub.all("publish").length === 4);
    // The case: five HTTP publishes to a topic nobody subscribes to.
    for (let i = 0; i < 5; i++) {
      const res = await SELF.fetch("http://broker/api/v1/publish", {
        method: "POST",
        headers: { ...admin, "content-type": "application/json" },
        body: JSON.stringify({ topic: `${uid("nobody")}/x`, payload: "12345" }),
      });
      expect(res.status).toBe(200);
    }
    pub.send({ cmd: "disconnect" });
    await pub.waitClosed();

    // Connection reports reach the registry after CONNACK and after the close: wait for them.
    let before = new Map<string, number>();
    await until(async () => {
      before = await counterSamples();
      return (before.get("mqtt_connections_total") ?? 0) >= 2 && (before.get("mqtt_disconnections_total") ?? 0) >= 1;
    }, "the connection reports to reach the registry");
    expect(before.get('mqtt_messages_received_total{qos="0"}')).toBeGreaterThanOrEqual(8);
    expect(before.get('mqtt_messages_delivered_total{qos="1"}')).toBeGreaterThanOrEqual(1);
    expect(before.get('mqtt_messages_dropped_total{reason="no_subscribers"}')).toBeGreaterThanOrEqual(5);
    const beforeJson = await jsonTotals();
    expect(beforeJson.get("received.0")).toBe(before.get('mqtt_messages_received_total{qos="0"}'));

    // The seconds pass: each object's counters are written (a shard's timer, a registry's alarm).
    await flushCounters();
    sub.close();
    await abortAllDurableObjects();

    expect(wentBackwards(before, await counterSamples())).toEqual([]);
    expect(wentBackwards(beforeJson, await jsonTotals())).toEqual([]);
  });

  it("the $SYS publisher shares registry 0's alarm with the counters' write, and resumes after a restart", async () => {
    const subId = uid("sys-watch");
    const persistent = { clientId: subId, clean: false, properties: { sessionExpiryInterval: 600 } };
    const sub = await rawClient(5);
    await sub.connect(persistent);
    await sub.subscribe("$SYS/broker/clients/total", 0);
    await sub.until(() => sub.all("publish").length >= 1);
    const registry = registryStub(env, 0);
    // Whatever the next alarm is for (counters or $SYS), running it leaves one set while $SYS is watched.
    for (let i = 0; i < 3; i++) {
      expect(await runDurableObjectAlarm(registry)).toBe(true);
      expect(await runInDurableObject(registry, (_, state) => state.storage.getAlarm())).not.toBeNull();
    }
    sub.close();
    await abortAllDurableObjects();

    const back = await rawClient(5);
    expect((await back.connect(persistent)).sessionPresent).toBe(true);
    // The restarted registry still publishes: its pending alarm, run now, sends $SYS to the session.
    const restarted = registryStub(env, 0); // (a stub does not outlive the restart)
    await until(async () => {
      await runDurableObjectAlarm(restarted);
      return back.all("publish").some((p) => p.topic === "$SYS/broker/clients/total");
    }, "a $SYS message after the restart");
    back.close();
  });
});
