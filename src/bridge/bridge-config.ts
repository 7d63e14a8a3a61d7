/**
 * `BRIDGES`: the broker bridges to other MQTT brokers, a JSON list validated at start like every
 * variable. A bridge's name goes into a Durable Object id, log lines and metric labels, so it is a
 * short word; credentials are never in the list, only the names of the secrets that hold them.
 */
import type { QoS } from "../protocol/message";
import { parseSharedFilter, topicFilterError, type TopicLimits } from "../protocol/topic";

export type BridgeDirection = "in" | "out" | "both";

/** One topic mapping, as Mosquitto's `topic` line: local topic = localPrefix + t, remote = remotePrefix + t. */
export interface TopicMapping {
  direction: BridgeDirection;
  /** The filter both prefixes are put before (it may have wildcards). */
  filter: string;
  /** Most QoS the bridge subscribes with and forwards at (each message keeps a lower one). */
  qos: QoS;
  localPrefix: string;
  remotePrefix: string;
}

export interface BridgeConfig {
  name: string;
  url: string;
  transport: "tcp" | "tls" | "ws" | "wss";
  host: string;
  port: number;
  /** 4: MQTT 3.1.1, 5: MQTT 5. */
  protocol: 4 | 5;
  clientId: string;
  /** Seconds; the bridge sends PINGREQ when it has sent nothing for this long. */
  keepalive: number;
  /** false (default): a persistent remote session, so QoS 1/2 messages wait at the remote while away. */
  cleanStart: boolean;
  /** MQTT 5 Session Expiry Interval asked of the remote (seconds). */
  sessionExpiry: number;
  /** Names of the Worker secrets (or vars) holding the credentials. */
  usernameSecret?: string;
  passwordSecret?: string;
  topics: TopicMapping[];
  /** QoS 1/2 messages held for the remote; beyond it a new one is refused (the local publisher is not acknowledged). */
  maxQueuedMessages: number;
  /**
   * Bytes (topic + payload) of those messages. The queue is written to SQLite and also held in the
   * bridge object's memory (128 MB for the isolate), so it is capped at MAX_BRIDGE_QUEUED_BYTES.
   */
  maxQueuedBytes: number;
  /** QoS 1/2 messages sent to the remote and not yet acknowledged. */
  maxInflight: number;
}

/** Most bytes a bridge may queue: its queue lives in memory as well as in SQLite (an isolate has 128 MB). */
export const MAX_BRIDGE_QUEUED_BYTES = 33554432;
/** Most bridges one broker declares (each is one always-on Durable Object: docs/COST.md). */
export const MAX_BRIDGES = 16;
/** Most topic mappings per bridge (each `in` one is a remote subscription, each `out` one a local one). */
export const MAX_MAPPINGS = 32;
const MAX_PREFIX_BYTES = 256;
const NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;
const SECRET_NAME = /^[A-Z_][A-Z0-9_]{0,63}$/;
/** Client ids printable ASCII (they reach the remote broker's logs). 23 is the 3.1.1 minimum a server must take. */
const CLIENT_ID = /^[\x21-\x7e]{1,64}$/;
const TRANSPORTS = {
  "mqtt:": ["tcp", 1883],
  "mqtts:": ["tls", 8883],
  "ws:": ["ws", 80],
  "wss:": ["wss", 443],
} as const;
const KEYS = new Set([
  "name",
  "url",
  "protocol",
  "clientId",
  "keepalive",
  "cleanStart",
  "sessionExpiry",
  "usernameSecret",
  "passwordSecret",
  "topics",
  "maxQueuedMessages",
  "maxQueuedBytes",
  "maxInflight",
]);
const MAPPING_KEYS = new Set(["direction", "filter", "qos", "localPrefix", "remotePrefix"]);

export class BridgeConfigError extends Error {}

/** A value quoted for an error message: short, and without control characters. */
const quoted = (value: unknown) =>
  JSON.stringify(String(typeof value === "object" ? JSON.stringify(value) : value).slice(0, 40));

function integer(value: unknown, what: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new BridgeConfigError(`${what} must be an integer from ${min} to ${max}, got ${quoted(value)}`);
  }
  return value;
}

