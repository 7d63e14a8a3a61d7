/**
 * The parts of CONNECT that need none of the session's state: who may connect, the CONNACK and its
 * properties, the session values a CONNECT sets, taking over an older connection, and the log and
 * event of an accepted connection. Session.handleConnect puts them in order.
 */
import type { BrokerConfig } from "../config";
import { isAllowed, type AclPolicy, type Identity } from "../auth/acl";
import { encodeWithin } from "../protocol/codec";
import { ConnectReturnCode, ReasonCode, type ProtocolVersion } from "../protocol/constants";
import { hexCode } from "../protocol/internal-close";
import type { ConnackPacket, ConnackProperties, ConnectPacket, DisconnectPacket } from "../protocol/packets";
import { logEvent } from "../observability/log";
import type { ConnectionInfo, SessionEvent, SessionIO } from "./session-io";
import type { SessionMeta } from "./store";
import { willToStore } from "./will";

/** What a CONNECT asks, read once. */
export interface ConnectRequest {
  info: ConnectionInfo;
  packet: ConnectPacket;
  version: ProtocolVersion;
  cleanStart: boolean;
  identity: Identity;
  /** Username (or token subject) of the identity; "" for anonymous. */
  owner: string;
}

export function connectRequest(info: ConnectionInfo, packet: ConnectPacket): ConnectRequest {
  const identity = info.identity ?? {};
  return {
    info,
    packet,
    version: packet.protocolVersion as ProtocolVersion,
    cleanStart: packet.clean !== false,
    identity,
    owner: identity.username ?? "",
  };
}

/**
 * Why the CONNECT is refused (a CONNACK 0x87 / return code 5), or undefined. A client may only
 * resume or take over a session that its own identity owns.
 */
export function connectRefusal(
  req: ConnectRequest,
  previous: SessionMeta,
  existed: boolean,
  acl: AclPolicy,
): string | undefined {
  const foreign = existed && previous.owner !== undefined && previous.owner !== req.owner;
  if (foreign) return "session owned by another identity";
  const will = req.packet.will;
  const willAllowed = !will || isAllowed(acl, req.identity, req.info.clientId, "publish", will.topic);
  return willAllowed ? undefined : "will topic not authorized";
  return undefined;
}

/** Answers a refused CONNECT (CONNACK 0x87 / return code 5) and closes the connection. */
export function refuseConnect(io: SessionIO, req: ConnectRequest, reason: string): void {
  const { info, version, identity } = req;
  // no Reason String: whether someone else's session exists under this id is not told
  const connack: ConnackPacket =
    version === 5
      ? { cmd: "connack", sessionPresent: false, reasonCode: ReasonCode.NOT_AUTHORIZED }
      : { cmd: "connack", sessionPresent: false, returnCode: ConnectReturnCode.NOT_AUTHORIZED };
  const bytes = encodeWithin(connack, version, clientMaxPacketSize(version, req.packet));
  if (bytes) io.send(info.connId, bytes);
  const code = version === 5 ? hexCode(0x87) : String(5);
  logEvent("warn", "connection.refused", {
    clientId: info.clientId,
    username: identity.username,
    remoteAddress: info.remoteAddress,
    reason,
    code,
  });
  io.close(info.connId, reason);
}

/** Session takeover [MQTT-3.1.4-3]: the older connection gets DISCONNECT 0x8E and is closed. */
export function takeOver(io: SessionIO, previous: SessionMeta, clientId: string): void {
  const connId = previous.connId!;
  const v5 = (previous.version ?? 4) === 5;
  if (v5) {
    const disconnect: DisconnectPacket = { cmd: "disconnect", reasonCode: ReasonCode.SESSION_TAKEN_OVER };
    const bytes = encodeWithin(disconnect, 5, previous.clientMaxPacketSize);
    if (bytes) io.send(connId, bytes);
  }
  io.close(connId, "session taken over");
  logEvent("info", "connection.ended", { clientId, reason: "session taken over", code: v5 ? "0x8e" : undefined });
}

