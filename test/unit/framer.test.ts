import { describe, expect, it } from "vitest";
import { PacketFramer, readFixedHeader } from "../../src/protocol/framer";

const pingreq = [0xc0, 0x00];
const publish = [0x30, 0x07, 0x00, 0x03, 0x61, 0x2f, 0x62, 0x68, 0x69]; // PUBLISH a/b "hi"

describe("PacketFramer [MQTT-6.0.0-2] [MQTT311-6.0.0-2]", () => {
  it("splits several packets sharing one frame", () => {
    const f = new PacketFramer(1024);
    const { packets, error } = f.push(new Uint8Array([...pingreq, ...publish, ...pingreq]));
    expect(error).toBeUndefined();
    expect(packets.map((p) => Array.from(p))).toEqual([pingreq, publish, pingreq]);
  });

  it("joins a packet that spans frames, byte by byte", () => {
    const f = new PacketFramer(1024);
    const out: number[][] = [];
    for (const b of publish) out.push(...f.push(new Uint8Array([b])).packets.map((p) => Array.from(p)));
    expect(out).toEqual([publish]);
    expect(f.bufferedBytes).toBe(0);
  });

  it("reads multi-byte remaining lengths", () => {
    expect(readFixedHeader(new Uint8Array([0x30, 0xc1, 0x02]), 0)).toEqual({ headerLength: 3, remainingLength: 321 });
    expect(readFixedHeader(new Uint8Array([0x30, 0xff, 0xff, 0xff, 0x7f]), 0)).toEqual({
      headerLength: 5,
      remainingLength: 268435455,
    });
  });

  it("waits for more bytes on a partial header", () => {
    expect(readFixedHeader(new Uint8Array([0x30]), 0)).toBeUndefined();
    expect(readFixedHeader(new Uint8Array([0x30, 0x80]), 0)).toBeUndefined();
  });

  it("rejects a remaining length of five bytes [MQTT-2.2.3]", () => {
    const f = new PacketFramer(1 << 30);
    expect(f.push(new Uint8Array([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])).error).toBe("malformed-length");
  });

  it("rejects a non-minimal variable byte integer [MQTT-1.5.5-1]", () => {
    const f = new PacketFramer(1024);
    expect(f.push(new Uint8Array([0x30, 0x80, 0x00])).error).toBe("malformed-length");
  });

  it("refuses a packet over the size limit from its header alone", () => {
    const f = new PacketFramer(100);
    // Remaining length 200: only the header has arrived, yet the error is immediate.
    expect(f.push(new Uint8Array([0x30, 0xc8, 0x01])).error).toBe("too-large");
  });

  it("accepts a packet exactly at the size limit", () => {
    const f = new PacketFramer(publish.length);
    expect(f.push(new Uint8Array(publish)).packets).toHaveLength(1);
  });
});
