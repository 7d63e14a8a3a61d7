/**
 * SHARD_COUNT grows from 8 to 16 on a broker with data, mid-traffic, as a deploy does it: the same
 * storage restarted with the new configuration (docs/SHARDS.md). Subscriptions (literal, wildcard,
 * shared) and retained messages are spread over all 8 shards first; QoS 1 publishers keep publishing
 * through the restart. Afterwards every retained message is served exactly once, and every message a
 * publisher got a PUBACK for reached every subscription that matches it (persistent sessions that
 * reconnect by themselves).
 */
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import { startBroker } from "./global-setup";
import { roundTrip } from "../support/clients";
import { uid } from "../support/ids";
import { until } from "../support/until";
import { allShards, shardForTopic } from "../../src/topics/shard-rule";

const VARS = { ALLOW_ANONYMOUS: "true", CONNECT_RATE_LIMIT: "off" };
const RETAINED_TOPICS = Array.from({ length: 64 }, (_, i) => `grow/r${i}/status`);
const DATA_TOPICS = Array.from({ length: 24 }, (_, i) => `grow/d${i}/data`);
/** Each publisher sends one QoS 1 message every this many ms, over DATA_TOPICS in turn. */
const PUBLISH_EVERY_MS = 20;

type Broker = Awaited<ReturnType<typeof startBroker>>;
let broker: Broker | undefined;
const clients: MqttClient[] = [];

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  if (process.env.E2E_BROKER_LOG) console.log(broker?.output());
  await broker?.stop();
});

/**
 * A client of a persistent session (clean: false), connected again to the restarted broker at once
 * by `reconnect`, as a device does after a deploy; `seen` collects what every connection received.
 */
class Device {
  client!: MqttClient;
  readonly seen = new Set<string>();
  constructor(
    readonly version: 4 | 5,
    readonly clientId = uid("grow"),
  ) {}

  async connect(url: string): Promise<this> {
    this.client = await mqtt.connectAsync(url, {
      protocolVersion: this.version,
      clientId: this.clientId,
      clean: false,
      reconnectPeriod: 0,
      connectTimeout: 8000,
      ...(this.version === 5 ? { properties: { sessionExpiryInterval: 600 } } : {}),
    });
    this.client.on("message", (topic, payload) => this.seen.add(`${topic} ${payload.toString()}`));
    clients.push(this.client);
    return this;
  }
}

/** A QoS 1 publisher over DATA_TOPICS while `running`; `acked` holds what it got a PUBACK for. */
function publishing(device: Device, name: string) {
  const acked = new Set<string>();
  let seq = 0;
  let pending = 0;
  let running = true;
  const timer = setInterval(() => {
    if (!running || !device.client.connected) return;
    const topic = DATA_TOPICS[seq % DATA_TOPICS.length]!;
    const payload = `${name}:${seq++}`;
    pending++;
    device.client.publish(topic, payload, { qos: 1 }, (err) => {
      pending--;
      if (!err) acked.add(`${topic} ${payload}`);
    });
  }, PUBLISH_EVERY_MS);
  return {
    acked,
    stop: () => {
      running = false;
      clearInterval(timer);
    },
    /** Every publish of the current connection answered (those of a connection that dropped never are). */
    settled: () => pending === 0,
    /** The connection dropped with the broker: its unanswered publishes are lost, never acknowledged. */
    dropped: () => (pending = 0),
  };
}

function missing(expected: Iterable<string>, got: Set<string>): string[] {
  return [...expected].filter((m) => !got.has(m));
}

