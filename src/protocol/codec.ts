/** Codec adapter over mqtt-packet: one whole packet in, one packet object out, and back. */
import mqtt from "mqtt-packet";
import { counters } from "../observability/counters";
import type { ProtocolVersion } from "./constants";
import { readFixedHeader } from "./framer";
import type { QoS } from "./message";
import type { AckPacket, Packet, PublishPacket } from "./packets";
import { packetFault } from "./packet-check";
import {
  publishUserProperties,
  userPropertyList,
  pushVarInt,
  willUserProperties,
  withUserProperties,
} from "./user-properties";

// mqtt-packet builds a cache of all 65,536 two-byte numbers on its first encode unless told not to:
// about 11 MB and 65,536 objects in every isolate, which a bench CPU profile showed as ~90 ms of
// allocation and collection before a fresh isolate's first CONNACK, and which every later full
// collection must mark. The broker writes a few such numbers per packet: it allocates them as it goes.
mqtt.writeToStream.cacheNumbers = false;

export type { Packet };
/** What the encoders take: our packets, or mqtt-packet's (User Properties as its object). */
export type EncodablePacket = Packet | mqtt.Packet;

/** A packet, or why it is refused: `reasonCode` is the v5 answer (absent: 0x81 Malformed Packet). */
export type ParseResult = { packet: Packet } | { error: string; reasonCode?: number };

/**
 * Parses exactly one whole packet (as framed by PacketFramer). `version` is the connection's
 * protocol level; for CONNECT it is read from the packet itself. The User Properties of a PUBLISH
 * and of a will come as an ordered list of [name, value] pairs, not as mqtt-packet's object
 * (src/protocol/user-properties.ts).
 */
export function parsePacket(bytes: Uint8Array, version: ProtocolVersion | undefined): ParseResult {
  const fast = version ? parseSimplePacket(bytes, version) : undefined;
  if (fast) return { packet: fast };
  const parser = mqtt.parser(version ? { protocolVersion: version } : {});
  const packets: mqtt.Packet[] = [];
  let error: string | undefined;
  parser.on("packet", (p: mqtt.Packet) => packets.push(p));
  parser.on("error", (e: Error) => {
    error ??= e.message;
  });
  const rest = parser.parse(asBuffer(bytes));
  if (error) return { error };
  if (packets.length !== 1 || rest !== 0) return { error: "packet length does not match its contents" };
  // What the packet object cannot show (its strings were decoded leniently): checked on the bytes.
  // CONNECT has its own check, which answers with a CONNACK (connect-check.ts).
  const packet = packets[0]!; // exactly one, checked above
  const fault = packet.cmd === "connect" ? undefined : packetFault(bytes, version ?? 4);
  if (fault) return { error: fault.reason, reasonCode: fault.reasonCode };
  return { packet: withOrderedUserProperties(packet, bytes) };
}

/**
 * mqtt-packet's packet as ours (packets.ts): its object of User Properties of a PUBLISH or a will
 * replaced with the list read from the bytes, in order. The rest already has our shape (mqtt-packet's
 * parser gives Buffers, never strings, and no `granted` in a 3.1.1 UNSUBACK).
 */
function withOrderedUserProperties(packet: mqtt.Packet, bytes: Uint8Array): Packet {
  const props =
    packet.cmd === "publish" ? packet.properties : packet.cmd === "connect" ? packet.will?.properties : undefined;
  if (props?.userProperties) {
    const read = packet.cmd === "publish" ? publishUserProperties : willUserProperties;
    const list = read(bytes) ?? userPropertyList(props.userProperties);
    (props as { userProperties?: unknown }).userProperties = list;
  }
  return packet as unknown as Packet;
}

/**
 * Serialises a packet for the given protocol level. A PUBLISH's User Properties may be a list of
 * pairs (written in that order) or mqtt-packet's object.
 */
export function encodePacket(packet: EncodablePacket, version: ProtocolVersion): Uint8Array {
  const simple = encodeSimplePublish(packet, version) ?? encodeSimpleAck(packet, version);
  if (simple) return simple;
  if (packet.cmd === "publish" && version === 5 && Array.isArray(packet.properties?.userProperties)) {
    const { userProperties, ...others } = packet.properties;
    const encoded = mqtt.generate({ ...packet, properties: others }, { protocolVersion: version });
    return withUserProperties(encoded, userProperties);
  }
  // Our packets differ from mqtt-packet's only in the User Properties handled above (a list of pairs
  // could reach mqtt-packet only from a will, which the broker never encodes) and narrower types.
  return mqtt.generate(packet as mqtt.Packet, { protocolVersion: version });
}

