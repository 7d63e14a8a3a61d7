/**
 * How hot a Durable Object is, as its callers should hear it: the callee counts the calls it receives
 * and answers each with the spacing every caller should keep between its calls, so that all callers
 * together stay under a design rate (a Durable Object handles about 1,000 requests a second; the
 * design keeps a session under half of that).
 *
 * Why the callee decides: a TopicShard sees only its own calls, but the rate that matters is the sum
 * over every shard calling the same session (a `devices/+/telemetry` backend is called by all of
 * them). The session sees that sum and how many shards make it.
 *
 * Why it aims under the limit and looks back a whole second: a caller hears the spacing only in the
 * reply to a call it already made (for a QoS 1 delivery, once the client acknowledged it), so what
 * the callers send before they hear, and the client's frames that follow, overshoot a pacing that
 * aims at the limit itself. Simulated (test/unit/call-pacing.test.ts), aiming at the limit with no
 * look back gave 580 to 642 events a second over a 5 s run against a limit of 500, up to 1,105 in
 * its first second; `costWorkload` measured 601 (docs/SCALE.md).
 */

/** Length of one counting bucket: rates are judged on the last bucket's length, the limit on BUCKETS of them. */
const BUCKET_MS = 250;
/** Buckets in the second the limit is on. */
const BUCKETS = 1000 / BUCKET_MS;
/**
 * Longest spacing asked for: a message waits at most this long for its call, whatever the setting
 * (a very low DELIVERY_CALL_RATE is then exceeded rather than delaying every delivery by seconds).
 */
export const MAX_SPACING_MS = 1000;
/** Distinct callers counted per second (a deployment has at most 1,024 shards: config.ts). */
const MAX_COUNTED_CALLERS = 1024;

/** One incoming call's answer to its caller: the milliseconds to keep between its next calls (0: none). */
export type CallSpacing = number;

/**
 * Pacing starts when the callee's events reach this share of the limit, as a rate over the last
 * bucket (so a burst is heard within a quarter second, not after 90% of a second's events) or as
 * the count of the last second. A subscriber of 200 QoS 1 messages a second (400 events: its
 * deliveries and its PUBACK frames) is not paced.
 */
const PACE_FROM = 0.9;
/**
 * Once paced, the callee stays paced until its last second's events fall under this share with the
 * calls no longer held back (no flicker; events low because of the pacing itself do not end it).
 */
const PACE_UNTIL = 0.5;
/**
 * What paced callers aim the events at, as a share of the limit: the rest is headroom for what
 * arrives before the callers hear (their calls in flight, the frames that follow them).
 */
const PACED_TARGET = 0.9;

interface Bucket {
  /** Paced calls (`record`). */
  calls: number;
  /** Every event (paced calls and `recordOther`). */
  all: number;
}

/**
 * Why the calls' rate is steered by the events counted, not computed from the calls' share of them:
 * the client's frames grow with what each call carries (measured in costWorkload: about 2 PUBACK
 * frames for a call of 10 messages, 4 to 5 for one of 40), so fewer, larger calls bring more frames
 * each. Giving the calls their share of the limit then spirals: a smaller share, a longer spacing,
 * larger calls, more frames, a smaller share, up to the longest spacing (seen: 30 calls a second,
 * PUBACKs after seconds). Steering by the total finds the calls' rate at which calls and frames
 * together make the target, whatever the frames do.
 */
export class CallRateMeter {
  /** The newest bucket first; BUCKETS + 1 of them (the oldest counts in part: a sliding second). */
  private readonly buckets: Bucket[] = Array.from({ length: BUCKETS + 1 }, () => ({ calls: 0, all: 0 }));
  private bucketStart = -Infinity;
  /** When each caller last called; those of the last second are the callers sharing the calls. */
  private readonly callers = new Map<string, number>();
  /** While paced: the calls a second all callers together are given (steered each bucket). */
  private callRate?: number;

  constructor(
    /** Events per second the callee is designed to take from all callers and elsewhere together (0: no pacing). */
    private readonly limit: number,
  ) {}

  /**
   * Counts an event the callee runs that no paced caller made (for a session: a frame from the
   * gateway, such as the PUBACKs of what it delivered). It counts against the limit: the limit is on
   * everything the object runs, so the calls get what the other events leave of it.
   */
  recordOther(now: number): void {
    this.roll(now);
    this.buckets[0]!.all++;
  }

