/**
 * Bridges in a Worker of the user's own: examples/queue-forwarder uses the broker as a library
 * (src/library.ts), exports its BridgeObject and binds it as BRIDGE. With BRIDGES set, its first
 * request starts the bridge as the broker's own Worker does, and messages cross to a real Mosquitto
 * both ways. HOOKS_EXAMPLE_CONFIG names another copy of the example, as in hooks-example.test.ts.
 */
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeStatus } from "../../src/bridge/bridge-client";
import { recorder } from "../support/clients";
import { uid } from "../support/ids";
import { startMosquitto, type Mosquitto } from "../support/mosquitto";
import { until } from "../support/until";
import { startBroker } from "./global-setup";

const ADMIN_TOKEN = "library-bridge-admin";
let mosquitto: Mosquitto;
let broker: Awaited<ReturnType<typeof startBroker>>;
const open: MqttClient[] = [];

beforeAll(async () => {
  mosquitto = await startMosquitto();
  const bridges = [
    {
      name: "floor",
      url: mosquitto.url,
      protocol: 5,
      clientId: uid("lib-bridge"),
      topics: [
        { direction: "out", filter: "#", qos: 1, localPrefix: "to-floor/", remotePrefix: "from-edge/" },
        { direction: "in", filter: "#", qos: 1, localPrefix: "from-floor/", remotePrefix: "to-edge/" },
      ],
    },
  ];
  broker = await startBroker(
    { ADMIN_TOKEN, BRIDGES: JSON.stringify(bridges) },
    process.env.HOOKS_EXAMPLE_CONFIG ?? "examples/queue-forwarder/wrangler.toml",
  );
}, 60000);

afterAll(async () => {
  await Promise.all(open.map((c) => c.endAsync(true).catch(() => undefined)));
  await broker?.stop();
  await mosquitto?.dispose();
});

async function client(url: string): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: uid("lb") });
  open.push(c);
  return c;
}

describe("a bridge in a Worker that uses the broker as a library (examples/queue-forwarder)", () => {
  it("is started by the Worker's requests (not only by the admin API), reports its state, and carries QoS 1 both ways", async () => {
    const run = uid("lib");
    // Retained at Mosquitto before the bridge subscribes there: it comes in when the bridge has started.
    const remotePub = await client(mosquitto.url);
    await remotePub.publishAsync(`to-edge/${run}/in`, "in", { qos: 1, retain: true });
    const localSub = await client(`${broker.base.replace("http", "ws")}/mqtt`);
    const localGot = recorder(localSub);
    await localSub.subscribeAsync(`from-floor/${run}/#`, { qos: 1 });
    // No admin call yet (it would start the bridge itself): only the Worker's own requests have run.
    const [inbound] = await localGot.waitFor(1, 20000);
    expect([inbound.topic, inbound.payload, inbound.packet.qos]).toEqual([`from-floor/${run}/in`, "in", 1]);
    const remoteSub = await client(mosquitto.url);
    const remoteGot = recorder(remoteSub);
    await remoteSub.subscribeAsync(`from-edge/${run}/#`, { qos: 1 });
    await localSub.publishAsync(`to-floor/${run}/out`, "out", { qos: 1 });
    const [out] = await remoteGot.waitFor(1, 10000);
    expect([out.topic, out.payload, out.packet.qos]).toEqual([`from-edge/${run}/out`, "out", 1]);
    const statuses = async () => {
      const res = await fetch(`${broker.base}/api/v1/bridges`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      expect(res.status).toBe(200);
      return ((await res.json()) as { bridges: BridgeStatus[] }).bridges;
    };
    await until(async () => (await statuses())[0]?.sent === 1, "the bridge counted the message out", 10000);
    expect((await statuses())[0]).toMatchObject({ name: "floor", state: "connected", received: 1, sent: 1 });
  });
});