/** What a packet may go without, in the order it is left out to fit the client's Maximum Packet Size. */
const OPTIONAL_PROPERTIES = ["reasonString", "userProperties"];
/**
 * CONNACK properties that, when true, say what their absence says too [3.2.2.3.5, 3.2.2.3.11,
 * 3.2.2.3.12, 3.2.2.3.13]: left out after the optional ones, nothing is lost.
 */
const CONNACK_DEFAULTS = [
  "retainAvailable",
  "wildcardSubscriptionAvailable",
  "subscriptionIdentifiersAvailable",
  "sharedSubscriptionAvailable",
];

/**
 * Encodes a packet the server sends within the client's Maximum Packet Size (`max`; undefined: no
 * limit) [MQTT-3.1.2-24]: one that would exceed it goes without its Reason String, then without its
 * User Properties [MQTT-3.2.2-19, 3.2.2-20, 3.4.2-2, 3.4.2-3, 3.5.2-2, 3.5.2-3, 3.6.2-2, 3.6.2-3,
 * 3.7.2-2, 3.7.2-3, 3.9.2-1, 3.9.2-2, 3.11.2-1, 3.11.2-2, 3.14.2-3, 3.14.2-4, 3.15.2-2, 3.15.2-3].
 * Undefined when it still does not fit: it must not be sent. A PUBLISH keeps its properties (they
 * are the message's): it is discarded whole [MQTT-3.1.2-25].
 */
export function encodeWithin(
  packet: EncodablePacket,
  version: ProtocolVersion,
  max: number | undefined,
): Uint8Array | undefined {
  let bytes = encodePacket(packet, version);
  if (max === undefined || bytes.length <= max) return bytes;
  if (packet.cmd === "publish" || !("properties" in packet) || !packet.properties) return undefined;
  const props: Record<string, unknown> = { ...packet.properties };
  const droppable =
    packet.cmd === "connack"
      ? [...OPTIONAL_PROPERTIES, ...CONNACK_DEFAULTS.filter((name) => props[name] === true)]
      : OPTIONAL_PROPERTIES;
  for (const name of droppable) {
    if (props[name] === undefined) continue;
    delete props[name];
    // the same packet, without some of its optional properties
    bytes = encodePacket({ ...packet, properties: props } as EncodablePacket, version);
    if (bytes.length <= max) return bytes;
  }
  return undefined;
}

// --- the hot path ------------------------------------------------------------------------
// CPU profiles of the fan-in scenario showed a fresh mqtt-packet parser per packet and its Buffer
// conversions as a large share of the work. PUBLISH without properties and the four-byte
// acknowledgements, the bulk of the traffic, are read and written here directly on Uint8Array; any
// other packet, and anything unusual about these (properties, a bad length, ill-formed UTF-8), goes
// to mqtt-packet as before, so the answers to malformed input do not change. The unit tests compare
// both paths on generated packets.

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();
const ACKS = ["puback", "pubrec", "pubrel", "pubcomp"] as const;

/** The Two Byte Integer at `i`; the caller has checked that both bytes are there. */
const uint16 = (bytes: Uint8Array, i: number) => (bytes[i]! << 8) | bytes[i + 1]!;

