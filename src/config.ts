/**
 * Broker configuration: `wrangler.toml` [vars] (strings) -> one typed, validated object.
 * Every limit has a default that runs locally with no setup; README.md lists them all.
 */
import { growthProblem } from "./topics/shard-rule";

export interface BrokerConfig {
  /** Number of TopicShard objects (N). It may grow on a live deployment by a multiple (docs/SHARDS.md). */
  shardCount: number;
  /**
   * The shard count the deployment had before the last growth (P; unset: SHARD_COUNT, no growth).
   * SHARD_COUNT must be a multiple of it; shards P .. N-1 adopt their keys from shard j mod P.
   */
  shardCountPrevious: number;
  /** Topic levels hashed to pick a shard (K). */
  shardLevels: number;
  /** Largest MQTT packet accepted from a client, in bytes (whole packet). */
  maxPacketSize: number;
  /** Time a new connection has to send CONNECT before it is closed. */
  connectTimeoutMs: number;
  /** Largest keep-alive (seconds) accepted; larger or zero values are replaced (v5 Server Keep Alive). */
  maxKeepAlive: number;
  /** Outbound QoS 1/2 messages awaiting acknowledgement per session (capped by the client's Receive Maximum). */
  maxInflight: number;
  /** Inbound QoS 1/2 PUBLISHes a client may have unacknowledged (our v5 Receive Maximum). */
  receiveMaximum: number;
  /**
   * How long a session waits for its online client's PUBACK before writing a QoS 1 message it
   * received from a shard (0: write every one at once). Acknowledged within it: no row written.
   */
  ackWaitMs: number;
  /**
   * How long a shard collects deliveries for the same session before calling it (0: only what arrived
   * together, no added wait). Larger: fewer billed calls under steady load, at up to this much latency.
   */
  deliveryBatchMs: number;
  /**
   * Events per second one session is designed to take: `deliver` calls from all shards together plus
   * its client's frames. A session from 90% of it asks each calling shard to space its calls, aiming
   * at 90% (util/call-pacing.ts); what arrives meanwhile goes in the next call. 0: no pacing.
   */
  deliveryCallRate: number;
  /**
   * `deliver` calls one TopicShard has in flight at once; more wait in the shard's memory, in the
   * order they were made (topics/topic-shard.ts). Bounds how many Session objects one publish wakes at once.
   */
  maxShardDeliveriesInFlight: number;
  /** Topic aliases a v5 client may set towards us per connection (our Topic Alias Maximum). */
  topicAliasMaximum: number;
  /**
   * PUBLISH packets per second a client may send (burst the same). Beyond it, up to as many again:
   * QoS 0 is dropped and counted, QoS 1/2 acknowledged at this rate. Beyond twice: DISCONNECT 0x96.
   */
  maxPublishRate: number;
  /** QoS 1/2 messages held per session (queued or in flight): a safety net under `maxQueuedBytes`. */
  maxQueuedMessages: number;
  /** Bytes of QoS 1/2 messages held per session (queuedMessageBytes: payload, topic, ids, row overhead). */
  maxQueuedBytes: number;
  /** Subscriptions per session. */
  maxSubscriptions: number;
  /** Longest session expiry granted, in seconds (also caps MQTT 3.1.1 persistent sessions). */
  maxSessionExpiry: number;
  /** Longest topic name or filter, in bytes. */
  maxTopicLength: number;
  /** Most levels in a topic name or filter. */
  maxTopicLevels: number;
  /** Retained messages kept per TopicShard. */
  maxRetainedPerShard: number;
  /** Payload bytes of retained messages kept per TopicShard. */
  maxRetainedBytesPerShard: number;
  /** Bytes the gateway buffers for a client while its session is being opened. */
  maxPendingClientBytes: number;
  /**
   * Bytes the gateway lets wait for one client by its estimate (workerd cannot tell what a client has
   * read: bytes sent less `clientReadRate` per second). A QoS 0 PUBLISH beyond it is dropped and counted.
   */
  maxClientOutboundBytes: number;
  /** Bytes per second a connected client is assumed to read at least (the estimate's drain rate). */
  clientReadRate: number;
  /** Number of ClientRegistry objects (presence and counters for the admin API and metrics). */
  registryShardCount: number;
  /** Seconds between `$SYS/broker/...` updates while someone subscribes to them. */
  sysIntervalSeconds: number;
  /**
   * Estimated gateway CPU, in ms, after which a connection is ended with DISCONNECT 0x8B so that its
   * client reconnects to a fresh invocation before the platform's `limits.cpu_ms` cuts it (gateway/cpu-budget.ts).
   */
  gatewayCpuBudgetMs: number;
  /** The estimate's costs, measured by bench/gateway-cpu.mjs (docs/SCALE-gateway.md): ns per packet from the client. */
  gatewayCpuNsPerInboundPacket: number;
  /** ns per KiB from the client. */
  gatewayCpuNsPerInboundKib: number;
  /** ns per frame from the session to the client. */
  gatewayCpuNsPerOutboundFrame: number;
  /** ns per KiB from the session to the client. */
  gatewayCpuNsPerOutboundKib: number;
  /**
   * 1: the gateway routes the QoS 0/1 messages a session accepted from its client and sends the
   * PUBACKs, so the publisher's Session object waits for no shard (billed duration). 0 (default, until
   * measured on an idle machine and checked against the Workers subrequest limit: docs/COST.md): the session routes.
   */
  routeAtEdge: number;
  /**
   * ROUTE_AT_EDGE: the gateway's calls to shards one connection may make before it hands routing back
   * to the session (edge-route.ts). Below the Workers subrequest limit of the invocation that runs the
   * connection (10,000 on Workers Paid, `limits.subrequests`), leaving room for its other subrequests.
   */
  edgeRouteCallBudget: number;
  /**
   * ROUTE_AT_EDGE: how long the gateway waits for a shard's answer to a message it routes. Past it the
   * request is cancelled and the message is unrouted for the client: no PUBACK, the connection ends,
   * the client resends (shard-publish-request.ts: a call chain left pending by reset objects).
   */
  edgeRouteTimeoutMs: number;
  /** Largest payload a rule parses as JSON for `payload.…` (docs/RULES.md); a larger one has no fields. */
  rulesMaxPayloadBytes: number;
  /** Republished copies one client message may lead to through rules that match each other's output. */
  rulesMaxDepth: number;
}

