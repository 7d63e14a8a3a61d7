/**
 * Broker bridges (BRIDGES, src/bridge/) against a real Mosquitto started by the test: a broker of
 * ours under `wrangler dev` bridges to it over TCP (`connect()` from `cloudflare:sockets`), messages
 * go both ways at QoS 0/1/2 with MQTT.js on either side, and Mosquitto is stopped mid-flow and
 * started again. (Not the `bin/cli.mjs bridge` TCP forwarder for clients: tcp-bridge.test.ts.)
 */
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeStatus } from "../../src/bridge/bridge-client";
import { recorder } from "../support/clients";
import { uid } from "../support/ids";
import { startMosquitto, type Mosquitto } from "../support/mosquitto";
import { sleep, until } from "../support/until";
import { startBroker } from "./global-setup";

const ADMIN_TOKEN = "bridge-admin";
let mosquitto: Mosquitto;
let broker: Awaited<ReturnType<typeof startBroker>>;
/** A second instance of this broker, the remote of the `peer` bridge over WebSocket. */
let peer: Awaited<ReturnType<typeof startBroker>>;
let localUrl: string;
let peerUrl: string;
/** The local broker's variables, to start it again on its state (the last test). */
let brokerVars: Record<string, string>;
const open: MqttClient[] = [];

beforeAll(async () => {
  mosquitto = await startMosquitto();
  peer = await startBroker({ ALLOW_ANONYMOUS: "true", CONNECT_RATE_LIMIT: "off" });
  peerUrl = `${peer.base.replace("http", "ws")}/mqtt`;
  const bridges = [
    {
      name: "mosq",
      url: mosquitto.url,
      protocol: 5,
      clientId: uid("edge-bridge"),
      keepalive: 10,
      topics: [
        { direction: "out", filter: "#", qos: 2, localPrefix: "to-mosq/", remotePrefix: "from-edge/" },
        { direction: "in", filter: "#", qos: 2, localPrefix: "from-mosq/", remotePrefix: "to-edge/" },
        { direction: "both", filter: "#", qos: 1, localPrefix: "shared/", remotePrefix: "shared/" },
      ],
    },
    {
      name: "mosq311",
      url: mosquitto.url,
      protocol: 4,
      clientId: uid("edge-bridge-311"),
      topics: [
        { direction: "out", filter: "#", qos: 1, localPrefix: "to-mosq311/", remotePrefix: "from-edge311/" },
        { direction: "in", filter: "#", qos: 1, localPrefix: "from-mosq311/", remotePrefix: "to-edge311/" },
      ],
    },
    {
      name: "peer",
      url: peerUrl,
      protocol: 5,
      topics: [
        { direction: "out", filter: "#", qos: 2, localPrefix: "to-peer/", remotePrefix: "from-edge/" },
        { direction: "in", filter: "#", qos: 2, localPrefix: "from-peer/", remotePrefix: "to-edge/" },
      ],
    },
  ];
  brokerVars = {
    ALLOW_ANONYMOUS: "true",
    CONNECT_RATE_LIMIT: "off",
    ADMIN_TOKEN,
    BRIDGES: JSON.stringify(bridges),
    DEBUG_COUNTERS: "true",
    // A message bridged in runs the rules like a client's publish (docs/RULES.md "Where rules run").
    RULES: JSON.stringify([
      {
        name: "bridged-hot",
        filter: "from-mosq/+/ruled",
        where: "payload.temp > 30",
        actions: [{ type: "republish", topic: "bridged-alerts/${topic[1]}", qos: 1 }],
      },
    ]),
  };
  broker = await startBroker(brokerVars);
  localUrl = `${broker.base.replace("http", "ws")}/mqtt`;
  await untilConnected();
}, 90000);

afterAll(async () => {
  await Promise.all(open.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await broker?.stop();
  await peer?.stop();
  await mosquitto?.dispose();
});

async function statuses(): Promise<BridgeStatus[]> {
  const res = await fetch(`${broker.base}/api/v1/bridges`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { bridges: BridgeStatus[] }).bridges;
}

/** The /metrics sample lines of one bridge. */
async function metricLines(bridge: string): Promise<string[]> {
  const res = await fetch(`${broker.base}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return (await res.text()).split("\n").filter((line) => line.includes(`bridge="${bridge}"`));
}

async function untilConnected(): Promise<void> {
  const connected = async () => {
    const bridges = await statuses();
    return bridges.length === 3 && bridges.every((b) => b.state === "connected");
  };
  await until(connected, "every bridge connected", 30000, 200).catch(async (err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(await statuses())}\n${mosquitto.log()}\n${broker.output()}`);
  });
}

