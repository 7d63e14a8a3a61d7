/**
 * The publish rate limit (src/session/publish-rate.ts): within the rate a PUBLISH passes, up to as
 * many again per second it is slowed, beyond twice the rate the connection is cut.
 */
import { describe, expect, it } from "vitest";
import { PublishRate, type RateVerdict } from "../../src/session/publish-rate";

/** The verdicts of `count` PUBLISHes arriving at `at`. */
function arrive(limiter: PublishRate, count: number, at: number): RateVerdict[] {
  return Array.from({ length: count }, () => limiter.admit(at));
}

const kinds = (verdicts: RateVerdict[]) => verdicts.map((v) => v.kind);

describe("PublishRate", () => {
  it("passes a burst of the rate, slows as many again, then cuts", () => {
    const limiter = new PublishRate(100);
    limiter.connected(0);
    const verdicts = arrive(limiter, 201, 0);
    expect(kinds(verdicts.slice(0, 100)).every((k) => k === "pass")).toBe(true);
    expect(kinds(verdicts.slice(100, 200)).every((k) => k === "slow")).toBe(true);
    expect(verdicts[200]!.kind).toBe("cut");
  });

  it("never cuts a publisher at 1.5 times the rate, and slows only what is beyond the rate", () => {
    const limiter = new PublishRate(1000);
    limiter.connected(0);
    const counts = { pass: 0, slow: 0, cut: 0 };
    // 1,500 PUBLISH/s for 20 s, 15 every 10 ms
    for (let t = 0; t < 20_000; t += 10) for (const v of arrive(limiter, 15, t)) counts[v.kind]++;
    expect(counts.cut).toBe(0);
    // the first second's burst passes; after it, 1,000 of every 1,500
    expect(counts.pass).toBeGreaterThanOrEqual(20 * 1000);
    expect(counts.pass).toBeLessThanOrEqual(21 * 1000);
    expect(counts.pass + counts.slow).toBe(30_000);
  });

  it("cuts a publisher at three times the rate once its second of overflow is spent", () => {
    const limiter = new PublishRate(1000);
    limiter.connected(0);
    let cutAt: number | undefined;
    for (let t = 0; t < 10_000 && cutAt === undefined; t += 10) {
      if (arrive(limiter, 30, t).some((v) => v.kind === "cut")) cutAt = t;
    }
    // the burst and the overflow (2,000) last about 2 s at 1,000/s over twice the rate
    expect(cutAt).toBeGreaterThan(1000);
    expect(cutAt).toBeLessThan(3000);
    expect(limiter.recentRate(cutAt!)).toBeGreaterThan(2000);
  });

  it("paces slowed acknowledgements at the rate, one after the other", () => {
    const limiter = new PublishRate(100);
    limiter.connected(0);
    arrive(limiter, 100, 0);
    const slowed = arrive(limiter, 3, 0).map((v) => (v.kind === "slow" ? v.ackAt : undefined));
    expect(slowed).toEqual([10, 20, 30]);
    // later arrivals are paced after those already waiting, not from their own arrival
    expect(limiter.admit(5)).toEqual({ kind: "slow", ackAt: 40 }); // half a token refilled: not a whole one
  });

  it("starts every connection with full buckets", () => {
    const limiter = new PublishRate(10);
    limiter.connected(0);
    expect(kinds(arrive(limiter, 21, 0))).toContain("cut");
    limiter.connected(50);
    expect(kinds(arrive(limiter, 10, 50)).every((k) => k === "pass")).toBe(true);
  });
});
