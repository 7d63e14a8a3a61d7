// @ts-check
/**
 * The two brokers under test, each started in its own process group on a free port: ours under
 * `wrangler dev` (workerd, as `npm start` runs it) and Aedes over ws (bench/aedes-server.mjs).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { heapUsedKb } from "./cpu-profile.mjs";
import { sleep } from "./load.mjs";
import { groupCpuMs, groupListeningPorts, groupOpenDatabases, groupRssKb } from "./sampling.mjs";

/**
 * Calls into each counted object, per class: object name (client id, `shard:<i>`, `registry:<i>`) -> calls.
 * @typedef {{ session: Record<string, number>; shard: Record<string, number>; registry: Record<string, number> }} CallsByObject
 */
/**
 * The broker's debug counters (/debug/counters): totals by name, the calls into each counted object
 * (`byObject`), each counted Session object's busy ms (`sessionBusyByObject`), the isolate that counted
 * them (`isolate`: a restart sets them back to zero), and when they were read (`at`, the generator's
 * performance.now(), for rates).
 * @typedef {Record<string, number> & { byObject: CallsByObject; sessionBusyByObject?: Record<string, number>; isolate: string; at: number }} Counters
 */

/**
 * A running broker, as the scenarios and the report see it.
 * @typedef {object} Broker
 * @property {"ours" | "aedes"} name
 * @property {string} url its MQTT-over-WebSocket endpoint
 * @property {string} [directUrl] ours only: the same endpoint on workerd itself, past wrangler dev's proxy (see `--direct`)
 * @property {number} [inspectorPort] workerd's V8 inspector (ours only), for CPU profiles
 * @property {() => string} [log] what the broker printed so far (ours only)
 * @property {() => Promise<{ dropped: unknown; deliveryFailures: unknown }>} [drops] its own count of drops (ours only)
 * @property {() => number} rssKb
 * @property {() => number} cpuMs
 * @property {() => number} [openDatabases] ours only: SQLite databases open (one per object in memory)
 * @property {number} [databasesAtLastRun] ours only: `openDatabases` when its last run started (sampling.mjs)
 * @property {() => number | Promise<number>} heapKb JS heap after a full GC
 * @property {() => Promise<Counters | undefined>} counters
 * @property {() => void} stop
 */

