/**
 * Broker-wide metrics: the sum of what every ClientRegistry shard and TopicShard counted, as
 * Prometheus text (`GET /metrics`) and as `$SYS/broker/...` messages. Gathered by asking each of
 * those objects (R + N calls per scrape), never by putting a counter object on the message path.
 */
import type { BridgeStatus } from "../bridge/bridge-client";
import type { RegistryStats } from "../registry/client-registry";
import type { ShardStats } from "../topics/topic-shard";
import { addRuleCounts, type RuleCounts } from "../rules/rule-tally";

/** The shards' figures summed (`delivered`: copies handed to sessions, by QoS), plus the registries'. */
export interface MetricsSummary extends Pick<
  ShardStats,
  | "delivered"
  | "deliveredBytes"
  | "dropped"
  | "deliveryFailures"
  | "retainedMessages"
  | "retainedBytes"
  | "subscriptionEntries"
> {
  connectedByVersion: Record<string, number>;
  connected: number;
  connectsTotal: number;
  disconnectsTotal: number;
  /** Application messages published into the broker (MQTT and HTTP), by QoS. */
  received: Record<string, number>;
  receivedBytes: number;
  deepQueues: number;
  queuedInDeepQueues: number;
  invocations: { session: number; topicShard: number };
  /** Each rule's counts, summed over the registries (rule-tally.ts: reported by sessions once their actions are done). */
  rules: RuleCounts;
}

function addInto(target: Record<string, number>, source: Record<string, number>): void {
  for (const [k, v] of Object.entries(source)) target[k] = (target[k] ?? 0) + v;
}

export function summarize(registries: RegistryStats[], shards: ShardStats[]): MetricsSummary {
  const s: MetricsSummary = {
    connectedByVersion: {},
    connected: 0,
    connectsTotal: 0,
    disconnectsTotal: 0,
    received: { "0": 0, "1": 0, "2": 0 },
    receivedBytes: 0,
    delivered: { "0": 0, "1": 0, "2": 0 },
    deliveredBytes: 0,
    dropped: {},
    deliveryFailures: 0,
    retainedMessages: 0,
    retainedBytes: 0,
    subscriptionEntries: 0,
    deepQueues: 0,
    queuedInDeepQueues: 0,
    invocations: { session: 0, topicShard: 0 },
    rules: {},
  };
  for (const r of registries) {
    addInto(s.connectedByVersion, r.connectedByVersion);
    s.connected += r.connected;
    s.connectsTotal += r.connectsTotal;
    s.disconnectsTotal += r.disconnectsTotal;
    addInto(s.dropped, r.dropped);
    s.deepQueues += r.deep;
    s.queuedInDeepQueues += r.queued;
    s.invocations.session += r.sessionInvocations;
    addRuleCounts(s.rules, r.rules);
  }
  for (const sh of shards) {
    addInto(s.received, sh.published);
    s.receivedBytes += sh.publishedBytes;
    addInto(s.delivered, sh.delivered);
    s.deliveredBytes += sh.deliveredBytes;
    addInto(s.dropped, sh.dropped);
    s.deliveryFailures += sh.deliveryFailures;
    s.retainedMessages += sh.retainedMessages;
    s.retainedBytes += sh.retainedBytes;
    s.subscriptionEntries += sh.subscriptionEntries;
    s.invocations.topicShard += sh.invocations;
  }
  return s;
}

const VERSION_LABEL = { "3": "3.1", "4": "3.1.1", "5": "5.0" } as const;

/**
 * A label value as the text format 0.0.4 spells it: backslash, double quote and line feed escaped
 * (`\\`, `\"`, `\n`), so a value (a drop reason from any caller of summarize) can neither end the
 * sample line nor the label, and a parser reads back the same string.
 */
