/** Codec adapter over mqtt-packet: one whole packet in, one packet object out, and back. */
import mqtt from "mqtt-packet";
import type { Packet } from "mqtt-packet";
import type { ProtocolVersion } from "./constants";

export type { Packet };

export type ParseResult = { packet: Packet } | { error: string };

/**
 * Parses exactly one whole packet (as framed by PacketFramer). `version` is the connection's
 * protocol level; for CONNECT it is read from the packet itself.
 */
export function parsePacket(bytes: Uint8Array, version: ProtocolVersion | undefined): ParseResult {
  const parser = mqtt.parser(version ? { protocolVersion: version } : {});
  const packets: Packet[] = [];
  let error: string | undefined;
  parser.on("packet", (p: Packet) => packets.push(p));
  parser.on("error", (e: Error) => {
    error ??= e.message;
  });
  const rest = parser.parse(asBuffer(bytes));
  if (error) return { error };
  if (packets.length !== 1 || rest !== 0) return { error: "packet length does not match its contents" };
  return { packet: packets[0] };
}

/** Serialises a packet for the given protocol level. */
export function encodePacket(packet: Packet, version: ProtocolVersion): Uint8Array {
  return mqtt.generate(packet, { protocolVersion: version });
}

/** A Buffer view over bytes (RPC and WebSocket deliver plain Uint8Array/ArrayBuffer). */
export function asBuffer(bytes: Uint8Array | ArrayBuffer): Buffer {
  if (bytes instanceof ArrayBuffer) return Buffer.from(bytes);
  if (Buffer.isBuffer(bytes)) return bytes;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Concatenates encoded packets into one frame (several packets per frame are allowed [MQTT-6.0.0-4]). */
export function joinFrames(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
