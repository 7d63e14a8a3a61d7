/**
 * Checks of every packet a client sends after CONNECT on its raw bytes (CONNECT has its own,
 * connect-check.ts): each UTF-8 string well-formed and without U+0000 [MQTT-1.5.4-1, 1.5.4-2,
 * 1.5.7-1] [MQTT311-1.5.3-1, 1.5.3-2], each v5 property valid for the packet and present once.
 * mqtt-packet decodes strings leniently (ill-formed sequences become U+FFFD, so the packet object
 * can neither show the fault nor tell it from a real U+FFFD): only the bytes can.
 * Run after mqtt-packet parsed the packet; every read is bounds-checked all the same.
 */
import { PacketType, type ProtocolVersion } from "./constants";
import { readFixedHeader } from "./framer";
import {
  allowed,
  checkProperties,
  faultOf,
  malformed,
  Reader,
  type AllowedProperties,
  type PacketFault,
} from "./raw-reader";

/** Properties a client's packet may carry, by packet type [3.3.2.3, 3.4.2.2, 3.8.2.1, 3.10.2.1, 3.14.2.2, 3.15.2.2]. */
const PACKET_PROPERTIES: Partial<Record<number, AllowedProperties>> = {
  // Subscription Identifier is let through here: the session answers it with its own Protocol Error [MQTT-3.3.4-6]
  [PacketType.PUBLISH]: allowed(0x01, 0x02, 0x23, 0x08, 0x09, 0x26, 0x0b, 0x03),
  [PacketType.PUBACK]: allowed(0x1f, 0x26),
  [PacketType.PUBREC]: allowed(0x1f, 0x26),
  [PacketType.PUBREL]: allowed(0x1f, 0x26),
  [PacketType.PUBCOMP]: allowed(0x1f, 0x26),
  [PacketType.SUBSCRIBE]: allowed(0x0b, 0x26),
  [PacketType.UNSUBSCRIBE]: allowed(0x26),
  [PacketType.DISCONNECT]: allowed(0x11, 0x1f, 0x26, 0x1c),
  [PacketType.AUTH]: allowed(0x15, 0x16, 0x1f, 0x26),
};

/** The first fault of a packet other than CONNECT, or undefined when it is well formed. */
export function packetFault(bytes: Uint8Array, version: ProtocolVersion): PacketFault | undefined {
  return faultOf(() => checkPacket(new Reader(bytes), version === 5));
}

function checkPacket(r: Reader, v5: boolean): void {
  const header = readFixedHeader(r.bytes, 0);
  if (header === undefined || header === "malformed") throw malformed("bad Remaining Length");
  const first = r.bytes[0]!; // a fixed header was read, so the packet has its first byte
  const type = first >> 4;
  r.pos = header.headerLength;
  r.end = header.headerLength + header.remainingLength;
  if (r.end !== r.bytes.length) throw malformed("Remaining Length does not match the packet");
  const properties = PACKET_PROPERTIES[type];
  switch (type) {
    case PacketType.PUBLISH:
      r.string("Topic Name");
      if (((first >> 1) & 3) > 0) r.int16();
      if (v5) checkProperties(r, properties!);
      return; // the rest is the payload
    case PacketType.PUBACK:
    case PacketType.PUBREC:
    case PacketType.PUBREL:
    case PacketType.PUBCOMP:
      r.int16();
      // [3.4.2.1] the Reason Code and the properties may be left out, from the end
      if (v5 && r.left > 0) r.byte();
      if (v5 && r.left > 0) checkProperties(r, properties!);
      break;
    case PacketType.SUBSCRIBE:
      r.int16();
      if (v5) checkProperties(r, properties!);
      while (r.left > 0) {
        r.string("Topic Filter");
        r.byte(); // Subscription Options (mqtt-packet has checked them)
      }
      break;
    case PacketType.UNSUBSCRIBE:
      r.int16();
      if (v5) checkProperties(r, properties!);
      while (r.left > 0) r.string("Topic Filter");
      break;
    case PacketType.DISCONNECT:
    case PacketType.AUTH:
      // [3.14.2.1, 3.15.2.1] Remaining Length 0 means Success and no properties
      if (v5 && r.left > 0) r.byte();
      if (v5 && r.left > 0) checkProperties(r, properties!);
      break;
    default:
      return; // no strings (PINGREQ), or a packet a client never sends (the session refuses it)
  }
  if (r.left !== 0) throw malformed("bytes after the end of the packet");
}
