/**
 * CONNECT at the edge: the checks the gateway makes before any Durable Object wakes, and the
 * refusal CONNACK when one fails.
 */
import type { BrokerConfig } from "../config";
import { ConnectReturnCode, MAX_CLIENT_ID_LENGTH, ReasonCode, type ProtocolVersion } from "../protocol/constants";
import { connectFault } from "../protocol/connect-check";
import { isBrokerOnlyTopic, topicNameError } from "../protocol/topic";
import { isUtf8 } from "../protocol/validate";
import { bridgeNameOf } from "../bridge/bridge-config";

export interface ConnectFields {
  protocolVersion: ProtocolVersion;
  clientId: string;
  clean: boolean;
  keepalive: number;
  will?: { topic: string; payload?: Uint8Array; properties?: { payloadFormatIndicator?: boolean } };
  properties?: { authenticationMethod?: string };
}

export type Admission =
  | {
      ok: true;
      clientId: string;
      assigned: boolean;
      /** Seconds of silence (x1.5) after which the gateway closes the connection; 0: none. */
      keepAlive: number;
      /** v5 Server Keep Alive to announce when it differs from the client's. */
      serverKeepAlive?: number;
    }
  | { ok: false; reason: string; connack?: { returnCode?: number; reasonCode?: number; sessionPresent: false } };

const encoder = new TextEncoder();

/**
 * Faults only the CONNECT's bytes show (protocol/connect-check.ts). [MQTT-3.1.4-1] the server closes
 * a CONNECT that does not conform: 5.0 answers CONNACK 0x81 / 0x82 first (4.13), 3.1.1 closes
 * without CONNACK [MQTT311-3.1.4-1]. Undefined when the bytes are well formed.
 */
export function refuseConnectBytes(bytes: Uint8Array, version: ProtocolVersion): Admission | undefined {
  const fault = connectFault(bytes);
  if (!fault) return undefined;
  const reason = `malformed CONNECT: ${fault.reason}`;
  return version === 5
    ? { ok: false, reason, connack: { reasonCode: fault.reasonCode, sessionPresent: false } }
    : { ok: false, reason };
}

export function admitConnect(
  connect: ConnectFields,
  config: BrokerConfig,
  newId: () => string,
  authMethods: string[] = [],
): Admission {
  const v5 = connect.protocolVersion === 5;
  const refuse = (reason: string, v5Code: number, v3Code: number): Admission => ({
    ok: false,
    reason,
    connack: v5 ? { reasonCode: v5Code, sessionPresent: false } : { returnCode: v3Code, sessionPresent: false },
  });
  let clientId = connect.clientId ?? "";
  let assigned = false;
  if (clientId === "") {
    // [MQTT-3.1.3-8] 3.1.1: an empty id with CleanSession=0 is refused with return code 0x02
    if (!v5 && !connect.clean) {
      return refuse(
        "empty client id needs a clean session",
        ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
        ConnectReturnCode.IDENTIFIER_REJECTED,
      );
    }
    // [MQTT-3.1.3-6] the server assigns a unique id (v5 returns it in CONNACK [MQTT-3.2.2-16])
    clientId = `auto-${newId()}`;
    assigned = true;
  }
  if (encoder.encode(clientId).length > MAX_CLIENT_ID_LENGTH) {
    return refuse("client id too long", ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, ConnectReturnCode.IDENTIFIER_REJECTED);
  }
  // [MQTT-3.1.3-5] the server may refuse a client id: `$bridge:<name>` names a broker bridge in the
  // shards (bridge/bridge-config.ts), which a client must not receive the messages of.
  if (bridgeNameOf(clientId) !== undefined) {
    return refuse(
      "client id reserved for bridges",
      ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
      ConnectReturnCode.IDENTIFIER_REJECTED,
    );
  }
  const method = connect.properties?.authenticationMethod;
  if (v5 && method !== undefined && !authMethods.includes(method)) {
    // [MQTT-4.12.0-1] an authentication method we do not offer: CONNACK 0x8C, then close
    return refuse("authentication method not supported", ReasonCode.BAD_AUTHENTICATION_METHOD, 0);
  }
  if (connect.will) {
    if (v5 && connect.will.properties?.payloadFormatIndicator && !isUtf8(connect.will.payload ?? new Uint8Array())) {
      return refuse("will payload is not UTF-8", ReasonCode.PAYLOAD_FORMAT_INVALID, 0);
    }
    const error = topicNameError(connect.will.topic, config);
    // [MQTT-3.1.2-?] the will topic must be a valid topic name; 3.1.1 has no return code for it
    if (error) {
      return v5
        ? refuse(`will topic ${error}`, ReasonCode.TOPIC_NAME_INVALID, 0)
        : { ok: false, reason: `will topic ${error}` };
    }
    // `$SYS/...` is the broker's own (protocol/topic.ts): a will there is refused as an unauthorized
    // will is, 0x87 / 3.1.1 return code 5, rather than accepted and never published
    if (isBrokerOnlyTopic(connect.will.topic)) {
      return refuse(
        "will topic is reserved for the broker ($SYS)",
        ReasonCode.NOT_AUTHORIZED,
        ConnectReturnCode.NOT_AUTHORIZED,
      );
    }
  }
  let keepAlive = connect.keepalive;
  let serverKeepAlive: number | undefined;
  if (v5 && (keepAlive === 0 || keepAlive > config.maxKeepAlive)) {
    // [MQTT-3.2.2-21] the client must use the Server Keep Alive we return
    keepAlive = config.maxKeepAlive;
    serverKeepAlive = keepAlive;
  }
  return { ok: true, clientId, assigned, keepAlive, serverKeepAlive };
}

/** The protocol level byte of a CONNECT, read without a full parse (for the 0x84 / 0x01 answer). */
export function peekProtocolLevel(packet: Uint8Array): number | undefined {
  let i = 1;
  while (i < packet.length && packet[i]! & 0x80) i++;
  i++; // past the last Remaining Length byte
  if (i + 2 > packet.length) return undefined;
  const nameLength = ((packet[i] ?? 0) << 8) | (packet[i + 1] ?? 0); // a cut packet reads as length 0
  const levelAt = i + 2 + nameLength;
  return levelAt < packet.length ? packet[levelAt] : undefined;
}
