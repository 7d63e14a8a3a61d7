/**
 * The internal protocol between the gateway and a client's Session object, both directions of each
 * format side by side: the headers of the internal WebSocket upgrade (the connection facts the
 * gateway decided) and the numbered frames of whole MQTT packets that follow it. Putting frames back
 * in order is internal-order.ts; the close frame (why the gateway ended the connection) is
 * internal-close.ts.
 *
 * Gateway and Session object are one Worker script and a deploy restarts Durable Objects (closing
 * their WebSockets), so both sides always run the same version: the format carries none.
 *
 * Frame: 4 bytes of sequence number (big-endian, from 0 per connection), then one or more whole MQTT
 * packets (the gateway sends what a client sent in a burst as one frame: one Session event for many
 * packets). Why numbered: internal-order.ts.
 *
 * Packet type 0 is reserved in MQTT, so no client packet starts with a 0 byte (the gateway refuses
 * one): the two sides use it for what they tell each other besides the client's packets. The
 * session hands a QoS 0/1 message it accepted back to the gateway as an edge order (`encodeEdgeOrder`,
 * a WebSocket message of its own), so that the Session object waits for no shard; the gateway tells
 * the session how many QoS 1 orders it has received and how many PUBLISHes it has acknowledged, as a
 * type-0 packet among the client's in a frame (`encodeEdgeAcked`), for Receive Maximum [MQTT-3.3.4-9].
 */
import type { Identity } from "../auth/acl";
import type { ProtocolVersion } from "./constants";
import type { RoutedMessage } from "./message";
import { splitPackets } from "./framer";

/** Headers the gateway sets on the internal upgrade request to a Session object. */
export const SessionHeader = {
  CLIENT_ID: "x-mqtt-client-id",
  ASSIGNED: "x-mqtt-assigned-client-id",
  VERSION: "x-mqtt-version",
  SERVER_KEEP_ALIVE: "x-mqtt-server-keep-alive",
  /** The authenticated Identity (URI-encoded JSON). */
  IDENTITY: "x-mqtt-identity",
  /** Enhanced authentication result for CONNACK (URI-encoded JSON {method, data base64}). */
  AUTH_RESPONSE: "x-mqtt-auth-response",
  /** The client's address as the edge saw it (CF-Connecting-IP). */
  REMOTE_ADDRESS: "x-mqtt-remote-address",
  /** "1": the gateway routes the connection's QoS 0/1 messages the session accepts (edge orders, below). */
  ROUTE_AT_EDGE: "x-mqtt-route-at-edge",
} as const;

/** Enhanced authentication's final data for CONNACK (data: base64). */
export interface AuthResponse {
  method: string;
  data: string;
}

/** What the gateway decided about a connection before the Session object sees its CONNECT. */
export interface SessionConnect {
  clientId: string;
  /** The gateway assigned the client id (v5: returned as Assigned Client Identifier). */
  assignedClientId: boolean;
  /** Keep-alive the gateway enforces when it differs from the client's (v5 Server Keep Alive). */
  serverKeepAlive?: number;
  version: ProtocolVersion;
  /** Who the gateway authenticated ({} when anonymous). */
  identity: Identity;
  authResponse?: AuthResponse;
  /** The client's address as the edge saw it. */
  remoteAddress?: string;
  /** The gateway routes this connection's QoS 0/1 messages: the session hands them over as edge orders. */
  routeAtEdge?: boolean;
}

/** The upgrade request's headers for a connection (the gateway's side). */
export function encodeConnectHeaders(connect: SessionConnect): Record<string, string> {
  const headers: Record<string, string> = {
    [SessionHeader.CLIENT_ID]: encodeURIComponent(connect.clientId),
    [SessionHeader.VERSION]: String(connect.version),
  };
  if (connect.assignedClientId) headers[SessionHeader.ASSIGNED] = "1";
  if (connect.serverKeepAlive !== undefined) headers[SessionHeader.SERVER_KEEP_ALIVE] = String(connect.serverKeepAlive);
  headers[SessionHeader.IDENTITY] = encodeURIComponent(JSON.stringify(connect.identity));
  if (connect.authResponse) {
    headers[SessionHeader.AUTH_RESPONSE] = encodeURIComponent(JSON.stringify(connect.authResponse));
  }
  if (connect.remoteAddress) headers[SessionHeader.REMOTE_ADDRESS] = connect.remoteAddress;
  if (connect.routeAtEdge) headers[SessionHeader.ROUTE_AT_EDGE] = "1";
  return headers;
}

