// @ts-check
/**
 * The figures' arithmetic and their printing: percentiles, the medians across repetitions, the
 * counted Durable Object costs per delivered message, the table us/Aedes and the results file.
 */
import { mkdirSync, writeFileSync } from "node:fs";

/** @typedef {import("./scenarios.mjs").ScenarioResult} ScenarioResult */
/** @typedef {{ ours: ScenarioResult[]; aedes: ScenarioResult[] }} ResultsByBroker */
/**
 * Our counted Durable Object costs of one run, per delivered message.
 * @typedef {object} Cost
 * @property {number} invocationsPerDelivered
 * @property {number} billedRequestsPerDelivered
 * @property {number} rowsWrittenPerDelivered
 * @property {number} sessionCallsPerDelivered incoming requests into Session objects (every event counts 1)
 * @property {number} shardCallsPerDelivered incoming requests into TopicShard objects
 * @property {number} registryCallsPerDelivered incoming requests into ClientRegistry objects
 * @property {number} hottestSessionPerSecond incoming requests a second into the busiest Session object
 * @property {number} hottestShardPerSecond incoming requests a second into the busiest TopicShard
 * @property {number} hottestRegistryPerSecond incoming requests a second into the busiest ClientRegistry
 */
/**
 * One line of the table: a figure's medians for us and Aedes, and us/Aedes.
 * @typedef {{ scenario: string; metric: string; ours: Figure; aedes: Figure; ratio: Figure }} Row
 */
/** @typedef {number | string} Figure a number, or text such as "1000/1000" or "" */
/** @typedef {ReturnType<typeof import("./cpu-profile.mjs").summarizeProfile>} ProfileSummary */

/**
 * The median of the finite values (NaN when there are none).
 * @param {number[]} xs
 */
export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};

/**
 * The `p`th percentile (nearest rank below).
 * @param {number[]} xs
 * @param {number} p
 */
export const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};

/**
 * What the Durable Objects did per delivered message, from the broker's counters before and after.
 * @param {import("./launchers.mjs").Counters} c0
 * @param {import("./launchers.mjs").Counters} c1
 * @param {number} delivered
 * @returns {Cost}
 */
export function costPerDelivered(c0, c1, delivered) {
  const d = (/** @type {string} */ k) => c1[k] - c0[k];
  return {
    invocationsPerDelivered: (d("sessionInvocations") + d("shardInvocations")) / delivered,
    // As billed when deployed: incoming WebSocket messages count 1/20 of a request.
    billedRequestsPerDelivered:
      (d("sessionInvocations") -
        d("sessionWebSocketMessages") +
        d("sessionWebSocketMessages") / 20 +
        d("shardInvocations") +
        d("registryInvocations")) /
      delivered,
    rowsWrittenPerDelivered: rowsWritten(c0, c1) / delivered,
    // Against a Durable Object's soft limit every incoming event counts as one request (WebSocket
    // messages too: each is an event the object runs), unlike the billed figure above.
    sessionCallsPerDelivered: d("sessionInvocations") / delivered,
    shardCallsPerDelivered: d("shardInvocations") / delivered,
    registryCallsPerDelivered: d("registryInvocations") / delivered,
    hottestSessionPerSecond: hottestRate(c0, c1, "session"),
    hottestShardPerSecond: hottestRate(c0, c1, "shard"),
    hottestRegistryPerSecond: hottestRate(c0, c1, "registry"),
  };
}

/**
 * Rows written between two readings of the counters, as billed: SQLite rows, alarms set or cleared,
 * and the registries' presence rows (written with the counters, seconds later: counters.ts).
 * @param {import("./launchers.mjs").Counters} c0
 * @param {import("./launchers.mjs").Counters} c1
 */
export function rowsWritten(c0, c1) {
  const d = (/** @type {string} */ k) => (c1[k] ?? 0) - (c0[k] ?? 0);
  return d("sqlRowsWritten") + d("alarmWrites") + d("presenceRowsWritten");
}

