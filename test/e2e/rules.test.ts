/**
 * Rules (RULES, docs/RULES.md) through the real Worker under `wrangler dev`, with a real local
 * Cloudflare Queue: its consumer is a second Worker in the same `wrangler dev` (rules-sink/worker.ts)
 * that POSTs what it receives to this file's HTTP server. Both routing paths: the session routes
 * (ROUTE_AT_EDGE 0) and the gateway routes (1); rules run in the session either way.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FLUSH_AFTER_MS } from "../../src/observability/totals";
import type { QueuedMessage } from "../../src/rules/rule-engine";
import type { QueuedWebhook } from "../../src/rules/webhook";
import { rawClient, recorder } from "../support/clients";
import { uid } from "../support/ids";
import { until } from "../support/until";
import { adminContext, browserPerFile, hasChromium } from "./browser";
import { E2E_ADMIN_TOKEN, E2E_API_TOKEN, startBroker } from "./global-setup";

const RULES = [
  {
    name: "hot",
    filter: "devices/+/telemetry",
    where: "payload.temp > 30",
    actions: [{ type: "queue", binding: "TELEMETRY_QUEUE" }],
  },
  {
    name: "alert",
    filter: "devices/+/telemetry",
    where: 'payload.temp > 30 && !(user.site == "lab")',
    actions: [{ type: "republish", topic: "alerts/${topic[1]}/${payload.room}", qos: 1 }],
  },
  { name: "loop", filter: "loop/#", actions: [{ type: "republish", topic: "loop/${topic[-1]}x", qos: 1 }] },
  {
    name: "count.me-1",
    filter: "counted/#",
    where: "payload.go == true",
    actions: [{ type: "republish", topic: "counted-out/${payload.room}", qos: 1 }],
  },
  { name: "wills", filter: "wills/#", actions: [{ type: "queue", binding: "TELEMETRY_QUEUE" }] },
  {
    name: "http-copy",
    filter: "fromhttp/+",
    actions: [{ type: "republish", topic: "copied/${topic[1]}", qos: 1 }],
  },
  { name: "archive", filter: "archive/#", actions: [{ type: "queue", binding: "TELEMETRY_QUEUE" }] },
  {
    name: "stats",
    filter: "stats/+",
    actions: [{ type: "analytics", binding: "RULES_ANALYTICS", blobs: ["topic[1]"], doubles: ["payload.temp"] }],
  },
];

/** A webhook to this file's HTTP server, its Authorization header from the secret WEBHOOK_TOKEN. */
const webhookRule = (port: number) => ({
  name: "notify",
  filter: "notify/#",
  actions: [{ type: "webhook", url: `http://127.0.0.1:${port}/webhook`, headers: { Authorization: "WEBHOOK_TOKEN" } }],
});

/** The same webhook through the Queue WEBHOOK_QUEUE, which the broker's own queue() handler consumes. */
const queuedWebhookRule = (port: number) => ({
  name: "notify-q",
  filter: "hooked/#",
  actions: [
    {
      type: "webhook",
      url: `http://127.0.0.1:${port}/webhook`,
      headers: { Authorization: "WEBHOOK_TOKEN" },
      retryQueue: "WEBHOOK_QUEUE",
    },
  ],
});

/** What the Queue's consumer received, from every broker this file starts. */
const received: QueuedMessage[] = [];
/** What reached the webhook queue's dead-letter queue. */
const deadLetters: QueuedWebhook[] = [];
/** The webhook POSTs received: a topic ending in /flaky is answered 503 the first time, /slow only when released. */
const posts: { authorization?: string; body: QueuedMessage }[] = [];
const held: (() => void)[] = [];
let sink: Server;
let sinkPort: number;
let dir: string;