/**
 * The connection facts read back from the upgrade request (the Session object's side). Only the
 * gateway reaches a Session object, so a header it would not write is a bug: thrown, naming the header.
 */
export function decodeConnectHeaders(headers: Headers): SessionConnect {
  const keepAlive = headers.get(SessionHeader.SERVER_KEEP_ALIVE);
  const authResponse = headers.get(SessionHeader.AUTH_RESPONSE);
  return {
    clientId: uriDecoded(headers, SessionHeader.CLIENT_ID, ""),
    assignedClientId: headers.get(SessionHeader.ASSIGNED) === "1",
    serverKeepAlive: keepAlive === null ? undefined : Number(keepAlive),
    version: Number(headers.get(SessionHeader.VERSION) ?? 4) as ProtocolVersion,
    identity: jsonHeader(headers, SessionHeader.IDENTITY, "{}") as Identity,
    authResponse:
      authResponse === null ? undefined : (jsonHeader(headers, SessionHeader.AUTH_RESPONSE, "") as AuthResponse),
    remoteAddress: headers.get(SessionHeader.REMOTE_ADDRESS) ?? undefined,
    ...(headers.get(SessionHeader.ROUTE_AT_EDGE) === "1" ? { routeAtEdge: true } : {}),
  };
}

function uriDecoded(headers: Headers, name: string, absent: string): string {
  const value = headers.get(name);
  if (value === null) return absent;
  try {
    return decodeURIComponent(value);
  } catch {
    throw new Error(`internal upgrade: header ${name} is not URI-encoded`);
  }
}

function jsonHeader(headers: Headers, name: string, absent: string): unknown {
  const text = uriDecoded(headers, name, absent);
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`internal upgrade: header ${name} is not JSON`);
  }
}

