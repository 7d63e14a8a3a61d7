#!/usr/bin/env node
/**
 * `npm run bench`: our broker under workerd (as `npm start` runs it) side by side with Aedes over
 * WebSocket, driven by the same raw ws + mqtt-packet load generator, alternating repetitions.
 * Prints medians and the ratio us/Aedes per figure and writes bench/results/bench-<time>.json.
 * Every scenario counts what was delivered against what was sent.
 *
 *   npm run bench                 # 3 repetitions
 *   npm run bench -- --reps 1     # quicker
 *   npm run bench -- --profile    # also a CPU profile of workerd's JavaScript per scenario (ours)
 */
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BenchClient } from "./client.mjs";
import { heapUsedKb, startProfile, summarizeProfile } from "./cpu-profile.mjs";

const args = process.argv.slice(2);
const REPS = Number(args[args.indexOf("--reps") + 1] || 3) || 3;
/** `--only fanIn,fanOut` runs just those scenarios. */
const ONLY = args.includes("--only") ? args[args.indexOf("--only") + 1].split(",") : undefined;
/** `--profile`: V8 CPU profile of the Worker isolate during each of our runs (bench/cpu-profile.mjs). */
const PROFILE = args.includes("--profile");
/** `--var NAME:value` (repeatable): a broker setting for our broker, e.g. `--var ACK_WAIT_MS:0`. */
const EXTRA_VARS = Object.fromEntries(args.flatMap((a, i) => (a === "--var" ? [args[i + 1].split(/:(.*)/s).slice(0, 2)] : [])));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};
let run = 0;
const tag = () => `${process.pid}-${++run}`;

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function groupRssKb(pgid) {
  try {
    const out = execFileSync("ps", ["-o", "rss=", "-g", String(pgid)]).toString();
    return out.split("\n").filter(Boolean).reduce((a, b) => a + Number(b), 0);
  } catch {
    return NaN;
  }
}

