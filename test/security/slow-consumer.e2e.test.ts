/**
 * Finding (issue #11, resource isolation): one slow subscriber stalled everyone. A subscriber that
 * never read its socket, flooded with QoS 0 16 KB messages, made the broker hold every byte for it:
 * an unrelated publisher/subscriber pair on the same TopicShard delivered nothing for 10-15 s and
 * workerd grew by hundreds of MB. Now the gateway keeps an outbound budget per connection
 * (MAX_CLIENT_OUTBOUND_BYTES, an estimate: workerd cannot tell what a client has read): QoS 0 beyond
 * it is dropped and counted (`slow_consumer`), and a client that stays behind is disconnected once 8
 * budgets more have gone to it (5.0: DISCONNECT 0x97).
 *
 * Bounded run: a few seconds of flood from 3 publishers, then it stops by itself. Clients use
 * `perMessageDeflate: false` and random payloads, or the backlog would compress to nothing.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import mqtt, { type MqttClient } from "mqtt";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBroker } from "../e2e/global-setup";
import { RawClient } from "../support/raw-client";
import { until } from "../support/until";

const ADMIN_TOKEN = "slow-consumer-admin";
const FLOOD_SECONDS = 5;
const PUBLISHERS = 3;
const RATE_PER_PUBLISHER = 640;
const PAYLOAD_BYTES = 16 * 1024;
/*
 * The control pair's worst latency is printed, not asserted: it depends on the machine's load more
 * than on the broker (idle: 1.1-1.4 s on a fresh broker, 35-46 ms after; with six other test runs
 * beside it: 9 s), and the flood alone (no subscriber at all) delays the pair by seconds on a loaded
 * machine. What fails on the unbounded broker is the drops and the bytes held for the stalled reader;
 * what shows the pair is not held back is that every control message arrives during the flood.
 */
/**
 * Generous: workerd grew by 235-375 MB under this flood with the unbounded broker, 145-185 MB with the
 * budget, ~130 MB with no subscriber at all (the inbound flood itself, on a loaded machine).
 */
const MEMORY_GROWTH_BOUND_MB = 250;
/**
 * What the broker may have held for the stalled subscriber: its budget (1 MiB) and at most 8 budgets
 * more once behind (default 9 MiB), plus socket buffers. The unbounded broker held the whole flood.
 */
const HELD_BOUND_BYTES = 24 * 1048576;

let broker: Awaited<ReturnType<typeof startBroker>>;
let url: string;
const opened: MqttClient[] = [];
const raws: WebSocket[] = [];
let runId = 0;

beforeAll(async () => {
  // Default limits. One registry shard: every test's drops land in one object that stays awake (a
  // registry shard left idle is evicted with up to 10 s of counts unwritten, by design, README Metrics).
  broker = await startBroker({
    ALLOW_ANONYMOUS: "true",
    ADMIN_TOKEN,
    CONNECT_RATE_LIMIT: "off",
    REGISTRY_SHARD_COUNT: "1",
  });
  url = `${broker.base.replace("http", "ws")}/mqtt`;
}, 60000);

afterAll(async () => {
  for (const c of opened) c.end(true);
  for (const ws of raws) ws.terminate();
  await broker?.stop();
});

function client(version: 4 | 5): Promise<MqttClient> {
  const options = {
    protocolVersion: version,
    reconnectPeriod: 0,
    clientId: `slow-${process.pid}-${++runId}`,
    wsOptions: { perMessageDeflate: false },
  };
  return mqtt.connectAsync(url, options).then((c) => (opened.push(c), c));
}

/**
 * A raw `ws` client that subscribes, then stops reading its socket (ws.pause) until resumed; with
 * `pauseFirst` it stops reading before it subscribes (the SUBACK waits with the rest).
 */