/** A well-formed PUBLISH (no v5 properties) or a 2-byte-body PUBACK/PUBREC/PUBREL/PUBCOMP; else undefined. */
export function parseSimplePacket(bytes: Uint8Array, version: ProtocolVersion): Packet | undefined {
  const first = bytes[0] ?? 0; // an empty buffer is type 0: not a simple packet
  const type = first >> 4;
  if (type >= 4 && type <= 7) {
    // [MQTT-3.6.1-1] PUBREL's flags are 0010, the others' 0000
    if (bytes.length !== 4 || bytes[1] !== 2 || (first & 0x0f) !== (type === 6 ? 2 : 0)) return undefined;
    if (bytes[2] === 0 && bytes[3] === 0) return undefined;
    const ack: AckPacket = { cmd: ACKS[type - 4]!, messageId: uint16(bytes, 2), length: 2 };
    return ack;
  }
  if (type !== 3) return undefined;
  const qos = (first >> 1) & 3;
  if (qos === 3) return undefined;
  const header = readFixedHeader(bytes, 0);
  if (header === undefined || header === "malformed") return undefined;
  const length = header.remainingLength;
  let i = header.headerLength;
  if (i + length !== bytes.length || i + 2 > bytes.length) return undefined;
  const topicLength = uint16(bytes, i);
  i += 2;
  if (topicLength === 0 || i + topicLength > bytes.length) return undefined;
  // A topic with U+0000 or ill-formed UTF-8 goes to the full path, which refuses it as malformed
  // (packet-check.ts): the one raw check this path needs, done by the strict decoder and this scan
  const topicBytes = bytes.subarray(i, i + topicLength);
  if (topicBytes.includes(0)) return undefined;
  let topic: string;
  try {
    topic = strictUtf8.decode(topicBytes);
  } catch {
    return undefined;
  }
  i += topicLength;
  let messageId: number | undefined;
  if (qos > 0) {
    if (i + 2 > bytes.length) return undefined;
    messageId = uint16(bytes, i);
    if (messageId === 0) return undefined;
    i += 2;
  }
  if (version === 5) {
    if (i >= bytes.length || bytes[i] !== 0) return undefined; // properties present: the full parser
    i += 1;
  }
  const packet: PublishPacket = {
    cmd: "publish",
    retain: (first & 1) === 1,
    qos: qos as QoS,
    dup: (first & 8) === 8,
    length,
    topic,
    payload: asBuffer(bytes.subarray(i)),
  };
  if (messageId !== undefined) packet.messageId = messageId;
  return packet;
}

/** First byte of each acknowledgement: its type, and PUBREL's required flags 0010 [MQTT-3.6.1-1]. */
const ACK_FIRST_BYTE = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 } as const;

/**
 * A PUBACK/PUBREC/PUBREL/PUBCOMP in its 4-byte form, encoded directly: 3.1.1, or v5 with reason code
 * 0 and no properties (Remaining Length 2 [MQTT-3.4.2-1]); undefined for anything else (mqtt-packet
 * writes it). The bytes are mqtt-packet's (the unit tests compare them); this skips its stream, its
 * buffers and a two-byte buffer per packet id.
 */
export function encodeSimpleAck(packet: EncodablePacket, version: ProtocolVersion): Uint8Array | undefined {
  if (!Object.hasOwn(ACK_FIRST_BYTE, packet.cmd)) return undefined;
  const ack = packet as {
    cmd: keyof typeof ACK_FIRST_BYTE;
    messageId?: number;
    reasonCode?: number;
    properties?: object;
  };
  if (version === 5 && (ack.reasonCode !== 0 || (ack.properties && Object.keys(ack.properties).length > 0))) {
    return undefined;
  }
  const id = ack.messageId;
  if (id === undefined || !Number.isInteger(id) || id < 1 || id > 65535) return undefined;
  return new Uint8Array([ACK_FIRST_BYTE[ack.cmd], 2, id >> 8, id & 0xff]);
}

/**
 * A PUBLISH without properties, encoded directly; undefined for anything else. One allocation per
 * packet: the topic is written into the packet's bytes (`encodeInto`) rather than encoded apart and
 * copied, since allocating a small buffer costs about as much as the rest of the encoding (~1.1 us
 * each under Node 20: docs/PERFORMANCE.md "Encoding a delivery").
 */
export function encodeSimplePublish(packet: EncodablePacket, version: ProtocolVersion): Uint8Array | undefined {
  return encodePublishDirect(packet, version, true);
}

