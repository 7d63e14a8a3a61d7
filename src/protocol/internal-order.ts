/**
 * Order on the internal WebSocket between the gateway and a Session object. The gateway numbers
 * every frame it forwards; the Session hands the frames' packets to the session core in that order.
 *
 * Why: under workerd, a hibernatable WebSocket's messages reached the Session object out of order
 * (a PUBACK sent just before DISCONNECT was handled after it, so the acknowledged message was sent
 * again on resumption; test/workers/ack-then-disconnect.test.ts). MQTT needs a connection's packets
 * handled in the order sent [MQTT-4.6.0-2..4], so the order is carried explicitly.
 *
 * The frame format (the number and the packets) is internal-frame.ts.
 */
/** Frames held while waiting for an earlier one; beyond this the held ones are released in order. */
export const MAX_HELD_FRAMES = 256;

/** Puts one connection's frames (or one sender's calls: util/ordered-calls.ts) back in order. */
export class InboundOrder<T> {
  private readonly held = new Map<number, T>();

  /** `next`: the sequence number expected first (0 for a new connection). */
  constructor(private next: number) {}

  /** Something arrived early and waits for an earlier number. */
  get holding(): boolean {
    return this.held.size > 0;
  }

  /** The number expected next. */
  get expected(): number {
    return this.next;
  }

  /**
   * The frames now ready, in order (none while an earlier one is missing). `after`, when the sender
   * knows it: every number below it has been settled (handled, or lost on the way), so none of them
   * is waited for.
   */
  accept(seq: number, frame: T, after?: number): T[] {
    if (seq < this.next) return [frame]; // not expected twice on a reliable socket; handled, not lost
    if (seq === this.next && this.held.size === 0) {
      this.next++; // the usual case: in order, nothing waiting
      return [frame];
    }
    this.held.set(seq, frame);
    if (after !== undefined && after > this.next) this.next = after;
    if (this.held.size > MAX_HELD_FRAMES) this.next = Math.min(...this.held.keys()); // too many held: stop waiting
    const ready: T[] = [];
    let f: T | undefined;
    while ((f = this.held.get(this.next)) !== undefined) {
      this.held.delete(this.next);
      ready.push(f);
      this.next++;
    }
    return ready;
  }

  /** Stops waiting: everything held, in order (the missing ones, if they come, are handled late). */
  releaseAll(): T[] {
    const seqs = [...this.held.keys()].sort((a, b) => a - b);
    const ready = seqs.map((seq) => this.held.get(seq)!);
    this.held.clear();
    const last = seqs.at(-1);
    if (last !== undefined) this.next = last + 1;
    return ready;
  }
}