async function stalledSubscriber(filter: string, qos: 0 | 1, pauseFirst = false) {
  const ws = new WebSocket(url, "mqtt", { perMessageDeflate: false });
  raws.push(ws);
  await new Promise<void>((resolve, reject) => (ws.once("open", () => resolve()), ws.once("error", reject)));
  const raw = new RawClient(
    {
      send: (data) => ws.send(data),
      close: () => ws.terminate(),
      onBytes: (cb) => ws.on("message", (d: Buffer) => cb(new Uint8Array(d))),
      onClose: (cb) => ws.on("close", cb),
    },
    5,
  );
  raw.autoAck = true;
  const counted = { bytes: 0 };
  ws.on("message", (d: Buffer) => (counted.bytes += d.length));
  expect((await raw.connect({ clientId: `stalled-${process.pid}-${++runId}` })).reasonCode).toBe(0);
  if (pauseFirst) {
    ws.pause();
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos }] });
  } else {
    expect((await raw.subscribe(filter, qos)).granted).toEqual([qos]);
    ws.pause();
  }
  counted.bytes = 0;
  return { ws, raw, counted };
}

/** Every workerd process wrangler started for this broker (its process group) and their RSS in MB. */
function workerdRssMb(): number {
  return workerdFigures().rssMb;
}

/** RSS (MB) and CPU time (s) summed over this broker's workerd processes. */
function workerdFigures(): { rssMb: number; cpuS: number } {
  let total = 0;
  let cpu = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (!stat.includes("(workerd)") || Number(fields[2]) !== broker.pid) continue;
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${entry}/status`, "utf8"));
      total += rss ? Number(rss[1]) / 1024 : 0;
      cpu += (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      // the process ended meanwhile
    }
  }
  return { rssMb: total, cpuS: cpu };
}

/** 3 publishers, QoS `qos`, random 16 KB payloads at ~640 msg/s each for FLOOD_SECONDS (in a worker thread); resolves with the count sent. */
function flood(topic: string, qos: 0 | 1, rate = RATE_PER_PUBLISHER, seconds = FLOOD_SECONDS): Promise<number> {
  const workerData = { url, topic, qos, publishers: PUBLISHERS, rate, seconds, size: PAYLOAD_BYTES };
  const worker = new Worker(new URL("../support/flood-worker.mjs", import.meta.url), { workerData });
  return new Promise((resolve, reject) => {
    worker.once("message", (m: { sent: number }) => resolve(m.sent));
    worker.once("error", reject);
  });
}

/** A well-behaved pair: one QoS 1 message every 50 ms while `running`, each timed from publish to receipt. */
async function controlPair(topic: string) {
  const sub = await client(5);
  const pub = await client(5);
  await sub.subscribeAsync(topic, { qos: 1 });
  const latencies = new Map<number, number>();
  sub.on("message", (_t, payload) => {
    const { i, t } = JSON.parse(payload.toString());
    latencies.set(i, Date.now() - t);
  });
  let sent = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  return {
    start: () =>
      void (timer = setInterval(
        () => pub.publish(topic, JSON.stringify({ i: sent++, t: Date.now() }), { qos: 1 }),
        50,
      )),
    stop: () => clearInterval(timer),
    sent: () => sent,
    latencies,
    /** Waits until every control message sent has arrived (or `ms` passed). */
    async drained(ms: number) {
      // Not arriving in time is a figure the caller reports and judges, not an error here.
      await until(() => latencies.size >= sent, "the control messages", ms).catch(() => undefined);
    },
  };
}

async function droppedSlowConsumer(): Promise<number> {
  const res = await fetch(`${broker.base}/api/v1/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const body = (await res.json()) as { dropped: Record<string, number> };
  return body.dropped.slow_consumer ?? 0;
}

/** Runs the flood against one stalled subscriber with a control pair beside it, and reports figures. */
interface Shape {
  name: string;
  filter: (root: string) => string;
  subQos: 0 | 1;
  floodQos: 0 | 1;
  /** Messages per second per publisher, and seconds of flood (defaults: the finding's). */
  rate?: number;
  seconds?: number;
}

