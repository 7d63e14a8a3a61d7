/**
 * Reading a packet on its raw bytes, for the checks mqtt-packet's packet object can no longer show
 * (it replaces ill-formed UTF-8 with U+FFFD, folds a repeated property into an array or silently
 * overwrites it): a bounds-checked Reader, the v5 property table, and the property-block walk.
 * Shared by the CONNECT check (connect-check.ts) and the check of every other packet (packet-check.ts).
 */
import { ReasonCode } from "./constants";
import { isUtf8 } from "./validate";

/** A fault of a packet's bytes and the answer it gets: 0x81 Malformed Packet or 0x82 Protocol Error. */
export interface PacketFault {
  reasonCode: number;
  reason: string;
}

export class Fault extends Error {
  constructor(
    readonly reasonCode: number,
    reason: string,
  ) {
    super(reason);
  }
}

export const malformed = (reason: string) => new Fault(ReasonCode.MALFORMED_PACKET, reason);
export const protocolError = (reason: string) => new Fault(ReasonCode.PROTOCOL_ERROR, reason);

/** Runs a check that throws Fault; its fault, or undefined when the packet is well formed. */
export function faultOf(check: () => void): PacketFault | undefined {
  try {
    check();
    return undefined;
  } catch (err) {
    if (err instanceof Fault) return { reasonCode: err.reasonCode, reason: err.message };
    throw err;
  }
}

export type PropertyType = "byte" | "int16" | "int32" | "varint" | "string" | "binary" | "pair";

/** Every v5 property [2.2.2.2]: identifier -> name and data type. */
const PROPERTIES = new Map<number, [string, PropertyType]>([
  [0x01, ["Payload Format Indicator", "byte"]],
  [0x02, ["Message Expiry Interval", "int32"]],
  [0x03, ["Content Type", "string"]],
  [0x08, ["Response Topic", "string"]],
  [0x09, ["Correlation Data", "binary"]],
  [0x0b, ["Subscription Identifier", "varint"]],
  [0x11, ["Session Expiry Interval", "int32"]],
  [0x12, ["Assigned Client Identifier", "string"]],
  [0x13, ["Server Keep Alive", "int16"]],
  [0x15, ["Authentication Method", "string"]],
  [0x16, ["Authentication Data", "binary"]],
  [0x17, ["Request Problem Information", "byte"]],
  [0x18, ["Will Delay Interval", "int32"]],
  [0x19, ["Request Response Information", "byte"]],
  [0x1a, ["Response Information", "string"]],
  [0x1c, ["Server Reference", "string"]],
  [0x1f, ["Reason String", "string"]],
  [0x21, ["Receive Maximum", "int16"]],
  [0x22, ["Topic Alias Maximum", "int16"]],
  [0x23, ["Topic Alias", "int16"]],
  [0x24, ["Maximum QoS", "byte"]],
  [0x25, ["Retain Available", "byte"]],
  [0x26, ["User Property", "pair"]],
  [0x27, ["Maximum Packet Size", "int32"]],
  [0x28, ["Wildcard Subscription Available", "byte"]],
  [0x29, ["Subscription Identifier Available", "byte"]],
  [0x2a, ["Shared Subscription Available", "byte"]],
]);

/** The data type of property `id`, or undefined for an identifier no packet may carry. */
export function propertyType(id: number): PropertyType | undefined {
  return PROPERTIES.get(id)?.[1];
}

/** The properties a packet may carry, by identifier. */
export type AllowedProperties = ReadonlySet<number>;
export const allowed = (...ids: number[]): AllowedProperties => new Set(ids);

const USER_PROPERTY = 0x26;
/** Properties whose value must be 0 or 1 (a Protocol Error otherwise). */
const BOOLEAN_PROPERTIES = new Set([0x19, 0x17, 0x01]);
/**
 * Properties for which 0 is a Protocol Error [3.1.2.11.3 Receive Maximum, 3.1.2.11.4 Maximum Packet
 * Size, 3.8.2.1.2 Subscription Identifier].
 */
const NON_ZERO_PROPERTIES = new Set([0x21, 0x27, 0x0b]);

/**
 * A v5 property block: identifiers valid for the packet only, each once (User Property excepted),
 * values in range, every string well-formed [MQTT-1.5.4-1, 1.5.4-2, 1.5.7-1].
 */
export function checkProperties(r: Reader, ids: AllowedProperties): void {
  const length = r.varInt();
  const end = r.pos + length;
  if (end > r.end) throw malformed("Property Length beyond the packet");
  const seen = new Set<number>();
  while (r.pos < end) {
    const id = r.byte();
    const property = ids.has(id) ? PROPERTIES.get(id) : undefined;
    // [2.2.2.2] an identifier not valid for the packet is a Malformed Packet
    if (!property) throw malformed(`property 0x${id.toString(16)} is not valid here`);
    const [name, type] = property;
    // [2.2.2.2] "It is a Protocol Error to include the <property> more than once"
    if (id !== USER_PROPERTY && seen.has(id)) throw protocolError(`${name} included more than once`);
    seen.add(id);
    const value = r.value(type, name);
    if (BOOLEAN_PROPERTIES.has(id) && value !== 0 && value !== 1) throw protocolError(`${name} must be 0 or 1`);
    if (NON_ZERO_PROPERTIES.has(id) && value === 0) throw protocolError(`${name} 0`);
  }
  if (r.pos !== end) throw malformed("a property runs past the Property Length");
  // [3.1.2.11.10, 3.15.2.2.3] Authentication Data without an Authentication Method is a Protocol Error
  if (seen.has(0x16) && !seen.has(0x15)) throw protocolError("Authentication Data without Authentication Method");
}

export class Reader {
  pos = 0;
  end: number;

  constructor(readonly bytes: Uint8Array) {
    this.end = bytes.length;
  }

  get left(): number {
    return this.end - this.pos;
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw malformed("packet too short");
  }

  byte(): number {
    this.need(1);
    return this.bytes[this.pos++]!; // need() checked the bounds
  }

  int16(): number {
    this.need(2);
    const v = (this.bytes[this.pos]! << 8) | this.bytes[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  int32(): number {
    this.need(4);
    const b = this.bytes;
    const v = b[this.pos]! * 2 ** 24 + ((b[this.pos + 1]! << 16) | (b[this.pos + 2]! << 8) | b[this.pos + 3]!);
    this.pos += 4;
    return v;
  }

  /** A Variable Byte Integer [MQTT-1.5.5-1]. */
  varInt(): number {
    let value = 0;
    for (let i = 0, multiplier = 1; i < 4; i++, multiplier *= 128) {
      const byte = this.byte();
      value += (byte & 0x7f) * multiplier;
      if ((byte & 0x80) === 0) {
        // [MQTT-1.5.5-1] the fewest bytes: a last byte of 0 after a continuation is not
        if (i > 0 && byte === 0) throw malformed("Variable Byte Integer not in its shortest form");
        return value;
      }
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

  /**
   * [MQTT-1.5.4-1, 1.5.4-2] [MQTT311-1.5.3-1, 1.5.3-2] well-formed UTF-8 (no overlong forms, no
   * encoded surrogates) without U+0000, judged on the bytes: a well-formed U+FFFD is a character
   * like any other.
   */
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
      case "varint":
        return this.varInt();
      case "string":
        this.string(name);
        return undefined;
      case "pair":
        this.string(name); // [MQTT-1.5.7-1] both strings of a pair are UTF-8 Encoded Strings
        this.string(name);
        return undefined;
      case "binary":
        this.binary();
        return undefined;
    }
  }
}