function prefix(value: unknown, what: string, limits: TopicLimits): string {
  if (value === undefined || value === "") return "";
  if (typeof value !== "string" || new TextEncoder().encode(value).length > MAX_PREFIX_BYTES) {
    throw new BridgeConfigError(`${what} must be a string of at most ${MAX_PREFIX_BYTES} bytes, got ${quoted(value)}`);
  }
  // A prefix is a topic's first levels: no wildcards, and the filter starts a level after it.
  if (/[+#\u0000]/.test(value) || !value.endsWith("/") || topicFilterError(value, limits)) {
    throw new BridgeConfigError(`${what} must be topic levels ending in "/", without + or #, got ${quoted(value)}`);
  }
  return value;
}

function mapping(raw: unknown, where: string, limits: TopicLimits): TopicMapping {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new BridgeConfigError(`${where} must be an object`);
  const entry = raw as Record<string, unknown>;
  const unknown = Object.keys(entry).find((k) => !MAPPING_KEYS.has(k));
  if (unknown !== undefined) throw new BridgeConfigError(`${where} has an unknown key ${quoted(unknown)}`);
  const { direction, filter } = entry;
  if (direction !== "in" && direction !== "out" && direction !== "both") {
    throw new BridgeConfigError(`${where}.direction must be "in", "out" or "both", got ${quoted(direction)}`);
  }
  const localPrefix = prefix(entry.localPrefix, `${where}.localPrefix`, limits);
  const remotePrefix = prefix(entry.remotePrefix, `${where}.remotePrefix`, limits);
  if (typeof filter !== "string") throw new BridgeConfigError(`${where}.filter must be a string`);
  // Both full filters must be valid; a shared subscription is no place for a bridge.
  const problem = topicFilterError(localPrefix + filter, limits) ?? topicFilterError(remotePrefix + filter, limits);
  if (problem || parseSharedFilter(filter) || filter.startsWith("$")) {
    throw new BridgeConfigError(
      `${where}.filter ${quoted(filter)} is not a filter a bridge can use (${problem ?? "starts with $"})`,
    );
  }
  return { direction, filter, qos: integer(entry.qos, `${where}.qos`, 0, 2, 0) as QoS, localPrefix, remotePrefix };
}

function bridge(raw: unknown, index: number, env: Record<string, unknown>, limits: TopicLimits): BridgeConfig {
  const where = `BRIDGES[${index}]`;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new BridgeConfigError(`${where} must be an object`);
  const entry = raw as Record<string, unknown>;
  const unknown = Object.keys(entry).find((k) => !KEYS.has(k));
  if (unknown !== undefined) throw new BridgeConfigError(`${where} has an unknown key ${quoted(unknown)}`);
  const name = entry.name;
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new BridgeConfigError(
      `${where}.name must be 1-32 of a-z, 0-9, "_" and "-", starting with a letter or digit, got ${quoted(name)}`,
    );
  }
  const at = `bridge ${name}`;
  let url: URL;
  try {
    url = new URL(String(entry.url));
  } catch {
    throw new BridgeConfigError(`${at}: url is not a URL: ${quoted(entry.url)}`);
  }
  const transport = TRANSPORTS[url.protocol as keyof typeof TRANSPORTS];
  if (!transport || !url.hostname)
    throw new BridgeConfigError(`${at}: url must be mqtt://, mqtts://, ws:// or wss:// with a host`);
  // Credentials come from secrets (usernameSecret, passwordSecret), never from the plain-text list.
  if (url.username || url.password)
    throw new BridgeConfigError(`${at}: url must not hold credentials: use usernameSecret`);
  const protocol = entry.protocol ?? 5;
  if (protocol !== 4 && protocol !== 5) throw new BridgeConfigError(`${at}: protocol must be 4 (3.1.1) or 5`);
  const clientId = entry.clientId ?? `bridge-${name}`;
  if (typeof clientId !== "string" || !CLIENT_ID.test(clientId)) {
    throw new BridgeConfigError(`${at}: clientId must be 1-64 printable ASCII characters, got ${quoted(clientId)}`);
  }
  const cleanStart = entry.cleanStart ?? false;
  if (typeof cleanStart !== "boolean") throw new BridgeConfigError(`${at}: cleanStart must be true or false`);
  const secrets: Partial<Record<"usernameSecret" | "passwordSecret", string>> = {};
  for (const key of ["usernameSecret", "passwordSecret"] as const) {
    const secret = entry[key];
    if (secret === undefined) continue;
    if (typeof secret !== "string" || !SECRET_NAME.test(secret)) {
      throw new BridgeConfigError(`${at}: ${key} must be the NAME of a secret (A-Z, 0-9, _), got ${quoted(secret)}`);
    }
    if (typeof env[secret] !== "string") throw new BridgeConfigError(`${at}: ${key} names ${secret}, which is not set`);
    secrets[key] = secret;
  }
  if (secrets.passwordSecret && !secrets.usernameSecret && protocol === 4) {
    throw new BridgeConfigError(`${at}: MQTT 3.1.1 has no password without a user name [MQTT-3.1.2-22]`);
  }
  if (!Array.isArray(entry.topics) || entry.topics.length === 0 || entry.topics.length > MAX_MAPPINGS) {
    throw new BridgeConfigError(`${at}: topics must be a list of 1 to ${MAX_MAPPINGS} mappings`);
  }
  const topics = entry.topics.map((t, i) => mapping(t, `${at}: topics[${i}]`, limits));
  const port = url.port ? Number(url.port) : transport[1];
  return {
    name,
    url: url.toString(),
    transport: transport[0],
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port,
    protocol,
    clientId,
    keepalive: integer(entry.keepalive, `${at}: keepalive`, 5, 3600, 60),
    cleanStart,
    sessionExpiry: integer(entry.sessionExpiry, `${at}: sessionExpiry`, 0, 4294967295, 86400),
    ...secrets,
    topics,
    maxQueuedMessages: integer(entry.maxQueuedMessages, `${at}: maxQueuedMessages`, 1, 1000000, 10000),
    maxQueuedBytes: integer(entry.maxQueuedBytes, `${at}: maxQueuedBytes`, 1024, MAX_BRIDGE_QUEUED_BYTES, 16777216),
    maxInflight: integer(entry.maxInflight, `${at}: maxInflight`, 1, 65535, 32),
  };
}

