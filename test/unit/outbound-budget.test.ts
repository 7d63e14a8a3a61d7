/** The gateway's per-connection outbound budget (src/gateway/outbound-budget.ts): pure arithmetic over frames. */
import { describe, expect, it } from "vitest";
import { encodePacket, joinFrames, type Packet } from "../../src/protocol/codec";
import { OutboundBudget } from "../../src/gateway/outbound-budget";

const publish = (qos: 0 | 1, bytes: number, messageId?: number) =>
  encodePacket(
    {
      cmd: "publish",
      topic: "t",
      payload: Buffer.alloc(bytes, 7),
      qos,
      retain: false,
      dup: false,
      messageId,
    } as Packet,
    4,
  );
const puback = encodePacket({ cmd: "puback", messageId: 9 } as Packet, 4);

describe("OutboundBudget", () => {
  it("passes frames unchanged while the estimate stays within the budget", () => {
    const budget = new OutboundBudget(10_000, 1000, 8_000, 0);
    const frame = publish(0, 4000);
    expect(budget.admit(frame, 0)).toEqual({ frame, dropped: 0, stalled: false });
    expect(budget.admit(frame, 0).frame).toBe(frame);
  });

  it("drops only the QoS 0 PUBLISHes beyond the budget; QoS 1 and acknowledgements always go", () => {
    const budget = new OutboundBudget(10_000, 1000, 8_000, 0);
    budget.admit(publish(0, 9000), 0);
    const q1 = publish(1, 500, 1);
    const frame = joinFrames([publish(0, 2000), q1, puback, publish(0, 3000)]);
    const admitted = budget.admit(frame, 0);
    expect(admitted.dropped).toBe(2);
    expect(admitted.frame).toEqual(joinFrames([q1, puback]));
  });

  it("assumes the client reads at the configured rate: the budget refills with time", () => {
    const budget = new OutboundBudget(10_000, 1000, 8_000, 0);
    budget.admit(publish(0, 9000), 0);
    expect(budget.admit(publish(0, 5000), 0).dropped).toBe(1);
    expect(budget.estimate(5000)).toBeLessThan(5000);
    expect(budget.admit(publish(0, 5000), 5000).dropped).toBe(0);
  });

  it("cuts a frame larger than the budget per packet even when nothing is waiting (a burst of retained messages)", () => {
    const budget = new OutboundBudget(10_000, 1000, 8_000, 0);
    const parts = Array.from({ length: 5 }, () => publish(0, 3000));
    const admitted = budget.admit(joinFrames(parts), 0);
    expect(admitted.dropped).toBe(2);
    expect(admitted.frame).toEqual(joinFrames(parts.slice(0, 3)));
  });

  it("lets a packet larger than the budget through when nothing is waiting", () => {
    const budget = new OutboundBudget(16_384, 1000, 8_000, 0);
    expect(budget.admit(publish(0, 20_000), 0).dropped).toBe(0);
    expect(budget.admit(publish(0, 100), 0).dropped).toBe(1);
  });

  it("reports a stall once more than the limit has gone out while behind, though frames pass now and then", () => {
    const budget = new OutboundBudget(10_000, 1000, 8_000, 0);
    const frame = publish(0, 3000);
    for (let i = 0; i < 3; i++) budget.admit(frame, 0);
    expect(budget.admit(frame, 0).dropped).toBe(1); // behind from here
    for (const t of [3000, 6000]) expect(budget.admit(frame, t)).toMatchObject({ dropped: 0, stalled: false }); // refilled: one passes
    expect(budget.admit(frame, 9000)).toMatchObject({ dropped: 0, stalled: true }); // the third: over 8,000 bytes sent while behind
  });

  it("forgets being behind once the client has caught up (estimate under half the budget long enough)", () => {
    const budget = new OutboundBudget(10_000, 1000, 8_000, 0);
    const frame = publish(0, 3000);
    for (let i = 0; i < 4; i++) budget.admit(frame, 0); // the 4th dropped: behind
    expect(budget.admit(frame, 3000).stalled).toBe(false); // 3 KB while behind
    expect(budget.admit(frame, 8000).dropped).toBe(0); // estimate ~4 KB, under half: nothing counted
    expect(budget.admit(frame, 11_000)).toMatchObject({ dropped: 0, stalled: false });
  });

  describe("stays behind through gaps in the feed (the calls feeding the gateway come paced, or late on a busy machine)", () => {
    const MiB = 1048576;
    const message = publish(0, 16 * 1024);
    /**
     * Defaults of the gateway (1 MiB budget, 1 MiB/s assumed read, 8 budgets behind), fed `frameAt(t)`
     * messages at each millisecond t up to `untilMs`, by a client that reads nothing: when it was
     * stalled (undefined: never) and the bytes it was sent until then.
     */
    function feed(frameAt: (t: number) => number, untilMs: number) {
      const budget = new OutboundBudget(MiB, MiB, 8 * MiB, 0);
      let sent = 0;
      for (let t = 0; t <= untilMs; t++) {
        const count = frameAt(t);
        if (count === 0) continue;
        const { frame, stalled } = budget.admit(joinFrames(Array.from({ length: count }, () => message)), t);
        sent += frame?.length ?? 0;
        if (stalled) return { stalledAt: t, sent };
      }
      return { stalledAt: undefined, sent };
    }

    it("a flood (5.5 MB/s) in 700 ms bursts with 600 ms gaps, each gap taking the estimate under half the budget, is stalled", () => {
      const run = feed((t) => (t % 1300 < 700 && t % 3 === 0 ? 1 : 0), 60_000);
      // The old rule forgot being behind in every gap: never stalled, it was sent 64 MB in 60 s.
      expect(run.stalledAt).toBeDefined();
      // The budget, 8 budgets while behind, and what it was assumed to read under half the budget in
      // the gaps (11.5 MiB, stalled after 10.5 s).
      expect(run.sent).toBeLessThan(12 * MiB);
    });

    it("a flood of 300 messages a second in one call a second (the longest paced spacing) is stalled", () => {
      // Each call finds the estimate at zero, takes it to the budget and has the rest dropped: the
      // admitted bytes go beside drops, and count (the old rule: never stalled, 63 MB in 60 s).
      const run = feed((t) => (t % 1000 === 0 ? 300 : 0), 60_000);
      expect(run.stalledAt).toBeDefined();
      // The budget, 8 budgets while behind, half a budget assumed read in each second's second half
      // (15.8 MiB, stalled after 15 s).
      expect(run.sent).toBeLessThan(17 * MiB);
    });

    it("a client given time to read between bursts (3 s at 5.5 MB/s, then 10 s quiet) is never stalled", () => {
      // Each quiet spell gives back what the burst counted (counted for good, it would be stalled after
      // 27.5 s); 20 MiB sent in 5 bursts.
      const run = feed((t) => (t % 13_000 < 3000 && t % 3 === 0 ? 1 : 0), 65_000);
      expect(run.stalledAt).toBeUndefined();
    });
  });
});
