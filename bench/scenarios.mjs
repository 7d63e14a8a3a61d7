// @ts-check
/**
 * The scenarios, one function each, run the same way against either broker. Each returns its figures
 * by name, plus `sent` and `delivered`: every scenario counts what was delivered against what was sent.
 */
import { BenchClient } from "./client.mjs";
import { clients, now, pace, settle, sleep, tag } from "./load.mjs";
import { callsBetween, objectCostsPer, pct } from "./report.mjs";

/** @typedef {import("./launchers.mjs").Counters | undefined} MaybeCounters */
/**
 * One run's figures by name (numbers), what was sent and delivered, and optionally the broker's
 * counters around the message phase alone (`countersWindow`: before, after).
 * @typedef {RunCount & Record<string, any>} ScenarioResult
 */
/** @typedef {{ sent: number; delivered: number; countersWindow?: [MaybeCounters, MaybeCounters] }} RunCount */
/**
 * @typedef {{ sessions: number; window: number }} ScenarioOptions reconnectStorm's persistent sessions, and
 * how many QoS 1 messages its publisher leaves unacknowledged at once (publishEach)
 */
/**
 * @typedef {(url: string, broker: import("./launchers.mjs").Broker, options: ScenarioOptions) => Promise<ScenarioResult>} Scenario
 */

/**
 * The broker's counters once its objects have stopped being invoked for `quietMs` (connection
 * reports reach the registry after CONNACK and after a close); undefined for Aedes.
 * @param {import("./launchers.mjs").Broker} broker
 */
async function quietCounters(broker, quietMs = 300) {
  let last = await broker.counters();
  if (!last) return undefined;
  const busy = (/** @type {import("./launchers.mjs").Counters} */ a, /** @type {typeof a} */ b) =>
    ["sessionInvocations", "registryInvocations", "shardInvocations"].some((k) => a[k] !== b[k]);
  for (let i = 0; i < 600; i++) {
    await sleep(quietMs);
    const c = /** @type {import("./launchers.mjs").Counters} */ (await broker.counters());
    if (!busy(c, last)) return c;
    last = c;
  }
  return last;
}

/** Reconnections started at the same moment in reconnectStorm (see there). */
const RECONNECT_WAVE = 100;

/** How often reconnectStorm's publisher may be cut and come back before the run gives up. */
const MAX_PUBLISHER_CONNECTIONS = 100;

/**
 * One QoS 1 message to each topic from one persistent (3.1.1, clean session 0) publisher, at most
 * `window` unacknowledged (`--window`, 1,000 by default: a 3.1.1 client is told no Receive Maximum, and
 * this keeps inside ours, RECEIVE_MAXIMUM, 1,024 by default, beyond which a client is disconnected). If its connection ends (a broker that could not route a message does not
 * acknowledge it, and a client may be disconnected), it connects again and sends again what was not
 * acknowledged (at least once), as a device would. Resolves once every message is acknowledged.
 * @param {string} url
 * @param {string} clientId
 * @param {string[]} topics
 * @param {Buffer} payload
 * @param {number} window
 */
async function publishEach(url, clientId, topics, payload, window) {
  /** Messages sent and not acknowledged, by index into `topics`. */
  const unacked = new Set();
  let next = 0;
  let connections = 0;
  while (next < topics.length || unacked.size > 0) {
    if (++connections > MAX_PUBLISHER_CONNECTIONS) throw new Error(`publisher cut ${connections - 1} times`);
    const c = new BenchClient(url, clientId);
    const closed = new Promise((resolve) => (c.onClose = () => resolve(undefined)));
    if (!(await c.connect({ clean: false }).catch(() => undefined))) {
      await sleep(1000);
      continue;
    }
    await new Promise((done) => {
      let open = 0;
      const send = (/** @type {number} */ i) => {
        open++;
        c.publish(topics[i], payload, 1)?.then(() => {
          open--;
          unacked.delete(i);
          fill();
        });
      };
      const fill = () => {
        if (next >= topics.length && unacked.size === 0) return done(undefined);
        while (open < window && next < topics.length) {
          unacked.add(next);
          send(next++);
        }
      };
      [...unacked].forEach(send); // what the last connection left unacknowledged, first
      fill();
      void closed.then(done);
    });
    c.close();
  }
  return { connections };
}

