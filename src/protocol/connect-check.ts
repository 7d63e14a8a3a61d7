/**
 * Checks of a CONNECT on its raw bytes: what mqtt-packet does not check, or cannot, because its
 * packet object has already lost the evidence (raw-reader.ts), and it accepts Will QoS 3.
 * Run after mqtt-packet parsed the packet; every read is bounds-checked all the same.
 */
import { readFixedHeader } from "./framer";
import { allowed, checkProperties, faultOf, malformed, Reader, type PacketFault } from "./raw-reader";

/** Properties a CONNECT may carry [MQTT-3.1.2.11]. */
const CONNECT_PROPERTIES = allowed(0x11, 0x21, 0x27, 0x22, 0x19, 0x17, 0x26, 0x15, 0x16);

/** Properties a will may carry [MQTT-3.1.3.2]. */
const WILL_PROPERTIES = allowed(0x18, 0x01, 0x02, 0x03, 0x08, 0x09, 0x26);

/** The first fault of a CONNECT, or undefined when it is well formed. */
export function connectFault(bytes: Uint8Array): PacketFault | undefined {
  return faultOf(() => checkConnect(new Reader(bytes)));
}

function checkConnect(r: Reader): void {
  // [MQTT-2.1.3-1] [MQTT311-2.2.2-2] CONNECT's fixed header flags are 0000
  if (r.byte() !== 0x10) throw malformed("CONNECT fixed header flags must be 0");
  const header = readFixedHeader(r.bytes, 0);
  if (header === undefined || header === "malformed") throw malformed("bad Remaining Length");
  r.pos = header.headerLength;
  r.end = header.headerLength + header.remainingLength;
  if (r.end !== r.bytes.length) throw malformed("Remaining Length does not match the packet");
  r.binary(); // protocol name (mqtt-packet has checked it)
  const level = r.byte();
  const flags = r.byte();
  const v5 = (level & 0x7f) === 5; // 0x80 is the bridge bit some clients set
  const will = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 3;
  const willRetain = (flags & 0x20) !== 0;
  const password = (flags & 0x40) !== 0;
  const username = (flags & 0x80) !== 0;
  // [MQTT-3.1.2-3] [MQTT311-3.1.2-3] the reserved flag is 0
  if (flags & 0x01) throw malformed("reserved CONNECT flag set");
  // [MQTT-3.1.2-11, 3.1.2-13] [MQTT311-3.1.2-11, 3.1.2-13, 3.1.2-15] no will: Will QoS and Will Retain are 0
  if (!will && (willQos !== 0 || willRetain)) throw malformed("Will QoS or Will Retain set without a will");
  // [MQTT-3.1.2-12] [MQTT311-3.1.2-14] Will QoS 3 is malformed
  if (willQos === 3) throw malformed("Will QoS 3");
  // [MQTT311-3.1.2-22] 3.1.1 has no password without a user name (5.0 allows it)
  if (!v5 && password && !username) throw malformed("Password Flag set without User Name Flag");
  r.int16(); // Keep Alive
  if (v5) checkProperties(r, CONNECT_PROPERTIES);
  r.string("Client Identifier");
  if (will) {
    if (v5) checkProperties(r, WILL_PROPERTIES);
    r.string("Will Topic");
    r.binary(); // Will Payload
  }
  if (username) r.string("User Name");
  if (password) r.binary();
  if (r.pos !== r.end) throw malformed("bytes after the CONNECT payload");
}
