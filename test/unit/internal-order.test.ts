import { describe, expect, it } from "vitest";
import { InboundOrder, MAX_HELD_FRAMES, sequenced, unsequenced } from "../../src/protocol/internal-order";

const values = (list: number[]) => list;

describe("internal frame order", () => {
  it("round-trips the sequence number and the packets of a frame", () => {
    const pingreq = new Uint8Array([0xc0, 0x00]);
    const puback = new Uint8Array([0x40, 0x02, 0x00, 0x07]);
    const frame = sequenced(0x01020304, [puback, pingreq]);
    expect(unsequenced(frame)).toEqual({ seq: 0x01020304, packets: [puback, pingreq] });
  });

  it("refuses a frame that is not whole packets", () => {
    expect(unsequenced(new Uint8Array([0, 0, 0, 1]))).toBeUndefined();
    expect(unsequenced(new Uint8Array([0, 0, 0, 1, 0x40, 0x02, 0x00]))).toBeUndefined(); // cut short
    expect(unsequenced(new Uint8Array([0, 0, 0, 1, 0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBeUndefined(); // bad length
  });

  it("holds a frame that arrives early and releases it after the one before it", () => {
    const order = new InboundOrder<number>(0);
    expect(values(order.accept(1, 1))).toEqual([]);
    expect(values(order.accept(2, 2))).toEqual([]);
    expect(values(order.accept(0, 0))).toEqual([0, 1, 2]);
    expect(values(order.accept(3, 3))).toEqual([3]);
  });

  it("never drops: a late duplicate is handed on, and too many held are released in order", () => {
    const order = new InboundOrder<number>(5);
    expect(order.accept(4, 4)).toEqual([4]);
    const gap = new InboundOrder<number>(0);
    for (let i = 1; i <= MAX_HELD_FRAMES; i++) expect(gap.accept(i, i)).toEqual([]);
    const released = gap.accept(MAX_HELD_FRAMES + 1, MAX_HELD_FRAMES + 1);
    expect(released).toEqual(Array.from({ length: MAX_HELD_FRAMES + 1 }, (_, i) => i + 1));
  });
});