  /**
   * Counts one call from `caller`; returns the spacing each caller should keep. None while the
   * events come at under 90% of the limit (a lone call, moderate traffic: sent at once, no added
   * latency). Once paced, the callers together get a rate of calls, steered each quarter second so
   * that calls and other events together come at 90% of the limit, each caller an equal part of it.
   */
  record(caller: string, now: number): CallSpacing {
    this.roll(now);
    this.buckets[0]!.calls++;
    this.buckets[0]!.all++;
    this.callers.delete(caller); // the most recent last: the oldest are forgotten first
    if (this.callers.size >= MAX_COUNTED_CALLERS) this.callers.delete(this.callers.keys().next().value!);
    this.callers.set(caller, now);
    if (this.limit <= 0) return 0;
    const events = this.lastSecond(now);
    const from = this.limit * PACE_FROM;
    // Sliding rate over the last bucket's length.
    const part = this.oldestPart(now);
    const recent = (k: keyof Bucket) => (this.buckets[0]![k] + this.buckets[1]![k] * part) * BUCKETS;
    const hot = events >= from || recent("all") >= from;
    if (this.callRate === undefined) {
      if (!hot) return 0;
      // The first guess: the calls' share of the target, as they come now; steered from here (roll).
      this.callRate = this.bounded((this.target() * recent("calls")) / recent("all"));
    } else if (!hot && events < this.limit * PACE_UNTIL && this.callRate >= this.target()) {
      // Quiet although the steering let the calls come as fast as the target: no longer hot.
      this.callRate = undefined;
      return 0;
    }
    return Math.min(MAX_SPACING_MS, (this.callersOfLastSecond(now) * 1000) / this.callRate);
  }

  private target(): number {
    return this.limit * PACED_TARGET;
  }

  /** A calls' rate kept between one call a second per caller (MAX_SPACING_MS) and the target itself. */
  private bounded(rate: number): number {
    return Math.min(this.target(), Math.max(this.callers.size, rate));
  }

  /** How much of the oldest bucket still falls within the last second (and the last bucket's length). */
  private oldestPart(now: number): number {
    return Math.max(0, 1 - (now - this.bucketStart) / BUCKET_MS);
  }

  /** Events of the last second: BUCKETS buckets and the part of the oldest still within it. */
  private lastSecond(now: number): number {
    const whole = this.buckets.slice(0, BUCKETS).reduce((sum, b) => sum + b.all, 0);
    return whole + this.buckets[BUCKETS]!.all * this.oldestPart(now);
  }

  /** Callers heard in the last second (at least this one). */
  private callersOfLastSecond(now: number): number {
    for (const [caller, at] of this.callers) {
      if (now - at < 1000) break; // the rest called later
      this.callers.delete(caller);
    }
    return Math.max(1, this.callers.size);
  }

  private roll(now: number): void {
    if (now - this.bucketStart < BUCKET_MS) return;
    const passed = Math.floor((now - this.bucketStart) / BUCKET_MS);
    for (let i = 0; i < Math.min(passed, this.buckets.length); i++) {
      // A bucket ends: steer the calls' rate by how its events' rate compares with the target. The
      // square root damps it: the frames follow the calls with a delay, and more calls bring more
      // frames, so a full correction would overshoot. At most doubled or halved per bucket.
      if (this.callRate !== undefined) {
        // The bucket's rate, or the last second's count when higher: a second that took more (the
        // callers had not heard yet) slows the next, so that the second stays near the target too.
        const rate = Math.max(
          this.buckets[0]!.all * BUCKETS,
          this.buckets.slice(0, BUCKETS).reduce((n, b) => n + b.all, 0),
        );
        const step = Math.min(2, Math.max(0.5, Math.sqrt(this.target() / Math.max(rate, 1))));
        this.callRate = this.bounded(this.callRate * step);
      }
      this.buckets.pop();
      this.buckets.unshift({ calls: 0, all: 0 });
    }
    // Quiet for longer than the buckets remember: nothing holds the calls back any more.
    if (passed > this.buckets.length && this.callRate !== undefined) this.callRate = this.target();
    this.bucketStart = passed > this.buckets.length ? now : this.bucketStart + passed * BUCKET_MS;
  }
}