/** CPU time (ms) used so far by every process in a process group (Linux /proc). */
function groupCpuMs(pgid) {
  try {
    const pids = execFileSync("ps", ["-o", "pid=", "-g", String(pgid)]).toString().split("\n").filter(Boolean);
    let ticks = 0;
    for (const pid of pids) {
      try {
        const fields = readFileSync(`/proc/${pid.trim()}/stat`, "utf8").split(") ")[1].split(" ");
        ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
      } catch {}
    }
    return ticks * 10; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/**
 * Waits until both brokers are idle (under 5% of a core over 500 ms), so that one run does not pay
 * for the work another left behind (ours ends the sessions of 100 clients after fan-out, for
 * instance): every run starts on a quiet machine. Returns the time waited.
 */
async function untilIdle(brokers, capMs = 30000) {
  const start = now();
  while (now() - start < capMs) {
    const before = brokers.reduce((sum, b) => sum + b.cpuMs(), 0);
    await sleep(500);
    const used = brokers.reduce((sum, b) => sum + b.cpuMs(), 0) - before;
    if (!(used >= 25)) break;
  }
  return now() - start;
}

async function startOurs() {
  const port = await freePort();
  const inspectorPort = await freePort();
  const state = mkdtempSync(join(tmpdir(), "mqtt-bench-"));
  // Limits that would end a connection under deliberate overload are lifted: the bench measures throughput.
  // Aedes has none of these limits; the defaults (queue 1000, window 32) would make the max-rate
  // scenario measure the documented queue_full outcome instead of how fast a session drains, and the
  // outbound budget (1 MiB, 1 MiB/s assumed read rate) would drop fan-in's QoS 0 at ~4 MB/s to one reader.
  const vars = {
    ALLOW_ANONYMOUS: "true",
    DEBUG_COUNTERS: "true",
    MAX_PUBLISH_RATE: "1000000",
    CONNECT_RATE_LIMIT: "off",
    RECEIVE_MAXIMUM: "65535",
    MAX_QUEUED_MESSAGES: "100000",
    MAX_INFLIGHT: "1024",
    MAX_CLIENT_OUTBOUND_BYTES: "268435456",
    CLIENT_READ_RATE: "1073741824",
    ADMIN_TOKEN: "bench",
    ...EXTRA_VARS,
  };
  const child = spawn(
    "npx",
    ["wrangler", "dev", "--port", String(port), "--ip", "127.0.0.1", "--inspector-port", String(inspectorPort), "--persist-to", state, ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`])],
    { detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
  );
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 180; i++) {
    try {
      if ((await fetch(`${base}/health`)).ok) break;
    } catch {}
    if (child.exitCode !== null) throw new Error(`wrangler dev exited:\n${log}`);
    await sleep(250);
  }
  return {
    name: "ours",
    url: `ws://127.0.0.1:${port}/mqtt`,
    inspectorPort,
    log: () => log,
    /** The broker's own account of drops and failed deliveries (admin metrics). */
    drops: async () => {
      const m = await (await fetch(`${base}/api/v1/metrics`, { headers: { authorization: "Bearer bench" } })).json();
      return { dropped: m.dropped, deliveryFailures: m.deliveryFailures };
    },
    rssKb: () => groupRssKb(child.pid),
    cpuMs: () => groupCpuMs(child.pid),
    // Not while a CPU profile is being taken: the inspector proxy serves one session at a time.
    heapKb: () => (PROFILE ? NaN : heapUsedKb(inspectorPort)),
    counters: async () => (await fetch(`${base}/debug/counters`)).json(),
    stop: () => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
      rmSync(state, { recursive: true, force: true });
    },
  };
}

async function startAedes() {
  const port = await freePort();
  const child = spawn(process.execPath, ["--expose-gc", new URL("./aedes-server.mjs", import.meta.url).pathname, String(port)], {
    detached: true,
    stdio: ["ignore", "pipe", "inherit", "ipc"],
  });
  await new Promise((resolve) => child.stdout.on("data", (d) => String(d).includes("ready") && resolve()));
  return {
    name: "aedes",
    url: `ws://127.0.0.1:${port}/mqtt`,
    rssKb: () => groupRssKb(child.pid),
    cpuMs: () => groupCpuMs(child.pid),
    heapKb: () =>
      new Promise((resolve) => {
        child.once("message", (m) => resolve(m.heapUsedKb));
        child.send("heap");
      }),
    counters: async () => undefined,
    stop: () => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
    },
  };
}

async function clients(url, n, prefix, opts) {
  const list = [];
  for (let i = 0; i < n; i += 50) {
    const batch = Array.from({ length: Math.min(50, n - i) }, (_, k) => new BenchClient(url, `${prefix}-${i + k}`, opts));
    await Promise.all(batch.map((c) => c.connect()));
    list.push(...batch);
  }
  return list;
}

/** Waits until `count()` reaches `target` or stops growing for `idleMs`. */
async function settle(count, target, idleMs = 3000, capMs = 60000) {
  const start = now();
  let last = count();
  let lastChange = now();
  while (count() < target && now() - start < capMs) {
    await sleep(20);
    const c = count();
    if (c !== last) {
      last = c;
      lastChange = now();
    } else if (now() - lastChange > idleMs) break;
  }
}

/** Sends in slices, yielding so sockets drain: the generator never buffers unboundedly. */
async function pace(client, i) {
  if (i % 100 === 0) {
    await new Promise((r) => setImmediate(r));
    while (client.buffered > 1 << 20) await sleep(1);
  }
}

/** QoS 1 end to end at a fixed offered rate: latency from the publisher's send to the subscriber. */
async function qos1AtRate(url, rate, seconds) {
  const t = tag();
  const [sub, pub] = await clients(url, 2, `lat-${t}`);
  const latencies = [];
  sub.onPublish = (p) => latencies.push(now() - p.payload.readDoubleLE(0));
  await sub.subscribe(`bench/lat/${t}`, 1);
  const total = rate * seconds;
  const start = now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    while (now() < due) await sleep(Math.max(0, Math.min(5, due - now())));
    const payload = Buffer.alloc(64);
    payload.writeDoubleLE(now(), 0);
    pub.publish(`bench/lat/${t}`, payload, 1);
  }
  await settle(() => latencies.length, total);
  [sub, pub].forEach((c) => c.close());
  return { "p50 ms": pct(latencies, 50), "p99 ms": pct(latencies, 99), sent: total, delivered: latencies.length };
}

