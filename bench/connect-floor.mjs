#!/usr/bin/env node
// @ts-check
/**
 * `npm run bench:connect-floor`: how fast this runtime can connect clients when each connection
 * opens a Durable Object, beside the broker and Aedes, in one run. Each server below takes the same
 * `connectStorm` (1,000 new clients, 100 at a time, bench/scenarios.mjs), in alternating order:
 * - floor: bench/floor/worker.mjs under `wrangler dev`, a Worker that opens one SQLite-backed Durable
 *   Object per connection and an object that answers CONNECT with a fixed CONNACK and does nothing
 *   else: the runtime's part of a connect, without the broker's; also with an object on key-value
 *   storage, and with no object at all (the Worker answers: the upgrade alone); ", direct": past
 *   wrangler dev's proxy, to the workerd that runs the Worker (as `npm run bench -- --direct`);
 * - ours: the broker, as `npm run bench` starts it;
 * - aedes: Aedes over ws.
 * If the floor itself is under half of Aedes, the connect storm target (0.5x Aedes) cannot be met
 * under the local runtime by any broker with one object per client.
 *
 *   npm run bench:connect-floor               # 3 repetitions
 *   npm run bench:connect-floor -- --reps 5
 */
import { startAedes, startOurs } from "./launchers.mjs";
import { median } from "./report.mjs";
import { untilIdle, untilLastRunEvicted } from "./sampling.mjs";
import { scenarios } from "./scenarios.mjs";

const args = process.argv.slice(2);
const REPS = Number(args[args.indexOf("--reps") + 1] || 3) || 3;

async function main() {
  console.log(`starting the floor Worker, our broker and Aedes (reps: ${REPS}) ...`);
  const floor = await startOurs({ extraVars: {}, profile: false, config: "bench/floor/wrangler.toml" });
  const floorOf = (/** @type {string} */ name, /** @type {string} */ at, direct = false) => ({
    ...floor,
    name,
    url: `${direct ? floor.directUrl : floor.url}?at=${at}`,
    counters: async () => undefined,
  });
  const ours = await startOurs({ extraVars: {}, profile: false });
  if (!floor.directUrl || !ours.directUrl) throw new Error("the workerd running a Worker was not found");
  const servers = [
    floorOf("floor: Worker only", "worker"),
    floorOf("floor: Worker only, direct", "worker", true),
    floorOf("floor: DO (key-value)", "kv"),
    floorOf("floor: DO (SQLite)", "sqlite"),
    floorOf("floor: DO (SQLite), direct", "sqlite", true),
    ours,
    { ...ours, name: "ours, direct", url: ours.directUrl },
    await startAedes(),
  ];
  /** @type {Record<string, { rate: number[]; p99: number[]; connected: number[] }>} */
  const results = Object.fromEntries(servers.map((s) => [s.name, { rate: [], p99: [], connected: [] }]));
  try {
    for (let rep = 0; rep < REPS; rep++) {
      const order = rep % 2 === 0 ? servers : [...servers].reverse();
      for (const server of order) {
        const broker = /** @type {import("./launchers.mjs").Broker} */ (server);
        await untilLastRunEvicted(broker);
        await untilIdle(/** @type {import("./launchers.mjs").Broker[]} */ (servers));
        const r = await scenarios.connectStorm(server.url, broker, { sessions: 1000, window: 1000 });
        results[server.name].rate.push(r["conns/s"]);
        results[server.name].p99.push(r["p99 CONNACK ms"]);
        results[server.name].connected.push(r.delivered);
        const line = `${Math.round(r["conns/s"])} conns/s, p99 CONNACK ${Math.round(r["p99 CONNACK ms"])} ms`;
        console.log(`  ${server.name} rep ${rep + 1}: ${line}, ${r.delivered}/${r.sent} connected`);
      }
    }
  } finally {
    servers.forEach((s) => s.stop());
  }
  const aedesRate = median(results.aedes.rate);
  console.log(`\nmedians of ${REPS} repetition(s); 1,000 new clients, 100 at a time`);
  console.log(`${"server".padEnd(28)}  conns/s   p99 CONNACK ms   x Aedes   connected (least)`);
  for (const [name, r] of Object.entries(results)) {
    const rate = median(r.rate);
    const cells = [
      name.padEnd(28),
      String(Math.round(rate)).padStart(8),
      String(Math.round(median(r.p99))).padStart(16),
      (rate / aedesRate).toFixed(2).padStart(9),
      String(Math.min(...r.connected)).padStart(19),
    ];
    console.log(cells.join(" "));
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