beforeAll(async () => {
  sink = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      if (req.url === "/?queue=rules-webhooks-dlq") {
        deadLetters.push(...(JSON.parse(body) as QueuedWebhook[]));
        return void res.end("ok");
      }
      if (req.url !== "/webhook") {
        received.push(...(JSON.parse(body) as QueuedMessage[]));
        return void res.end("ok");
      }
      const message = JSON.parse(body) as QueuedMessage;
      posts.push({ authorization: req.headers.authorization, body: message });
      const seen = posts.filter((p) => p.body.id === message.id).length;
      if (message.topic.endsWith("/flaky") && seen === 1) return void res.writeHead(503).end();
      if (message.topic.endsWith("/fail2") && seen <= 2) return void res.writeHead(500).end();
      if (message.topic.endsWith("/never")) return void res.writeHead(500).end();
      if (message.topic.endsWith("/slow")) return void held.push(() => res.end("ok"));
      res.end("ok");
    });
  });
  await new Promise<void>((r) => sink.listen(0, "127.0.0.1", r));
  const { port } = sink.address() as { port: number };
  sinkPort = port;
  // The broker's own wrangler.toml plus a Queue producer; paths made absolute, since the copy lives elsewhere.
  dir = mkdtempSync(join(tmpdir(), "rules-e2e-"));
  const root = resolve(".");
  const broker = readFileSync("wrangler.toml", "utf8")
    .replace('main = "src/index.ts"', `main = "${root}/src/index.ts"`)
    .replace('"./src/util/silent-debug.cjs"', `"${root}/src/util/silent-debug.cjs"`);
  writeFileSync(
    join(dir, "broker.toml"),
    [
      broker,
      "[[queues.producers]]",
      'binding = "TELEMETRY_QUEUE"',
      'queue = "rules-telemetry"',
      "[[queues.producers]]",
      'binding = "WEBHOOK_QUEUE"',
      'queue = "rules-webhooks"',
      // The broker consumes its own webhook queue: max_retries 2 is three attempts, then the dead-letter queue.
      "[[queues.consumers]]",
      'queue = "rules-webhooks"',
      "max_batch_size = 10",
      "max_batch_timeout = 1",
      "max_retries = 2",
      'dead_letter_queue = "rules-webhooks-dlq"',
      "[[analytics_engine_datasets]]",
      'binding = "RULES_ANALYTICS"',
      'dataset = "rules_e2e"',
    ].join("\n"),
  );
  writeFileSync(
    join(dir, "sink.toml"),
    [
      'name = "rules-sink"',
      `main = "${root}/test/e2e/rules-sink/worker.ts"`,
      'compatibility_date = "2026-04-01"',
      "[[queues.consumers]]",
      'queue = "rules-telemetry"',
      "max_batch_size = 10",
      "max_batch_timeout = 1",
      "[[queues.consumers]]",
      'queue = "rules-webhooks-dlq"',
      "max_batch_size = 10",
      "max_batch_timeout = 1",
      "[vars]",
      `SINK_URL = "http://127.0.0.1:${port}/"`,
    ].join("\n"),
  );
});

afterAll(() => {
  held.splice(0).forEach((release) => release());
  sink.close();
  rmSync(dir, { recursive: true, force: true });
});

const browser = browserPerFile();

