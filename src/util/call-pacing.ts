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

/**
 * Pacing starts when the callee's events of the last second reach this share of the limit. Once
 * paced, the callee settles at the limit, above it, so it stays paced; a subscriber of 200 QoS 1
 * messages a second (400 events: its deliveries and its PUBACK frames) is not paced.
 */
const PACE_FROM = 0.9;
/** The smallest share of the events counted as the callers' calls (keeps the spacing finite). */
const MIN_CALL_SHARE = 0.05;

export class CallRateMeter {
  private windowStart = -Infinity;
  /** Paced calls (`record`) this window and the last. */
  private current = 0;
  private previous = 0;
  /** Every event (paced calls and `recordOther`) this window and the last. */
  private currentAll = 0;
  private previousAll = 0;
  private callers = new Set<string>();
  private previousCallers = 0;

  constructor(
    /** Calls per second the callee is designed to take from all callers together (0: no pacing). */
    private readonly limit: number,
  ) {}

  /**
   * Counts an event the callee runs that no paced caller made (for a session: a frame from the
   * gateway, such as the PUBACKs of what it delivered). It counts against the limit: the limit is on
   * everything the object runs, so the callers' share of it shrinks by what else arrives.
   */
  recordOther(now: number): void {
    this.roll(now);
    this.currentAll++;
  }

  /**
   * Counts one call from `caller`; returns the spacing each caller should keep. None while the
   * events of the last second number under 90% of the limit (a lone call, moderate traffic: sent at
   * once, no added latency); above that, the callers together are given the calls' share of the
   * limit (the limit less the other events, in proportion), each caller an equal part of it, so that
   * calls and other events together stay at or near the limit.
   */
  record(caller: string, now: number): CallSpacing {
    this.roll(now);
    this.current++;
    this.currentAll++;
    if (this.callers.size < MAX_COUNTED_CALLERS) this.callers.add(caller);
    if (this.limit <= 0) return 0;
    // Sliding estimates of the last second: this window's, and the part of the previous window's
    // that still falls within the last second.
    const previousPart = Math.max(0, 1 - (now - this.windowStart) / WINDOW_MS);
    const events = this.previousAll * previousPart + this.currentAll;
    if (events < this.limit * PACE_FROM) return 0;
    const calls = this.previous * previousPart + this.current;
    const callShare = Math.max(MIN_CALL_SHARE, Math.min(1, calls / events));
    const callers = Math.max(this.callers.size, this.previousCallers);
    return Math.min(MAX_SPACING_MS, (callers * 1000) / (this.limit * callShare));
  }

  private roll(now: number): void {
    if (now - this.windowStart < WINDOW_MS) return;
    const adjacent = now - this.windowStart < 2 * WINDOW_MS;
    this.previous = adjacent ? this.current : 0;
    this.previousAll = adjacent ? this.currentAll : 0;
    this.currentAll = 0;
    this.previousCallers = adjacent ? this.callers.size : 0;
    this.windowStart = adjacent ? this.windowStart + WINDOW_MS : now;
    this.current = 0;
    this.callers = new Set();
  }
}