async function isolationRun(shape: Shape) {
  // Same first two levels (the shard key) for the flood and the control pair: one TopicShard.
  const root = `iso${++runId}/room`;
  const control = await controlPair(`${root}/control`);
  const stalled = await stalledSubscriber(shape.filter(root), shape.subQos);
  const droppedBefore = await droppedSlowConsumer();
  const rssBefore = workerdRssMb();
  const cpuBefore = workerdFigures().cpuS;
  const wallBefore = Date.now();
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, workerdRssMb())), 250);
  control.start();
  const floodSent = await flood(`${root}/flood`, shape.floodQos, shape.rate, shape.seconds);
  const cpuShare = (workerdFigures().cpuS - cpuBefore) / ((Date.now() - wallBefore) / 1000);
  await new Promise((r) => setTimeout(r, 500)); // the premise: the control pair runs on for 500 ms after the flood
  control.stop();
  await control.drained(30000);
  clearInterval(sampler);
  rssPeak = Math.max(rssPeak, workerdRssMb());
  const dropped = (await droppedSlowConsumer()) - droppedBefore;
  const worst = Math.max(...control.latencies.values());
  console.log(
    `[slow-consumer ${shape.name}] flood ${floodSent} msgs; control ${control.latencies.size}/${control.sent()} received, ` +
      `worst latency ${worst} ms; workerd RSS ${rssBefore.toFixed(0)} -> peak ${rssPeak.toFixed(0)} MB (+${(rssPeak - rssBefore).toFixed(0)}); ` +
      `workerd CPU during flood ${(cpuShare * 100).toFixed(0)}% of a core; dropped slow_consumer ${dropped}; stalled subscriber closed: ${stalled.raw.closed}`,
  );
  return { root, control, stalled, worst, dropped, growth: rssPeak - rssBefore };
}

/**
 * The stalled subscriber reads again: everything the broker held for it arrives, then a marker
 * published after the resume (or, if it was disconnected, DISCONNECT 0x97). Resolves with the bytes
 * it received before the marker: what the broker (runtime queue and socket buffers) held for it.
 */
async function resumeAndMeasure(
  stalled: Awaited<ReturnType<typeof stalledSubscriber>>,
  topic: string,
): Promise<number> {
  const { ws, raw, counted } = stalled;
  ws.resume();
  const pub = await client(5);
  const marker = `after-resume-${++runId}`;
  const seen = () => raw.all("publish").some((p) => p.payload.toString() === marker);
  const deadline = Date.now() + 30000;
  while (!seen() && !raw.closed && Date.now() < deadline) {
    await pub.publishAsync(topic, marker, { qos: 0 });
    await raw.until(() => seen() || raw.closed, 1000).catch(() => undefined);
  }
  expect(seen() || raw.closed).toBe(true);
  if (raw.closed) expect(raw.all("disconnect").map((p) => p.reasonCode)).toContain(0x97);
  return counted.bytes;
}

/** Everyone else is still served after the flood: a new pair on the same shard. */
async function stillServing(root: string, stalled: { ws: WebSocket }): Promise<void> {
  stalled.ws.terminate(); // it has been measured: its drops must not count in the next test
  const sub = await client(5);
  await sub.subscribeAsync(`${root}/after`, { qos: 1 });
  const got = new Promise((resolve) => sub.once("message", resolve));
  await (await client(4)).publishAsync(`${root}/after`, "still serving", { qos: 1 });
  await got;
}

