/** Putting a connection's frames back in order (the frame format itself: internal-frame.test.ts). */
import { describe, expect, it } from "vitest";
import { InboundOrder, MAX_HELD_FRAMES } from "../../src/protocol/internal-order";

const values = (list: number[]) => list;

describe("internal frame order", () => {
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
