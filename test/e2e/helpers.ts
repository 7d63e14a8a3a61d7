/** Helpers for end-to-end tests: MQTT.js clients and raw WebSocket clients against the running broker. */
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { inject } from "vitest";
import WebSocket from "ws";
import { CONTROL_FILTER, RawClient } from "../support/raw-client";
import { ScramClient } from "../support/scram-client";

export const brokerUrl = (): string => inject("brokerUrl");
export const brokerHttp = (): string => inject("brokerHttp");

let counter = 0;
/** A client id unique to this run. */
export function uid(prefix = "c"): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${++counter}`;
}

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

/** Records every message a client receives. */
export function recorder(client: MqttClient): { messages: Received[]; waitFor(n: number, ms?: number): Promise<Received[]> } {
  const messages: Received[] = [];
  const waiters: (() => void)[] = [];
  client.on("message", (topic, payload, packet) => {
    messages.push({ topic, payload: payload.toString(), packet });
    waiters.splice(0).forEach((w) => w());
  });
  return {
    messages,
    async waitFor(n: number, ms = 5000) {
      const deadline = Date.now() + ms;
      while (messages.length < n) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`expected ${n} messages, got ${messages.length}: ${JSON.stringify(messages.map((m) => m.topic))}`);
        await new Promise<void>((r) => {
          const t = setTimeout(r, Math.min(left, 100));
          waiters.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
      return messages;
    },
  };
}

/** Time itself is the premise (an expiry or delay must pass): nothing to observe instead. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * RawClient.roundTrip for an MQTT.js client: once the UNSUBACK is in, every PUBLISH the session sent
 * before it has been emitted (MQTT.js handles incoming packets in order).
 */
export async function roundTrip(client: MqttClient): Promise<void> {
  await client.unsubscribeAsync(CONTROL_FILTER);
}

/** A raw client over a real WebSocket (Node `ws`), to the shared broker unless `url` names another. */
/**
 * How long a refused connection may take to close: at once [MQTT-3.2.2-7] [MQTT311-3.2.2-5], so well
 * within the test broker's 1.5 s CONNECT timeout (global-setup.ts), which would close it anyway and
 * hide a broker that does not.
 */
export const REFUSAL_CLOSE_MS = 1000;

export async function rawClient(version: 3 | 4 | 5 = 5, protocol = "mqtt", url = brokerUrl()): Promise<RawClient> {
  const ws = new WebSocket(url, protocol);
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return new RawClient(
    {
      send: (data) => ws.send(data),
      close: () => ws.terminate(),
      onBytes: (cb) => ws.on("message", (d: Buffer) => cb(new Uint8Array(d))),
      onClose: (cb) => ws.on("close", cb),
    },
    version,
  );
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
    cmd: "connect", protocolVersion: 5, clientId, clean: true, keepalive: 30,
    properties: { authenticationMethod: "SCRAM-SHA-256", authenticationData: scram.clientFirst() },
  });
  return { raw, scram, challenge: await raw.next("auth") };
}