/** @returns {Promise<number>} */
async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {import("node:net").AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/**
 * Our broker under `wrangler dev`.
 * @param {{ extraVars: Record<string, string>; profile: boolean; config?: string }} options `extraVars` override the
 *   settings below; with `profile`, the heap is not read (the inspector serves one session at a time);
 *   `config`: another wrangler configuration (bench/floor/wrangler.toml)
 * @returns {Promise<Broker>}
 */
export async function startOurs({ extraVars, profile, config }) {
  const port = await freePort();
  const inspectorPort = await freePort();
  const state = mkdtempSync(join(tmpdir(), "mqtt-bench-"));
  // Limits that would end a connection under deliberate overload are lifted: the bench measures throughput.
  // Aedes has none of these limits; the default window (32) would make the max-rate scenario measure
  // the documented queue_full outcome instead of how fast a session drains (the queue's defaults,
  // 32 MiB and 200,000 messages, are kept: the count is twice the 100,000 the bench used to set), and the
  // outbound budget (1 MiB, 1 MiB/s assumed read rate) would drop fan-in's QoS 0 at ~4 MB/s to one reader.
  const vars = {
    ALLOW_ANONYMOUS: "true",
    DEBUG_COUNTERS: "true",
    MAX_PUBLISH_RATE: "1000000",
    CONNECT_RATE_LIMIT: "off",
    RECEIVE_MAXIMUM: "65535",
    MAX_INFLIGHT: "1024",
    MAX_CLIENT_OUTBOUND_BYTES: "268435456",
    CLIENT_READ_RATE: "1073741824",
    ADMIN_TOKEN: "bench",
    ...extraVars,
  };
  const child = spawn(
    "npx",
    [
      ...["wrangler", "dev", "--port", String(port), "--ip", "127.0.0.1", "--inspector-port", String(inspectorPort)],
      ...(config ? ["--config", config] : []),
      ...["--persist-to", state, ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`])],
    ],
    { detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
  );
  const pgid = /** @type {number} */ (child.pid);
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 180; i++) {
    try {
      if ((await fetch(`${base}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) throw new Error(`wrangler dev exited:\n${log}`);
    await sleep(250);
  }
  const directUrl = await workerdUrl(pgid, [port, inspectorPort]);
  // The counters are read past the proxy too, when it was found: the proxy is not what is measured.
  const countersUrl = `${directUrl ? directUrl.replace(/^ws:/, "http:").replace(/\/mqtt$/, "") : base}/debug/counters`;
  return {
    name: "ours",
    url: `ws://127.0.0.1:${port}/mqtt`,
    directUrl,
    inspectorPort,
    log: () => log,
    /** The broker's own account of drops and failed deliveries (admin metrics). */
    drops: async () => {
      const m = await (await fetch(`${base}/api/v1/metrics`, { headers: { authorization: "Bearer bench" } })).json();
      return { dropped: m.dropped, deliveryFailures: m.deliveryFailures };
    },
    rssKb: () => groupRssKb(pgid),
    cpuMs: () => groupCpuMs(pgid),
    openDatabases: () => groupOpenDatabases(pgid),
    // Not while a CPU profile is being taken: the inspector proxy serves one session at a time.
    heapKb: () => (profile ? NaN : heapUsedKb(inspectorPort)),
    counters: () => countersOnceAnswered(countersUrl),
    stop: () => {
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {
        // the process group has already exited
      }
      rmSync(state, { recursive: true, force: true });
    },
  };
}

/**
 * The broker's counters, asked again when a request fails: after 10,000 connections dropped at once
 * the one local thread took longer than the client's 300 s to answer.
 * @param {string} url
 * @returns {Promise<Counters>}
 */
async function countersOnceAnswered(url) {
  for (let attempt = 1; ; attempt++) {
    try {
      return { ...(await (await fetch(url)).json()), at: performance.now() };
    } catch (err) {
      if (attempt === 5) throw err;
      console.log(`  /debug/counters did not answer (${String(err)}); asking again`);
    }
  }
}

/**
 * The broker's endpoint on the workerd that runs the Worker, not on wrangler dev's proxy in front of
 * it (which holds about 6 file descriptors per WebSocket: with a limit of 20,000 it failed at 3,300
 * connections, "accept: Too many open files"). The workerd's entry port is not printed: it is the
 * port of the process group, other than ours, that answers /health.
 * @param {number} pgid
 * @param {number[]} known the ports that are not it
 */
async function workerdUrl(pgid, known) {
  for (const port of groupListeningPorts(pgid).filter((p) => !known.includes(p))) {
    const ok = await fetch(`http://127.0.0.1:${port}/health`, { signal: globalThis.AbortSignal.timeout(2000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return `ws://127.0.0.1:${port}/mqtt`;
  }
  return undefined;
}

/**
 * Aedes in a Node process of its own (bench/aedes-server.mjs), over ws.
 * @returns {Promise<Broker>}
 */
export async function startAedes() {
  const port = await freePort();
  const server = new URL("./aedes-server.mjs", import.meta.url).pathname;
  const child = spawn(process.execPath, ["--expose-gc", server, String(port)], {
    detached: true,
    stdio: ["ignore", "pipe", "inherit", "ipc"],
  });
  const pgid = /** @type {number} */ (child.pid);
  await new Promise((resolve) => child.stdout?.on("data", (d) => String(d).includes("ready") && resolve(undefined)));
  return {
    name: "aedes",
    url: `ws://127.0.0.1:${port}/mqtt`,
    rssKb: () => groupRssKb(pgid),
    cpuMs: () => groupCpuMs(pgid),
    heapKb: () =>
      new Promise((resolve) => {
        child.once("message", (/** @type {{ heapUsedKb: number }} */ m) => resolve(m.heapUsedKb));
        child.send("heap");
      }),
    counters: async () => undefined,
    stop: () => {
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {
        // the process group has already exited
      }
    },
  };
}