/** One frame of a connection's packets, numbered `seq` (the gateway's side). */
export function encodeFrame(seq: number, packets: Uint8Array[]): Uint8Array {
  let length = 4;
  for (const p of packets) length += p.length;
  const out = new Uint8Array(length);
  out[0] = (seq >>> 24) & 255;
  out[1] = (seq >>> 16) & 255;
  out[2] = (seq >>> 8) & 255;
  out[3] = seq & 255;
  let offset = 4;
  for (const p of packets) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Smallest frame: a sequence number and one two-byte packet (PINGREQ, say). */
const MIN_FRAME_BYTES = 6;

/** The frame's number and packets (the Session object's side), or why it is not whole packets. */
export function decodeFrame(frame: Uint8Array): { seq: number; packets: Uint8Array[] } | { error: string } {
  if (frame.length < MIN_FRAME_BYTES) {
    return { error: `frame of ${frame.length} bytes: too short for a number and a packet` };
  }
  // Four bytes are there (MIN_FRAME_BYTES); read without a DataView, which would allocate per frame.
  const seq = ((frame[0]! << 24) | (frame[1]! << 16) | (frame[2]! << 8) | frame[3]!) >>> 0;
  const packets = splitPackets(frame, 4);
  if (packets === undefined) return { error: `frame ${seq} does not hold whole packets` };
  return { seq, packets };
}

/** What the session asks of the gateway for one PUBLISH of the client, in the order of the PUBLISHes. */
export type EdgeOrder =
  /**
   * Route the message; for QoS 1 (packetId > 0) then send PUBACK, its code from the match count,
   * after every earlier order's acknowledgement and not before `ackDelayMs` (the publish rate's pace).
   */
  | { kind: "route"; message: RoutedMessage; packetId: number; ackDelayMs: number }
  /** Send this encoded PUBACK (a refusal the session decided: 0x87, 0x99, ...) after every earlier one. */
  | { kind: "ack"; packet: Uint8Array }
  /**
   * The answer to the gateway's hand-back (`encodeEdgeHandBack`): every order for the PUBLISHes before
   * it was sent; the session routes the next ones itself.
   */
  | { kind: "handed-back" };

const EDGE_ROUTE = 1;
const EDGE_ACK = 2;
const EDGE_HANDED_BACK = 3;
/** Fixed part of a route order: marker, kind, packet id (2), delay (4), header length (4), correlation length (4). */
const EDGE_ROUTE_FIXED = 16;

/** Whether a message from the session is an edge order rather than packets for the client. */
export function isEdgeOrder(bytes: Uint8Array): boolean {
  return bytes.length > 1 && bytes[0] === 0;
}

/** An edge order as one WebSocket message (the session's side). */
export function encodeEdgeOrder(order: EdgeOrder): Uint8Array {
  if (order.kind === "handed-back") return new Uint8Array([0, EDGE_HANDED_BACK]);
  if (order.kind === "ack") {
    const out = new Uint8Array(2 + order.packet.length);
    out[1] = EDGE_ACK;
    out.set(order.packet, 2);
    return out;
  }
  const { payload, properties, ...rest } = order.message;
  const correlation = properties?.correlationData ?? new Uint8Array(0);
  const header = new TextEncoder().encode(
    JSON.stringify({ ...rest, properties: properties && { ...properties, correlationData: undefined } }),
  );
  const out = new Uint8Array(EDGE_ROUTE_FIXED + header.length + correlation.length + payload.length);
  const view = new DataView(out.buffer);
  out[1] = EDGE_ROUTE;
  view.setUint16(2, order.packetId);
  view.setUint32(4, Math.max(0, Math.ceil(order.ackDelayMs)));
  view.setUint32(8, header.length);
  view.setUint32(12, correlation.length);
  out.set(header, EDGE_ROUTE_FIXED);
  out.set(correlation, EDGE_ROUTE_FIXED + header.length);
  out.set(payload, EDGE_ROUTE_FIXED + header.length + correlation.length);
  return out;
}

/** The edge order in a message from the session (the gateway's side), or why it is not one. */
export function decodeEdgeOrder(bytes: Uint8Array): EdgeOrder | { error: string } {
  if (!isEdgeOrder(bytes)) return { error: "not an edge order" };
  if (bytes[1] === EDGE_ACK) return { kind: "ack", packet: bytes.subarray(2) };
  if (bytes[1] === EDGE_HANDED_BACK && bytes.length === 2) return { kind: "handed-back" };
  if (bytes[1] !== EDGE_ROUTE || bytes.length < EDGE_ROUTE_FIXED) return { error: "unknown or short edge order" };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerEnd = EDGE_ROUTE_FIXED + view.getUint32(8);
  const correlationEnd = headerEnd + view.getUint32(12);
  if (correlationEnd > bytes.length) return { error: "edge order shorter than its lengths" };
  let header: Omit<RoutedMessage, "payload">;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(EDGE_ROUTE_FIXED, headerEnd))) as typeof header;
  } catch {
    return { error: "edge order header is not JSON" };
  }
  const message: RoutedMessage = { ...header, payload: bytes.slice(correlationEnd) };
  if (header.properties && correlationEnd > headerEnd) {
    message.properties = { ...header.properties, correlationData: bytes.slice(headerEnd, correlationEnd) };
  }
  return { kind: "route", message, packetId: view.getUint16(2), ackDelayMs: view.getUint32(4) };
}

/**
 * What the gateway has of a connection's QoS 1 edge orders: how many it received (a message to route
 * or a PUBACK to send) and how many PUBACKs it sent, both since the connection opened. The session
 * counts what it handed over itself, but forgets it when it hibernates; `received` tells it again.
 */
export interface EdgeAckedCount {
  received: number;
  acked: number;
}

/** The type-0 packet with the gateway's counts (gateway's side): remaining length 8, two 32-bit counts. */
export function encodeEdgeAcked({ received, acked }: EdgeAckedCount): Uint8Array {
  const out = new Uint8Array([0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
  const view = new DataView(out.buffer);
  view.setUint32(2, received >>> 0);
  view.setUint32(6, acked >>> 0);
  return out;
}

/** The counts in a type-0 packet from the gateway (the session's side), or undefined if it is not one. */
export function decodeEdgeAcked(packet: Uint8Array): EdgeAckedCount | undefined {
  if (packet.length !== 10 || packet[0] !== 0 || packet[1] !== 8) return undefined;
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  return { received: view.getUint32(2), acked: view.getUint32(6) };
}

/**
 * The type-0 packet that hands routing back to the session (gateway's side): the connection's call
 * budget is spent (EDGE_ROUTE_CALL_BUDGET). It follows the packets forwarded before it.
 */
export function encodeEdgeHandBack(): Uint8Array {
  return new Uint8Array([0, 0]);
}

/** Whether a packet from the gateway is the hand-back (the session's side). */
export function isEdgeHandBack(packet: Uint8Array): boolean {
  return packet.length === 2 && packet[0] === 0 && packet[1] === 0;
}
