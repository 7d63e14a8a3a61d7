#!/usr/bin/env node
// @ts-check
/**
 * `node bench/gateway-cpu.mjs`: the gateway Worker's JavaScript CPU per forwarded packet, in each
 * direction, from V8 CPU profiles of our broker under workerd (bench/cpu-profile.mjs). Locally the
 * Worker and every object share one isolate, so samples are attributed by call stack: a sample whose
 * stack passes through one of the gateway's functions (GATEWAY_FUNCTIONS) is the gateway's, toward the
 * session (client -> session) or toward the client (session -> client) by the entry point on its stack.
 *
 * Two loads, each at two payload sizes, so that a cost per packet and a cost per byte can be told apart
 * (a straight line through the two points): `inbound` (publishers send QoS 0 to a topic nobody
 * subscribes to: only client -> session traffic) and `outbound` (one publisher, many subscribers:
 * the gateway mostly forwards session -> client). Prints the figures docs/SCALE-gateway.md quotes.
 *
 *   node bench/gateway-cpu.mjs              # 20,000 packets per load and size
 *   node bench/gateway-cpu.mjs --packets 5000
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { startProfile } from "./cpu-profile.mjs";
import { startOurs } from "./launchers.mjs";
import { clients, pace, settle, sleep, tag } from "./load.mjs";

const args = process.argv.slice(2);
const PACKETS = Number(args[args.indexOf("--packets") + 1] || 20000) || 20000;
const SIZES = [16, 2048];

/**
 * Which source file each line of the bundle workerd runs comes from: esbuild marks each module's
 * start with a `// src/...` comment. The newest bundle under .wrangler/tmp is the one just started.
 * @returns {(line: number) => string}
 */
function bundleSources() {
  const root = new URL("../.wrangler/tmp/", import.meta.url).pathname;
  const bundles = readdirSync(root)
    .filter((d) => d.startsWith("dev-") && existsSync(join(root, d, "index.js")))
    .map((d) => join(root, d, "index.js"))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!bundles[0]) throw new Error("no wrangler dev bundle under .wrangler/tmp");
  /** @type {[number, string][]} first line (0-based) of each module, and its path */
  const starts = [];
  readFileSync(bundles[0], "utf8")
    .split("\n")
    .forEach((text, i) => {
      const m = /^\/\/ ((?:src|node_modules)\/\S+)$/.exec(text);
      if (m) starts.push([i, /** @type {string} */ (m[1])]);
    });
  return (line) => {
    let file = "";
    for (const [first, path] of starts) {
      if (first > line) break;
      file = path;
    }
    return file;
  };
}

/** The gateway's connection setup (CONNECT, authentication, opening the session): neither direction. */
const SETUP = new Set([
  "onConnect",
  "startScram",
  "onAuthResponse",
  "authenticateAndOpen",
  "openSession",
  "onSessionOpen",
]);
const SETUP_FILES = ["src/gateway/upgrade.ts", "src/gateway/admission.ts", "src/gateway/connect-auth.ts"];

/**
 * CPU microseconds of the sampled time by what it was: the gateway toward the session (`in`), toward
 * the client (`out`), its connection setup, V8's unattributed time (program, GC), idle, and the rest.
 * A sample is the gateway's when its stack passes through a src/gateway/ or protocol/framer.ts
 * function (native calls they make, such as send, included).
 * @param {any} profile a Profiler.stop profile
 * @param {(line: number) => string} sourceOf
 */
function gatewayMicros(profile, sourceOf) {
  /** @type {Map<number, any>} */
  const byId = new Map(profile.nodes.map((/** @type {any} */ n) => [n.id, n]));
  /** @type {Map<number, number>} */
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  /** @type {Map<number, string>} */
  const kinds = new Map();
  const classify = (/** @type {number} */ id) => {
    const known = kinds.get(id);
    if (known) return known;
    const leaf = byId.get(id).callFrame.functionName;
    let kind =
      leaf === "(idle)" ? "idle" : ["(program)", "(garbage collector)"].includes(leaf) ? "unattributed" : "other";
    let gateway = false;
    for (let at = /** @type {number | undefined} */ (id); at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at).callFrame;
      const file = frame.url ? sourceOf(frame.lineNumber) : "";
      if (!file.startsWith("src/gateway/") && file !== "src/protocol/framer.ts") continue;
      gateway = true;
      if (frame.functionName === "onSessionMessage") kind = "out";
      else if (SETUP.has(frame.functionName) || SETUP_FILES.includes(file)) kind = "setup";
    }
    if (gateway && kind === "other") kind = "in";
    kinds.set(id, kind);
    return kind;
  };
  /** @type {Record<string, number>} */
  const us = { in: 0, out: 0, setup: 0, other: 0, unattributed: 0, idle: 0 };
  profile.samples.forEach((/** @type {number} */ id, /** @type {number} */ i) => {
    us[classify(id)] += profile.timeDeltas[i] ?? 0;
  });
  return us;
}

