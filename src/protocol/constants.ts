/** MQTT constants, named once: packet types, reason codes, return codes. */

/** Control packet type, the high nibble of the first byte [MQTT-2.1.2]. */
export const PacketType = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBSCRIBE: 8,
  SUBACK: 9,
  UNSUBSCRIBE: 10,
  UNSUBACK: 11,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
  AUTH: 15,
} as const;

/** Protocol levels: 3 = MQTT 3.1 (MQIsdp), 4 = 3.1.1, 5 = 5.0. */
export type ProtocolVersion = 3 | 4 | 5;

/** MQTT 5.0 reason codes [MQTT-2.4]. */
export const ReasonCode = {
  SUCCESS: 0x00,
  GRANTED_QOS_1: 0x01,
  GRANTED_QOS_2: 0x02,
  DISCONNECT_WITH_WILL: 0x04,
  NO_MATCHING_SUBSCRIBERS: 0x10,
  CONTINUE_AUTHENTICATION: 0x18,
  REAUTHENTICATE: 0x19,
  NO_SUBSCRIPTION_EXISTED: 0x11,
  UNSPECIFIED_ERROR: 0x80,
  MALFORMED_PACKET: 0x81,
  PROTOCOL_ERROR: 0x82,
  IMPLEMENTATION_SPECIFIC_ERROR: 0x83,
  UNSUPPORTED_PROTOCOL_VERSION: 0x84,
  CLIENT_IDENTIFIER_NOT_VALID: 0x85,
  BAD_USERNAME_OR_PASSWORD: 0x86,
  NOT_AUTHORIZED: 0x87,
  SERVER_UNAVAILABLE: 0x88,
  SERVER_BUSY: 0x89,
  SERVER_SHUTTING_DOWN: 0x8b,
  BAD_AUTHENTICATION_METHOD: 0x8c,
  KEEP_ALIVE_TIMEOUT: 0x8d,
  SESSION_TAKEN_OVER: 0x8e,
  ADMINISTRATIVE_ACTION: 0x98,
  TOPIC_FILTER_INVALID: 0x8f,
  TOPIC_NAME_INVALID: 0x90,
  PACKET_IDENTIFIER_IN_USE: 0x91,
  PACKET_IDENTIFIER_NOT_FOUND: 0x92,
  RECEIVE_MAXIMUM_EXCEEDED: 0x93,
  TOPIC_ALIAS_INVALID: 0x94,
  PACKET_TOO_LARGE: 0x95,
  QUOTA_EXCEEDED: 0x97,
  MESSAGE_RATE_TOO_HIGH: 0x96,
  PAYLOAD_FORMAT_INVALID: 0x99,
  RETAIN_NOT_SUPPORTED: 0x9a,
  QOS_NOT_SUPPORTED: 0x9b,
  SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: 0x9e,
  SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: 0xa1,
  WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: 0xa2,
} as const;

/** MQTT 3.1.1 CONNACK return codes [MQTT-3.2.2.3]. */
export const ConnectReturnCode = {
  ACCEPTED: 0,
  UNACCEPTABLE_PROTOCOL_VERSION: 1,
  IDENTIFIER_REJECTED: 2,
  SERVER_UNAVAILABLE: 3,
  BAD_USERNAME_OR_PASSWORD: 4,
  NOT_AUTHORIZED: 5,
} as const;

/** MQTT 3.1.1 SUBACK failure return code [MQTT-3.9.3]. */
export const SUBACK_FAILURE_V3 = 0x80;

/** Largest value the Remaining Length field can carry [MQTT-2.2.3]. */
export const MAX_REMAINING_LENGTH = 268435455;

/** Internal WebSocket close codes between gateway and Session object (4000-4999 are private). */
export const InternalClose = {
  /** The client closed its socket or the network failed: an abnormal end unless DISCONNECT was seen. */
  CLIENT_GONE: 4000,
  /** The gateway ended the connection for a protocol error or timeout: abnormal, the will is sent. */
  GATEWAY_ABORT: 4001,
} as const;

/** Longest client identifier accepted, in bytes (3.1.1 requires servers to accept 1..23 [MQTT-3.1.3-5]). */
export const MAX_CLIENT_ID_LENGTH = 256;

/**
 * The code of a QoS 1/2 acknowledgement for an accepted message: v5 0x10 tells the publisher nobody
 * subscribes to the topic (the message was still accepted); 3.1.1 has no code.
 */
export function matchCode(version: ProtocolVersion, matched: number): number {
  return version === 5 && matched === 0 ? ReasonCode.NO_MATCHING_SUBSCRIBERS : ReasonCode.SUCCESS;
}
