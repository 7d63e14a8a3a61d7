/**
 * How hot a Durable Object is, as its callers should hear it: the callee counts the calls it receives
 * and answers each with the spacing every caller should keep between its calls, so that all callers
 * together stay under a design rate (a Durable Object handles about 1,000 requests a second; the
 * design keeps a session under half of that).
 *
 * Why the callee decides: a TopicShard sees only its own calls, but the rate that matters is the sum
 * over every shard calling the same session (a `devices/+/telemetry` backend is called by all of
 * them). The session sees that sum and how many shards make it.
 */

/** Length of the counting window. */
const WINDOW_MS = 1000;
/**
 * Longest spacing asked for: a message waits at most this long for its call, whatever the setting
 * (a very low DELIVERY_CALL_RATE is then exceeded rather than delaying every delivery by seconds).
 */
export const MAX_SPACING_MS = 1000;
/** Distinct callers counted per window (a deployment has at most 1,024 shards: config.ts). */
const MAX_COUNTED_CALLERS = 1024;

/** One incoming call's answer to its caller: the milliseconds to keep between its next calls (0: none). */
export type CallSpacing = number;

export class CallRateMeter {
  private windowStart = -Infinity;
  private current = 0;
  private previous = 0;
  private callers = new Set<string>();
  private previousCallers = 0;

  constructor(
    /** Calls per second the callee is designed to take from all callers together (0: no pacing). */
    private readonly limit: number,
  ) {}

  /**
   * Counts one call from `caller`; returns the spacing each caller should keep. None while the
   * calls of the last second number under half the limit (a lone call, moderate traffic: sent at
   * once, no added latency); above that, each of the callers heard is given an equal share of the
   * limit, so their calls together stay at or under it.
   */
  record(caller: string, now: number): CallSpacing {
    this.roll(now);
    this.current++;
    if (this.callers.size < MAX_COUNTED_CALLERS) this.callers.add(caller);
    if (this.limit <= 0) return 0;
    // Sliding estimate of the calls of the last second: this window's, and the part of the previous
    // window's that still falls within the last second.
    const lastSecond = this.previous * Math.max(0, 1 - (now - this.windowStart) / WINDOW_MS) + this.current;
    if (lastSecond < this.limit / 2) return 0;
    const callers = Math.max(this.callers.size, this.previousCallers);
    return Math.min(MAX_SPACING_MS, (callers * 1000) / this.limit);
  }

  private roll(now: number): void {
    if (now - this.windowStart < WINDOW_MS) return;
    const adjacent = now - this.windowStart < 2 * WINDOW_MS;
    this.previous = adjacent ? this.current : 0;
    this.previousCallers = adjacent ? this.callers.size : 0;
    this.windowStart = adjacent ? this.windowStart + WINDOW_MS : now;
    this.current = 0;
    this.callers = new Set();
  }
}