async function client(url: string, version: 4 | 5, options: IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, {
    protocolVersion: version,
    reconnectPeriod: 0,
    connectTimeout: 8000,
    clientId: uid("bridge-test"),
    ...options,
  });
  open.push(c);
  return c;
}
type Side = (options?: IClientOptions) => Promise<MqttClient>;
const local: Side = (options) => client(localUrl, 5, options);
const remote = (options?: IClientOptions, version: 4 | 5 = 5) => client(mosquitto.url, version, options);

/** Publishes at QoS 0, 1 and 2 on one side; the other side's subscriber gets each under its prefix, at its QoS. */
async function crossesAtEachQos(
  [pubSide, pubPrefix]: [Side, string],
  [subSide, subPrefix]: [Side, string],
): Promise<void> {
  const run = uid("qos");
  const sub = await subSide();
  const got = recorder(sub);
  await sub.subscribeAsync(`${subPrefix}${run}/#`, { qos: 2 });
  const pub = await pubSide();
  for (const qos of [0, 1, 2] as const) await pub.publishAsync(`${pubPrefix}${run}/q${qos}`, `m${qos}`, { qos });
  const messages = await got.waitFor(3, 10000);
  expect(messages.map((m) => [m.topic, m.payload, m.packet.qos]).sort()).toEqual([
    [`${subPrefix}${run}/q0`, "m0", 0],
    [`${subPrefix}${run}/q1`, "m1", 1],
    [`${subPrefix}${run}/q2`, "m2", 2],
  ]);
}

describe("a bridge to Mosquitto over TCP (MQTT 5)", () => {
  it("sends local messages out at QoS 0, 1 and 2, under the remote prefix", async () => {
    await crossesAtEachQos([local, "to-mosq/"], [remote, "from-edge/"]);
  });

  it("brings remote messages in at QoS 0, 1 and 2, under the local prefix", async () => {
    await crossesAtEachQos([remote, "to-edge/"], [local, "from-mosq/"]);
  });

  it("a `both` mapping sends each message across once, never back (No Local on both sides)", async () => {
    const run = uid("both");
    const localSub = await local();
    const localGot = recorder(localSub);
    await localSub.subscribeAsync(`shared/${run}/#`, { qos: 1 });
    const remoteSub = await remote();
    const remoteGot = recorder(remoteSub);
    await remoteSub.subscribeAsync(`shared/${run}/#`, { qos: 1 });
    const localPub = await local();
    const remotePub = await remote();
    await localPub.publishAsync(`shared/${run}/from-local`, "l", { qos: 1 });
    await remotePub.publishAsync(`shared/${run}/from-remote`, "r", { qos: 1 });
    // Markers sent after both: once they are through, an echo would have been too.
    await localPub.publishAsync(`shared/${run}/marker-local`, "ml", { qos: 1 });
    await remotePub.publishAsync(`shared/${run}/marker-remote`, "mr", { qos: 1 });
    await localGot.waitFor(4, 10000);
    await remoteGot.waitFor(4, 10000);
    await sleep(500);
    const topics = (got: ReturnType<typeof recorder>) => got.messages.map((m) => m.topic.split("/").pop()).sort();
    const expected = ["from-local", "from-remote", "marker-local", "marker-remote"];
    expect(topics(localGot)).toEqual(expected);
    expect(topics(remoteGot)).toEqual(expected);
  });
});

describe("a bridge's calls to the shards", () => {
  it("are counted as bridgePublishCalls, not as a Session object's (sessionPublishCalls)", async () => {
    type Counters = { bridgePublishCalls: number; sessionPublishCalls: number };
    const counters = async () => (await (await fetch(`${broker.base}/debug/counters`)).json()) as Counters;
    const run = uid("calls");
    const localSub = await local();
    const got = recorder(localSub);
    await localSub.subscribeAsync(`from-mosq/${run}/#`, { qos: 1 });
    const remotePub = await remote();
    const before = await counters();
    for (let i = 0; i < 3; i++) await remotePub.publishAsync(`to-edge/${run}/${i}`, String(i), { qos: 1 });
    await got.waitFor(3, 10000);
    const after = await counters();
    expect(after.bridgePublishCalls - before.bridgePublishCalls).toBeGreaterThanOrEqual(1);
    expect(after.sessionPublishCalls - before.sessionPublishCalls).toBe(0);
  });
});