export const DEFAULT_CONFIG: BrokerConfig = Object.freeze({
  shardCount: 8,
  shardCountPrevious: 8,
  shardLevels: 2,
  maxPacketSize: 262144,
  connectTimeoutMs: 10000,
  maxKeepAlive: 3600,
  maxInflight: 32,
  receiveMaximum: 1024,
  ackWaitMs: 50,
  deliveryBatchMs: 0,
  deliveryCallRate: 500,
  maxShardDeliveriesInFlight: 256,
  topicAliasMaximum: 64,
  maxPublishRate: 5000,
  maxQueuedMessages: 200000,
  maxQueuedBytes: 33554432,
  maxSubscriptions: 100,
  maxSessionExpiry: 604800,
  maxTopicLength: 1024,
  maxTopicLevels: 32,
  maxRetainedPerShard: 10000,
  maxRetainedBytesPerShard: 67108864,
  maxPendingClientBytes: 1048576,
  maxClientOutboundBytes: 1048576,
  clientReadRate: 1048576,
  registryShardCount: 8,
  sysIntervalSeconds: 10,
  gatewayCpuBudgetMs: 240000,
  gatewayCpuNsPerInboundPacket: 12000,
  gatewayCpuNsPerInboundKib: 11000,
  gatewayCpuNsPerOutboundFrame: 13000,
  gatewayCpuNsPerOutboundKib: 5000,
  routeAtEdge: 0,
  edgeRouteCallBudget: 9000,
  edgeRouteTimeoutMs: 30000,
  rulesMaxPayloadBytes: 65536,
  rulesMaxDepth: 3,
});