/** encodeSimplePublish; `mayReuse`: whether a payload's buffer that is already the packet is sent as it is. */
function encodePublishDirect(
  packet: EncodablePacket,
  version: ProtocolVersion,
  mayReuse: boolean,
): Uint8Array | undefined {
  if (packet.cmd !== "publish" || (packet.properties && Object.keys(packet.properties).length > 0)) return undefined;
  // Defaults and a string payload, as mqtt-packet takes them, for a packet built outside this code.
  const p: Partial<Omit<PublishPacket, "payload" | "properties">> & { payload?: Uint8Array | string } = packet;
  const qos = p.qos ?? 0;
  const topic = p.topic ?? "";
  const topicBytes = utf8Length(topic);
  const payload: Uint8Array =
    typeof p.payload === "string" ? encoder.encode(p.payload) : (p.payload ?? new Uint8Array());
  const messageId = p.messageId ?? 0;
  if (topicBytes > 65535 || (qos > 0 && !messageId)) return undefined;
  if (mayReuse && version !== 5 && qos === 0 && !p.retain && !p.dup) {
    const given = packetAround(topic, topicBytes, payload);
    if (given) {
      counters.publishesSentAsGiven++;
      return given;
    }
  }
  const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + (version === 5 ? 1 : 0) + payload.length;
  if (remaining > 268435455) return undefined;
  const header = pushVarInt([0x30 | (p.dup ? 8 : 0) | (qos << 1) | (p.retain ? 1 : 0)], remaining);
  const out = new Uint8Array(header.length + remaining);
  out.set(header, 0);
  let i = header.length;
  out[i++] = topicBytes >> 8;
  out[i++] = topicBytes & 255;
  if (encoder.encodeInto(topic, out.subarray(i, i + topicBytes)).written !== topicBytes) return undefined;
  i += topicBytes;
  if (qos > 0) {
    out[i++] = messageId >> 8;
    out[i++] = messageId & 255;
  }
  if (version === 5) out[i++] = 0;
  out.set(payload, i);
  return out;
}

/**
 * A copy of payload placed at the end of topic's 3.1.1 PUBLISH at QoS 0, neither retained nor DUP:
 * the view returned is the payload, and its buffer is that whole packet. One allocation, as the plain
 * copy it replaces. encodeSimplePublish sends the buffer as it is when asked for exactly that packet
 * (a 3.1.1 subscriber's live QoS 0 delivery: nothing changes), so the publisher's Session object
 * encodes it once for every such subscriber, and the bytes travel to theirs with the payload.
 */
export function payloadInPublish(topic: string, payload: Uint8Array): Uint8Array {
  const publish = { cmd: "publish", topic, payload: asBuffer(payload), qos: 0, retain: false, dup: false } as const;
  const packet = encodePublishDirect(publish, 4, false); // always a copy: the client's frame is not kept
  if (!packet) return new Uint8Array(payload);
  return packet.subarray(packet.length - payload.length);
}

/** Room for a topic compared by packetAround without allocating (a longer one is encoded as usual). */
const topicScratch = new Uint8Array(1024);

/**
 * The packet that a payload from payloadInPublish sits at the end of, when that packet is topic's
 * 3.1.1 QoS 0 PUBLISH of this payload, checked byte for byte (a copy of the message with another
 * topic keeps the payload's buffer: it is not this packet); undefined otherwise.
 */
function packetAround(topic: string, topicBytes: number, payload: Uint8Array): Uint8Array | undefined {
  // Most payloads fail here at once: one the buffer does not end with, or one at its start (read back
  // from storage, given by a hook), is in no packet.
  if (payload.byteOffset === 0 || payload.byteOffset + payload.byteLength !== payload.buffer.byteLength)
    return undefined;
  if (topicBytes > topicScratch.length) return undefined;
  const remaining = 2 + topicBytes + payload.length;
  const header = pushVarInt([0x30], remaining);
  const prefix = header.length + 2 + topicBytes;
  if (payload.byteOffset !== prefix || payload.buffer.byteLength !== prefix + payload.length) return undefined;
  const packet = new Uint8Array(payload.buffer);
  for (let i = 0; i < header.length; i++) if (packet[i] !== header[i]) return undefined;
  let i = header.length;
  if (packet[i++] !== topicBytes >> 8 || packet[i++] !== (topicBytes & 255)) return undefined;
  encoder.encodeInto(topic, topicScratch);
  for (let k = 0; k < topicBytes; k++) if (packet[i + k] !== topicScratch[k]) return undefined;
  return packet;
}

/** The length of s in UTF-8, as TextEncoder writes it (a lone surrogate becomes U+FFFD, 3 bytes). */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a surrogate pair: 4 bytes for its 2 units
      i++;
    } else n += 2;
  }
  return n;
}

/** A Buffer view over bytes (RPC and WebSocket deliver plain Uint8Array/ArrayBuffer). */
export function asBuffer(bytes: Uint8Array | ArrayBuffer): Buffer {
  if (bytes instanceof ArrayBuffer) return Buffer.from(bytes);
  if (Buffer.isBuffer(bytes)) return bytes;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Concatenates encoded packets into one frame (several packets per frame are allowed [MQTT-6.0.0-4]). */
export function joinFrames(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
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
