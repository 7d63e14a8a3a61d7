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
 */
import type { Identity } from "../auth/acl";
import type { ProtocolVersion } from "./constants";
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