export function escapeLabelValue(v: string): string {
  return v.replace(/[\\"\n]/g, (ch) => (ch === "\n" ? "\\n" : `\\${ch}`));
}

/**
 * Prometheus text exposition format 0.0.4. `bridges`: each broker bridge's state (BRIDGES), labelled
 * by its name; its counts are since its object last woke (a reset, as Prometheus' rate() expects).
 */
export function renderPrometheus(s: MetricsSummary, bridges: BridgeStatus[] = []): string {
  const lines: string[] = [];
  const metric = (
    name: string,
    type: "counter" | "gauge",
    help: string,
    samples: [Record<string, string>, number][],
  ) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      const l = Object.entries(labels)
        .map(([k, v]) => `${k}="${escapeLabelValue(v)}"`)
        .join(",");
      lines.push(`${name}${l ? `{${l}}` : ""} ${value}`);
    }
  };
  const byQos = (m: Record<string, number>) =>
    ["0", "1", "2"].map((q) => [{ qos: q }, m[q] ?? 0] as [Record<string, string>, number]);
  metric(
    "mqtt_connected_clients",
    "gauge",
    "Clients connected now, by protocol version.",
    (["3", "4", "5"] as const).map((v) => [{ protocol: VERSION_LABEL[v] }, s.connectedByVersion[v] ?? 0]),
  );
  metric("mqtt_connections_total", "counter", "Connections accepted (CONNACK success).", [[{}, s.connectsTotal]]);
  metric("mqtt_disconnections_total", "counter", "Connections ended, for any reason.", [[{}, s.disconnectsTotal]]);
  metric(
    "mqtt_messages_received_total",
    "counter",
    "Application messages published into the broker (MQTT and HTTP), by QoS.",
    byQos(s.received),
  );
  metric("mqtt_received_bytes_total", "counter", "Payload bytes of the messages received.", [[{}, s.receivedBytes]]);
  metric(
    "mqtt_messages_delivered_total",
    "counter",
    "Message copies handed to subscribers' sessions, by the QoS delivered.",
    byQos(s.delivered),
  );
  metric("mqtt_delivered_bytes_total", "counter", "Payload bytes of the copies delivered.", [[{}, s.deliveredBytes]]);
  const reasons = [
    "no_subscribers",
    "retained_limit",
    "queue_full",
    "expired",
    "too_large_for_client",
    "publish_rate",
    "slow_consumer",
    "not_authorized",
  ];
  for (const r of Object.keys(s.dropped)) if (!reasons.includes(r)) reasons.push(r);
  metric(
    "mqtt_messages_dropped_total",
    "counter",
    "Messages (or copies) not delivered, by reason.",
    reasons.map((r) => [{ reason: r }, s.dropped[r] ?? 0]),
  );
  metric(
    "mqtt_delivery_failures_total",
    "counter",
    "Deliveries to a session that failed (QoS 1/2: the publisher was not acknowledged and resends).",
    [[{}, s.deliveryFailures]],
  );
  metric("mqtt_retained_messages", "gauge", "Retained messages stored.", [[{}, s.retainedMessages]]);
  metric("mqtt_retained_bytes", "gauge", "Payload bytes of the retained messages.", [[{}, s.retainedBytes]]);
  metric(
    "mqtt_subscription_index_entries",
    "gauge",
    "Subscription entries in the topic shards (a wildcard in the first levels counts once per shard).",
    [[{}, s.subscriptionEntries]],
  );
  metric("mqtt_deep_queues", "gauge", "Sessions holding 16 or more undelivered QoS 1/2 messages.", [
    [{}, s.deepQueues],
  ]);
  metric(
    "mqtt_deep_queue_messages",
    "gauge",
    "Messages in those sessions' queues (each rounded down to a power of two).",
    [[{}, s.queuedInDeepQueues]],
  );
  metric(
    "mqtt_durable_object_invocations_total",
    "counter",
    "Durable Object invocations, by class (session: as reported with connection events, approximate).",
    [
      [{ class: "session" }, s.invocations.session],
      [{ class: "topic_shard" }, s.invocations.topicShard],
    ],
  );
  const rules = Object.entries(s.rules);
  if (rules.length) {
    metric(
      "mqtt_rule_matches_total",
      "counter",
      "Messages each rule (RULES) matched: filter and where; sent by sessions every 5 s.",
      rules.map(([rule, c]) => [{ rule }, c.matched]),
    );
    metric(
      "mqtt_rule_actions_total",
      "counter",
      "Actions of each rule that succeeded (ok) and failed; a webhook with a retryQueue is ok once queued.",
      rules.flatMap(([rule, c]) => [
        [{ rule, outcome: "ok" }, c.ok] as [Record<string, string>, number],
        [{ rule, outcome: "failed" }, c.failed] as [Record<string, string>, number],
      ]),
    );
  }
  if (bridges.length) {
    const each = (value: (b: BridgeStatus) => number) =>
      bridges.map((b) => [{ bridge: b.name }, value(b)] as [Record<string, string>, number]);
    metric("mqtt_bridge_connected", "gauge", "1 while the bridge's connection to its remote broker is up.", [
      ...each((b) => (b.state === "connected" ? 1 : 0)),
    ]);
    metric(
      "mqtt_bridge_queued_messages",
      "gauge",
      "QoS 1/2 messages held for the remote.",
      each((b) => b.queuedMessages),
    );
    metric(
      "mqtt_bridge_queued_bytes",
      "gauge",
      "Bytes (topic + payload) of those.",
      each((b) => b.queuedBytes),
    );
    metric(
      "mqtt_bridge_messages_total",
      "counter",
      "Messages brought in from the remote (in) and sent to it and acknowledged (out).",
      bridges.flatMap((b) => [
        [{ bridge: b.name, direction: "in" }, b.received] as [Record<string, string>, number],
        [{ bridge: b.name, direction: "out" }, b.sent] as [Record<string, string>, number],
      ]),
    );
    metric(
      "mqtt_bridge_dropped_total",
      "counter",
      "Messages for the remote dropped: QoS 0 while it was away (offline), QoS 1/2 beyond the queue's limits " +
        "(queue_full), expired before they were sent (expired), refused by the remote with a reason code >= 0x80 (refused).",
      bridges.flatMap((b) =>
        (
          [
            ["offline", b.droppedOffline],
            ["queue_full", b.droppedFull],
            ["expired", b.droppedExpired],
            ["refused", b.droppedRefused],
          ] as const
        ).map(([reason, n]) => [{ bridge: b.name, reason }, n] as [Record<string, string>, number]),
      ),
    );
  }
  return lines.join("\n") + "\n";
}

