/**
 * The gateway's CPU budget per connection (src/gateway/cpu-budget.ts), on a broker of this file's own
 * with a budget small enough to reach in a test: each packet from a client and each frame to it is
 * counted as 0.1 ms, and a connection may spend 5 ms. A connection driven past it is ended (v5:
 * DISCONNECT 0x8B with a Reason String; 3.1.1: closed), its client reconnects, and the persistent
 * session resumes with nothing lost.
 */
import mqtt, { type IDisconnectPacket, type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ReasonCode } from "../../src/protocol/constants";
import { uid } from "../support/ids";
import { until } from "../support/until";
import { startBroker } from "./global-setup";

/** 5 ms at 0.1 ms per packet or frame: about 50 packets each way, together, per connection. */
const BUDGET_VARS = {
  ALLOW_ANONYMOUS: "true",
  CONNECT_RATE_LIMIT: "off",
  GATEWAY_CPU_BUDGET_MS: "5",
  GATEWAY_CPU_NS_PER_INBOUND_PACKET: "100000",
  GATEWAY_CPU_NS_PER_INBOUND_KIB: "0",
  GATEWAY_CPU_NS_PER_OUTBOUND_FRAME: "100000",
  GATEWAY_CPU_NS_PER_OUTBOUND_KIB: "0",
};

let broker: Awaited<ReturnType<typeof startBroker>>;
let url: string;
beforeAll(async () => {
  broker = await startBroker(BUDGET_VARS);
  url = `${broker.base.replace("http", "ws")}/mqtt`;
}, 60000);
afterAll(() => broker?.stop());

const open: MqttClient[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
});

/** What one reconnecting client saw: every DISCONNECT from the server, every CONNACK, every close. */
interface Seen {
  disconnects: IDisconnectPacket[];
  sessionPresent: boolean[];
  closes: number;
}

/** A persistent-session MQTT.js client that reconnects by itself, as a device would. */
async function persistentClient(version: 4 | 5, clientId: string): Promise<{ client: MqttClient; seen: Seen }> {
  const seen: Seen = { disconnects: [], sessionPresent: [], closes: 0 };
  const client = mqtt.connect(url, {
    protocolVersion: version,
    clientId,
    clean: false,
    ...(version === 5 ? { properties: { sessionExpiryInterval: 300 } } : {}),
    reconnectPeriod: 50,
    connectTimeout: 8000,
    resubscribe: false, // the session keeps the subscriptions: nothing is resent on its behalf
  });
  open.push(client);
  client.on("connect", (connack) => seen.sessionPresent.push(connack.sessionPresent));
  client.on("disconnect", (packet) => seen.disconnects.push(packet));
  client.on("close", () => seen.closes++);
  await until(() => seen.sessionPresent.length > 0, "the first CONNACK");
  return { client, seen };
}

describe("a connection that spends its gateway CPU budget", () => {
  it("v5: is ended with DISCONNECT 0x8B and a Reason String, and its session resumes on reconnect", async () => {
    const clientId = uid("cpu5");
    const { client, seen } = await persistentClient(5, clientId);
    const topic = `${uid("cpu")}/echo`;
    await client.subscribeAsync(topic, { qos: 1 });
    for (let i = 0; i < 60 && seen.disconnects.length === 0; i++) await client.publishAsync(topic, `m${i}`, { qos: 1 });
    await until(() => seen.disconnects.length > 0, "a DISCONNECT from the server");
    const [disconnect] = seen.disconnects;
    expect(disconnect?.reasonCode).toBe(ReasonCode.SERVER_SHUTTING_DOWN);
    expect(disconnect?.properties?.reasonString).toMatch(/CPU budget/);
    // the operator's log line, with the client id and the estimate
    const logged = () => broker.output().includes(`"event":"connection.cpu_budget","clientId":"${clientId}"`);
    await until(logged, "the connection.cpu_budget log line");
    await until(() => seen.sessionPresent.length > 1, "the reconnect's CONNACK");
    expect(seen.sessionPresent[0]).toBe(false);
    expect(seen.sessionPresent[1]).toBe(true);
  });

  it("v5: QoS 1 and QoS 2 both ways through budgeted connections lose nothing across the forced reconnects", async () => {
    const topic = `${uid("cpu")}/stream`;
    const sub = await persistentClient(5, uid("cpu-sub"));
    const received = new Set<string>();
    sub.client.on("message", (_t, payload) => received.add(payload.toString()));
    await sub.client.subscribeAsync(topic, { qos: 2 });
    const pub = await persistentClient(5, uid("cpu-pub"));
    const sent: string[] = [];
    const acked: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++) {
      const payload = `m${i}`;
      sent.push(payload);
      // alternately QoS 1 and QoS 2; MQTT.js keeps what is unacknowledged and resends it on reconnect. A
      // PUBREL it resends for a message the session already completed is answered PUBCOMP 0x00, so none fails.
      const qos = i % 2 === 0 ? 1 : 2;
      acked.push(pub.client.publishAsync(topic, payload, { qos }));
      if (i % 10 === 9) await Promise.all(acked.slice(-10));
    }
    await Promise.all(acked);
    await until(() => received.size === sent.length, `all ${sent.length} messages`, 30000);
    expect([...received].sort()).toEqual([...sent].sort());
    // both were ended by their budget more than once, and every reconnect resumed the session
    for (const { seen } of [pub, sub]) {
      expect(seen.disconnects.length).toBeGreaterThan(1);
      expect(seen.disconnects.every((d) => d.reasonCode === ReasonCode.SERVER_SHUTTING_DOWN)).toBe(true);
      expect(seen.sessionPresent.slice(1).every((present) => present)).toBe(true);
    }
  }, 60000);

  it("3.1.1: is closed (no DISCONNECT from the server in 3.1.1), and its session resumes on reconnect", async () => {
    const { client, seen } = await persistentClient(4, uid("cpu4"));
    const topic = `${uid("cpu")}/echo`;
    await client.subscribeAsync(topic, { qos: 1 });
    for (let i = 0; i < 60 && seen.closes === 0; i++) await client.publishAsync(topic, `m${i}`, { qos: 1 });
    await until(() => seen.closes > 0, "the connection closed by the server");
    await until(() => seen.sessionPresent.length > 1, "the reconnect's CONNACK");
    expect(seen.disconnects).toEqual([]);
    expect(seen.sessionPresent).toEqual([false, true]);
  });
});
