/** The gateway's batching of a client's packets into numbered frames to its session (src/gateway/burst.ts). */
import { describe, expect, it } from "vitest";
import { BurstBatcher, MAX_FRAME_BYTES, MAX_PACKETS_PER_FRAME } from "../../src/gateway/burst";
import { decodeFrame } from "../../src/protocol/internal-frame";

/** A PUBLISH-shaped packet of `size` bytes (fixed header + remaining length), numbered in its last byte. */
function packet(n: number, size = 4): Uint8Array {
  const bytes = new Uint8Array(size);
  bytes[0] = 0x30;
  let remaining = size - 2;
  // a two-byte remaining length when it does not fit one
  if (remaining > 127) {
    remaining = size - 3;
    bytes[1] = (remaining & 0x7f) | 0x80;
    bytes[2] = remaining >> 7;
  } else bytes[1] = remaining;
  bytes[size - 1] = n & 255;
  return bytes;
}

function batcher() {
  const frames: { seq: number; packets: Uint8Array[] }[] = [];
  const turnEnds: (() => void)[] = [];
  const burst = new BurstBatcher(
    (frame) => {
      const decoded = decodeFrame(frame);
      if ("error" in decoded) throw new Error(decoded.error);
      frames.push(decoded);
    },
    (fn) => turnEnds.push(fn),
  );
  const endTurn = () => turnEnds.splice(0).forEach((fn) => fn());
  return { burst, frames, endTurn };
}

describe("burst batching to the session", () => {
  it("sends a packet after a quiet spell at once, and the rest of its turn as one frame after it", () => {
    const { burst, frames, endTurn } = batcher();
    burst.add(packet(1));
    expect(frames.map((f) => f.packets.length)).toEqual([1]);
    burst.add(packet(2));
    burst.add(packet(3));
    expect(frames).toHaveLength(1);
    endTurn();
    expect(frames).toEqual([
      { seq: 0, packets: [packet(1)] },
      { seq: 1, packets: [packet(2), packet(3)] },
    ]);
    burst.add(packet(4)); // a new burst
    expect(frames.at(-1)).toEqual({ seq: 2, packets: [packet(4)] });
  });

  it("holds an acknowledgement after a quiet spell for the end of its turn: one frame for a client's answers", () => {
    const { burst, frames, endTurn } = batcher();
    const ack = (type: number, id: number) => new Uint8Array([type << 4, 2, 0, id]);
    // A client answering a batch of three PUBLISHes (PUBACK, PUBREC, PUBCOMP): one event for the session.
    burst.add(ack(4, 1));
    burst.add(ack(5, 2));
    burst.add(ack(7, 3));
    expect(frames).toHaveLength(0);
    endTurn();
    expect(frames).toEqual([{ seq: 0, packets: [ack(4, 1), ack(5, 2), ack(7, 3)] }]);
    // A PUBREL (the client's own QoS 2 flow) is not held: the client waits for its PUBCOMP.
    burst.add(new Uint8Array([0x62, 2, 0, 4]));
    expect(frames).toHaveLength(2);
  });

  it("sends a frame as soon as it is full: MAX_PACKETS_PER_FRAME packets", () => {
    const { burst, frames } = batcher();
    burst.add(packet(0));
    for (let i = 1; i <= MAX_PACKETS_PER_FRAME; i++) burst.add(packet(i));
    expect(frames.map((f) => f.packets.length)).toEqual([1, MAX_PACKETS_PER_FRAME]);
  });

  it("sends a frame as soon as it holds MAX_FRAME_BYTES (plus the packet that reached them)", () => {
    const { burst, frames } = batcher();
    burst.add(packet(0));
    const size = 10000;
    const count = Math.ceil(MAX_FRAME_BYTES / size);
    for (let i = 1; i <= count; i++) burst.add(packet(i, size));
    expect(frames.map((f) => f.packets.length)).toEqual([1, count]);
  });

  it("sends the packets held before the session opened at once, in frames within the limits, in order", () => {
    const { burst, frames } = batcher();
    const held = Array.from({ length: 2 * MAX_PACKETS_PER_FRAME + 2 }, (_, i) => packet(i));
    burst.addAll(held);
    const sizes = frames.map((f) => [f.seq, f.packets.length]);
    expect(sizes).toEqual([
      [0, MAX_PACKETS_PER_FRAME],
      [1, MAX_PACKETS_PER_FRAME],
      [2, 2],
    ]);
    expect(frames.flatMap((f) => f.packets)).toEqual(held);
  });

  it("stops at a closed session socket without throwing", () => {
    let sends = 0;
    const burst = new BurstBatcher(
      () => {
        sends++;
        throw new Error("closed");
      },
      () => undefined,
    );
    expect(() => burst.addAll(Array.from({ length: 3 * MAX_PACKETS_PER_FRAME }, (_, i) => packet(i)))).not.toThrow();
    expect(sends).toBe(1);
  });
});