/** The bridges in `env.BRIDGES` (unset or empty: none); throws BridgeConfigError saying what is wrong. */
export function parseBridges(env: Record<string, unknown>, limits: TopicLimits): BridgeConfig[] {
  const raw = env.BRIDGES;
  if (raw === undefined || raw === "") return [];
  let list: unknown;
  try {
    list = typeof raw === "string" ? JSON.parse(raw) : raw;
  } catch (err) {
    throw new BridgeConfigError(`BRIDGES is not JSON: ${(err as Error).message.slice(0, 80)}`);
  }
  if (!Array.isArray(list)) throw new BridgeConfigError("BRIDGES must be a JSON list");
  if (list.length > MAX_BRIDGES) throw new BridgeConfigError(`BRIDGES has more than ${MAX_BRIDGES} bridges`);
  const bridges = list.map((b, i) => bridge(b, i, env, limits));
  const names = new Set<string>();
  for (const b of bridges) {
    if (names.has(b.name)) throw new BridgeConfigError(`BRIDGES: the name ${b.name} is used twice`);
    names.add(b.name);
  }
  return bridges;
}

const cache = new WeakMap<object, BridgeConfig[]>();

/** parseBridges, once per env object (an isolate's env does not change). */
export function bridgesFor(env: object, limits: TopicLimits): BridgeConfig[] {
  let bridges = cache.get(env);
  if (!bridges) {
    bridges = parseBridges(env as Record<string, unknown>, limits);
    cache.set(env, bridges);
  }
  return bridges;
}

/**
 * The subscriber id a bridge has in the topic shards, and the origin of the messages it routes in
 * (so No Local keeps them from going back out). Clients may not take an id with this prefix
 * (gateway/admission.ts refuses it), so no session can stand in for a bridge.
 */
export const BRIDGE_SUBSCRIBER_PREFIX = "$bridge:";

export const bridgeSubscriberId = (name: string) => BRIDGE_SUBSCRIBER_PREFIX + name;

/** The bridge a subscriber id names, or undefined for a client's session. */
export function bridgeNameOf(subscriberId: string): string | undefined {
  return subscriberId.startsWith(BRIDGE_SUBSCRIBER_PREFIX)
    ? subscriberId.slice(BRIDGE_SUBSCRIBER_PREFIX.length)
    : undefined;
}
