import { describe, expect, it } from "vitest";
import { CallSequencer, OrderedChannels, type CallOrder } from "../../src/util/ordered-calls";

/** A sequencer whose gap timers run when the test says. */
function sequencer(maxCallers = 10) {
  const timers: (() => void)[] = [];
  const seq = new CallSequencer(maxCallers, 1000, (_ms, fn) => void timers.push(fn));
  const fire = () => timers.splice(0).forEach((fn) => fn());
  return { seq, timers, fire };
}
const order = (from: string, seq: number, after = 0): CallOrder => ({ from, seq, after });

describe("CallSequencer (the callee's side)", () => {
  it("runs a caller's calls in their numbers' order, whatever the arrival order", async () => {
    const { seq } = sequencer();
    const ran: number[] = [];
    const calls = [2, 1, 0, 3].map((n) => seq.run(order("a", n), () => ran.push(n)));
    await Promise.all(calls);
    expect(ran).toEqual([0, 1, 2, 3]);
  });

  it("keeps callers apart, and runs a call without an order at once", () => {
    const { seq } = sequencer();
    const ran: string[] = [];
    void seq.run(order("a", 1), () => ran.push("a1"));
    void seq.run(order("b", 0), () => ran.push("b0"));
    void seq.run(undefined, () => ran.push("plain"));
    expect(ran).toEqual(["b0", "plain"]); // a1 waits for a0
    void seq.run(order("a", 0), () => ran.push("a0"));
    expect(ran).toEqual(["b0", "plain", "a0", "a1"]);
  });

  it("does not wait for numbers the caller says are settled (after)", () => {
    const { seq } = sequencer();
    const ran: number[] = [];
    void seq.run(order("a", 0), () => ran.push(0));
    void seq.run(order("a", 2, 1), () => ran.push(2)); // 1 is still in flight: waits
    expect(ran).toEqual([0]);
    void seq.run(order("a", 3, 2), () => ran.push(3)); // 1 settled (lost): 2 and 3 run
    expect(ran).toEqual([0, 2, 3]);
  });

  it("a caller first heard mid-sequence (this object restarted) waits only from `after`", () => {
    const { seq } = sequencer();
    const ran: number[] = [];
    void seq.run(order("a", 41, 40), () => ran.push(41));
    expect(ran).toEqual([]);
    void seq.run(order("a", 40, 40), () => ran.push(40));
    expect(ran).toEqual([40, 41]);
  });

  it("stops waiting for a lost call after the gap time without progress", () => {
    const { seq, timers, fire } = sequencer();
    const ran: number[] = [];
    void seq.run(order("a", 1), () => ran.push(1));
    void seq.run(order("a", 2), () => ran.push(2));
    expect(timers).toHaveLength(1); // one timer per stalled caller, not per call
    fire();
    expect(ran).toEqual([1, 2]);
    void seq.run(order("a", 0), () => ran.push(0)); // the late one still runs
    expect(ran).toEqual([1, 2, 0]);
  });

  it("a gap timer that sees progress waits again instead of releasing", () => {
    const { seq, timers, fire } = sequencer();
    const ran: number[] = [];
    void seq.run(order("a", 1), () => ran.push(1));
    void seq.run(order("a", 3), () => ran.push(3));
    void seq.run(order("a", 0), () => ran.push(0)); // progress: 0, 1 run; 3 still waits for 2
    expect(ran).toEqual([0, 1]);
    fire();
    expect(ran).toEqual([0, 1]);
    expect(timers).toHaveLength(1);
    fire();
    expect(ran).toEqual([0, 1, 3]);
  });

  it("forgets the least recently heard caller beyond its limit, running what it held", () => {
    const { seq } = sequencer(2);
    const ran: string[] = [];
    void seq.run(order("a", 1), () => ran.push("a1"));
    void seq.run(order("b", 0), () => ran.push("b0"));
    void seq.run(order("c", 0), () => ran.push("c0")); // a is forgotten: a1 runs
    expect(ran).toEqual(["b0", "a1", "c0"]);
  });

  it("passes on what the call returns, or throws", async () => {
    const { seq } = sequencer();
    await expect(seq.run(order("a", 0), () => Promise.resolve(7))).resolves.toBe(7);
    await expect(
      seq.run(order("a", 1), () => {
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    await expect(seq.run(order("a", 2), () => "next")).resolves.toBe("next");
  });
});

describe("OrderedChannels (the caller's side)", () => {
  function channels(max = 10) {
    let ids = 0;
    const opened: string[] = [];
    const ch = new OrderedChannels<string, string>(
      (key) => (opened.push(key), `stub-${key}-${opened.length}`),
      () => `seq${++ids}`,
      max,
    );
    return { ch, opened };
  }

  it("numbers calls per destination from 0, with the lowest unsettled number as `after`", async () => {
    const { ch, opened } = channels();
    const seen: [string, CallOrder][] = [];
    let release!: () => void;
    const first = ch.call("x", (stub, o) => (seen.push([stub, o]), new Promise<void>((r) => (release = r))));
    const second = ch.call("x", (stub, o) => (seen.push([stub, o]), Promise.resolve()));
    await second;
    const third = ch.call("x", (stub, o) => (seen.push([stub, o]), Promise.resolve()));
    void ch.call("y", (stub, o) => (seen.push([stub, o]), Promise.resolve()));
    release();
    await Promise.all([first, third]);
    const fourth = ch.call("x", (_stub, o) => (seen.push(["", o]), Promise.resolve()));
    await fourth;
    expect(opened).toEqual(["x", "y"]);
    expect(seen.map(([, o]) => [o.from, o.seq, o.after])).toEqual([
      ["seq1", 0, 0],
      ["seq1", 1, 0],
      ["seq1", 2, 0], // 0 still in flight
      ["seq2", 0, 0],
      ["seq1", 3, 3], // 0..2 settled
    ]);
  });

  it("a failed call drops the stub: the next call opens a new one and starts a new sequence", async () => {
    const { ch, opened } = channels();
    await expect(ch.call("x", () => Promise.reject(new Error("broken")))).rejects.toThrow("broken");
    await expect(
      ch.call("x", () => {
        throw new Error("sync");
      }),
    ).rejects.toThrow("sync");
    let seen: CallOrder | undefined;
    await ch.call("x", (_s, o) => ((seen = o), Promise.resolve()));
    expect(opened).toEqual(["x", "x", "x"]);
    expect(seen).toEqual({ from: "seq3", seq: 0, after: 0 });
  });

  it("keeps at most its limit of destinations, forgetting the least recently used", async () => {
    const { ch, opened } = channels(2);
    const call = (k: string) => ch.call(k, () => Promise.resolve());
    await call("a");
    await call("b");
    await call("a"); // a is now the most recent
    await call("c"); // b is forgotten
    await call("a");
    await call("b");
    expect(opened).toEqual(["a", "b", "c", "b"]);
  });
});