/**
 * Bytes of a QoS 0 PUBLISH with this topic and payload size (fixed header, topic, payload).
 * @param {string} topic
 * @param {number} payload
 */
function publishBytes(topic, payload) {
  const remaining = 2 + Buffer.byteLength(topic) + payload;
  return 1 + (remaining < 128 ? 1 : remaining < 16384 ? 2 : 3) + remaining;
}

/** @param {string} url @param {number} size */
async function inbound(url, size) {
  const t = tag();
  const pubs = await clients(url, 4, `gc-in-${t}`);
  const per = PACKETS / pubs.length;
  const topic = `gc/in/${t}/x`;
  const payload = Buffer.alloc(size, 3);
  await Promise.all(
    pubs.map(async (p) => {
      for (let i = 0; i < per; i++) {
        p.publish(topic, payload, 0);
        await pace(p, i);
      }
    }),
  );
  await sleep(1500); // the last bursts reach the sessions
  pubs.forEach((c) => c.close());
  return { packets: PACKETS, bytes: publishBytes(topic, size) };
}

/** @param {string} url @param {number} size */
async function outbound(url, size) {
  const t = tag();
  const subs = await clients(url, 50, `gc-out-${t}`);
  let delivered = 0;
  for (const s of subs) s.onPublish = () => delivered++;
  const topic = `gc/out/${t}`;
  await Promise.all(subs.map((s) => s.subscribe(topic, 0)));
  const [pub] = await clients(url, 1, `gc-outp-${t}`);
  const n = PACKETS / subs.length;
  const payload = Buffer.alloc(size, 4);
  for (let i = 0; i < n; i++) {
    pub.publish(topic, payload, 0);
    await pace(pub, i);
    // closed loop: at most 10 messages on their way, so nothing piles up in the isolate (its memory is
    // 128 MB; an open loop of 2 KiB to 50 subscribers restarted it)
    while (delivered < (i - 10) * subs.length) await sleep(1);
  }
  await settle(() => delivered, PACKETS);
  [pub, ...subs].forEach((c) => c.close());
  return { packets: delivered, bytes: publishBytes(topic, size), sent: PACKETS };
}

async function main() {
  const broker = await startOurs({ extraVars: {}, profile: true });
  const sourceOf = bundleSources();
  /** @type {Record<string, { bytes: number; usPerPacket: number }[]>} */
  const points = { in: [], out: [] };
  try {
    for (const [dir, load] of /** @type {const} */ ([
      ["in", inbound],
      ["out", outbound],
    ])) {
      for (const size of SIZES) {
        await load(broker.url, 64); // warm up: the code paths compiled before the profile
        const stop = await startProfile(/** @type {number} */ (broker.inspectorPort));
        const r = await load(broker.url, size);
        const us = gatewayMicros(await stop(), sourceOf);
        // V8's (program) and GC samples have no stack: the gateway is given its share of the stacked time.
        const stacked = us.in + us.out + us.setup + us.other;
        const scale = 1 + us.unattributed / stacked;
        const usPerPacket = (us[dir] * scale) / r.packets;
        points[dir].push({ bytes: r.bytes, usPerPacket });
        const ms = Object.fromEntries(Object.entries(us).map(([k, v]) => [k, Math.round(v / 1000)]));
        const figures = { payload: size, packetBytes: r.bytes, packets: r.packets, scale: +scale.toFixed(2) };
        console.log(`${dir}: ${JSON.stringify({ ...figures, usPerPacket: +usPerPacket.toFixed(2), ms })}`);
      }
    }
  } finally {
    broker.stop();
  }
  for (const dir of /** @type {const} */ (["in", "out"])) {
    const [a, b] = points[dir];
    if (!a || !b) continue;
    const perByteUs = (b.usPerPacket - a.usPerPacket) / (b.bytes - a.bytes);
    const perPacketUs = a.usPerPacket - perByteUs * a.bytes;
    const name = dir === "in" ? "client -> session" : "session -> client";
    const kib = Math.round(perByteUs * 1024 * 1000);
    console.log(
      `${name}: ${Math.round(perPacketUs * 1000)} ns per packet + ${kib} ns per KiB (with the unattributed share)`,
    );
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