const scenarios = {
  async fanIn(url) {
    const t = tag();
    const [sub] = await clients(url, 1, `fi-sub-${t}`);
    let delivered = 0;
    let lastAt = 0;
    sub.onPublish = () => {
      delivered++;
      lastAt = now();
    };
    await sub.subscribe(`bench/in/${t}/#`, 0);
    const pubs = await clients(url, 8, `fi-pub-${t}`);
    const per = 2500;
    const payload = Buffer.alloc(64, 7);
    const start = now();
    await Promise.all(
      pubs.map(async (p, k) => {
        for (let i = 0; i < per; i++) {
          p.publish(`bench/in/${t}/p${k}`, payload, 0);
          await pace(p, i);
        }
      }),
    );
    await settle(() => delivered, per * 8);
    [sub, ...pubs].forEach((c) => c.close());
    return { "msgs/s": (delivered / (lastAt - start)) * 1000, sent: per * 8, delivered };
  },

  async fanOut(url) {
    const t = tag();
    const subs = await clients(url, 100, `fo-sub-${t}`);
    let delivered = 0;
    let lastAt = 0;
    for (const s of subs) {
      s.onPublish = () => {
        delivered++;
        lastAt = now();
      };
    }
    await Promise.all(subs.map((s) => s.subscribe(`bench/out/${t}`, 0)));
    const [pub] = await clients(url, 1, `fo-pub-${t}`);
    const n = 300;
    const payload = Buffer.alloc(64, 7);
    const start = now();
    for (let i = 0; i < n; i++) {
      pub.publish(`bench/out/${t}`, payload, 0);
      await pace(pub, i);
    }
    await settle(() => delivered, n * 100);
    [pub, ...subs].forEach((c) => c.close());
    return { "deliveries/s": (delivered / (lastAt - start)) * 1000, sent: n * 100, delivered };
  },

  async qos1Latency(url) {
    return qos1AtRate(url, 200, 3);
  },

  async qos1MaxRate(url) {
    let best = 0;
    let sent = 0;
    let delivered = 0;
    for (const rate of [250, 500, 1000, 2000, 4000, 8000]) {
      const r = await qos1AtRate(url, rate, 2);
      sent += r.sent;
      delivered += r.delivered;
      if (r.delivered < r.sent * 0.99 || r["p99 ms"] > 1000) break;
      best = rate;
    }
    return { "sustained msgs/s": best, sent, delivered };
  },

  async connectStorm(url) {
    const t = tag();
    const n = 1000;
    const latencies = [];
    const list = [];
    const start = now();
    for (let i = 0; i < n; i += 100) {
      const batch = Array.from({ length: Math.min(100, n - i) }, (_, k) => new BenchClient(url, `cs-${t}-${i + k}`));
      await Promise.all(
        batch.map(async (c) => {
          const s = now();
          await c.connect();
          latencies.push(now() - s);
        }),
      );
      list.push(...batch);
    }
    const elapsed = now() - start;
    list.forEach((c) => c.close());
    return { "conns/s": (latencies.length / elapsed) * 1000, "p99 CONNACK ms": pct(latencies, 99), sent: n, delivered: latencies.length };
  },

  async retainedReplay(url) {
    const t = tag();
    const [pub] = await clients(url, 1, `rr-pub-${t}`);
    const n = 1000;
    for (let i = 0; i < n; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, k) => pub.publish(`bench/ret/${t}/${i + k}`, Buffer.alloc(32, 1), 1, true)));
    }
    const [sub] = await clients(url, 1, `rr-sub-${t}`);
    let delivered = 0;
    let lastAt = 0;
    sub.onPublish = () => {
      delivered++;
      lastAt = now();
    };
    const start = now();
    await sub.subscribe(`bench/ret/${t}/#`, 0);
    await settle(() => delivered, n);
    [pub, sub].forEach((c) => c.close());
    return { "ms to receive all": lastAt - start, sent: n, delivered };
  },

  /**
   * The docs/COST.md workload at its real per-object rates, with fewer devices: 300 devices publish
   * QoS 1 to devices/<id>/telemetry, 1,667 messages a second in all (what 100,000 devices at one a
   * minute send), and one backend subscribes to devices/+/telemetry at QoS 1. Each device sends a
   * message every 180 ms, so nothing batches on the publisher side, as with one a minute; shards and
   * the backend session see the real rates. The counted costs per delivered message feed the model.
   */
  async costWorkload(url, broker) {
    const t = tag();
    const devices = 300;
    const rate = 1667;
    const seconds = 5;
    const [backend] = await clients(url, 1, `cw-backend-${t}`);
    let delivered = 0;
    backend.onPublish = () => delivered++;
    await backend.subscribe(`cw${t}/+/telemetry`, 1);
    const list = await clients(url, devices, `cw-dev-${t}`);
    const perDevice = Math.round((rate * seconds) / devices);
    const interval = (1000 * devices) / rate;
    const latencies = [];
    await sleep(1000); // connection reports reach the registry: they belong to connecting, not to messages
    const countersBefore = await broker.counters();
    const start = now();
    await Promise.all(
      list.map(async (device, k) => {
        await sleep((k * interval) / devices); // spread the devices over one interval
        for (let i = 0; i < perDevice; i++) {
          const sent = now();
          device.publish(`cw${t}/${k}/telemetry`, Buffer.alloc(64, 5), 1).then(() => latencies.push(now() - sent));
          await sleep(interval);
        }
      }),
    );
    const total = perDevice * devices;
    await settle(() => delivered, total);
    const elapsed = now() - start;
    await settle(() => latencies.length, total, 1000);
    const countersAfter = await broker.counters();
    [backend, ...list].forEach((c) => c.close());
    return {
      "msgs/s": (delivered / elapsed) * 1000,
      "publisher PUBACK p50 ms": pct(latencies, 50),
      "publisher PUBACK p99 ms": pct(latencies, 99),
      sent: total,
      delivered,
      countersWindow: countersBefore && [countersBefore, countersAfter],
    };
  },

  /**
   * What the gateway hop costs, to judge the direct route (client WebSocket straight to its Session
   * object): round trips answered by the Worker (PINGREQ -> PINGRESP) against round trips that go on
   * to the Session object and back (PUBREL for an unknown packet id -> PUBCOMP, no shard involved).
   * The difference is what one client -> Worker -> Session -> Worker -> client pass adds over
   * client -> Worker -> client: the most a direct route could save per packet. Aedes answers both in
   * its one process.
   */
  async hopCost(url) {
    const t = tag();
    const [c] = await clients(url, 1, `hop-${t}`);
    const n = 1000;
    const roundTrips = async (packet, answer) => {
      const times = [];
      for (let i = 0; i < n; i++) {
        const s = now();
        const got = c.waitFor(answer);
        c.send(packet);
        await got;
        times.push(now() - s);
      }
      return times;
    };
    const edge = await roundTrips({ cmd: "pingreq" }, "pingresp");
    const session = await roundTrips({ cmd: "pubrel", messageId: 7 }, "pubcomp");
    c.close();
    return {
      "answered at the edge p50 ms": pct(edge, 50),
      "via the Session p50 ms": pct(session, 50),
      "via the Session p99 ms": pct(session, 99),
      "Session hop p50 ms": pct(session, 50) - pct(edge, 50),
      sent: 2 * n,
      delivered: edge.length + session.length,
    };
  },

  async idleMemory(url, broker) {
    const t = tag();
    const heapBefore = await broker.heapKb();
    const before = broker.rssKb();
    const n = 500;
    const list = await clients(url, n, `idle-${t}`);
    await sleep(2000);
    const after = broker.rssKb();
    const heapAfter = await broker.heapKb();
    const open = list.filter((c) => !c.closed).length;
    list.forEach((c) => c.close());
    await sleep(500);
    return {
      // JS heap after a garbage collection: what the broker's own objects keep per idle connection
      // (for us the whole isolate: gateway, Session objects, shards). RSS also counts native buffers
      // and is noisy on garbage-collected processes.
      "JS heap KB per connection": (heapAfter - heapBefore) / n,
      "RSS KB per connection": (after - before) / n,
      sent: n,
      delivered: open,
    };
  },
};

