/**
 * Checks on a parsed packet that mqtt-packet does not make. A failure is a protocol error: the
 * connection is closed (v5: DISCONNECT with the reason code first).
 */
import { ReasonCode } from "./constants";
import type { Packet, PublishProperties } from "./packets";
import { topicNameError, type TopicLimits } from "./topic";

export interface PacketViolation {
  reasonCode: number;
  reason: string;
}

const NEEDS_PACKET_ID = new Set<Packet["cmd"]>(["subscribe", "unsubscribe", "puback", "pubrec", "pubrel", "pubcomp"]);

export function packetViolation(packet: Packet): PacketViolation | undefined {
  const malformed = (reason: string) => ({ reasonCode: ReasonCode.MALFORMED_PACKET, reason });
  const needsId = NEEDS_PACKET_ID.has(packet.cmd) || (packet.cmd === "publish" && packet.qos > 0);
  // [MQTT-2.2.1-3] SUBSCRIBE, UNSUBSCRIBE and QoS>0 PUBLISH carry a non-zero packet identifier
  if (needsId && !packet.messageId) return malformed("packet identifier must be non-zero");
  if (packet.cmd === "publish" && packet.qos === 0 && packet.dup) {
    return malformed("DUP must be 0 for QoS 0"); // [MQTT-3.3.1-2]
  }
  if (packet.cmd === "subscribe" && !packet.subscriptions?.length) {
    return { reasonCode: ReasonCode.PROTOCOL_ERROR, reason: "SUBSCRIBE without a topic filter" }; // [MQTT-3.8.3-3]
  }
  if (packet.cmd === "unsubscribe" && !packet.unsubscriptions?.length) {
    return { reasonCode: ReasonCode.PROTOCOL_ERROR, reason: "UNSUBSCRIBE without a topic filter" }; // [MQTT-3.10.3-2]
  }
  return undefined;
}

/** Problems in the properties of a PUBLISH from a client (v5). */
export function publishPropertiesProblem(
  props: PublishProperties | undefined,
  limits: TopicLimits,
): PacketViolation | undefined {
  if (!props) return undefined;
  // [MQTT-3.3.4-6] a PUBLISH from a client must not carry a Subscription Identifier
  if (props.subscriptionIdentifier !== undefined) {
    return { reasonCode: ReasonCode.PROTOCOL_ERROR, reason: "Subscription Identifier in a client PUBLISH" };
  }
  // [MQTT-3.3.2-13, 3.3.2-14] the Response Topic is a topic name: no wildcards
  if (props.responseTopic !== undefined && topicNameError(props.responseTopic, limits)) {
    return { reasonCode: ReasonCode.PROTOCOL_ERROR, reason: "invalid Response Topic" };
  }
  return undefined;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** True when the bytes are well-formed UTF-8. */
export function isUtf8(bytes: Uint8Array): boolean {
  try {
    strictUtf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}