/**
 * What the Durable Objects did per event (a connect, a reconnect) between two readings of the
 * counters, by object class, with the rows written; NaN for a broker without counters (Aedes).
 * The gateway Worker's part is one request per connection (its WebSocket upgrade), not counted.
 * @param {import("./launchers.mjs").Counters | undefined} c0
 * @param {import("./launchers.mjs").Counters | undefined} c1
 * @param {number} n events
 * @param {string} what "connect", "reconnect"
 * @returns {Record<string, number>}
 */
export function objectCostsPer(c0, c1, n, what) {
  const d = (/** @type {string} */ k) => (c0 && c1 ? (c1[k] - c0[k]) / n : NaN);
  return {
    [`rows per ${what}`]: c0 && c1 ? rowsWritten(c0, c1) / n : NaN,
    [`Session invocations per ${what}`]: d("sessionInvocations"),
    [`registry invocations per ${what}`]: d("registryInvocations"),
    [`shard invocations per ${what}`]: d("shardInvocations"),
  };
}

/**
 * The calls into each object of a class between two readings of the counters (an object first
 * counted in between started from zero).
 * @param {import("./launchers.mjs").Counters} c0
 * @param {import("./launchers.mjs").Counters} c1
 * @param {keyof import("./launchers.mjs").CallsByObject} kind
 * @returns {Map<string, number>}
 */
export function callsBetween(c0, c1, kind) {
  const before = c0.byObject?.[kind] ?? {};
  return new Map(Object.entries(c1.byObject?.[kind] ?? {}).map(([name, n]) => [name, n - (before[name] ?? 0)]));
}

/**
 * The largest incoming request rate (a second) of one object of a class between two readings.
 * @param {import("./launchers.mjs").Counters} c0
 * @param {import("./launchers.mjs").Counters} c1
 * @param {keyof import("./launchers.mjs").CallsByObject} kind
 */
function hottestRate(c0, c1, kind) {
  const hottest = Math.max(0, ...callsBetween(c0, c1, kind).values());
  return hottest / ((c1.at - c0.at) / 1000);
}

/**
 * The table's rows: per scenario, each figure's medians and us/Aedes, delivered/sent summed over the
 * repetitions, and our counted costs.
 * @param {Record<string, ResultsByBroker>} results
 * @param {Record<string, Cost[]>} costs
 * @returns {Row[]}
 */
export function tableRows(results, costs) {
  /** @type {Row[]} */
  const rows = [];
  for (const [name, byBroker] of Object.entries(results)) {
    const metrics = Object.keys(byBroker.ours[0]).filter((k) => k !== "sent" && k !== "delivered");
    for (const metric of metrics) {
      const ours = median(byBroker.ours.map((r) => r[metric]));
      const aedes = median(byBroker.aedes.map((r) => r[metric]));
      rows.push({ scenario: name, metric, ours, aedes, ratio: ours / aedes });
    }
    // A tail target is per repetition too (issue 15: "no repetition above 4x"): each repetition's p99
    // against Aedes's in the same repetition (both run back to back in it), and the worst of them.
    if (typeof byBroker.ours[0]["p99 ms"] === "number" && byBroker.ours.length > 1) {
      const ratios = byBroker.ours.map((r, i) => Number(r["p99 ms"]) / Number(byBroker.aedes[i]?.["p99 ms"]));
      rows.push({
        scenario: name,
        metric: "p99 us/aedes each repetition",
        ours: ratios.map((x) => x.toFixed(2)).join(" "),
        aedes: "",
        ratio: `worst ${Math.max(...ratios).toFixed(2)}`,
      });
    }
    /** @type {(list: ScenarioResult[], k: "sent" | "delivered") => number} */
    const sum = (list, k) => list.reduce((a, r) => a + r[k], 0);
    rows.push({
      scenario: name,
      metric: "delivered/sent",
      ours: `${sum(byBroker.ours, "delivered")}/${sum(byBroker.ours, "sent")}`,
      aedes: `${sum(byBroker.aedes, "delivered")}/${sum(byBroker.aedes, "sent")}`,
      ratio: "",
    });
    if (costs[name]) {
      /** @type {(metric: string, k: keyof Cost) => Row} */
      const costRow = (metric, k) => {
        return { scenario: name, metric, ours: median(costs[name].map((c) => c[k])), aedes: "", ratio: "" };
      };
      rows.push(costRow("DO invocations per delivered (ours)", "invocationsPerDelivered"));
      rows.push(costRow("billed DO requests per delivered (ours)", "billedRequestsPerDelivered"));
      rows.push(costRow("rows written per delivered (ours)", "rowsWrittenPerDelivered"));
      // Per object class: incoming requests per delivered message, and the busiest object's rate.
      /** @type {(kind: string, perDelivered: keyof Cost, hottest: keyof Cost) => Row} */
      const objectRow = (kind, perDelivered, hottest) => {
        const per = fmt(median(costs[name].map((c) => c[perDelivered])));
        const hot = fmt(median(costs[name].map((c) => c[hottest])));
        return {
          scenario: name,
          metric: `${kind} req/msg; hottest req/s`,
          ours: `${per}; ${hot}`,
          aedes: "",
          ratio: "",
        };
      };
      rows.push(objectRow("Session", "sessionCallsPerDelivered", "hottestSessionPerSecond"));
      rows.push(objectRow("TopicShard", "shardCallsPerDelivered", "hottestShardPerSecond"));
      rows.push(objectRow("Registry", "registryCallsPerDelivered", "hottestRegistryPerSecond"));
    }
  }
  return rows;
}

