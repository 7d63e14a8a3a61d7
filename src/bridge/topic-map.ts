/**
 * A bridge's topic mappings, as Mosquitto's `topic <filter> <direction> <qos> <local> <remote>`: the
 * local side sees `localPrefix + t`, the remote side `remotePrefix + t`, for every t the filter
 * matches. What each side subscribes to, and where a message goes when it crosses.
 *
 * Loop prevention for `both` (a message the bridge brought in must not go back out, nor the reverse):
 * - locally, a message routed in by the bridge carries the bridge's subscriber id as its origin, and
 *   the bridge's local subscriptions have No Local set, so the shards never hand it back;
 * - remotely, on MQTT 5, the bridge's subscriptions have No Local [MQTT-3.8.3-3]: the remote never
 *   sends back what the bridge published. MQTT 3.1.1 has no No Local: a `both` mapping there gets one
 *   echo of each outgoing message (routed here once more, then stopped by the local No Local). Give
 *   such traffic different prefixes one way and the other, or use `in` and `out` on disjoint filters.
 */
import type { BridgeConfig, TopicMapping } from "./bridge-config";
import type { QoS } from "../protocol/message";
import { topicMatches } from "../protocol/topic";

/** One subscription on either side: the full filter and its QoS. */
export interface SideSubscription {
  filter: string;
  qos: QoS;
}

const inbound = (m: TopicMapping) => m.direction === "in" || m.direction === "both";
const outbound = (m: TopicMapping) => m.direction === "out" || m.direction === "both";

/** The subscriptions the bridge makes at the remote broker (the `in` and `both` mappings). */
export function remoteSubscriptions(bridge: BridgeConfig): SideSubscription[] {
  return bridge.topics.filter(inbound).map((m) => ({ filter: m.remotePrefix + m.filter, qos: m.qos }));
}

/** The subscriptions the bridge makes in this broker's shards (the `out` and `both` mappings). */
export function localSubscriptions(bridge: BridgeConfig): SideSubscription[] {
  return bridge.topics.filter(outbound).map((m) => ({ filter: m.localPrefix + m.filter, qos: m.qos }));
}

/** Where a message crosses to and at what QoS: the first mapping that matches it decides. */
export interface Crossing {
  topic: string;
  qos: QoS;
}

function cross(
  mappings: TopicMapping[],
  topic: string,
  qos: QoS,
  from: "localPrefix" | "remotePrefix",
  to: "localPrefix" | "remotePrefix",
): Crossing | undefined {
  for (const m of mappings) {
    const start = m[from];
    if (!topic.startsWith(start)) continue;
    const rest = topic.slice(start.length);
    if (rest === "" || !topicMatches(m.filter, rest)) continue;
    return { topic: m[to] + rest, qos: Math.min(qos, m.qos) as QoS };
  }
  return undefined;
}

/** A message from the remote broker: its local topic and QoS, or undefined when no `in` mapping has it. */
export function toLocal(bridge: BridgeConfig, remoteTopic: string, qos: QoS): Crossing | undefined {
  return cross(bridge.topics.filter(inbound), remoteTopic, qos, "remotePrefix", "localPrefix");
}

/** A local message: its remote topic and QoS, or undefined when no `out` mapping has it. */
export function toRemote(bridge: BridgeConfig, localTopic: string, qos: QoS): Crossing | undefined {
  return cross(bridge.topics.filter(outbound), localTopic, qos, "localPrefix", "remotePrefix");
}
