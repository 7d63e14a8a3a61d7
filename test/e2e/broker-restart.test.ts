/**
 * The broker restarts on its storage (a deploy, or workerd stopped and started on the same
 * --persist-to directory) under MQTT.js clients that reconnect by themselves (`reconnectPeriod`,
 * MQTT.js's default) and keep publishing while it is away. Every QoS 1 publish is eventually
 * acknowledged, and every acknowledged message reaches the persistent subscriber.
 *
 * MQTT.js keeps what it publishes while disconnected, and after the reconnect resends it one PUBLISH
 * at a time, each after the PUBACK of the one before, holding new publishes until it is done
 * (README, "Clients that reconnect"). So a backlog drains at one message per PUBACK round trip: the
 * outage here is kept short enough for that to finish within the test's time.
 */
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import { startBroker } from "./global-setup";
import { uid } from "../support/ids";
import { until } from "../support/until";

const BROKER_VARS = { ALLOW_ANONYMOUS: "true", CONNECT_RATE_LIMIT: "off" };
const TOPICS = Array.from({ length: 16 }, (_, i) => `restart/t${i}/data`);
/** Each publisher sends one QoS 1 message every this many ms, before, during and after the restart. */
const PUBLISH_EVERY_MS = 25;

let broker: Awaited<ReturnType<typeof startBroker>> | undefined;
const clients: MqttClient[] = [];

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  if (process.env.E2E_BROKER_LOG) console.log(broker?.output());
  await broker?.stop();
});

/** A persistent-session MQTT.js client that reconnects by itself, as devices are configured. */
async function device(url: string, version: 4 | 5): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, {
    protocolVersion: version,
    clientId: uid("restart"),
    clean: false,
    reconnectPeriod: 300,
    connectTimeout: 8000,
    ...(version === 5 ? { properties: { sessionExpiryInterval: 600 } } : {}),
  });
  clients.push(client);
  return client;
}

/** A QoS 1 publisher over TOPICS, connected or not: MQTT.js keeps what it cannot send yet. */
function publishing(client: MqttClient, name: string) {
  const sent: string[] = [];
  const acked = new Set<string>();
  const failed: string[] = [];
  const timer = setInterval(() => {
    const topic = TOPICS[sent.length % TOPICS.length]!;
    const payload = `${name}:${sent.length}`;
    const message = `${topic} ${payload}`;
    sent.push(message);
    client.publish(topic, payload, { qos: 1 }, (err) => {
      if (err) failed.push(`${message}: ${err.message}`);
      else acked.add(message);
    });
  }, PUBLISH_EVERY_MS);
  return { sent, acked, failed, stop: () => clearInterval(timer) };
}

describe("a broker restart under clients that reconnect by themselves", () => {
  it("acknowledges every QoS 1 publish, those kept through the outage too, and delivers every acknowledged one", async () => {
    broker = await startBroker(BROKER_VARS);
    const url = `${broker.base.replace("http", "ws")}/mqtt`;

    const subscriber = await device(url, 5);
    const seen = new Set<string>();
    subscriber.on("message", (topic, payload) => seen.add(`${topic} ${payload.toString()}`));
    await subscriber.subscribeAsync("restart/+/data", { qos: 1 });
    const publishers = [publishing(await device(url, 4), "v4"), publishing(await device(url, 5), "v5")];
    const ackedCount = () => publishers.reduce((n, p) => n + p.acked.size, 0);
    await until(() => ackedCount() >= 100, "QoS 1 traffic before the restart");

    // The restart: the same storage and port; nobody reconnects the clients but MQTT.js itself.
    await broker.stop(true);
    broker = await startBroker(BROKER_VARS, undefined, true, { state: broker.state, port: broker.port });
    const beforeRestart = ackedCount();
    await until(() => ackedCount() >= beforeRestart + 200, "QoS 1 traffic after the restart", 30000);
    for (const p of publishers) p.stop();

    const unanswered = () => publishers.flatMap((p) => p.sent.filter((m) => !p.acked.has(m)));
    await until(() => unanswered().length === 0, "every publish acknowledged", 45000).catch(() => {
      expect({ unanswered: unanswered().length, first: unanswered().slice(0, 5) }).toEqual({
        unanswered: 0,
        first: [],
      });
    });
    expect(publishers.flatMap((p) => p.failed)).toEqual([]);

    const acked = publishers.flatMap((p) => [...p.acked]);
    const missing = () => acked.filter((m) => !seen.has(m));
    await until(() => missing().length === 0, "every acknowledged message delivered", 15000).catch(() => {
      expect({ missing: missing().length, first: missing().slice(0, 5) }).toEqual({ missing: 0, first: [] });
    });
  }, 150000);
});