/**
 * A figure as printed: whole numbers from 100 up, two decimals below, "n/a" for no figure.
 * @param {number | string} v
 */
const fmt = (v) => {
  if (typeof v !== "number") return v;
  if (!Number.isFinite(v)) return "n/a";
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
};

/** @param {string} scenario @param {string} metric @param {string} us @param {string} aedes @param {string} ratio */
const line = (scenario, metric, us, aedes, ratio) =>
  `${scenario.padEnd(16)} ${metric.padEnd(38)} ${us.padStart(12)} ${aedes.padStart(12)} ${ratio.padStart(9)}`;

/**
 * Prints the table, the CPU profile summaries and the load generator's own CPU use.
 * @param {{ reps: number; rows: Row[]; profiles: Record<string, ProfileSummary>; generatorCpu: number }} report
 */
export function printReport({ reps, rows, profiles, generatorCpu }) {
  const brokers = "us = this broker under workerd (wrangler dev), Aedes 1.2.0 over ws.";
  console.log(`\nmedians of ${reps} repetition(s); ${brokers}`);
  console.log(
    "Higher is better for rates, lower for ms and KB. " +
      "Idle memory: JS heap growth after a full GC, and process RSS growth (noisy for a GC'd process).",
  );
  console.log(line("scenario", "metric", "us", "aedes", "us/aedes"));
  for (const r of rows) {
    console.log(line(r.scenario, r.metric, String(fmt(r.ours)), String(fmt(r.aedes)), String(fmt(r.ratio))));
  }
  for (const [name, p] of Object.entries(profiles)) {
    const sampled = `${p.sampledMs.toFixed(0)} ms sampled, ${p.idlePercent.toFixed(0)}% idle`;
    console.log(`\nCPU profile of workerd's JavaScript during ${name} (ours): ${sampled}`);
    console.log(`  by place:    ${p.places.map((x) => `${x.what} ${x.percent.toFixed(1)}%`).join(", ")}`);
    for (const f of p.functions) console.log(`  ${f.percent.toFixed(1).padStart(5)}%  ${f.what}`);
  }
  const limits = "(near 100% would mean the generator limits the figures)";
  console.log(`\nload generator CPU: ${generatorCpu.toFixed(0)}% of one core over the run ${limits}`);
}

/**
 * Writes everything measured to bench/results/bench-<time>.json and says where.
 * @param {object} everything
 */
export function writeResults(everything) {
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  const file = new URL(`./results/bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`, import.meta.url);
  writeFileSync(file, JSON.stringify(everything, null, 2));
  console.log(`results: ${file.pathname}`);
}