/** A registry writes presence with its counters this long after a change (src/observability/totals.ts), plus margin. */
const PRESENCE_WRITE_MS = 6000;

/** One publisher at a fixed offered rate: latency from the publisher's send to the subscriber. */
/**
 * @param {string} url
 * @param {number} rate messages a second
 * @param {number} seconds
 * @param {0 | 1} qos
 */
async function publishAtRate(url, rate, seconds, qos = 1) {
  const t = tag();
  const [sub, pub] = await clients(url, 2, `lat-${t}`);
  /** @type {number[]} */
  const latencies = [];
  sub.onPublish = (p) => latencies.push(now() - p.payload.readDoubleLE(0));
  await sub.subscribe(`bench/lat/${t}`, qos);
  const total = rate * seconds;
  const start = now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    while (now() < due) await sleep(Math.max(0, Math.min(5, due - now())));
    const payload = Buffer.alloc(64);
    payload.writeDoubleLE(now(), 0);
    pub.publish(`bench/lat/${t}`, payload, qos);
  }
  await settle(() => latencies.length, total);
  [sub, pub].forEach((c) => c.close());
  return { "p50 ms": pct(latencies, 50), "p99 ms": pct(latencies, 99), sent: total, delivered: latencies.length };
}

/**
 * The highest of `rates` (rising) one publisher sustains for 2 s: every message delivered (99%) with
 * p99 under 1 s. Each step's figures are printed as it runs.
 * @param {string} url
 * @param {0 | 1} qos
 * @param {number[]} rates
 */
async function sustainedRate(url, qos, rates) {
  let best = 0;
  let sent = 0;
  let delivered = 0;
  for (const rate of rates) {
    const r = await publishAtRate(url, rate, 2, qos);
    sent += r.sent;
    delivered += r.delivered;
    const figures = `delivered ${r.delivered}/${r.sent}, p50 ${r["p50 ms"]} ms, p99 ${r["p99 ms"]} ms`;
    console.log(`  qos${qos} at ${rate}/s: ${figures}`);
    if (r.delivered < r.sent * 0.99 || r["p99 ms"] > 1000) break;
    best = rate;
  }
  return { "sustained msgs/s": best, sent, delivered };
}

/**
 * docs/SCALE.md's 1,000,000-device case: messages a second in all (one a minute each), and the
 * TopicShard count and `$share` group size it recommends (costWorkload1M runs their per-object rates).
 */
export const FLEET_1M = { rate: 1_000_000 / 60, shards: 64, members: 80 };
/** The broker's SHARD_COUNT in the bench (the default, wrangler.toml): costWorkload1M checks it. */
const LOCAL_SHARDS = 8;

/**
 * What a scenario that needs `$share` returns for Aedes: Aedes 1.2.0 does not implement shared
 * subscriptions (measured: a group of 8 received none of 10,500 messages), so there is no reference.
 */
const NO_SHARED_SUBSCRIPTIONS = { sent: 0, delivered: 0 };

/**
 * Fleet telemetry: `devices` devices publish QoS 1 to `<prefix>/<k>/telemetry`, `rate` messages a
 * second in all, each device every devices/rate seconds (so nothing batches on the publisher side, as
 * with one message a minute), for `seconds`; backends subscribe at QoS 1 to `<prefix>/+/telemetry`:
 * one (`members` 0) or a `$share` group of `members`. Counts each backend's messages, the devices'
 * PUBACK latencies, and the broker's counters around the message phase.
 * @param {string} url
 * @param {import("./launchers.mjs").Broker} broker
 * @param {{ devices: number; rate: number; seconds: number; members: number }} load
 */