describe.each(["0", "1"])("rules, ROUTE_AT_EDGE %s", (routeAtEdge) => {
  let broker: Awaited<ReturnType<typeof startBroker>>;
  const open: MqttClient[] = [];

  beforeAll(async () => {
    const vars = {
      ALLOW_ANONYMOUS: "true",
      DEBUG_COUNTERS: "true",
      RULES: JSON.stringify([...RULES, webhookRule(sinkPort), queuedWebhookRule(sinkPort)]),
      WEBHOOK_TOKEN: "Bearer e2e-hook",
      ROUTE_AT_EDGE: routeAtEdge,
      ADMIN_TOKEN: E2E_ADMIN_TOKEN,
      API_TOKEN: E2E_API_TOKEN,
    };
    broker = await startBroker(vars, [join(dir, "broker.toml"), join(dir, "sink.toml")]);
  }, 60000);

  afterAll(async () => {
    await Promise.all(open.map((c) => c.endAsync(true).catch(() => undefined)));
    await broker?.stop();
  });

  const url = () => `${broker.base.replace("http", "ws")}/mqtt`;

  async function client(options: IClientOptions = {}): Promise<MqttClient> {
    const c = await mqtt.connectAsync(url(), {
      protocolVersion: 5,
      reconnectPeriod: 0,
      clientId: uid("rl"),
      ...options,
    });
    open.push(c);
    return c;
  }

  async function counter(name: string): Promise<number> {
    const res = await fetch(`${broker.base}/debug/counters`);
    return ((await res.json()) as Record<string, number>)[name] ?? 0;
  }

  /** POST /api/v1/publish with the API token. */
  async function httpPublish(message: Record<string, unknown>) {
    const res = await fetch(`${broker.base}/api/v1/publish`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${E2E_API_TOKEN}` },
      body: JSON.stringify(message),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  /** A rule's series in /metrics: matched, ok and failed. */
  async function ruleMetrics(rule: string): Promise<{ matched: number; ok: number; failed: number }> {
    const res = await fetch(`${broker.base}/metrics`, { headers: { authorization: `Bearer ${E2E_ADMIN_TOKEN}` } });
    const text = await res.text();
    const value = (series: string) => Number(new RegExp(`^${series} (\\d+)$`, "m").exec(text)?.[1] ?? NaN);
    return {
      matched: value(`mqtt_rule_matches_total\\{rule="${rule}"\\}`),
      ok: value(`mqtt_rule_actions_total\\{rule="${rule}",outcome="ok"\\}`),
      failed: value(`mqtt_rule_actions_total\\{rule="${rule}",outcome="failed"\\}`),
    };
  }

  const queued = (device: string) => received.filter((m) => m.topic === `devices/${device}/telemetry`);

  it("devices/+/telemetry over 30 °C goes to the Queue as JSON; 30 and under does not", async () => {
    const device = uid("dev");
    const c = await client({ clientId: device });
    const topic = `devices/${device}/telemetry`;
    const site = { userProperties: { site: "lab" } };
    await c.publishAsync(topic, JSON.stringify({ temp: 25 }), { qos: 1 });
    await c.publishAsync(topic, JSON.stringify({ temp: 30 }), { qos: 0 });
    await c.publishAsync(topic, JSON.stringify({ temp: 35.5 }), { qos: 1, properties: site });
    await c.publishAsync(topic, JSON.stringify({ temp: 31 }), { qos: 0 });
    await until(() => queued(device).length >= 2, "both hot readings in the Queue");
    // The two cold readings went before the hot ones: had they been sent, they would be here by now.
    expect(queued(device).map((m) => JSON.parse(m.payload!))).toEqual(
      expect.arrayContaining([{ temp: 35.5 }, { temp: 31 }]),
    );
    expect(queued(device)).toHaveLength(2);
    const first = queued(device).find((m) => m.qos === 1)!;
    expect(first).toEqual({
      rule: "hot",
      id: expect.stringMatching(new RegExp(`^${device}:`)),
      topic,
      qos: 1,
      retain: false,
      clientId: device,
      receivedAt: expect.any(Number),
      payload: '{"temp":35.5}',
      userProperties: [["site", "lab"]],
    });
  });

  it("a QoS 1 PUBLISH whose queue send fails is not acknowledged: the connection ends, the failure is counted", async () => {
    const before = await counter("ruleActionsFailed");
    const raw = await rawClient(5, "mqtt", url());
    await raw.connect({ clientId: uid("big") });
    // Over a Queue message's 128 KB: the local Queue refuses the send, as Cloudflare's does.
    const payload = Buffer.alloc(200 * 1024, "a");
    raw.send({ cmd: "publish", topic: "archive/big", payload, qos: 1, messageId: 7 });
    const disconnect = await raw.next("disconnect");
    expect(disconnect.reasonCode).toBe(0x80);
    await raw.waitClosed();
    expect(raw.all("puback")).toEqual([]);
    expect(await counter("ruleActionsFailed")).toBe(before + 1);
  });

  it("republish makes alerts/<device>/<room> at QoS 1; a value holding / + # is not substituted", async () => {
    const device = uid("dev");
    const watcher = await client();
    const rec = recorder(watcher);
    await watcher.subscribeAsync(`alerts/${device}/#`, { qos: 1 });
    const before = await counter("ruleActionsFailed");
    const c = await client();
    const topic = `devices/${device}/telemetry`;
    for (const room of ["a/b", "+", "#"]) await c.publishAsync(topic, JSON.stringify({ temp: 40, room }), { qos: 1 });
    await c.publishAsync(topic, JSON.stringify({ temp: 40, room: "boiler" }), { qos: 1 });
    const [alert] = await rec.waitFor(1);
    expect(alert.topic).toBe(`alerts/${device}/boiler`);
    expect(alert.packet.qos).toBe(1);
    expect(JSON.parse(alert.payload)).toEqual({ temp: 40, room: "boiler" });
    expect(rec.messages).toHaveLength(1); // the hostile three, published first, made nothing
    expect(await counter("ruleActionsFailed")).toBe(before + 3);
  });

  it("webhook: POSTs the message with the secret's header; a 503 is tried again", async () => {
    const topic = `notify/${uid("n")}/flaky`;
    const c = await client();
    await c.publishAsync(topic, "ring", { qos: 1 });
    await until(() => posts.filter((p) => p.body.topic === topic).length === 2, "the POST and its retry");
    const [first, second] = posts.filter((p) => p.body.topic === topic);
    expect(first).toEqual(second);
    expect(first!.authorization).toBe("Bearer e2e-hook");
    expect(first!.body).toMatchObject({ rule: "notify", topic, qos: 1, payload: "ring" });
  });

  it("webhook: best effort, the PUBACK does not wait for its answer", async () => {
    const topic = `notify/${uid("n")}/slow`;
    const c = await client();
    await c.publishAsync(topic, "later", { qos: 1 }); // acknowledged while the webhook has no answer
    await until(() => posts.some((p) => p.body.topic === topic), "the POST");
    // Still its first attempt (the next comes only after 5 s without an answer): the PUBACK did not wait for it.
    expect(posts.filter((p) => p.body.topic === topic)).toHaveLength(1);
    expect(held.length).toBeGreaterThan(0);
    held.splice(0).forEach((release) => release());
  });

  it("webhook with a retryQueue: failed twice, POSTed a third time by the queue() consumer (at least once)", async () => {
    const topic = `hooked/${uid("n")}/fail2`;
    const c = await client();
    await c.publishAsync(topic, "ring", { qos: 1 });
    const mine = () => posts.filter((p) => p.body.topic === topic);
    // Retried after 1 s, then 2 s (and the batch timeout): the third POST is answered 200.
    await until(() => mine().length === 3, "two failed POSTs and the one that succeeds", 20000);
    expect(new Set(mine().map((p) => JSON.stringify(p)))).toHaveProperty("size", 1);
    expect(mine()[0]).toEqual({
      authorization: "Bearer e2e-hook",
      body: expect.objectContaining({ rule: "notify-q", topic, qos: 1, payload: "ring" }),
    });
  });

  it("webhook with a retryQueue: after max_retries it reaches the dead-letter queue, with no secret in it", async () => {
    const topic = `hooked/${uid("n")}/never`;
    const c = await client();
    await c.publishAsync(topic, "lost?", { qos: 0 });
    const dead = () => deadLetters.filter((d) => (JSON.parse(d.body) as QueuedMessage).topic === topic);
    await until(() => dead().length === 1, "the message in the dead-letter queue", 20000);
    expect(posts.filter((p) => p.body.topic === topic)).toHaveLength(3); // max_retries 2: three attempts
    expect(dead()[0]).toEqual({
      kind: "rules.webhook",
      rule: "notify-q",
      action: 0,
      url: `http://127.0.0.1:${sinkPort}/webhook`,
      body: expect.any(String),
    });
    expect(JSON.stringify(dead())).not.toContain("e2e-hook");
  });

  it("webhook with a retryQueue: the PUBACK waits for the enqueue; a send the Queue refuses gets none", async () => {
    const raw = await rawClient(5, "mqtt", url());
    await raw.connect({ clientId: uid("big") });
    const big = `hooked/${uid("n")}/big`;
    // Over a Queue message's 128 KB: the local Queue refuses the send.
    raw.send({ cmd: "publish", topic: big, payload: Buffer.alloc(200 * 1024, "a"), qos: 1, messageId: 7 });
    expect((await raw.next("disconnect")).reasonCode).toBe(0x80);
    await raw.waitClosed();
    expect(raw.all("puback")).toEqual([]);
    // A small one after it is POSTed; the big one, never queued, is not.
    const small = `hooked/${uid("n")}/small`;
    await (await client()).publishAsync(small, "fits", { qos: 1 });
    await until(() => posts.some((p) => p.body.topic === small), "the small message's POST", 20000);
    expect(posts.filter((p) => p.body.topic === big)).toEqual([]);
  });

  it("/metrics counts each rule's matches and actions ok and failed, summed over the publishers' sessions", async () => {
    // Only this test publishes under counted/: its rule starts from zero on each broker.
    expect(await ruleMetrics("count.me-1")).toEqual({ matched: 0, ok: 0, failed: 0 });
    // Every configured rule has its series (a missing one reads as NaN here).
    for (const rule of ["hot", "stats", "notify-q"])
      expect(Number.isInteger((await ruleMetrics(rule)).matched)).toBe(true);
    const [a, b] = [await client(), await client()];
    await a.publishAsync(`counted/${uid("c")}`, JSON.stringify({ go: true, room: "boiler" }), { qos: 1 });
    await b.publishAsync(`counted/${uid("c")}`, JSON.stringify({ go: true, room: "a/b" }), { qos: 1 }); // fails
    await b.publishAsync(`counted/${uid("c")}`, JSON.stringify({ go: false }), { qos: 1 }); // not matched
    const published = Date.now();
    // Each session sends its counts to its client's registry shard once its actions' outcomes are in.
    await until(async () => (await ruleMetrics("count.me-1")).matched === 2, "both sessions' counts", 20000);
    expect(await ruleMetrics("count.me-1")).toEqual({ matched: 2, ok: 1, failed: 1 });
    // Not held on a FLUSH_AFTER_MS timer, which would keep each Session object from hibernating for
    // 5 s (billed as duration: docs/COST.md "Per-rule counters"); b's counts would come >= 5 s after
    // its first publish, a few ms before `published`.
    expect(Date.now() - published).toBeLessThan(FLUSH_AFTER_MS - 1000);
  });

  it.skipIf(!hasChromium)(
    "the dashboard's rules panel shows each configured rule's counts, as /metrics has them",
    async () => {
      const context = await adminContext(browser(), { viewport: { width: 1440, height: 900 } });
      try {
        const page = await context.newPage();
        expect((await page.goto(`${broker.base}/dashboard`))?.status()).toBe(200);
        await page.locator("#rules-view").waitFor({ state: "visible", timeout: 10000 });
        const rows = await page.$$eval("#rules tr", (trs) =>
          trs.map((tr) => Array.from(tr.children, (td) => (td as { textContent: string | null }).textContent ?? "")),
        );
        expect(rows.map((r) => r[0])).toEqual([...RULES.map((r) => r.name), "notify", "notify-q"]);
        const c = await ruleMetrics("count.me-1"); // settled: the test above waited for its counts
        expect(rows.find((r) => r[0] === "count.me-1")).toEqual([
          "count.me-1",
          `${c.matched}`,
          `${c.ok}`,
          `${c.failed}`,
        ]);
      } finally {
        await context.close();
      }
    },
  );

  it("a will that fires runs the rules: its queue action puts it on the Queue", async () => {
    const clientId = uid("w");
    const topic = `wills/${clientId}`;
    const raw = await rawClient(5, "mqtt", url());
    await raw.connect({ clientId, will: { topic, payload: Buffer.from("gone"), qos: 1, retain: false } });
    raw.close(); // abrupt: no DISCONNECT, so the will is published
    await until(() => received.some((m) => m.topic === topic), "the will on the Queue", 20000);
    expect(received.filter((m) => m.topic === topic)).toEqual([
      expect.objectContaining({
        rule: "wills",
        clientId,
        qos: 1,
        payload: "gone",
        id: expect.stringMatching(/:will:/),
      }),
    ]);
  });

  it("an HTTP publish runs the rules: its republished copy reaches a subscriber", async () => {
    const level = uid("h");
    const watcher = await client();
    const rec = recorder(watcher);
    await watcher.subscribeAsync(`copied/${level}`, { qos: 1 });
    // QoS 1: the answer waits for the copy's routing, so it is there once the answer is.
    const { status } = await httpPublish({ topic: `fromhttp/${level}`, payload: "via http", qos: 1 });
    expect(status).toBe(200);
    const [copy] = await rec.waitFor(1);
    expect([copy.topic, copy.payload, copy.packet.qos]).toEqual([`copied/${level}`, "via http", 1]);
  });

  it("an HTTP publish whose queue action fails answers 503 (retry), as a failed routing does", async () => {
    const before = await counter("ruleActionsFailed");
    const { status, body } = await httpPublish({ topic: "archive/big-http", payload: "a".repeat(200 * 1024), qos: 1 });
    expect(status).toBe(503);
    expect(body.error).toMatch(/^not delivered, retry: a rule's action failed/);
    expect(await counter("ruleActionsFailed")).toBe(before + 1);
  });

  it("analytics: a data point is written through the local Analytics Engine binding without failing", async () => {
    const [taken, failed] = [await counter("ruleActionsTaken"), await counter("ruleActionsFailed")];
    const c = await client();
    await c.publishAsync(`stats/${uid("s")}`, JSON.stringify({ temp: 21 }), { qos: 1 }); // after its rules ran
    expect(await counter("ruleActionsTaken")).toBe(taken + 1);
    expect(await counter("ruleActionsFailed")).toBe(failed);
  });

  it("a rule that matches its own output stops after RULES_MAX_DEPTH (3) copies", async () => {
    const level = uid("l");
    const watcher = await client();
    const rec = recorder(watcher);
    await watcher.subscribeAsync({ "loop/#": { qos: 1 }, [`control/${level}`]: { qos: 1 } });
    const cutBefore = await counter("ruleChainsCut");
    const c = await client();
    // Its PUBACK waits for the QoS 1 copies' routing: once it is in, the whole chain was routed.
    await c.publishAsync(`loop/${level}`, "go", { qos: 1 });
    await c.publishAsync(`control/${level}`, "after", { qos: 1 });
    await until(() => rec.messages.some((m) => m.topic === `control/${level}`), "the control message");
    const mine = rec.messages.filter((m) => m.topic.startsWith(`loop/${level}`)).map((m) => m.topic);
    expect(mine.sort()).toEqual([`loop/${level}`, `loop/${level}x`, `loop/${level}xx`, `loop/${level}xxx`]);
    expect(await counter("ruleChainsCut")).toBe(cutBefore + 1);
  });
});

describe("README's example", () => {
  it("is the rule these tests run, with its binding", () => {
    const readme = readFileSync("README.md", "utf8");
    const section = readme.slice(readme.indexOf("## Rules: routing without code"));
    const rules = /RULES = '''([^]*?)'''/.exec(section)?.[1];
    expect(JSON.parse(rules ?? "null")).toEqual([RULES[0]]);
    expect(section).toMatch(/\[\[queues\.producers\]\]\nbinding = "TELEMETRY_QUEUE"/);
  });
});

describe("a rule naming a Queue binding the Worker lacks", () => {
  it("is a configuration problem: /health answers 503 naming the rule and the binding", async () => {
    const broker = await startBroker({ RULES: JSON.stringify(RULES.slice(0, 1)) }, undefined, false);
    try {
      const res = await fetch(`${broker.base}/health`);
      expect(res.status).toBe(503);
      expect(JSON.stringify(await res.json())).toContain(
        "rule hot: no binding TELEMETRY_QUEUE (add [[queues.producers]] to wrangler.toml)",
      );
    } finally {
      await broker.stop();
    }
  }, 60000);
});