/** Environment variable name for each config key. */
const VARIABLES: Record<keyof BrokerConfig, string> = {
  shardCount: "SHARD_COUNT",
  shardCountPrevious: "SHARD_COUNT_PREVIOUS",
  shardLevels: "SHARD_LEVELS",
  maxPacketSize: "MAX_PACKET_SIZE",
  connectTimeoutMs: "CONNECT_TIMEOUT_MS",
  maxKeepAlive: "MAX_KEEP_ALIVE",
  maxInflight: "MAX_INFLIGHT",
  receiveMaximum: "RECEIVE_MAXIMUM",
  ackWaitMs: "ACK_WAIT_MS",
  deliveryBatchMs: "DELIVERY_BATCH_MS",
  deliveryCallRate: "DELIVERY_CALL_RATE",
  maxShardDeliveriesInFlight: "MAX_SHARD_DELIVERIES_IN_FLIGHT",
  topicAliasMaximum: "TOPIC_ALIAS_MAXIMUM",
  maxPublishRate: "MAX_PUBLISH_RATE",
  maxQueuedMessages: "MAX_QUEUED_MESSAGES",
  maxQueuedBytes: "MAX_QUEUED_BYTES",
  maxSubscriptions: "MAX_SUBSCRIPTIONS",
  maxSessionExpiry: "MAX_SESSION_EXPIRY",
  maxTopicLength: "MAX_TOPIC_LENGTH",
  maxTopicLevels: "MAX_TOPIC_LEVELS",
  maxRetainedPerShard: "MAX_RETAINED_PER_SHARD",
  maxRetainedBytesPerShard: "MAX_RETAINED_BYTES_PER_SHARD",
  maxPendingClientBytes: "MAX_PENDING_CLIENT_BYTES",
  maxClientOutboundBytes: "MAX_CLIENT_OUTBOUND_BYTES",
  clientReadRate: "CLIENT_READ_RATE",
  registryShardCount: "REGISTRY_SHARD_COUNT",
  sysIntervalSeconds: "SYS_INTERVAL_SECONDS",
  gatewayCpuBudgetMs: "GATEWAY_CPU_BUDGET_MS",
  gatewayCpuNsPerInboundPacket: "GATEWAY_CPU_NS_PER_INBOUND_PACKET",
  gatewayCpuNsPerInboundKib: "GATEWAY_CPU_NS_PER_INBOUND_KIB",
  gatewayCpuNsPerOutboundFrame: "GATEWAY_CPU_NS_PER_OUTBOUND_FRAME",
  gatewayCpuNsPerOutboundKib: "GATEWAY_CPU_NS_PER_OUTBOUND_KIB",
  routeAtEdge: "ROUTE_AT_EDGE",
  edgeRouteCallBudget: "EDGE_ROUTE_CALL_BUDGET",
  edgeRouteTimeoutMs: "EDGE_ROUTE_TIMEOUT_MS",
  rulesMaxPayloadBytes: "RULES_MAX_PAYLOAD_BYTES",
  rulesMaxDepth: "RULES_MAX_DEPTH",
};

