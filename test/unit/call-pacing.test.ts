import { describe, expect, it } from "vitest";
import { Batcher } from "../../src/util/batcher";
import { CallRateMeter, MAX_SPACING_MS } from "../../src/util/call-pacing";

describe("CallRateMeter (the callee's side of delivery pacing)", () => {
  it("asks for no spacing while the events of the last second are under 90% of the limit", () => {
    const meter = new CallRateMeter(500);
    for (let i = 0; i < 449; i++) expect(meter.record(`shard-${i % 8}`, i)).toBe(0);
    expect(meter.record("shard-0", 449)).toBeGreaterThan(0);
  });

  it("a subscriber of 200 QoS 1 messages a second (a delivery and a PUBACK frame each) is not paced", () => {
    const meter = new CallRateMeter(500);
    for (let i = 0; i < 400; i++) {
      meter.recordOther(i * 5 + 1); // the PUBACK frame of the previous delivery
      expect(meter.record("shard-0", i * 5)).toBe(0);
    }
  });

  it("other events shrink the callers' share: deliveries and their PUBACK frames together stay at the limit", () => {
    const meter = new CallRateMeter(500);
    let spacing = 0;
    for (let i = 0; i < 400; i++) {
      meter.recordOther(i);
      spacing = meter.record(`shard-${i % 8}`, i);
    }
    // Half the events are calls: 8 callers share 250 calls/s, 32 ms each (16 ms if frames were free).
    expect(spacing).toBe((8 * 1000) / 250);
  });

  it("above half the limit, gives each caller heard an equal share of it", () => {
    const meter = new CallRateMeter(500);
    let spacing = 0;
    for (let i = 0; i < 500; i++) spacing = meter.record(`shard-${i % 8}`, i);
    expect(spacing).toBe((8 * 1000) / 500); // 8 callers: 16 ms each keeps them at 500 calls/s in all
  });

  it("remembers the last second across windows, and forgets a quiet past", () => {
    const meter = new CallRateMeter(500);
    for (let i = 0; i < 500; i++) meter.record("shard-0", 900 + i / 10); // 500 calls just before 1 s
    expect(meter.record("shard-0", 1100)).toBeGreaterThan(0); // still within the last second
    expect(meter.record("shard-0", 5000)).toBe(0); // seconds later: a lone call is not paced
  });

  it("never asks for more than MAX_SPACING_MS, however low the limit", () => {
    const meter = new CallRateMeter(1);
    let spacing = 0;
    for (let i = 0; i < 10; i++) spacing = meter.record(`shard-${i}`, i);
    expect(spacing).toBe(MAX_SPACING_MS); // 10 callers at 1 call/s would be 10 s
  });

  it("0 turns pacing off", () => {
    const meter = new CallRateMeter(0);
    for (let i = 0; i < 2000; i++) expect(meter.record("shard-0", i / 10)).toBe(0);
  });
});

/** A paced Batcher whose clock and timers the test drives. */
function pacedBatcher(maxBatch = 256) {
  let now = 0;
  const timers: { at: number; fn: () => void }[] = [];
  const sent: string[][] = [];
  let endOfTurn: (() => void) | undefined;
  const batcher = new Batcher<string, string, string>(
    async (_key, items) => {
      sent.push(items);
      return items.map(() => "ok");
    },
    (fn) => (endOfTurn = fn),
    maxBatch,
    { now: () => now, after: (ms, fn) => void timers.push({ at: now + ms, fn }) },
  );
  const turn = () => {
    const fn = endOfTurn;
    endOfTurn = undefined;
    fn?.();
  };
  const advance = (ms: number) => {
    now += ms;
    for (const t of timers.filter((t) => t.at <= now)) {
      timers.splice(timers.indexOf(t), 1);
      t.fn();
    }
  };
  return { batcher, sent, turn, advance };
}

describe("Batcher pacing (the caller's side)", () => {
  it("an unpaced key's item goes at the end of the turn: a lone message is not held", () => {
    const { batcher, sent, turn } = pacedBatcher();
    void batcher.add("s", "a");
    turn();
    expect(sent).toEqual([["a"]]);
  });

  it("a paced key's items wait for the spacing and go as one call, in order", () => {
    const { batcher, sent, turn, advance } = pacedBatcher();
    batcher.pace("s", 16); // the session's reply to the call just made
    for (const item of ["a", "b", "c"]) {
      void batcher.add("s", item);
      turn();
      advance(4);
    }
    expect(sent).toEqual([]); // 12 ms after the last call: still held
    advance(4);
    expect(sent).toEqual([["a", "b", "c"]]);
    void batcher.add("s", "d"); // right after a call: waits a whole spacing
    turn();
    advance(15);
    expect(sent).toHaveLength(1);
    advance(1);
    expect(sent).toEqual([["a", "b", "c"], ["d"]]);
  });

  it("a paced key is sent at once once the spacing has passed, and unpaced by a spacing of 0", () => {
    const { batcher, sent, turn, advance } = pacedBatcher();
    batcher.pace("s", 16);
    advance(20);
    void batcher.add("s", "late");
    turn();
    expect(sent).toEqual([["late"]]);
    batcher.pace("s", 0);
    void batcher.add("s", "next");
    turn();
    expect(sent).toEqual([["late"], ["next"]]);
  });

  it("a paced batch that reaches the most per call goes at once (nothing dropped), in order", () => {
    const { batcher, sent, turn, advance } = pacedBatcher(2);
    batcher.pace("s", 16);
    for (const item of ["a", "b", "c"]) void batcher.add("s", item);
    turn();
    expect(sent).toEqual([["a", "b"]]);
    advance(16);
    expect(sent).toEqual([["a", "b"], ["c"]]);
  });
});
