import { describe, expect, it } from "vitest";
import { InboundOrder, MAX_HELD_PACKETS, sequenced, unsequenced } from "../../src/protocol/internal-order";

const p = (n: number) => new Uint8Array([n]);
const values = (list: Uint8Array[]) => list.map((x) => x[0]);

describe("internal packet order", () => {
  it("round-trips the sequence number", () => {
    const frame = sequenced(0x01020304, new Uint8Array([0xe0, 0x00]));
    expect(unsequenced(frame)).toEqual({ seq: 0x01020304, packet: new Uint8Array([0xe0, 0x00]) });
    expect(unsequenced(new Uint8Array([0, 0, 0, 1]))).toBeUndefined();
  });

  it("holds a packet that arrives early and releases it after the one before it", () => {
    const order = new InboundOrder(0);
    expect(values(order.accept(1, p(1)))).toEqual([]);
    expect(values(order.accept(2, p(2)))).toEqual([]);
    expect(values(order.accept(0, p(0)))).toEqual([0, 1, 2]);
    expect(values(order.accept(3, p(3)))).toEqual([3]);
  });

  it("never drops: a late duplicate is handed on, and too many held are released in order", () => {
    const order = new InboundOrder(5);
    expect(values(order.accept(4, p(4)))).toEqual([4]);
    const gap = new InboundOrder(0);
    for (let i = 1; i <= MAX_HELD_PACKETS; i++) expect(gap.accept(i, p(i % 256))).toEqual([]);
    expect(gap.accept(MAX_HELD_PACKETS + 1, p(0)).length).toBe(MAX_HELD_PACKETS + 1);
  });
});
