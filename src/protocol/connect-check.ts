/**
 * Checks of a CONNECT on its raw bytes: what mqtt-packet does not check, or cannot, because its
 * packet object has already lost the evidence (it replaces ill-formed UTF-8 with U+FFFD, folds a
 * repeated property into an array or silently overwrites it, and accepts Will QoS 3).
 * Run after mqtt-packet parsed the packet; every read is bounds-checked all the same.
 */
import { ReasonCode } from "./constants";
import { readFixedHeader } from "./framer";
import { isUtf8 } from "./validate";

export interface ConnectFault {
  /** v5 CONNACK reason code: 0x81 Malformed Packet or 0x82 Protocol Error. */
  reasonCode: number;
  reason: string;
}

type PropertyType = "byte" | "int16" | "int32" | "string" | "binary" | "pair";

/** Properties a CONNECT may carry [MQTT-3.1.2.11], and their data types. */
const CONNECT_PROPERTIES = new Map<number, [string, PropertyType]>([
  [0x11, ["Session Expiry Interval", "int32"]],
  [0x21, ["Receive Maximum", "int16"]],
  [0x27, ["Maximum Packet Size", "int32"]],
  [0x22, ["Topic Alias Maximum", "int16"]],
  [0x19, ["Request Response Information", "byte"]],
  [0x17, ["Request Problem Information", "byte"]],
  [0x26, ["User Property", "pair"]],
  [0x15, ["Authentication Method", "string"]],
  [0x16, ["Authentication Data", "binary"]],
]);

/** Properties a will may carry [MQTT-3.1.3.2]. */
const WILL_PROPERTIES = new Map<number, [string, PropertyType]>([
  [0x18, ["Will Delay Interval", "int32"]],
  [0x01, ["Payload Format Indicator", "byte"]],
  [0x02, ["Message Expiry Interval", "int32"]],
  [0x03, ["Content Type", "string"]],
  [0x08, ["Response Topic", "string"]],
  [0x09, ["Correlation Data", "binary"]],
  [0x26, ["User Property", "pair"]],
]);

const USER_PROPERTY = 0x26;
/** Properties whose value must be 0 or 1 (a Protocol Error otherwise). */
const BOOLEAN_PROPERTIES = new Set([0x19, 0x17, 0x01]);
/** Properties for which 0 is a Protocol Error [3.1.2.11.3 Receive Maximum, 3.1.2.11.4 Maximum Packet Size]. */
const NON_ZERO_PROPERTIES = new Set([0x21, 0x27]);

class Fault extends Error {
  constructor(readonly reasonCode: number, reason: string) {
    super(reason);
  }
}

const malformed = (reason: string) => new Fault(ReasonCode.MALFORMED_PACKET, reason);
const protocolError = (reason: string) => new Fault(ReasonCode.PROTOCOL_ERROR, reason);

/** The first fault of a CONNECT, or undefined when it is well formed. */
export function connectFault(bytes: Uint8Array): ConnectFault | undefined {
  try {
    checkConnect(new Reader(bytes));
    return undefined;
  } catch (err) {
    if (err instanceof Fault) return { reasonCode: err.reasonCode, reason: err.message };
    throw err;
  }
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

/** A v5 property block: known ids only, each once (User Property excepted), values in range. */
function checkProperties(r: Reader, allowed: Map<number, [string, PropertyType]>): void {
  const length = r.varInt();
  const end = r.pos + length;
  if (end > r.end) throw malformed("Property Length beyond the packet");
  const seen = new Set<number>();
  while (r.pos < end) {
    const id = r.byte();
    const property = allowed.get(id);
    // [2.2.2.2] an identifier not valid for the packet is a Malformed Packet
    if (!property) throw malformed(`property 0x${id.toString(16)} is not valid here`);
    const [name, type] = property;
    // [2.2.2.2, 3.1.2.11] "It is a Protocol Error to include the <property> more than once"
    if (id !== USER_PROPERTY && seen.has(id)) throw protocolError(`${name} included more than once`);
    seen.add(id);
    const value = r.value(type, name);
    if (BOOLEAN_PROPERTIES.has(id) && value !== 0 && value !== 1) throw protocolError(`${name} must be 0 or 1`);
    if (NON_ZERO_PROPERTIES.has(id) && value === 0) throw protocolError(`${name} 0`);
  }
  if (r.pos !== end) throw malformed("a property runs past the Property Length");
  // [3.1.2.11.10] Authentication Data without an Authentication Method is a Protocol Error
  if (seen.has(0x16) && !seen.has(0x15)) throw protocolError("Authentication Data without Authentication Method");
}

class Reader {
  pos = 0;
  end: number;

  constructor(readonly bytes: Uint8Array) {
    this.end = bytes.length;
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw malformed("CONNECT too short");
  }

  byte(): number {
    this.need(1);
    return this.bytes[this.pos++];
  }

  int16(): number {
    this.need(2);
    const v = (this.bytes[this.pos] << 8) | this.bytes[this.pos + 1];
    this.pos += 2;
    return v;
  }

  int32(): number {
    this.need(4);
    const b = this.bytes;
    const v = b[this.pos] * 2 ** 24 + ((b[this.pos + 1] << 16) | (b[this.pos + 2] << 8) | b[this.pos + 3]);
    this.pos += 4;
    return v;
  }

  /** A Variable Byte Integer [MQTT-1.5.5-1]. */
  varInt(): number {
    let value = 0;
    for (let i = 0, multiplier = 1; i < 4; i++, multiplier *= 128) {
      const byte = this.byte();
      value += (byte & 0x7f) * multiplier;
      if ((byte & 0x80) === 0) return value;
    }
    throw malformed("Variable Byte Integer longer than 4 bytes");
  }

  binary(): Uint8Array {
    const length = this.int16();
    this.need(length);
    const out = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  /** [MQTT-1.5.4-1, 1.5.4-2] [MQTT311-1.5.3-1, 1.5.3-2] well-formed UTF-8 without U+0000. */
  string(name: string): void {
    const bytes = this.binary();
    if (!isUtf8(bytes)) throw malformed(`${name} is not well-formed UTF-8`);
    if (bytes.includes(0)) throw malformed(`${name} contains U+0000`);
  }

  value(type: PropertyType, name: string): number | undefined {
    switch (type) {
      case "byte":
        return this.byte();
      case "int16":
        return this.int16();
      case "int32":
        return this.int32();
      case "string":
        this.string(name);
        return undefined;
      case "pair":
        this.string(name);
        this.string(name);
        return undefined;
      case "binary":
        this.binary();
        return undefined;
    }
  }
}
