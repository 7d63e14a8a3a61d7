/**
 * The publish rate limit of one connection (MAX_PUBLISH_RATE, R PUBLISH/s), as two token buckets
 * that both hold one second's worth and refill at R:
 *
 *   - within R (the burst included): the PUBLISH passes;
 *   - beyond R, while the overflow bucket lasts (up to R more per second): the publisher is slowed,
 *     not cut off. Inbound drops a QoS 0 message and counts it (at most once [MQTT-4.3.1]), and
 *     acknowledges a QoS 1/2 message no sooner than R per second allow (`ackAt`), so a publisher
 *     that waits for its acknowledgements (v5 Receive Maximum, or its own window) runs at R;
 *   - beyond 2R sustained, or a burst of more than 2R: the connection ends, v5 DISCONNECT 0x96
 *     (Message rate too high).
 *
 * Time is passed in (ms), so this is pure and tested on its own.
 */

/** What to do with one PUBLISH: pass it, slow it (QoS 0 dropped, QoS 1/2 acknowledged at `ackAt`), or cut. */
export type RateVerdict = { kind: "pass" } | { kind: "slow"; ackAt: number } | { kind: "cut" };

const PASS: RateVerdict = { kind: "pass" };
const CUT: RateVerdict = { kind: "cut" };

export class PublishRate {
  /** Tokens for PUBLISHes within the rate. */
  private tokens = 0;
  /** Tokens for PUBLISHes beyond it that are slowed rather than cut. */
  private overflow = 0;
  /** When the buckets were last topped up (ms). */
  private at = 0;
  /** When the last slowed QoS 1/2 PUBLISH may be acknowledged (ms): one per 1/R second after the one before. */
  private ackAt = 0;
  /** PUBLISHes since `windowAt`, for the rate the operator log shows. */
  private windowCount = 0;
  private windowAt = 0;

  constructor(private readonly rate: number) {}

  /** A new connection: both buckets full. */
  connected(now: number): void {
    this.tokens = this.overflow = this.rate;
    this.at = this.windowAt = now;
    this.ackAt = 0;
    this.windowCount = 0;
  }

  /** Takes one PUBLISH arriving at `now`. */
  admit(now: number): RateVerdict {
    const refill = ((now - this.at) / 1000) * this.rate;
    this.tokens = Math.min(this.rate, this.tokens + refill);
    this.overflow = Math.min(this.rate, this.overflow + refill);
    this.at = now;
    if (now - this.windowAt >= 1000) {
      this.windowAt = now;
      this.windowCount = 0;
    }
    this.windowCount++;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return PASS;
    }
    if (this.overflow < 1) return CUT;
    this.overflow -= 1;
    this.ackAt = Math.max(this.ackAt, now) + 1000 / this.rate;
    return { kind: "slow", ackAt: this.ackAt };
  }

  /** PUBLISHes per second in the current window (at least the last 1 ms): the rate a log line shows. */
  recentRate(now: number): number {
    return Math.round((this.windowCount * 1000) / Math.max(1, now - this.windowAt));
  }
}
