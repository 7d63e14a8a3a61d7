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
 * While the client is behind (from a drop until the estimate is back under half the budget), what still
 * goes to it is counted; beyond `behindLimit` bytes the connection is stalled and the caller ends it.
 * So a client that reads nothing is sent at most budget + behindLimit bytes once its traffic exceeds
 * the assumed rate. (Below that rate the estimate cannot tell it from a client that reads.)
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
   * Bytes sent since the client fell behind (a drop); undefined once the estimate is back under half
   * the budget. Under a steady flood the bucket hovers at the budget, letting a frame through now and
   * then, and that is not catching up.
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
    this.held = Math.max(0, this.held - (this.readRate * (now - this.drainedAt)) / 1000);
    this.drainedAt = now;
    return this.held;
  }

  /** Decides what of one frame (whole MQTT packets) goes to the client. */
  admit(frame: Uint8Array, now: number): Admitted {
    if (this.estimate(now) < this.budget / 2) this.sentBehind = undefined;
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
    if (this.sentBehind !== undefined) this.sentBehind += out?.length ?? 0;
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