describe("rules on messages bridged in", () => {
  it("run as on a client's publish: a hot reading from Mosquitto is republished here, a cool one is not", async () => {
    const run = uid("ruled");
    const localSub = await local();
    const got = recorder(localSub);
    await localSub.subscribeAsync(`from-mosq/${run}/ruled`, { qos: 1 });
    await localSub.subscribeAsync(`bridged-alerts/${run}`, { qos: 1 });
    const remotePub = await remote();
    await remotePub.publishAsync(`to-edge/${run}/ruled`, JSON.stringify({ temp: 20 }), { qos: 1 });
    await remotePub.publishAsync(`to-edge/${run}/ruled`, JSON.stringify({ temp: 35 }), { qos: 1 });
    // Both readings came in; only the hot one was republished (a cool copy would come before the hot one).
    const messages = await got.waitFor(3, 10000);
    expect(messages.map((m) => [m.topic, m.payload]).sort()).toEqual([
      [`bridged-alerts/${run}`, JSON.stringify({ temp: 35 })],
      [`from-mosq/${run}/ruled`, JSON.stringify({ temp: 20 })],
      [`from-mosq/${run}/ruled`, JSON.stringify({ temp: 35 })],
    ]);
  });
});

describe("a bridge to Mosquitto over TCP (MQTT 3.1.1)", () => {
  it("sends and brings messages at QoS 0 and 1", async () => {
    const run = uid("v4");
    const remoteSub = await remote({}, 4);
    const remoteGot = recorder(remoteSub);
    await remoteSub.subscribeAsync(`from-edge311/${run}/#`, { qos: 1 });
    const localSub = await local();
    const localGot = recorder(localSub);
    await localSub.subscribeAsync(`from-mosq311/${run}/#`, { qos: 1 });
    const localPub = await local();
    const remotePub = await remote({}, 4);
    for (const qos of [0, 1] as const) {
      await localPub.publishAsync(`to-mosq311/${run}/q${qos}`, `out${qos}`, { qos });
      await remotePub.publishAsync(`to-edge311/${run}/q${qos}`, `in${qos}`, { qos });
    }
    const out = await remoteGot.waitFor(2, 10000);
    const inbound = await localGot.waitFor(2, 10000);
    expect(out.map((m) => [m.topic, m.payload, m.packet.qos]).sort()).toEqual([
      [`from-edge311/${run}/q0`, "out0", 0],
      [`from-edge311/${run}/q1`, "out1", 1],
    ]);
    expect(inbound.map((m) => [m.topic, m.payload, m.packet.qos]).sort()).toEqual([
      [`from-mosq311/${run}/q0`, "in0", 0],
      [`from-mosq311/${run}/q1`, "in1", 1],
    ]);
  });
});

describe("a bridge to a second instance of this broker over WebSocket (MQTT 5)", () => {
  const remotePeer = (options?: IClientOptions) => client(peerUrl, 5, options);

  it("sends local messages out at QoS 0, 1 and 2", async () => {
    await crossesAtEachQos([local, "to-peer/"], [remotePeer, "from-edge/"]);
  });

  it("brings the peer's messages in at QoS 0, 1 and 2", async () => {
    await crossesAtEachQos([remotePeer, "to-edge/"], [local, "from-peer/"]);
  });
});

describe("Mosquitto stopped mid-flow and started again", () => {
  it("delivers every QoS 1/2 message both ways after the reconnect, none lost", async () => {
    const run = uid("kill");
    // The remote subscriber keeps a persistent session at Mosquitto (it too reconnects).
    const remoteSub = await remote({ clean: false, reconnectPeriod: 300, properties: { sessionExpiryInterval: 600 } });
    const remoteGot = recorder(remoteSub);
    await remoteSub.subscribeAsync(`from-edge/${run}/#`, { qos: 2 });
    const localSub = await local();
    const localGot = recorder(localSub);
    await localSub.subscribeAsync(`from-mosq/${run}/#`, { qos: 2 });
    const pub = await local();
    const n = 40;
    const qosOf = (i: number) => (i % 2 ? 1 : 2);
    for (let i = 0; i < n; i++) {
      // Acknowledged here whether Mosquitto is up or not: the bridge object holds it durably.
      await pub.publishAsync(`to-mosq/${run}/${i}`, `out-${i}`, { qos: qosOf(i) });
      if (i === n / 4) await mosquitto.stop();
      await sleep(20);
    }
    const mosqStatus = async () => (await statuses()).find((b) => b.name === "mosq")!;
    await until(async () => (await mosqStatus()).state !== "connected", "the bridge to see Mosquitto gone", 10000, 100);
    const away = await mosqStatus();
    expect(away.state).not.toBe("connected");
    expect(away.lastError).not.toBe("");
    expect(away.queuedMessages).toBeGreaterThan(0); // published while it was away: held here
    expect(await metricLines("mosq")).toEqual(
      expect.arrayContaining([
        'mqtt_bridge_connected{bridge="mosq"} 0',
        `mqtt_bridge_queued_messages{bridge="mosq"} ${away.queuedMessages}`,
      ]),
    );
    await mosquitto.restart();
    // Published at Mosquitto before the bridge is back: kept in the bridge's persistent session there.
    const remotePub = await remote();
    for (let i = 0; i < n / 2; i++) await remotePub.publishAsync(`to-edge/${run}/${i}`, `in-${i}`, { qos: qosOf(i) });
    await untilConnected();
    const out = await remoteGot.waitFor(n, 30000);
    const inbound = await localGot.waitFor(n / 2, 30000).catch(async (err) => {
      console.log(JSON.stringify(await statuses()), mosquitto.log(), broker.output().slice(-5000));
      throw err;
    });
    const payloads = (list: { payload: string }[]) => [...new Set(list.map((m) => m.payload))].sort();
    expect(payloads(out)).toEqual(Array.from({ length: n }, (_, i) => `out-${i}`).sort());
    expect(payloads(inbound)).toEqual(Array.from({ length: n / 2 }, (_, i) => `in-${i}`).sort());
    const mosq = (await statuses()).find((b) => b.name === "mosq")!;
    expect(mosq.queuedMessages).toBe(0);
    expect(await metricLines("mosq")).toEqual(
      expect.arrayContaining([
        'mqtt_bridge_connected{bridge="mosq"} 1',
        'mqtt_bridge_queued_messages{bridge="mosq"} 0',
      ]),
    );
  }, 90000);
});