/** `$SYS/broker/...` topics and their text payloads (the names Mosquitto users know where they exist). */
export function sysMessages(s: MetricsSummary): { topic: string; payload: string }[] {
  const sum = (m: Record<string, number>) => Object.values(m).reduce((a, b) => a + b, 0);
  const entries: [string, number][] = [
    ["clients/connected", s.connected],
    ["clients/total", s.connectsTotal],
    ["clients/disconnected", s.disconnectsTotal],
    ["messages/received", sum(s.received)],
    ["messages/sent", sum(s.delivered)],
    ["messages/dropped", sum(s.dropped)],
    ["load/bytes/received", s.receivedBytes],
    ["load/bytes/sent", s.deliveredBytes],
    ["publish/messages/received/qos0", s.received["0"] ?? 0],
    ["publish/messages/received/qos1", s.received["1"] ?? 0],
    ["publish/messages/received/qos2", s.received["2"] ?? 0],
    ["retained messages/count", s.retainedMessages],
    ["subscriptions/count", s.subscriptionEntries],
  ];
  return entries.map(([name, value]) => ({ topic: `$SYS/broker/${name}`, payload: String(value) }));
}

/** One Workers Analytics Engine data point: the summary's counters as doubles, in a fixed order. */
export function analyticsPoint(s: MetricsSummary): { indexes: string[]; blobs: string[]; doubles: number[] } {
  const sum = (m: Record<string, number>) => Object.values(m).reduce((a, b) => a + b, 0);
  return {
    indexes: ["broker"],
    blobs: ["connected,connects,disconnects,received,delivered,dropped,received_bytes,delivered_bytes,retained"],
    doubles: [
      s.connected,
      s.connectsTotal,
      s.disconnectsTotal,
      sum(s.received),
      sum(s.delivered),
      sum(s.dropped),
      s.receivedBytes,
      s.deliveredBytes,
      s.retainedMessages,
    ],
  };
}
