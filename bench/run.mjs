#!/usr/bin/env node
// @ts-check
/**
 * `npm run bench`: our broker under workerd (as `npm start` runs it) side by side with Aedes over
 * WebSocket, driven by the same raw ws + mqtt-packet load generator, alternating repetitions.
 * Prints medians and the ratio us/Aedes per figure and writes bench/results/bench-<time>.json.
 * Every scenario counts what was delivered against what was sent.
 *
 *   npm run bench                 # 3 repetitions
 *   npm run bench -- --reps 1     # quicker
 *   npm run bench -- --profile    # also a CPU profile of workerd's JavaScript per scenario (ours)
 *   npm run bench -- --only reconnectStorm --sessions 10000 --direct   # the reconnect storm at 10,000 sessions
 *
 * The parts: launchers.mjs (the two brokers), load.mjs (clients, pacing, settling), sampling.mjs
 * (process CPU and memory), scenarios.mjs (one function per scenario), report.mjs (the arithmetic
 * and the table).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { startProfile, summarizeProfile } from "./cpu-profile.mjs";
import { startAedes, startOurs } from "./launchers.mjs";
import { now } from "./load.mjs";
import { costPerDelivered, printReport, tableRows, writeResults } from "./report.mjs";
import { untilIdle, untilLastRunEvicted } from "./sampling.mjs";
import { scenarios } from "./scenarios.mjs";

const args = process.argv.slice(2);
const REPS = Number(args[args.indexOf("--reps") + 1] || 3) || 3;
/** `--only fanIn,fanOut` runs just those scenarios. */
const ONLY = args.includes("--only") ? args[args.indexOf("--only") + 1].split(",") : undefined;
/** `--profile`: V8 CPU profile of the Worker isolate during each of our runs (bench/cpu-profile.mjs). */
const PROFILE = args.includes("--profile");
/** `--var NAME:value` (repeatable): a broker setting for our broker, e.g. `--var ACK_WAIT_MS:0`. */
/** `--sessions N`: persistent sessions in `reconnectStorm` (default 1,000: about a minute here). */
const SESSIONS = args.includes("--sessions") ? Number(args[args.indexOf("--sessions") + 1]) : 1000;
/** `--window N`: QoS 1 messages reconnectStorm's publisher leaves unacknowledged at once (default 1,000). */
const WINDOW = args.includes("--window") ? Number(args[args.indexOf("--window") + 1]) : 1000;
/**
 * `--direct`: clients connect to the workerd that runs our Worker, past wrangler dev's proxy, which
 * cannot hold more than about 3,300 WebSockets with 20,000 file descriptors (launchers.mjs, workerdUrl).
 */
const DIRECT = args.includes("--direct");
const EXTRA_VARS = Object.fromEntries(
  args.flatMap((a, i) => (a === "--var" ? [args[i + 1].split(/:(.*)/s).slice(0, 2)] : [])),
);

async function main() {
  console.log(`starting both brokers (reps: ${REPS}) ...`);
  const start = async () => [await startOurs({ extraVars: EXTRA_VARS, profile: PROFILE }), await startAedes()];
  let brokers = await start();
  let scenariosRun = 0;
  /** @type {Record<string, import("./report.mjs").ResultsByBroker>} */
  const results = {};
  /** @type {Record<string, import("./report.mjs").Cost[]>} */
  const costs = {};
  /** @type {Record<string, import("./report.mjs").ProfileSummary>} */
  const profiles = {};
  const cpu0 = process.cpuUsage();
  const wall0 = now();
  try {
    for (const [name, scenario] of Object.entries(scenarios)) {
      if (ONLY && !ONLY.includes(name)) continue;
      if (scenariosRun++ > 0) {
        // Each scenario on freshly started brokers: wrangler dev's proxy (a workerd in front of ours)
        // keeps about 57 KB per WebSocket it has carried, and none of it is returned when idle
        // (4,000 connects: 60 -> 290 MB, 2026-12-01). Over the whole bench it reached 2.2 GB and its
        // inspector no longer answered (idleMemory never ended); with fresh brokers it ended.
        brokers.forEach((b) => b.stop());
        brokers = await start();
      }
      results[name] = { ours: [], aedes: [] };
      for (let rep = 0; rep < REPS; rep++) {
        const order = rep % 2 === 0 ? brokers : [...brokers].reverse(); // alternate who goes first
        for (const broker of order) {
          const evictionWaitMs = await untilLastRunEvicted(broker);
          const idleWaitMs = await untilIdle(brokers);
          let c0 = await broker.counters();
          const stopProfile = PROFILE && broker.inspectorPort ? await startProfile(broker.inspectorPort) : undefined;
          const url = DIRECT && broker.name === "ours" ? broker.directUrl : broker.url;
          if (!url) throw new Error("--direct: the workerd running the Worker was not found");
          const r = await scenario(url, broker, { sessions: SESSIONS, window: WINDOW });
          if (stopProfile) {
            const profile = await stopProfile();
            mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
            const file = new URL(`./results/profile-${name}-rep${rep + 1}.cpuprofile`, import.meta.url);
            writeFileSync(file, JSON.stringify(profile));
            profiles[name] = summarizeProfile(profile);
          }
          let c1 = await broker.counters();
          if (r.countersWindow) [c0, c1] = r.countersWindow; // the scenario counted its message phase only
          delete r.countersWindow;
          if (c0 && c1 && c0.isolate !== c1.isolate) {
            // The broker's isolate restarted during the run: its counts started again from zero.
            console.log(`  ${name} ${broker.name}: the broker's isolate restarted mid-run; no counted costs`);
          } else if (c0 && c1 && r.delivered) {
            (costs[name] = costs[name] ?? []).push(costPerDelivered(c0, c1, r.delivered));
          }
          results[name][broker.name].push(r);
          if (r.delivered < r.sent && broker.log && broker.drops) {
            // Something was not delivered: show what the broker said, to tell a loss from a stall.
            const drops = await broker.drops().catch((err) => String(err));
            const tail = broker.log().split("\n").slice(-15).join("\n");
            const lost = `${r.sent - r.delivered} not delivered`;
            const counters = `broker's drop counters ${JSON.stringify(drops)}`;
            console.log(`  ${name} ${broker.name}: ${lost}; ${counters}; log tail:\n${tail}`);
          }
          const evicted =
            evictionWaitMs >= 500
              ? ` and ${Math.round(evictionWaitMs)} ms for its last run's objects to be evicted`
              : "";
          const waited = `after ${Math.round(idleWaitMs)} ms waiting for both brokers to be idle${evicted}`;
          process.stdout.write(`  ${name} ${broker.name} rep ${rep + 1} (${waited}): ${JSON.stringify(r)}\n`);
        }
      }
    }
  } catch (err) {
    // What the broker said last: a workerd that exited or restarted mid-run shows it here.
    const tail = brokers[0]?.log?.().split("\n").slice(-30).join("\n");
    console.log(`the run failed; the last lines of our broker's output:\n${tail}`);
    throw err;
  } finally {
    brokers.forEach((b) => b.stop());
  }
  const cpu = process.cpuUsage(cpu0);
  const generatorCpu = ((cpu.user + cpu.system) / 1000 / (now() - wall0)) * 100;
  const rows = tableRows(results, costs);
  printReport({ reps: REPS, rows, profiles, generatorCpu });
  writeResults({ reps: REPS, rows, raw: results, costs, profiles, generatorCpuPercent: generatorCpu });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
