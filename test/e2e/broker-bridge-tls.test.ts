/**
 * Bridges over TLS (`mqtts://`) to a real Mosquitto with a TLS-only listener whose certificate a CA
 * made by the test signed. workerd checks a server's certificate against its trust store; it reads
 * that store from SSL_CERT_FILE, so a broker started with SSL_CERT_FILE naming the system's CAs plus
 * the test's trusts Mosquitto (as a deployed Worker trusts a broker with a public certificate), and
 * one started without it refuses the handshake. `wss://` is not tested here: Debian's Mosquitto
 * 2.0.11 would not open a websockets listener.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeStatus } from "../../src/bridge/bridge-client";
import { recorder } from "../support/clients";
import { uid } from "../support/ids";
import { startMosquitto, testCa, type Mosquitto, type TestCa } from "../support/mosquitto";
import { until } from "../support/until";
import { startBroker } from "./global-setup";

const ADMIN_TOKEN = "bridge-tls-admin";
let dir: string;
let ca: TestCa;
let mosquitto: Mosquitto;
/** Trusts the test's CA (SSL_CERT_FILE). */
let trusting: Awaited<ReturnType<typeof startBroker>>;
/** Does not: the system's CAs only. */
let untrusting: Awaited<ReturnType<typeof startBroker>>;
const open: MqttClient[] = [];

const mapping = (name: string) => ({
  name,
  protocol: 5,
  clientId: uid(name),
  topics: [
    { direction: "out", filter: "#", qos: 1, localPrefix: "to-mosq/", remotePrefix: "from-edge/" },
    { direction: "in", filter: "#", qos: 1, localPrefix: "from-mosq/", remotePrefix: "to-edge/" },
  ],
});

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "bridge-tls-"));
  ca = testCa(dir);
  mosquitto = await startMosquitto(ca);
  const plainUrl = mosquitto.url.replace("mqtts://", "mqtt://");
  const vars = (bridges: object[]) => ({ ALLOW_ANONYMOUS: "true", ADMIN_TOKEN, BRIDGES: JSON.stringify(bridges) });
  untrusting = await startBroker(
    vars([
      { ...mapping("untrusted"), url: mosquitto.url },
      { ...mapping("plain"), url: plainUrl },
    ]),
  );
  // startBroker passes this process's environment to wrangler dev and so to workerd.
  process.env.SSL_CERT_FILE = ca.bundleFile;
  try {
    trusting = await startBroker(vars([{ ...mapping("tls"), url: mosquitto.url }]));
  } finally {
    delete process.env.SSL_CERT_FILE;
  }
}, 120000);

afterAll(async () => {
  await Promise.all(open.map((c) => c.endAsync(true).catch(() => undefined)));
  await trusting?.stop();
  await untrusting?.stop();
  await mosquitto?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function statuses(broker: { base: string }): Promise<BridgeStatus[]> {
  const res = await fetch(`${broker.base}/api/v1/bridges`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return ((await res.json()) as { bridges: BridgeStatus[] }).bridges;
}

async function client(url: string): Promise<MqttClient> {
  const options = url.startsWith("mqtts") ? { ca: readFileSync(ca.caFile) } : {};
  const c = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: uid("tls"), ...options });
  open.push(c);
  return c;
}

describe("a bridge over TLS (mqtts://) to Mosquitto", () => {
  it("with the CA trusted: connects over TLS and carries QoS 1 both ways", async () => {
    await until(async () => (await statuses(trusting))[0]?.state === "connected", "the TLS bridge up", 30000, 200);
    const run = uid("tls");
    const remoteSub = await client(mosquitto.url);
    const remoteGot = recorder(remoteSub);
    await remoteSub.subscribeAsync(`from-edge/${run}/#`, { qos: 1 });
    const localSub = await client(`${trusting.base.replace("http", "ws")}/mqtt`);
    const localGot = recorder(localSub);
    await localSub.subscribeAsync(`from-mosq/${run}/#`, { qos: 1 });
    await localSub.publishAsync(`to-mosq/${run}/out`, "out", { qos: 1 });
    const remotePub = await client(mosquitto.url);
    await remotePub.publishAsync(`to-edge/${run}/in`, "in", { qos: 1 });
    const [out] = await remoteGot.waitFor(1, 10000);
    const [inbound] = await localGot.waitFor(1, 10000);
    expect([out.topic, out.payload, out.packet.qos]).toEqual([`from-edge/${run}/out`, "out", 1]);
    expect([inbound.topic, inbound.payload, inbound.packet.qos]).toEqual([`from-mosq/${run}/in`, "in", 1]);
  });

  it("without it: the handshake fails and lastError says the connection failed; mqtt:// to the TLS port fails otherwise", async () => {
    const byName = async () => new Map((await statuses(untrusting)).map((b) => [b.name, b]));
    await until(
      async () => [...(await byName()).values()].every((b) => b.lastError !== ""),
      "both bridges to report an error",
      30000,
      200,
    );
    const bridges = await byName();
    const untrusted = bridges.get("untrusted")!;
    const plain = bridges.get("plain")!;
    expect(untrusted.state).not.toBe("connected");
    expect(plain.state).not.toBe("connected");
    // workerd reports the refused certificate as a failed connect (the message names no certificate).
    expect(untrusted.lastError).toMatch(/^connect failed: /);
    // Plain MQTT reaches the port, but Mosquitto's TLS listener gets no handshake and closes it.
    expect(plain.lastError).not.toMatch(/^connect failed: /);
    expect(plain.lastError).toMatch(/closed|CONNACK/);
  });
});
