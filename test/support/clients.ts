/**
 * Clients of the broker under `wrangler dev` (test/e2e/global-setup.ts), for the e2e and security
 * e2e tests: MQTT.js clients, a recorder of what they receive, and raw clients over real WebSockets.
 * Node only (`ws`, vitest's `inject`); inside the workers pool, test/support/workerd.ts is the counterpart.
 */
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { inject } from "vitest";
import WebSocket from "ws";
import { uid } from "./ids";
import { atLeast, type AtLeast } from "./elements";
import { CONTROL_FILTER, RawClient } from "./raw-client";
import { ScramClient } from "./scram-client";
import { Signal } from "./until";

export const brokerUrl = (): string => inject("brokerUrl");
export const brokerHttp = (): string => inject("brokerHttp");

const open: MqttClient[] = [];

/** An MQTT.js client that does not reconnect by itself (tests reconnect explicitly). */
function clientOptions(version: 3 | 4 | 5, options: IClientOptions): IClientOptions {
  return { protocolVersion: version, reconnectPeriod: 0, connectTimeout: 8000, clientId: uid(), ...options };
}

export async function connect(version: 4 | 5 | 3, options: IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(brokerUrl(), clientOptions(version, options));
  open.push(client);
  return client;
}

export async function closeAll(): Promise<void> {
  await Promise.all(open.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
}

export interface Received {
  topic: string;
  payload: string;
  packet: mqtt.IPublishPacket;
}

/** Records every message a client receives; `waitFor(n)` resolves with all so far, at least `n`. */
export function recorder(client: MqttClient): {
  messages: Received[];
  waitFor<N extends number>(n: N, ms?: number): Promise<AtLeast<Received, N>>;
} {
  const messages: Received[] = [];
  const arrivals = new Signal();
  client.on("message", (topic, payload, packet) => {
    messages.push({ topic, payload: payload.toString(), packet });
    arrivals.notify();
  });
  const topics = () => JSON.stringify(messages.map((m) => m.topic));
  return {
    messages,
    async waitFor<N extends number>(n: N, ms = 5000) {
      const failure = () => `expected ${n} messages, got ${messages.length}: ${topics()}`;
      await arrivals.until(() => messages.length >= n, ms, failure);
      return atLeast(messages, n, "messages");
    },
  };
}

/**
 * RawClient.roundTrip for an MQTT.js client: once the UNSUBACK is in, every PUBLISH the session sent
 * before it has been emitted (MQTT.js handles incoming packets in order).
 */
export async function roundTrip(client: MqttClient): Promise<void> {
  await client.unsubscribeAsync(CONTROL_FILTER);
}

/**
 * How long a refused connection may take to close: at once [MQTT-3.2.2-7] [MQTT311-3.2.2-5], so well
 * within the test broker's 1.5 s CONNECT timeout (test/e2e/global-setup.ts), which would close it anyway and
 * hide a broker that does not.
 */
export const REFUSAL_CLOSE_MS = 1000;

/** A raw client over a real WebSocket (Node `ws`), to the shared broker unless `url` names another. */
export async function rawClient(version: 3 | 4 | 5 = 5, protocol = "mqtt", url = brokerUrl()): Promise<RawClient> {
  return (await rawClientAndSocket(version, protocol, url)).client;
}

/** rawClient, with its WebSocket, for a test that decides how the socket ends. */
export async function rawClientAndSocket(
  version: 3 | 4 | 5 = 5,
  protocol = "mqtt",
  url = brokerUrl(),
): Promise<{ client: RawClient; ws: WebSocket }> {
  const ws = new WebSocket(url, protocol);
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const client = new RawClient(
    {
      send: (data) => ws.send(data),
      close: () => ws.terminate(),
      onBytes: (cb) => ws.on("message", (d: Buffer) => cb(new Uint8Array(d))),
      onClose: (cb) => ws.on("close", cb),
    },
    version,
  );
  return { client, ws };
}

/**
 * Connects with a recorder attached before CONNACK, so messages a resumed session sends right
 * after CONNACK are not missed. Resolves with the client, its recorder and the CONNACK.
 */
export async function connectRecording(
  version: 4 | 5,
  options: IClientOptions = {},
): Promise<{ client: MqttClient; rec: ReturnType<typeof recorder>; connack: mqtt.IConnackPacket }> {
  const client = mqtt.connect(brokerUrl(), clientOptions(version, options));
  open.push(client);
  const rec = recorder(client);
  const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
    client.once("connect", resolve);
    client.once("error", reject);
  });
  return { client, rec, connack };
}

/**
 * A v5 CONNECT with SCRAM-SHA-256 as `username`, up to the server's challenge (AUTH 0x18): the raw
 * client, the SCRAM client state and the challenge packet.
 */
export async function scramStart(username: string, password: string, clientId = uid("scram")) {
  const scram = new ScramClient(username, password);
  const raw = await rawClient(5);
  raw.send({
    cmd: "connect",
    protocolVersion: 5,
    clientId,
    clean: true,
    keepalive: 30,
    properties: { authenticationMethod: "SCRAM-SHA-256", authenticationData: scram.clientFirst() },
  });
  return { raw, scram, challenge: await raw.next("auth") };
}
