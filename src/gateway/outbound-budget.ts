/**
 * What one connection may make the gateway hold for its client. workerd's WebSocket has no
 * `bufferedAmount` and `send()` never pushes back (cloudflare/workerd#988): it copies the message
 * into the runtime's outgoing queue, which grows without limit when the peer does not read, inside
 * the gateway isolate that every other connection shares. Nothing tells the Worker what the client
 * has read (QoS 0 has no acknowledgement), so the gateway estimates that queue as a leaky bucket:
 * bytes sent, less what a client is assumed to read at least (`readRate` bytes per second).
 *
 * A QoS 0 PUBLISH that would take the estimate over `budget` is dropped (QoS 0 is at most once, 4.3.1);
 * everything else goes (QoS 1/2 are bounded by the in-flight window, the rest are small answers).
 * From a drop on, the client is behind: what goes to it while the estimate is at or over half the
 * budget, or in a frame that had drops, is counted, and the count is given back at `readRate` for the
 * time the estimate spends under half; beyond `behindLimit` bytes the connection is stalled and the
 * caller ends it. It is no longer behind once the count is back at zero. So a client that reads
 * nothing is sent at most budget + behindLimit bytes once its traffic exceeds the assumed rate, plus
 * what it is assumed to read in the lulls of that traffic. (Below that rate the estimate cannot tell
 * it from a client that reads.)
 *
 * Why given back, not forgotten at the first dip under half the budget: the calls that feed the
 * gateway come with gaps (a session's paced deliveries; on a loaded machine, gaps of 0.5-7 s were
 * logged under the slow-consumer test), and a 0.5 s gap took the estimate under half. Forgetting then
 * let a client that read nothing be sent 7.7 MB while behind, not be stalled, and start again from zero.
 * Pure code: no Cloudflare imports.
 */
import { splitPackets } from "../protocol/framer";
import { PacketType } from "../protocol/constants";
import { joinFrames } from "../protocol/codec";

export interface Admitted {
  /** What to send: the frame itself when nothing was dropped, else the packets kept (undefined: none). */
  frame?: Uint8Array;
  /** QoS 0 PUBLISHes dropped from this frame. */
  dropped: number;
  /** Sent more than `behindLimit` bytes while behind: the connection should end. */
  stalled: boolean;
}

export class OutboundBudget {
  /** Estimated bytes sent to the client and not yet read by it. */
  private held = 0;
  private drainedAt: number;
  /**
   * Bytes sent while behind (from a drop on: while the estimate is at or over half the budget, or in a
   * frame that had drops), less `readRate` for each second the estimate spent under half since;
   * undefined when not behind. Under a steady flood the bucket hovers at the budget, letting a frame
   * through now and then, and that is not catching up.
   */
  private sentBehind?: number;

  constructor(
    private readonly budget: number,
    private readonly readRate: number,
    private readonly behindLimit: number,
    now: number,
  ) {
    this.drainedAt = now;
  }

  /** Estimated bytes waiting for the client now. */
  estimate(now: number): number {
    const read = (this.readRate * Math.max(0, now - this.drainedAt)) / 1000;
    // What the client is assumed to have read once the estimate fell under half the budget (the
    // estimate falls at readRate, so that is the read beyond the part that took it down to half).
    const readUnderHalf = Math.max(0, read - Math.max(0, this.held - this.budget / 2));
    if (this.sentBehind !== undefined && readUnderHalf > 0) {
      this.sentBehind -= readUnderHalf;
      if (this.sentBehind <= 0) this.sentBehind = undefined; // caught up for as long as it was behind
    }
    this.held = Math.max(0, this.held - read);
    this.drainedAt = now;
    return this.held;
  }

  /** Decides what of one frame (whole MQTT packets) goes to the client. */
  admit(frame: Uint8Array, now: number): Admitted {
    const halfFull = this.estimate(now) >= this.budget / 2;
    let kept: Uint8Array[] | undefined;
    let dropped = 0;
    if (this.held + frame.length > this.budget) {
      kept = [];
      // A frame the session built is whole packets; anything else passes as one opaque piece.
      for (const packet of splitPackets(frame) ?? [frame]) {
        if (isQos0Publish(packet) && !this.fits(this.held, packet.length)) {
          dropped++;
          continue;
        }
        kept.push(packet);
        this.held += packet.length;
      }
      if (dropped > 0) this.sentBehind ??= 0;
    } else {
      this.held += frame.length;
    }
    const out = kept === undefined || dropped === 0 ? frame : kept.length === 0 ? undefined : joinFrames(kept);
    // What goes while the client holds half the budget or more, or beside a drop, is sent while behind.
    if (this.sentBehind !== undefined && (halfFull || dropped > 0)) this.sentBehind += out?.length ?? 0;
    return { frame: out, dropped, stalled: (this.sentBehind ?? 0) > this.behindLimit };
  }

  /** A packet fits when the estimate stays within the budget, or nothing is waiting (any size passes alone). */
  private fits(held: number, bytes: number): boolean {
    return held === 0 || held + bytes <= this.budget;
  }
}

function isQos0Publish(packet: Uint8Array): boolean {
  const first = packet[0] ?? 0;
  return first >> 4 === PacketType.PUBLISH && ((first >> 1) & 3) === 0;
}