describe("one slow subscriber does not hold back others [issue #11]", () => {
  it("a subscriber that never reads: others are still served, QoS 0 beyond its budget is dropped and counted, memory stays bounded", async () => {
    const run = await isolationRun({ name: "QoS 0 flood", filter: (root) => `${root}/flood`, subQos: 0, floodQos: 0 });
    // Every control message arrived during the flood, none held back behind the slow consumer's backlog.
    expect(run.control.latencies.size).toBe(run.control.sent());
    expect(run.dropped).toBeGreaterThan(0);
    expect(run.growth).toBeLessThan(MEMORY_GROWTH_BOUND_MB);
    const held = await resumeAndMeasure(run.stalled, `${run.root}/flood`);
    console.log(`[slow-consumer QoS 0 flood] held for the stalled subscriber: ${(held / 1048576).toFixed(1)} MB`);
    expect(held).toBeLessThan(HELD_BOUND_BYTES);
    await stillServing(run.root, run.stalled);
  }, 120000);

  it("class: a slow reader on a wildcard subscription at QoS 1 (QoS 1 control traffic too, all shards) is bounded the same way", async () => {
    const run = await isolationRun({ name: "wildcard # QoS 1", filter: () => "#", subQos: 1, floodQos: 0 });
    expect(run.control.latencies.size).toBe(run.control.sent());
    expect(run.dropped).toBeGreaterThan(0);
    expect(run.growth).toBeLessThan(MEMORY_GROWTH_BOUND_MB);
    const held = await resumeAndMeasure(run.stalled, `${run.root}/flood`);
    console.log(`[slow-consumer wildcard # QoS 1] held for the stalled subscriber: ${(held / 1048576).toFixed(1)} MB`);
    expect(held).toBeLessThan(HELD_BOUND_BYTES);
    await stillServing(run.root, run.stalled);
  }, 120000);

  it("a subscriber that stays behind is disconnected once 8 budgets more have gone to it: 5.0 DISCONNECT 0x97", async () => {
    // A flood it cannot take, above the assumed read rate (3 x 100 msg/s x 16 KB = 4.9 MB/s), for 12 s.
    const run = await isolationRun({
      name: "12 s flood",
      filter: (root) => `${root}/flood`,
      subQos: 0,
      floodQos: 0,
      rate: 100,
      seconds: 12,
    });
    expect(run.control.latencies.size).toBe(run.control.sent());
    expect(run.dropped).toBeGreaterThan(0);
    const { ws, raw, counted } = run.stalled;
    ws.resume();
    await raw.waitClosed(30000);
    expect(raw.all("disconnect").map((p) => p.reasonCode)).toEqual([0x97]);
    console.log(
      `[slow-consumer 12 s flood] held for the stalled subscriber until its DISCONNECT: ${(counted.bytes / 1048576).toFixed(1)} MB`,
    );
    expect(counted.bytes).toBeLessThan(HELD_BOUND_BYTES);
    await stillServing(run.root, run.stalled);
  }, 120000);

  it("class: a slow reader that subscribes over a large retained set (9.4 MiB at QoS 0) is sent no more than its budget", async () => {
    const root = `ret${++runId}/room`;
    const pub = await client(4);
    const count = 600;
    for (let i = 0; i < count; i++) {
      pub.publish(`${root}/r/${i}`, randomBytes(PAYLOAD_BYTES), { qos: 0, retain: true });
      if (i % 100 === 99) await new Promise((r) => setTimeout(r, 150)); // under MAX_PUBLISH_RATE
    }
    // Acknowledged after the QoS 0 ones before it were routed (one publisher, calls in order): all stored.
    await pub.publishAsync(`${root}/r/last`, "last", { qos: 1, retain: true });
    const droppedBefore = await droppedSlowConsumer();
    const stalled = await stalledSubscriber(`${root}/r/#`, 0, true);
    await until(async () => (await droppedSlowConsumer()) !== droppedBefore, "a slow_consumer drop", 20000, 200);
    const dropped = (await droppedSlowConsumer()) - droppedBefore;
    const held = await resumeAndMeasure(stalled, `${root}/r/live`);
    expect(stalled.raw.all("suback").map((p) => p.granted)).toEqual([[0]]);
    console.log(
      `[slow-consumer retained] ${count} x 16 KB retained; dropped slow_consumer ${dropped}; held for the stalled subscriber: ${(held / 1048576).toFixed(1)} MB`,
    );
    expect(dropped).toBeGreaterThan(0);
    expect(held).toBeLessThan(4 * 1048576);
    await stillServing(root, stalled);
  }, 120000);
});