/** Inclusive bounds per key: a value outside them is a configuration error, not a silent clamp. */
const BOUNDS: Record<keyof BrokerConfig, [number, number]> = {
  shardCount: [1, 1024],
  shardCountPrevious: [1, 1024],
  shardLevels: [1, 16],
  maxPacketSize: [64, 268435455],
  connectTimeoutMs: [100, 600000],
  maxKeepAlive: [1, 65535],
  maxInflight: [1, 65535],
  receiveMaximum: [1, 65535],
  ackWaitMs: [0, 10000],
  deliveryBatchMs: [0, 1000],
  deliveryCallRate: [0, 100000],
  maxShardDeliveriesInFlight: [1, 100000],
  topicAliasMaximum: [0, 65535],
  maxPublishRate: [1, 1000000],
  maxQueuedMessages: [1, 1000000],
  maxQueuedBytes: [1024, 1073741824],
  maxSubscriptions: [1, 100000],
  maxSessionExpiry: [0, 4294967295],
  maxTopicLength: [1, 65535],
  maxTopicLevels: [1, 1024],
  maxRetainedPerShard: [0, 10000000],
  maxRetainedBytesPerShard: [0, 1073741824],
  maxPendingClientBytes: [1024, 67108864],
  maxClientOutboundBytes: [16384, 268435456],
  clientReadRate: [1024, 1073741824],
  registryShardCount: [1, 256],
  sysIntervalSeconds: [1, 3600],
  // Workers allow at most 300,000 ms of CPU per invocation (limits.cpu_ms).
  gatewayCpuBudgetMs: [1, 300000],
  gatewayCpuNsPerInboundPacket: [0, 100000000],
  gatewayCpuNsPerInboundKib: [0, 100000000],
  gatewayCpuNsPerOutboundFrame: [0, 100000000],
  gatewayCpuNsPerOutboundKib: [0, 100000000],
  routeAtEdge: [0, 1],
  // An upper bound against typos: what it must stay under is the account's subrequest limit (README).
  edgeRouteCallBudget: [1, 10000000],
  edgeRouteTimeoutMs: [100, 600000],
  rulesMaxPayloadBytes: [0, 1048576],
  rulesMaxDepth: [1, 16],
};

export class ConfigError extends Error {}

/** The numeric value of `key` in `env`, undefined when unset; throws ConfigError naming the variable. */
function readLimit(env: Record<string, unknown>, key: keyof BrokerConfig): number | undefined {
  const raw = env[VARIABLES[key]];
  if (raw === undefined || raw === "") return undefined;
  const value = typeof raw === "number" ? raw : Number(String(raw).trim());
  const [min, max] = BOUNDS[key];
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(
      `${VARIABLES[key]} must be an integer from ${min} to ${max}, got ${JSON.stringify(String(raw).slice(0, 40))}`,
    );
  }
  return value;
}

/** Builds the config from `env`; throws ConfigError naming the variable when a value is invalid. */
export function loadConfig(env: Record<string, unknown>): BrokerConfig {
  const config = { ...DEFAULT_CONFIG };
  for (const key of Object.keys(VARIABLES) as (keyof BrokerConfig)[]) config[key] = readLimit(env, key) ?? config[key];
  // Unset: no growth in progress, whatever the count.
  config.shardCountPrevious = readLimit(env, "shardCountPrevious") ?? config.shardCount;
  const growth = growthProblem(config.shardCount, config.shardCountPrevious);
  if (growth) throw new ConfigError(growth);
  return config;
}

/** Every invalid limit in `env`, each with its variable's name (loadConfig stops at the first). */
export function limitProblems(env: Record<string, unknown>): { variable: string; problem: string }[] {
  const problems: { variable: string; problem: string }[] = [];
  for (const key of Object.keys(VARIABLES) as (keyof BrokerConfig)[]) {
    try {
      readLimit(env, key);
    } catch (err) {
      problems.push({ variable: VARIABLES[key], problem: (err as Error).message });
    }
  }
  // The one check across variables: a shard count that shrank or grew by no whole multiple.
  if (problems.length === 0) {
    try {
      loadConfig(env);
    } catch (err) {
      problems.push({ variable: VARIABLES.shardCountPrevious, problem: (err as Error).message });
    }
  }
  return problems;
}

const cache = new WeakMap<object, BrokerConfig>();

/** loadConfig, memoised per env object (env is stable for an isolate). */
export function configFor(env: object): BrokerConfig {
  let config = cache.get(env);
  if (!config) {
    config = loadConfig(env as Record<string, unknown>);
    cache.set(env, config);
  }
  return config;
}