describe("growing SHARD_COUNT on a live broker", () => {
  it("loses no subscription, retained message or acknowledged QoS 1 message from 8 to 16 shards", async () => {
    // The premise: before, every one of the 8 shards holds retained messages; after, some moved.
    expect(new Set(RETAINED_TOPICS.map((t) => shardForTopic(t, 8, 2)))).toEqual(new Set(allShards(8)));
    const moved = RETAINED_TOPICS.filter((t) => shardForTopic(t, 16, 2) >= 8);
    expect(moved.length).toBeGreaterThan(0);
    expect(DATA_TOPICS.filter((t) => shardForTopic(t, 16, 2) >= 8).length).toBeGreaterThan(0);

    broker = await startBroker({ ...VARS, SHARD_COUNT: "8" });
    const url = `${broker.base.replace("http", "ws")}/mqtt`;

    const wildcard = await new Device(4).connect(url);
    await wildcard.client.subscribeAsync("grow/+/data", { qos: 1 });
    const literal = await new Device(4).connect(url);
    await literal.client.subscribeAsync(DATA_TOPICS, { qos: 1 });
    const members = [await new Device(5).connect(url), await new Device(5).connect(url)];
    for (const m of members) await m.client.subscribeAsync("$share/g/grow/+/data", { qos: 1 });

    const retainer = await new Device(4).connect(url);
    for (const topic of RETAINED_TOPICS) {
      await retainer.client.publishAsync(topic, `state of ${topic}`, { qos: 1, retain: true });
    }

    const senders = [await new Device(4).connect(url), await new Device(4).connect(url)];
    const publishers = senders.map((d, i) => publishing(d, `p${i}`));
    const ackedCount = () => publishers.reduce((n, p) => n + p.acked.size, 0);
    await until(() => ackedCount() >= 100, "QoS 1 traffic before the growth");

    // The deploy: the same storage, restarted with twice the shards, while the publishers go on.
    await broker.stop(true);
    for (const p of publishers) p.dropped();
    const beforeRestart = ackedCount();
    broker = await startBroker({ ...VARS, SHARD_COUNT: "16", SHARD_COUNT_PREVIOUS: "8" }, undefined, true, {
      state: broker.state,
      port: broker.port,
    });
    // Every device comes back to its session (the publishers first: traffic resumes at once).
    for (const device of [...senders, wildcard, literal, ...members]) await device.connect(url);
    await until(() => ackedCount() >= beforeRestart + 150, "QoS 1 traffic after the growth");
    for (const p of publishers) p.stop();
    await until(() => publishers.every((p) => p.settled()), "every publish answered");

    const acked = publishers.flatMap((p) => [...p.acked]);
    const got = { wildcard: wildcard.seen, literal: literal.seen };
    const allMembers = () => new Set(members.flatMap((m) => [...m.seen]));
    await until(
      () =>
        missing(acked, got.wildcard).length +
          missing(acked, got.literal).length +
          missing(acked, allMembers()).length ===
        0,
      "every acknowledged message at every subscription",
      15000,
    ).catch(() => {
      expect({
        wildcard: missing(acked, got.wildcard).slice(0, 5),
        literal: missing(acked, got.literal).slice(0, 5),
        shared: missing(acked, allMembers()).slice(0, 5),
      }).toEqual({ wildcard: [], literal: [], shared: [] });
    });

    // Every retained message exactly once: the wildcard asks all 16 shards, parents and children;
    // a literal filter of a moved topic asks its new shard only.
    // QoS 1 retained messages beyond the in-flight window (32) follow the client's PUBACKs: wait for
    // them all, then for anything more the session would send (none may come twice).
    const retainedAt = async (filter: string, count: number) => {
      const reader = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: uid("grow-reader") });
      clients.push(reader);
      const retained: string[] = [];
      reader.on("message", (topic, payload, packet) => {
        if (packet.retain) retained.push(`${topic} ${payload.toString()}`);
      });
      await reader.subscribeAsync(filter, { qos: 1 });
      await until(() => retained.length >= count, `${count} retained messages for ${filter}`);
      await roundTrip(reader);
      return retained.sort();
    };
    const state = (topics: string[]) => topics.map((t) => `${t} state of ${t}`).sort();
    expect(await retainedAt("grow/+/status", RETAINED_TOPICS.length)).toEqual(state(RETAINED_TOPICS));
    expect(await retainedAt(moved[0]!, 1)).toEqual(state([moved[0]!]));

    // Each new shard adopted from its parent, and each parent let go of what moved.
    const events = (name: string) =>
      broker!
        .output()
        .split("\n")
        .filter((l) => l.includes(`"event":"${name}"`));
    expect(events("shard.adopted")).toHaveLength(8);
    await until(() => events("shard.growth_finished").length === 8, "every parent released its moved rows");
  }, 60000);
});
