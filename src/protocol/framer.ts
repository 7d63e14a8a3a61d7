/**
 * Re-frames a byte stream into whole MQTT packets. A packet may span WebSocket frames and a frame
 * may carry several packets [MQTT-6.0.0-2..4]; the receiver must treat the data as a stream.
 * The size limit is checked from the fixed header alone, before the body is buffered.
 */
import { MAX_REMAINING_LENGTH } from "./constants";

export type FrameError = "malformed-length" | "too-large";

export interface FramerResult {
  packets: Uint8Array[];
  error?: FrameError;
}

/** Reads the fixed header at `offset`; undefined when more bytes are needed. */
export function readFixedHeader(
  buf: Uint8Array,
  offset: number,
): { headerLength: number; remainingLength: number } | undefined | "malformed" {
  let multiplier = 1;
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    if (offset + i >= buf.length) return undefined;
    const byte = buf[offset + i]!; // offset + i < buf.length, checked above
    value += (byte & 0x7f) * multiplier;
    if ((byte & 0x80) === 0) {
      // [MQTT-1.5.5-1] the Variable Byte Integer must use the minimum number of bytes
      if (i > 1 && byte === 0) return "malformed";
      return { headerLength: 1 + i, remainingLength: value };
    }
    multiplier *= 128;
  }
  // A fifth continuation byte: the Remaining Length is malformed [MQTT-2.2.3].
  return "malformed";
}

/** The whole packets of `bytes` from `offset` on; undefined unless they are exactly whole packets. */
export function splitPackets(bytes: Uint8Array, offset = 0): Uint8Array[] | undefined {
  const packets: Uint8Array[] = [];
  while (offset < bytes.length) {
    const header = readFixedHeader(bytes, offset);
    if (header === undefined || header === "malformed") return undefined;
    const end = offset + header.headerLength + header.remainingLength;
    if (end > bytes.length) return undefined;
    packets.push(bytes.subarray(offset, end));
    offset = end;
  }
  return packets;
}

export class PacketFramer {
  private pending: Uint8Array = new Uint8Array(0);

  constructor(private readonly maxPacketSize: number) {}

  /** Bytes held back waiting for the rest of a packet. */
  get bufferedBytes(): number {
    return this.pending.length;
  }

  /** Feeds one chunk; returns the whole packets it completes, or an error (the stream is then unusable). */
  push(chunk: Uint8Array): FramerResult {
    const buf = this.pending.length === 0 ? chunk : concat(this.pending, chunk);
    const packets: Uint8Array[] = [];
    let offset = 0;
    while (offset < buf.length) {
      const header = readFixedHeader(buf, offset);
      if (header === "malformed") return { packets, error: "malformed-length" };
      if (header === undefined) break;
      const total = header.headerLength + header.remainingLength;
      if (header.remainingLength > MAX_REMAINING_LENGTH) return { packets, error: "malformed-length" };
      if (total > this.maxPacketSize) return { packets, error: "too-large" };
      if (offset + total > buf.length) break;
      packets.push(buf.subarray(offset, offset + total));
      offset += total;
    }
    this.pending = offset === buf.length ? new Uint8Array(0) : buf.slice(offset);
    return { packets };
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