/** The Session Expiry Interval the client asked for (3.1.1: none with a clean session, else the longest). */
export function requestedExpiry(req: ConnectRequest, config: BrokerConfig): number {
  if (req.version === 5) return Number(req.packet.properties?.sessionExpiryInterval ?? 0);
  return req.cleanStart ? 0 : config.maxSessionExpiry;
}

/** The session's values once the CONNECT is accepted; a resumed session keeps its drop count and queue level. */
export function connectedMeta(
  req: ConnectRequest,
  previous: SessionMeta,
  sessionPresent: boolean,
  expiryInterval: number,
  now: number,
): SessionMeta {
  const { info, packet, version, identity } = req;
  const props = version === 5 ? packet.properties : undefined;
  return {
    clientId: info.clientId,
    owner: req.owner,
    identity,
    version,
    expiryInterval,
    connId: info.connId,
    will: willToStore(packet),
    clientReceiveMax: props?.receiveMaximum,
    clientMaxPacketSize: clientMaxPacketSize(version, packet),
    clientTopicAliasMax: props?.topicAliasMaximum,
    // [MQTT-3.1.2-28] Request Problem Information defaults to 1
    problemInfo: version === 5 ? packet.properties?.requestProblemInformation !== false : undefined,
    droppedQueueFull: sessionPresent ? previous.droppedQueueFull : undefined,
    queueLevel: sessionPresent ? previous.queueLevel : undefined,
    connectedAt: now,
    remoteAddress: info.remoteAddress,
  };
}

/** The CONNACK accepting a connection, with its v5 properties. */
export function connack(
  req: ConnectRequest,
  config: BrokerConfig,
  sessionPresent: boolean,
  requested: number,
  granted: number,
): ConnackPacket {
  const packet: ConnackPacket = { cmd: "connack", sessionPresent };
  if (req.version === 5) {
    packet.reasonCode = ReasonCode.SUCCESS;
    packet.properties = connackProperties(req.info, config, requested, granted);
  } else {
    packet.returnCode = 0;
  }
  return packet;
}

function connackProperties(
  info: ConnectionInfo,
  config: BrokerConfig,
  requested: number,
  granted: number,
): ConnackProperties {
  const props: ConnackProperties = {
    receiveMaximum: config.receiveMaximum,
    maximumPacketSize: config.maxPacketSize,
    topicAliasMaximum: config.topicAliasMaximum,
    retainAvailable: true,
    wildcardSubscriptionAvailable: true,
    subscriptionIdentifiersAvailable: true,
    sharedSubscriptionAvailable: true,
  };
  if (info.assignedClientId) props.assignedClientIdentifier = info.clientId;
  if (granted !== requested) props.sessionExpiryInterval = granted;
  if (info.serverKeepAlive !== undefined) props.serverKeepAlive = info.serverKeepAlive;
  if (info.authResponse) {
    props.authenticationMethod = info.authResponse.method;
    props.authenticationData = Buffer.from(info.authResponse.data, "base64");
  }
  return props;
}

/** The operator log line of an accepted connection, and the event the registry and metrics get. */
export function reportConnected(
  io: SessionIO,
  req: ConnectRequest,
  sessionPresent: boolean,
  expiryInterval: number,
  now: number,
): void {
  const { info, version, identity } = req;
  logEvent("info", "connection.accepted", {
    clientId: info.clientId,
    username: identity.username,
    remoteAddress: info.remoteAddress,
    protocol: version === 5 ? "5.0" : version === 4 ? "3.1.1" : "3.1",
    cleanStart: req.cleanStart,
    sessionPresent,
    keepAlive: info.serverKeepAlive ?? req.packet.keepalive,
  });
  const event: SessionEvent = {
    kind: "connected",
    identity,
    record: {
      clientId: info.clientId,
      connId: info.connId,
      connectedAt: now,
      version,
      username: identity.username,
      remoteAddress: info.remoteAddress,
      sessionPresent,
      expiryInterval,
    },
  };
  io.report(event);
}

/** The Maximum Packet Size a v5 CONNECT announced (absent: no limit beyond the protocol's). */
export function clientMaxPacketSize(version: ProtocolVersion, connect: ConnectPacket): number | undefined {
  return version === 5 ? connect.properties?.maximumPacketSize : undefined;
}