describe("message expiry while queued for the remote", () => {
  it("forwards the interval less the time queued, and drops a message that expired in the queue [MQTT-3.3.2-5, 3.3.2-6]", async () => {
    const run = uid("expiry");
    const remoteSub = await remote({ clean: false, reconnectPeriod: 300, properties: { sessionExpiryInterval: 600 } });
    const got = recorder(remoteSub);
    await remoteSub.subscribeAsync(`from-edge/${run}/#`, { qos: 1 });
    const mosqStatus = async () => (await statuses()).find((b) => b.name === "mosq")!;
    const expiredBefore = (await mosqStatus()).droppedExpired;
    await mosquitto.stop();
    await until(async () => (await mosqStatus()).state !== "connected", "the bridge to see Mosquitto gone", 10000, 100);
    const pub = await local();
    const expiring = (seconds: number) => ({ qos: 1 as const, properties: { messageExpiryInterval: seconds } });
    await pub.publishAsync(`to-mosq/${run}/short`, "short", expiring(1));
    await pub.publishAsync(`to-mosq/${run}/long`, "long", expiring(600));
    await pub.publishAsync(`to-mosq/${run}/marker`, "marker", { qos: 1 });
    await sleep(2100); // queued here for over 2 s: the first has expired
    await mosquitto.restart();
    await untilConnected();
    // The marker was queued last: once it is through, the short one would have been too.
    const messages = await got.waitFor(2, 30000);
    expect(messages.map((m) => m.payload)).toEqual(["long", "marker"]);
    const interval = messages[0]!.packet.properties?.messageExpiryInterval;
    expect(interval).toBeLessThanOrEqual(598);
    expect(interval).toBeGreaterThan(500);
    expect((await mosqStatus()).droppedExpired).toBe(expiredBefore + 1);
    expect(await metricLines("mosq")).toContain(
      `mqtt_bridge_dropped_total{bridge="mosq",reason="expired"} ${expiredBefore + 1}`,
    );
  }, 60000);
});

describe("a bridge's counts across a restart of its object", () => {
  it("are kept: saved when the bridge disconnects, read back when the restarted object wakes", async () => {
    const run = uid("counts");
    const remoteSub = await remote();
    const got = recorder(remoteSub);
    await remoteSub.subscribeAsync(`from-edge/${run}/#`, { qos: 1 });
    const pub = await local();
    await pub.publishAsync(`to-mosq/${run}/a`, "a", { qos: 1 });
    await got.waitFor(1, 10000);
    const mosqStatus = async () => (await statuses()).find((b) => b.name === "mosq")!;
    // The PUBACK from Mosquitto is what counts a message sent: wait for it, not for the delivery.
    await until(async () => (await mosqStatus()).sent > 0 && (await mosqStatus()).queuedMessages === 0, "sent", 10000);
    // A disconnect saves the counts (and so does the alarm, every 30 s).
    await mosquitto.stop();
    await until(async () => (await mosqStatus()).state !== "connected", "the bridge to see Mosquitto gone", 10000, 100);
    const before = await mosqStatus();
    expect(before.sent).toBeGreaterThan(0);
    // Every object of the local broker ends with its workerd (as in a deploy or a crash) and starts on its storage.
    await broker.stop(true);
    broker = await startBroker(brokerVars, undefined, true, { state: broker.state, port: broker.port });
    const after = await mosqStatus();
    expect(after.state).not.toBe("connected");
    const counts = (b: BridgeStatus) => [b.received, b.sent, b.droppedOffline, b.droppedFull, b.unmapped];
    expect(counts(after)).toEqual(counts(before));
    await mosquitto.restart();
    await untilConnected();
  }, 90000);
});
