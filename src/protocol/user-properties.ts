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
import { propertyType, Reader } from "./raw-reader";

const USER_PROPERTY = 0x26;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Accepts the ordered form (a list of pairs) or the object form (mqtt-packet's, the HTTP API's)
 * and returns a fresh list of pairs; undefined for anything else.
 */
export function userPropertyList(value: unknown): UserProperty[] | undefined {
  if (Array.isArray(value)) {
    const ok = value.every(
      (p) => Array.isArray(p) && p.length === 2 && typeof p[0] === "string" && typeof p[1] === "string",
    );
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
  return at === undefined ? undefined : walked(bytes, at, readUserProperties);
}

/** The User Properties of a whole v5 CONNECT's will, in wire order; undefined if there are none to read. */
export function willUserProperties(bytes: Uint8Array): UserProperty[] | undefined {
  const header = readFixedHeader(bytes, 0);
  if (header === undefined || header === "malformed") return undefined;
  return walked(bytes, header.headerLength, (r) => {
    r.binary(); // protocol name
    r.byte(); // level
    if ((r.byte() & 0x04) === 0) return undefined; // no will
    r.int16(); // Keep Alive
    const connectProperties = r.varInt();
    r.pos += connectProperties; // skipped: the will's come after the Client Identifier
    r.binary(); // Client Identifier
    return readUserProperties(r);
  });
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
  const block = walked(encoded, at, (r) => ({ value: r.varInt(), size: r.pos - at }))!;
  const extra = encodeUserProperties(list);
  const propsEnd = at + block.size + block.value;
  const propLength = pushVarInt([], block.value + extra.length);
  const remaining = header.remainingLength - block.size + propLength.length + extra.length;
  if (remaining > 268435455) throw new Error("PUBLISH too large with its User Properties");
  const fixed = pushVarInt([encoded[0]!], remaining); // the packet's first byte, read by readFixedHeader above
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
  const qos = (bytes[0]! >> 1) & 3; // a fixed header was read, so the packet has its first byte
  return walked(bytes, header.headerLength, (r) => {
    r.binary(); // Topic Name
    if (qos > 0) r.int16(); // Packet Identifier
    return r.pos < r.end ? r.pos : undefined;
  });
}

/** Runs `read` over `bytes` from `at`; undefined when the bytes end early or are malformed. */
function walked<T>(bytes: Uint8Array, at: number, read: (r: Reader) => T | undefined): T | undefined {
  const r = new Reader(bytes);
  r.pos = at;
  try {
    return read(r);
  } catch {
    return undefined;
  }
}

/** The User Properties of the property block at the reader, in order; undefined on anything unexpected. */
function readUserProperties(r: Reader): UserProperty[] | undefined {
  const length = r.varInt();
  const end = r.pos + length;
  if (end > r.end) return undefined;
  const out: UserProperty[] = [];
  while (r.pos < end) {
    const id = r.byte();
    if (id === USER_PROPERTY) {
      out.push([decoder.decode(r.binary()), decoder.decode(r.binary())]);
      continue;
    }
    const type = propertyType(id);
    if (type === undefined) return undefined;
    r.value(type, "property");
  }
  return r.pos === end ? out : undefined;
}
