/**
 * v5 packets with User Properties in a chosen order, written and read byte by byte here, apart from
 * the broker's codec and from mqtt-packet (whose object form cannot hold an order: integer-like
 * names come first and the values of a repeated name are grouped).
 */

import { at } from "./elements";

export type Pair = [string, string];

/** The order no object can keep: a repeated name interleaved with another, and an integer-like name. */
export const ORDERED: Pair[] = [
  ["b", "1"],
  ["a", "2"],
  ["b", "3"],
  ["10", "x"],
  ["a", "4"],
];

const utf8 = (s: string) => [...new TextEncoder().encode(s)];
const str = (s: string) => {
  const b = utf8(s);
  return [b.length >> 8, b.length & 255, ...b];
};
const varInt = (n: number) => {
  const out: number[] = [];
  do {
    out.push((n % 128) | (n >= 128 ? 128 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return out;
};
const userProps = (pairs: Pair[]) => pairs.flatMap(([k, v]) => [0x26, ...str(k), ...str(v)]);
const block = (bytes: number[]) => [...varInt(bytes.length), ...bytes];
const packet = (first: number, body: number[]) => new Uint8Array([first, ...varInt(body.length), ...body]);

/** A v5 PUBLISH whose only properties are these User Properties, in this order. */
export function publishWith(o: {
  topic: string;
  payload: string;
  qos: 0 | 1;
  messageId?: number;
  retain?: boolean;
  userProperties: Pair[];
}): Uint8Array {
  const id = o.qos ? [o.messageId! >> 8, o.messageId! & 255] : [];
  return packet(0x30 | (o.qos << 1) | (o.retain ? 1 : 0), [
    ...str(o.topic),
    ...id,
    ...block(userProps(o.userProperties)),
    ...utf8(o.payload),
  ]);
}

/** A v5 CONNECT (clean start) with a QoS 0 will carrying these User Properties, in this order. */
export function connectWithWill(o: {
  clientId: string;
  willTopic: string;
  willPayload: string;
  userProperties: Pair[];
}): Uint8Array {
  const flags = 0x02 | 0x04; // Clean Start, Will Flag
  return packet(0x10, [
    ...str("MQTT"),
    5,
    flags,
    0,
    60,
    ...block([]),
    ...str(o.clientId),
    ...block(userProps(o.userProperties)),
    ...str(o.willTopic),
    ...str(o.willPayload),
  ]);
}

/** Every PUBLISH in a received byte stream: topic, payload and User Properties in wire order. */
export function publishesIn(chunks: Uint8Array[]): { topic: string; payload: string; userProperties: Pair[] }[] {
  const bytes = Uint8Array.from(chunks.flatMap((c) => [...c]));
  const out: { topic: string; payload: string; userProperties: Pair[] }[] = [];
  const text = (from: number, length: number) => new TextDecoder().decode(bytes.subarray(from, from + length));
  const byte = (i: number) => at(bytes, i, "a byte of the stream");
  const u16 = (i: number) => (byte(i) << 8) | byte(i + 1);
  const readVarInt = (i: number) => {
    let value = 0;
    let n = 0;
    for (let m = 1; ; m *= 128, n++) {
      value += (byte(i + n) & 127) * m;
      if ((byte(i + n) & 128) === 0) return { value, size: n + 1 };
    }
  };
  for (let packetAt = 0; packetAt < bytes.length;) {
    const first = byte(packetAt);
    const remaining = readVarInt(packetAt + 1);
    const start = packetAt + 1 + remaining.size;
    const end = start + remaining.value;
    if (first >> 4 === 3) {
      let i = start;
      const topic = text(i + 2, u16(i));
      i += 2 + u16(i) + (((first >> 1) & 3) > 0 ? 2 : 0);
      const props = readVarInt(i);
      i += props.size;
      const propsEnd = i + props.value;
      const userProperties: Pair[] = [];
      while (i < propsEnd) {
        const id = byte(i++);
        if (id === 0x26) {
          const k = text(i + 2, u16(i));
          i += 2 + u16(i);
          const v = text(i + 2, u16(i));
          i += 2 + u16(i);
          userProperties.push([k, v]);
        } else if (id === 0x01) i += 1;
        else if (id === 0x23) i += 2;
        else if (id === 0x02) i += 4;
        else if (id === 0x0b) i += readVarInt(i).size;
        else if (id === 0x03 || id === 0x08 || id === 0x09) i += 2 + u16(i);
        else throw new Error(`unexpected PUBLISH property 0x${id.toString(16)}`);
      }
      out.push({ topic, payload: text(propsEnd, end - propsEnd), userProperties });
    }
    packetAt = end;
  }
  return out;
}
