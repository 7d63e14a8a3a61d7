/**
 * User Properties as an ordered list of [name, value] pairs, read from and written to the wire.
 *
 * The order of User Properties must be kept when the server forwards a PUBLISH [MQTT-3.3.2-18] or
 * publishes a will [MQTT-3.1.3-10], and a name may repeat [MQTT-3.3.2-17]. mqtt-packet hands them
 * over as an object `{ name: value | value[] }`, which loses that order: a JavaScript object puts
 * integer-like keys first and groups the values of a repeated name. So the parsed list is read here
 * from the packet's bytes (after mqtt-packet has validated them), and written back here too.
 */
import { readFixedHeader } from "./framer";
import type { UserProperty } from "./message";

const USER_PROPERTY = 0x26;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Bytes of each fixed-width property value, by property id [MQTT 2.2.2.2]. */
const FIXED_WIDTH = new Map<number, number>([
  [0x01, 1], [0x17, 1], [0x19, 1], [0x24, 1], [0x25, 1], [0x28, 1], [0x29, 1], [0x2a, 1],
  [0x13, 2], [0x21, 2], [0x22, 2], [0x23, 2],
  [0x02, 4], [0x11, 4], [0x18, 4], [0x27, 4],
]);
/** Properties whose value is one length-prefixed string or binary datum. */
const PREFIXED = new Set([0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1a, 0x1c, 0x1f]);
const SUBSCRIPTION_IDENTIFIER = 0x0b;

/**
 * Accepts the ordered form (a list of pairs) or the object form (mqtt-packet's, the HTTP API's,
 * old stored rows) and returns a fresh list of pairs; undefined for anything else.
 */
export function userPropertyList(value: unknown): UserProperty[] | undefined {
  if (Array.isArray(value)) {
    const ok = value.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === "string" && typeof p[1] === "string");
    return ok ? value.map(([k, v]) => [k, v] as UserProperty) : undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const out: UserProperty[] = [];
  for (const [k, v] of Object.entries(value)) {
    for (const x of Array.isArray(v) ? v : [v]) {
      if (typeof x !== "string") return undefined;
      out.push([k, x]);
    }
  }
  return out;
}

/** The User Properties of a whole v5 PUBLISH, in wire order; undefined if its bytes cannot be walked. */
export function publishUserProperties(bytes: Uint8Array): UserProperty[] | undefined {
  const at = publishPropertiesAt(bytes);
  return at === undefined ? undefined : readUserProperties(bytes, at);
}

/** The User Properties of a whole v5 CONNECT's will, in wire order; undefined if there are none to read. */
export function willUserProperties(bytes: Uint8Array): UserProperty[] | undefined {
  const header = readFixedHeader(bytes, 0);
  if (header === undefined || header === "malformed") return undefined;
  let i = header.headerLength;
  i += 2 + u16(bytes, i); // protocol name
  const flags = bytes[i + 1];
  if ((flags & 0x04) === 0) return undefined; // no will
  i += 4; // level, flags, Keep Alive
  const connectProps = varInt(bytes, i);
  if (!connectProps) return undefined;
  i += connectProps.size + connectProps.value;
  i += 2 + u16(bytes, i); // Client Identifier
  return readUserProperties(bytes, i);
}

/**
 * Encodes a v5 PUBLISH with its User Properties in the given order: mqtt-packet writes the packet
 * without them, and they are appended to its property block (only their order among themselves is
 * normative, not their place among the other properties).
 */
export function withUserProperties(encoded: Uint8Array, list: UserProperty[]): Uint8Array {
  const header = readFixedHeader(encoded, 0);
  const at = publishPropertiesAt(encoded);
  if (header === undefined || header === "malformed" || at === undefined) throw new Error("not an encoded v5 PUBLISH");
  const block = varInt(encoded, at)!;
  const extra = encodeUserProperties(list);
  const propsEnd = at + block.size + block.value;
  const propLength = pushVarInt([], block.value + extra.length);
  const remaining = header.remainingLength - block.size + propLength.length + extra.length;
  if (remaining > 268435455) throw new Error("PUBLISH too large with its User Properties");
  const fixed = pushVarInt([encoded[0]], remaining);
  const out = new Uint8Array(fixed.length + remaining);
  let o = 0;
  const put = (part: ArrayLike<number>) => {
    out.set(part, o);
    o += part.length;
  };
  put(fixed);
  put(encoded.subarray(header.headerLength, at));
  put(propLength);
  put(encoded.subarray(at + block.size, propsEnd));
  put(extra);
  put(encoded.subarray(propsEnd));
  return out;
}

/** Appends a Variable Byte Integer [MQTT-1.5.5] to `out`, and returns `out`. */
export function pushVarInt(out: number[], value: number): number[] {
  let x = value;
  do {
    let digit = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) digit |= 128;
    out.push(digit);
  } while (x > 0);
  return out;
}

function encodeUserProperties(list: UserProperty[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let size = 0;
  for (const pair of list) {
    for (const s of pair) {
      const bytes = encoder.encode(s);
      if (bytes.length > 65535) throw new Error("User Property longer than 65535 bytes");
      parts.push(bytes);
      size += 2 + bytes.length;
    }
    size += 1;
  }
  const out = new Uint8Array(size);
  let o = 0;
  parts.forEach((bytes, n) => {
    if (n % 2 === 0) out[o++] = USER_PROPERTY;
    out[o++] = bytes.length >> 8;
    out[o++] = bytes.length & 255;
    out.set(bytes, o);
    o += bytes.length;
  });
  return out;
}

/** Offset of a PUBLISH's Property Length. */
function publishPropertiesAt(bytes: Uint8Array): number | undefined {
  const header = readFixedHeader(bytes, 0);
  if (header === undefined || header === "malformed") return undefined;
  const qos = (bytes[0] >> 1) & 3;
  const at = header.headerLength + 2 + u16(bytes, header.headerLength) + (qos > 0 ? 2 : 0);
  return at < bytes.length ? at : undefined;
}

/** The User Properties of the property block at `at`, in order; undefined on anything unexpected. */
function readUserProperties(bytes: Uint8Array, at: number): UserProperty[] | undefined {
  const block = varInt(bytes, at);
  if (!block) return undefined;
  let i = at + block.size;
  const end = i + block.value;
  if (end > bytes.length) return undefined;
  const out: UserProperty[] = [];
  const text = () => {
    const length = u16(bytes, i);
    const s = decoder.decode(bytes.subarray(i + 2, i + 2 + length));
    i += 2 + length;
    return s;
  };
  while (i < end) {
    const id = bytes[i++];
    const width = FIXED_WIDTH.get(id);
    if (width !== undefined) i += width;
    else if (PREFIXED.has(id)) i += 2 + u16(bytes, i);
    else if (id === SUBSCRIPTION_IDENTIFIER) i += varInt(bytes, i)?.size ?? end;
    else if (id === USER_PROPERTY) out.push([text(), text()]);
    else return undefined;
  }
  return i === end ? out : undefined;
}

function u16(bytes: Uint8Array, i: number): number {
  return (bytes[i] << 8) | bytes[i + 1];
}

function varInt(bytes: Uint8Array, at: number): { value: number; size: number } | undefined {
  let value = 0;
  for (let n = 0, multiplier = 1; n < 4 && at + n < bytes.length; n++, multiplier *= 128) {
    const byte = bytes[at + n];
    value += (byte & 0x7f) * multiplier;
    if ((byte & 0x80) === 0) return { value, size: n + 1 };
  }
  return undefined;
}