async function telemetry(url, broker, { devices, rate, seconds, members }) {
  const t = tag();
  const backends = await clients(url, Math.max(1, members), `tm-backend-${t}`);
  const received = backends.map(() => 0);
  backends.forEach((b, i) => (b.onPublish = () => received[i]++));
  const filter = members ? `$share/fleet${t}/tm${t}/+/telemetry` : `tm${t}/+/telemetry`;
  await Promise.all(backends.map((b) => b.subscribe(filter, 1)));
  const list = await clients(url, devices, `tm-dev-${t}`);
  const perDevice = Math.round((rate * seconds) / devices);
  const interval = (1000 * devices) / rate;
  /** @type {number[]} */
  const latencies = [];
  // The registries write the connections' presence rows with their counters, up to 5 s after the
  // connects: those rows belong to connecting, not to the messages counted next (they were 0.036 of
  // the 0.04 rows per message costWorkload reported; docs/COST.md).
  await sleep(PRESENCE_WRITE_MS);
  const countersBefore = await broker.counters();
  const start = now();
  await Promise.all(
    list.map(async (device, k) => {
      await sleep((k * interval) / devices); // spread the devices over one interval
      for (let i = 0; i < perDevice; i++) {
        const sent = now();
        const acked = /** @type {Promise<unknown>} QoS 1 */ (
          device.publish(`tm${t}/${k}/telemetry`, Buffer.alloc(64, 5), 1)
        );
        acked.then(() => latencies.push(now() - sent));
        await sleep(interval);
      }
    }),
  );
  const total = perDevice * devices;
  const delivered = () => received.reduce((a, b) => a + b, 0);
  await settle(delivered, total);
  const elapsed = now() - start;
  await settle(() => latencies.length, total, 1000);
  const countersAfter = await broker.counters();
  [...backends, ...list].forEach((c) => c.close());
  /** @type {[MaybeCounters, MaybeCounters] | undefined} */
  const countersWindow = countersBefore && [countersBefore, countersAfter];
  const backendIds = backends.map((b) => b.clientId);
  return { received, backendIds, latencies, elapsed, sent: total, delivered: delivered(), countersWindow };
}

/**
 * The busiest backend's Session object during a telemetry run: its incoming requests a second, and
 * per message it received (NaN without counters: Aedes).
 * @param {Awaited<ReturnType<typeof telemetry>>} run
 */
function busiestBackend(run) {
  const [c0, c1] = run.countersWindow ?? [];
  if (!c0 || !c1) return { perSecond: NaN, perMessage: NaN };
  const calls = callsBetween(c0, c1, "session");
  const byBackend = run.backendIds.map((id, i) => ({ calls: calls.get(id) ?? 0, received: run.received[i] }));
  const busiest = byBackend.reduce((a, b) => (b.calls > a.calls ? b : a));
  return { perSecond: busiest.calls / ((c1.at - c0.at) / 1000), perMessage: busiest.calls / busiest.received };
}

/**
 * The publishers' Session objects' busy wall time per message sent (NaN without counters: Aedes):
 * the measure of their billed duration (docs/COST.md), by the objects (an event being handled or a shard
 * call awaited; not pending timers nor wakes), not from the client, whose PUBACK wait also holds the
 * hops to and from the object. Every counted session but the backends' (MAX_COUNTED_OBJECTS bounds how many are).
 * @param {Awaited<ReturnType<typeof telemetry>>} run
 */
function publishersBusyMs(run) {
  const [c0, c1] = run.countersWindow ?? [];
  if (!c0?.sessionBusyByObject || !c1?.sessionBusyByObject) return NaN;
  const before = c0.sessionBusyByObject;
  let busy = 0;
  for (const [name, ms] of Object.entries(c1.sessionBusyByObject)) {
    if (!run.backendIds.includes(name)) busy += ms - (before[name] ?? 0);
  }
  return busy / run.sent;
}

/**
 * A fleet scenario's result: the delivery rate, its own `figures`, the devices' PUBACK latencies,
 * what was sent and delivered, and the counters around the message phase.
 * @param {Awaited<ReturnType<typeof telemetry>>} run
 * @param {Record<string, number>} figures
 * @returns {ScenarioResult}
 */