async function main() {
  console.log(`starting both brokers (reps: ${REPS}) ...`);
  const brokers = [await startOurs(), await startAedes()];
  const results = {};
  const costs = {};
  const profiles = {};
  const cpu0 = process.cpuUsage();
  const wall0 = now();
  try {
    for (const [name, scenario] of Object.entries(scenarios)) {
      if (ONLY && !ONLY.includes(name)) continue;
      results[name] = { ours: [], aedes: [] };
      for (let rep = 0; rep < REPS; rep++) {
        const order = rep % 2 === 0 ? brokers : [...brokers].reverse(); // alternate who goes first
        for (const broker of order) {
          const idleWaitMs = await untilIdle(brokers);
          let c0 = await broker.counters();
          const stopProfile = PROFILE && broker.inspectorPort ? await startProfile(broker.inspectorPort) : undefined;
          const r = await scenario(broker.url, broker);
          if (stopProfile) {
            const profile = await stopProfile();
            mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
            writeFileSync(new URL(`./results/profile-${name}-rep${rep + 1}.cpuprofile`, import.meta.url), JSON.stringify(profile));
            profiles[name] = summarizeProfile(profile);
          }
          let c1 = await broker.counters();
          if (r.countersWindow) [c0, c1] = r.countersWindow; // the scenario counted its message phase only
          delete r.countersWindow;
          if (c0 && c1 && r.delivered) {
            const d = (k) => c1[k] - c0[k];
            costs[name] = costs[name] ?? [];
            costs[name].push({
              invocationsPerDelivered: (d("sessionInvocations") + d("shardInvocations")) / r.delivered,
              // As billed when deployed: incoming WebSocket messages count 1/20 of a request.
              billedRequestsPerDelivered:
                (d("sessionInvocations") - d("sessionWebSocketMessages") + d("sessionWebSocketMessages") / 20 + d("shardInvocations") + d("registryInvocations")) / r.delivered,
              rowsWrittenPerDelivered: (d("sqlRowsWritten") + d("alarmWrites")) / r.delivered,
            });
          }
          results[name][broker.name].push(r);
          if (r.delivered < r.sent && broker.log) {
            // Something was not delivered: show what the broker said, to tell a loss from a stall.
            const drops = await broker.drops().catch((err) => String(err));
            console.log(`  ${name} ${broker.name}: ${r.sent - r.delivered} not delivered; broker's drop counters ${JSON.stringify(drops)}; log tail:\n${broker.log().split("\n").slice(-15).join("\n")}`);
          }
          process.stdout.write(`  ${name} ${broker.name} rep ${rep + 1} (after ${Math.round(idleWaitMs)} ms waiting for both brokers to be idle): ${JSON.stringify(r)}\n`);
        }
      }
    }
  } finally {
    brokers.forEach((b) => b.stop());
  }
  const cpu = process.cpuUsage(cpu0);
  const generatorCpu = ((cpu.user + cpu.system) / 1000 / (now() - wall0)) * 100;

  const rows = [];
  for (const [name, byBroker] of Object.entries(results)) {
    const metrics = Object.keys(byBroker.ours[0]).filter((k) => k !== "sent" && k !== "delivered");
    for (const metric of metrics) {
      const ours = median(byBroker.ours.map((r) => r[metric]));
      const aedes = median(byBroker.aedes.map((r) => r[metric]));
      rows.push({ scenario: name, metric, ours, aedes, ratio: ours / aedes });
    }
    const sum = (list, k) => list.reduce((a, r) => a + r[k], 0);
    rows.push({
      scenario: name,
      metric: "delivered/sent",
      ours: `${sum(byBroker.ours, "delivered")}/${sum(byBroker.ours, "sent")}`,
      aedes: `${sum(byBroker.aedes, "delivered")}/${sum(byBroker.aedes, "sent")}`,
      ratio: "",
    });
    if (costs[name]) {
      rows.push({ scenario: name, metric: "DO invocations per delivered (ours)", ours: median(costs[name].map((c) => c.invocationsPerDelivered)), aedes: "", ratio: "" });
      rows.push({ scenario: name, metric: "billed DO requests per delivered (ours)", ours: median(costs[name].map((c) => c.billedRequestsPerDelivered)), aedes: "", ratio: "" });
      rows.push({ scenario: name, metric: "rows written per delivered (ours)", ours: median(costs[name].map((c) => c.rowsWrittenPerDelivered)), aedes: "", ratio: "" });
    }
  }
  const fmt = (v) => (typeof v === "number" ? (Number.isFinite(v) ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2)) : "n/a") : v);
  console.log(`\nmedians of ${REPS} repetition(s); us = this broker under workerd (wrangler dev), Aedes 1.2.0 over ws.`);
  console.log("Higher is better for rates, lower for ms and KB. Idle memory: JS heap growth after a full GC, and process RSS growth (noisy for a GC'd process).");
  console.log(`${"scenario".padEnd(16)} ${"metric".padEnd(38)} ${"us".padStart(12)} ${"aedes".padStart(12)} ${"us/aedes".padStart(9)}`);
  for (const r of rows) {
    console.log(`${r.scenario.padEnd(16)} ${r.metric.padEnd(38)} ${String(fmt(r.ours)).padStart(12)} ${String(fmt(r.aedes)).padStart(12)} ${String(fmt(r.ratio)).padStart(9)}`);
  }
  for (const [name, p] of Object.entries(profiles)) {
    console.log(`\nCPU profile of workerd's JavaScript during ${name} (ours): ${p.sampledMs.toFixed(0)} ms sampled, ${p.idlePercent.toFixed(0)}% idle`);
    console.log(`  by place:    ${p.places.map((x) => `${x.what} ${x.percent.toFixed(1)}%`).join(", ")}`);
    for (const f of p.functions) console.log(`  ${f.percent.toFixed(1).padStart(5)}%  ${f.what}`);
  }
  console.log(`\nload generator CPU: ${generatorCpu.toFixed(0)}% of one core over the run (near 100% would mean the generator limits the figures)`);
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  const file = new URL(`./results/bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`, import.meta.url);
  writeFileSync(file, JSON.stringify({ reps: REPS, rows, raw: results, costs, profiles, generatorCpuPercent: generatorCpu }, null, 2));
  console.log(`results: ${file.pathname}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
