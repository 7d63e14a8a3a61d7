import { describe, expect, it } from "vitest";
import { Batcher } from "../../src/util/batcher";
import { CallRateMeter, MAX_SPACING_MS } from "../../src/util/call-pacing";

/** Feeds `n` calls from `callers` callers, evenly over [start, start + ms), each followed by `others` other events. */
function feed(meter: CallRateMeter, n: number, start: number, ms: number, callers = 8, others = 0): number {
  let spacing = 0;
  for (let i = 0; i < n; i++) {
    const at = start + (i * ms) / n;
    for (let k = 0; k < others; k++) meter.recordOther(at);
    spacing = meter.record(`shard-${i % callers}`, at);
  }
  return spacing;
}

const meter500 = () => new CallRateMeter(500);

describe("CallRateMeter (the callee's side of delivery pacing)", () => {
  it("asks for no spacing while the events come at under 90% of the limit, and does from there", () => {
    const meter = new CallRateMeter(500);
    for (let i = 0; i < 2 * 440; i++) expect(meter.record(`shard-${i % 8}`, (i * 1000) / 440)).toBe(0);
    // 460 a second: heard within the next quarter second, as a rate (not after a second's count)
    let paced = false;
    for (let i = 0; i < 115 && !paced; i++) paced = meter.record("shard-0", 2000 + (i * 1000) / 460) > 0;
    expect(paced).toBe(true);
  });

  it("a burst is heard as a rate: 120 events in a quarter second pace, though the second counts only 120", () => {
    const meter = new CallRateMeter(500);
    expect(feed(meter, 120, 0, 240)).toBeGreaterThan(0);
  });

  it("a subscriber of 200 QoS 1 messages a second (a delivery and a PUBACK frame each) is not paced", () => {
    const meter = new CallRateMeter(500);
    for (let i = 0; i < 400; i++) {
      meter.recordOther(i * 5 + 1); // the PUBACK frame of the previous delivery
      expect(meter.record("shard-0", i * 5)).toBe(0);
    }
  });

  it("once paced, first gives each caller heard an equal part of the calls' share of 90% of the limit", () => {
    // 8 callers, calls only, at 500 a second: paced in the first quarter second, 450 calls/s for all
    expect(feed(meter500(), 120, 0, 240)).toBeCloseTo((8 * 1000) / 450, 6);
    // a PUBACK frame after each call: the calls' first share is half, 225 calls/s
    expect(feed(meter500(), 60, 0, 240, 8, 1)).toBeCloseTo((8 * 1000) / 225, 6);
  });

  it("steers the calls each quarter second by the events: too many slow them, too few speed them up", () => {
    const meter = meter500();
    const first = feed(meter, 120, 0, 240); // paced: 17.8 ms
    // 900 events a second (the callers had not heard): when that quarter ends, the calls' rate falls
    feed(meter, 225, 250, 250);
    const slowed = feed(meter, 1, 500, 1);
    expect(slowed).toBeGreaterThan(first);
    expect(slowed).toBeLessThanOrEqual(2 * first); // at most halved per quarter second
    // then 300 events a second: once that second has passed, back up to the target
    let spacing = slowed;
    for (let t = 501; t < 3000; t += 250) spacing = feed(meter, 75, t, 250);
    expect(spacing).toBeCloseTo((8 * 1000) / 450, 6);
  });

  it("stays paced until the last second's events fall under half the limit", () => {
    const meter = new CallRateMeter(500);
    feed(meter, 450, 0, 1000); // paced
    expect(feed(meter, 300, 1000, 1000)).toBeGreaterThan(0); // 300 a second: still paced (no flicker)
    expect(feed(meter, 240, 2000, 1000)).toBe(0); // under 250: no longer
  });

  it("remembers the last second across buckets, and forgets a quiet past", () => {
    const meter = new CallRateMeter(500);
    for (let i = 0; i < 500; i++) meter.record("shard-0", 900 + i / 10); // 500 calls just before 1 s
    expect(meter.record("shard-0", 1100)).toBeGreaterThan(0); // still within the last second
    expect(meter.record("shard-0", 5000)).toBe(0); // seconds later: a lone call is not paced
  });

  it("counts only the callers heard in the last second", () => {
    const meter = new CallRateMeter(500);
    feed(meter, 450, 0, 1000, 8); // 8 callers
    // then only 2 of them (the oldest bucket's sliver of the first second aside)
    expect(feed(meter, 450, 1000, 1000, 2)).toBeCloseTo((2 * 1000) / 450, 1);
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

  it("a batch waiting out a long spacing goes as soon as a shorter one allows, or at once when unpaced", () => {
    const { batcher, sent, turn, advance } = pacedBatcher();
    batcher.pace("s", 1000); // the session was very hot
    void batcher.add("s", "a");
    turn();
    advance(10);
    batcher.pace("s", 20); // a later reply: it cooled down
    advance(9);
    expect(sent).toEqual([]);
    advance(1); // 20 ms after the last call, not 1,000
    expect(sent).toEqual([["a"]]);
    batcher.pace("s", 1000);
    void batcher.add("s", "b");
    turn();
    batcher.pace("s", 0); // no longer paced: goes at the end of the turn
    turn();
    expect(sent).toEqual([["a"], ["b"]]);
    advance(1000); // its old timer finds nothing to send twice
    expect(sent).toEqual([["a"], ["b"]]);
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

/** How many PUBACK frames the session gets for a call of `messages`, in the simulation below. */
type FrameModel = { name: string; frames: (messages: number) => number };
const FRAME_MODELS: FrameModel[] = [
  { name: "1 frame a call", frames: () => 1 },
  { name: "2 frames a call", frames: () => 2 },
  // As measured in costWorkload: about 2 frames for a call of 10 messages, 4 to 5 for one of 40.
  { name: "a frame per 10 messages, and 1", frames: (messages) => 1 + Math.ceil(messages / 10) },
];

/**
 * One hot session called by `shards` TopicShards, simulated on a clock of its own (deterministic):
 * the real Batcher per shard and the real CallRateMeter at the session. Messages arrive evenly at
 * `rate` a second, spread over the shards (as costWorkload's devices publish); each call reaches the
 * session at once, its client's PUBACK frames arrive `ackMs` later, and the call's reply, with the
 * spacing, reaches the shard 1 ms after that (a QoS 1 call settles once acknowledged).
 */
function simulateHotSession(o: { shards: number; rate: number; seconds: number; model: FrameModel; ackMs: number }) {
  const limit = 500;
  let now = 0;
  let order = 0;
  const timers: { at: number; order: number; fn: () => void }[] = [];
  const at = (t: number, fn: () => void) => timers.push({ at: t, order: order++, fn });
  const meter = new CallRateMeter(limit);
  const events: number[] = [];
  const waits: number[] = [];
  const shards = Array.from({ length: o.shards }, (_, s) => {
    const shard: Batcher<string, number, string> = new Batcher<string, number, string>(
      (key, arrivals) => {
        const sentAt = now;
        for (const arrived of arrivals) waits.push(sentAt - arrived);
        events.push(now);
        const spacing = meter.record(`shard-${s}`, now);
        for (let f = 0; f < o.model.frames(arrivals.length); f++) {
          at(sentAt + o.ackMs + f * 0.3, () => {
            events.push(now);
            meter.recordOther(now);
          });
        }
        return new Promise((resolve) =>
          at(sentAt + o.ackMs + 1, () => {
            shard.pace(key, spacing);
            resolve(arrivals.map(() => "ok"));
          }),
        );
      },
      (fn) => at(now + 0.05, fn), // the end of the turn
      256,
      { now: () => now, after: (ms, fn) => at(now + ms, fn) },
    );
    return shard;
  });
  for (let i = 0; i < o.rate * o.seconds; i++) {
    const arrived = (i * 1000) / o.rate;
    at(arrived, () => void shards[i % o.shards]!.add("backend", arrived));
  }
  while (timers.length) {
    let next = 0; // the earliest timer, first set first (a few hundred at most are pending)
    for (let i = 1; i < timers.length; i++) {
      const a = timers[i]!;
      const b = timers[next]!;
      if (a.at < b.at || (a.at === b.at && a.order < b.order)) next = i;
    }
    const timer = timers.splice(next, 1)[0]!;
    now = timer.at;
    timer.fn();
  }
  /** The most events in any 1 s window whose start is at or after `from`. */
  const busiestSecond = (from: number) => {
    const times = events.filter((t) => t >= from);
    let most = 0;
    for (let i = 0, j = 0; i < times.length; i++) {
      while (times[i]! - times[j]! >= 1000) j++;
      most = Math.max(most, i - j + 1);
    }
    return most;
  };
  const run = Math.max(...events) / 1000;
  waits.sort((a, b) => a - b);
  return {
    limit,
    perSecond: events.length / run,
    busiestSecond: busiestSecond(0),
    busiestAfterFirst: busiestSecond(1000),
    waitP50: waits[Math.floor(waits.length / 2)]!,
  };
}

describe("a hot session called by 8 shards at costWorkload's rate (simulated, deterministic)", () => {
  for (const ackMs of [3, 10, 25]) {
    for (const model of FRAME_MODELS) {
      it(`stays under the limit: PUBACKs after ${ackMs} ms, ${model.name}`, () => {
        const r = simulateHotSession({ shards: 8, rate: 1667, seconds: 5, model, ackMs });
        console.log(`ack ${ackMs} ms, ${model.name}: ${JSON.stringify(r)}`);
        // Once the callers have heard (after the first second), no second takes more than the limit;
        // over the whole run, its first second's overshoot included, fewer than the limit a second.
        expect(r.busiestAfterFirst).toBeLessThanOrEqual(r.limit);
        expect(r.perSecond).toBeLessThanOrEqual(r.limit);
      });
    }
  }
});