function fleetResult(run, figures) {
  return {
    "msgs/s": (run.delivered / run.elapsed) * 1000,
    ...figures,
    "publisher PUBACK p50 ms": pct(run.latencies, 50),
    "publisher PUBACK p99 ms": pct(run.latencies, 99),
    // What a publisher's Session object is billed for, waiting: the mean, not the median (docs/COST.md).
    "publisher PUBACK mean ms": run.latencies.length
      ? run.latencies.reduce((a, b) => a + b, 0) / run.latencies.length
      : NaN,
    "publisher Session busy ms/msg": publishersBusyMs(run),
    sent: run.sent,
    delivered: run.delivered,
    countersWindow: run.countersWindow,
  };
}

/** @type {Record<string, Scenario>} */
export const scenarios = {
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
    return publishAtRate(url, 200, 3);
  },

  /**
   * qos1Latency with our clients connected past `wrangler dev`'s proxy, to the workerd that runs the
   * Worker (as `--direct` does for every scenario). `npm start` users go through that proxy; a
   * deployment has none, nor does Aedes: the two rows side by side show what the proxy adds.
   */
  async qos1LatencyDirect(url, broker) {
    const target = broker.name === "ours" ? broker.directUrl : url;
    if (!target) throw new Error("qos1LatencyDirect: the workerd running the Worker was not found");
    return publishAtRate(target, 200, 3);
  },

  async qos1MaxRate(url) {
    return sustainedRate(url, 1, [250, 500, 1000, 2000, 4000, 8000]);
  },

  /**
   * What one publisher's Session object takes: a single QoS 0 publisher at rising offered rates, to
   * one subscriber (the MAX_PUBLISH_RATE default is set from it).
   */
  async qos0MaxRate(url) {
    return sustainedRate(url, 0, [1000, 2000, 4000, 8000, 16000]);
  },

  /**
   * 1,000 new clean sessions connect, 100 at a time, then leave. Besides the rate and CONNACK
   * latency: what the objects did per connect (until the connection reports have landed) and per
   * connect and leave (after the registries' presence write is due).
   */
  async connectStorm(url, broker) {
    const t = tag();
    const n = 1000;
    /** @type {number[]} */
    const latencies = [];
    const list = [];
    let refused = 0;
    const c0 = await quietCounters(broker);
    const start = now();
    for (let i = 0; i < n; i += 100) {
      const batch = Array.from({ length: Math.min(100, n - i) }, (_, k) => new BenchClient(url, `cs-${t}-${i + k}`));
      await Promise.all(
        batch.map(async (c) => {
          const s = now();
          await c.connect().then(
            () => latencies.push(now() - s),
            () => refused++,
          );
        }),
      );
      list.push(...batch);
    }
    const elapsed = now() - start;
    const c1 = await quietCounters(broker);
    list.forEach((c) => c.close());
    if (c0) await sleep(PRESENCE_WRITE_MS);
    const c2 = await quietCounters(broker);
    const connsPerSecond = (latencies.length / elapsed) * 1000;
    return {
      "conns/s": connsPerSecond,
      "p99 CONNACK ms": pct(latencies, 99),
      ...objectCostsPer(c0, c1, n, "connect"),
      "rows per connect and leave": objectCostsPer(c0, c2, n, "connect")["rows per connect"],
      "closed before CONNACK": refused,
      sent: n,
      delivered: latencies.length,
    };
  },

  /**
   * A deploy drops every connection at once and every device comes back at once. `sessions`
   * persistent sessions (3.1.1, clean session 0), each subscribed at QoS 1 to a topic of its own,
   * are connected; every connection is dropped without DISCONNECT; one QoS 1 message per session is
   * published and acknowledged while they are away (publishEach: a window, and a publisher that comes
   * back when cut); then all reconnect, 100 at a time. Figures: time until every CONNACK with Session
   * Present, CONNACK latency, time until every queued message arrived, and (ours) what the objects did
   * per reconnect, delivery of the queued message included. A real deploy also restarts every object;
   * locally the objects live on (each connection's end is handled as a network drop, as it is after a restart).
   */
  async reconnectStorm(url, broker, { sessions: n, window }) {
    const t = tag();
    const logFrom = broker.log?.().length ?? 0;
    const cStart = await broker.counters();
    // The shard rule hashes a topic's first two levels (src/topics/shard-rule.ts, SHARD_LEVELS 2): each
    // session's own second level spreads the topics over every shard (10,000 fall 1,249 - 1,251 in each
    // of 8), where `bench/rs/<run>/<i>` put them all in one.
    const topic = (/** @type {number} */ i) => `rs/${t}-${i}/q`;
    const id = (/** @type {number} */ i) => `rs-${t}-${i}`;
    const first = [];
    for (let i = 0; i < n; i += 100) {
      const batch = Array.from({ length: Math.min(100, n - i) }, (_, k) => new BenchClient(url, id(i + k)));
      await Promise.all(
        batch.map(async (c, k) => {
          await c.connect({ clean: false });
          await c.subscribe(topic(i + k), 1);
        }),
      );
      first.push(...batch);
    }
    first.forEach((c) => c.drop()); // the deploy
    await quietCounters(broker);
    await sleep(500); // Aedes has no counters: let it see every close too
    const publishStart = now();
    const topics = Array.from({ length: n }, (_, i) => topic(i));
    const publisher = await publishEach(url, `rs-pub-${t}`, topics, Buffer.alloc(64, 3), window);
    const publishMs = now() - publishStart;
    const c0 = await quietCounters(broker);

    /** Sessions that got their message, and copies beyond the first (QoS 1: at least once). */
    const got = new Set();
    let duplicates = 0;
    let resumed = 0;
    let refused = 0;
    /** @type {number[]} */
    const latencies = [];
    const again = Array.from({ length: n }, (_, i) => new BenchClient(url, id(i)));
    again.forEach((c, i) => {
      c.onPublish = () => (got.has(i) ? duplicates++ : got.add(i));
    });
    const start = now();
    // In waves of RECONNECT_WAVE at once, as connectStorm does, so the two compare; deployed, the devices
    // would not wait for each other (docs/PERFORMANCE.md, "At the same moment, locally").
    for (let i = 0; i < n; i += RECONNECT_WAVE) {
      await Promise.all(
        again.slice(i, i + RECONNECT_WAVE).map(async (c) => {
          const s = now();
          const connack = /** @type {{ sessionPresent: boolean } | undefined} */ (
            await c.connect({ clean: false }).catch(() => void refused++)
          );
          if (!connack) return;
          latencies.push(now() - s);
          if (connack.sessionPresent) resumed++;
        }),
      );
    }
    const allResumedMs = now() - start;
    await settle(() => got.size, n, 5000, 600000);
    const allDeliveredMs = now() - start;
    const c1 = await quietCounters(broker);
    again.forEach((c) => c.close());
    return {
      sessions: n,
      "s to publish one to each": publishMs / 1000,
      "publisher connections": publisher.connections,
      "s until all resumed": allResumedMs / 1000,
      "resumes/s": (resumed / allResumedMs) * 1000,
      "resumed with Session Present": resumed,
      "closed before CONNACK": refused,
      "p50 CONNACK ms": pct(latencies, 50),
      "p99 CONNACK ms": pct(latencies, 99),
      "s until all queued delivered": allDeliveredMs / 1000,
      "duplicate deliveries": duplicates,
      ...(cStart && c1
        ? {
            "most deliveries in flight (a shard)": c1.shardDeliveriesInFlightPeak,
            "deliveries that waited in a shard": c1.shardDeliveriesWaited - cStart.shardDeliveriesWaited,
          }
        : {}),
      // Session objects that could not open their database locally (docs/PERFORMANCE.md, "10,000 sessions").
      ...(broker.log
        ? { "SQLITE_NOMEM in the log": broker.log().slice(logFrom).split("SQLITE_NOMEM").length - 1 }
        : {}),
      ...objectCostsPer(c0, c1, n, "reconnect"),
      sent: n,
      delivered: got.size,
    };
  },

  async retainedReplay(url) {
    const t = tag();
    const [pub] = await clients(url, 1, `rr-pub-${t}`);
    const n = 1000;
    for (let i = 0; i < n; i += 100) {
      const retain = (/** @type {number} */ k) => pub.publish(`bench/ret/${t}/${k}`, Buffer.alloc(32, 1), 1, true);
      await Promise.all(Array.from({ length: 100 }, (_, k) => retain(i + k)));
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
   * minute send), and one backend subscribes to devices/+/telemetry at QoS 1. Shards and the backend
   * session see the real rates (docs/SCALE.md, 100k devices). The counted costs per delivered message
   * feed the model.
   */
  async costWorkload(url, broker) {
    const run = await telemetry(url, broker, { devices: 300, rate: 1667, seconds: 5, members: 0 });
    return fleetResult(run, { "backend Session req/msg": busiestBackend(run).perMessage });
  },

  /**
   * docs/SCALE.md's 1,000,000-device case on the objects that carry it: each TopicShard receives what
   * one of FLEET_1M.shards shards would (1M/60/shards publishes a second) and each member of a `$share`
   * group what one of FLEET_1M.members members would. With the broker's LOCAL_SHARDS shards that is
   * LOCAL_SHARDS x the per-shard rate in all, to as many members as that rate needs.
   */
  async costWorkload1M(url, broker) {
    if (broker.name === "aedes") return NO_SHARED_SUBSCRIPTIONS;
    const perShard = FLEET_1M.rate / FLEET_1M.shards;
    const perMember = FLEET_1M.rate / FLEET_1M.members;
    const rate = perShard * LOCAL_SHARDS;
    const members = Math.round(rate / perMember);
    const run = await telemetry(url, broker, { devices: 300, rate, seconds: 5, members });
    const [c0, c1] = run.countersWindow ?? [];
    if (c0 && c1 && [...callsBetween(c0, c1, "shard").values()].filter((n) => n > 0).length !== LOCAL_SHARDS) {
      throw new Error(
        `costWorkload1M needs SHARD_COUNT ${LOCAL_SHARDS} (the default); other shard counts skew its rates`,
      );
    }
    const busiest = busiestBackend(run);
    return fleetResult(run, {
      members,
      "msgs/s per member (least)": (Math.min(...run.received) / run.elapsed) * 1000,
      "member Session req/s (most)": busiest.perSecond,
      "member Session req/msg (busiest)": busiest.perMessage,
    });
  },

  /**
   * One firehose (400 QoS 1 messages a second from 100 devices) spread over a `$share` group of 1,
   * 2 and 4 backends: each member's delivery rate and its Session object's incoming request rate
   * should fall with the group's size, and every message reach exactly one member.
   */
  async shareFirehose(url, broker) {
    if (broker.name === "aedes") return NO_SHARED_SUBSCRIPTIONS;
    /** @type {Record<string, number>} */
    const figures = {};
    let sent = 0;
    let delivered = 0;
    for (const members of [1, 2, 4]) {
      const run = await telemetry(url, broker, { devices: 100, rate: 400, seconds: 3, members });
      figures[`${members} member(s): msgs/s per member (least)`] = (Math.min(...run.received) / run.elapsed) * 1000;
      const busiest = busiestBackend(run);
      figures[`${members} member(s): member Session req/s (most)`] = busiest.perSecond;
      figures[`${members} member(s): member Session req/msg`] = busiest.perMessage;
      sent += run.sent;
      delivered += run.delivered;
    }
    return { ...figures, sent, delivered };
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
    /** @type {(packet: import("mqtt-packet").Packet, answer: string) => Promise<number[]>} */
    const roundTrips = async (packet, answer) => {
      /** @type {number[]} */
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
      // What the scenarios before this one left in the isolate (NaN: not measured, see the log).
      "JS heap MB before": heapBefore / 1024,
      "RSS KB per connection": (after - before) / n,
      sent: n,
      delivered: open,
    };
  },
};
