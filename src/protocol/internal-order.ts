/**
 * Order on the internal WebSocket between the gateway and a Session object. The gateway numbers
 * every packet it forwards; the Session hands packets to the session core in that order.
 *
 * Why: under workerd, a hibernatable WebSocket's messages reached the Session object out of order
 * (a PUBACK sent just before DISCONNECT was handled after it, so the acknowledged message was sent
 * again on resumption; test/workers/ack-then-disconnect.test.ts). MQTT needs a connection's packets
 * handled in the order sent [MQTT-4.6.0-2..4], so the order is carried explicitly.
 *
 * Frame: 4 bytes of sequence number (big-endian, from 0 per connection), then one MQTT packet.
 */

/** Packets held while waiting for an earlier one; beyond this the held ones are released in order. */
export const MAX_HELD_PACKETS = 256;

export function sequenced(seq: number, packet: Uint8Array): Uint8Array {
  const out = new Uint8Array(packet.length + 4);
  out[0] = (seq >>> 24) & 255;
  out[1] = (seq >>> 16) & 255;
  out[2] = (seq >>> 8) & 255;
  out[3] = seq & 255;
  out.set(packet, 4);
  return out;
}

export function unsequenced(frame: Uint8Array): { seq: number; packet: Uint8Array } | undefined {
  if (frame.length < 5) return undefined;
  const seq = ((frame[0] << 24) | (frame[1] << 16) | (frame[2] << 8) | frame[3]) >>> 0;
  return { seq, packet: frame.subarray(4) };
}

/** Puts one connection's packets back in order. */
export class InboundOrder {
  private readonly held = new Map<number, Uint8Array>();

  /** `next`: the sequence number expected first (0 for a new connection). */
  constructor(private next: number) {}

  /** The packets now ready, in order (none while an earlier one is missing). */
  accept(seq: number, packet: Uint8Array): Uint8Array[] {
    if (seq < this.next) return [packet]; // not expected twice on a reliable socket; handled, not lost
    this.held.set(seq, packet);
    if (seq > this.next && this.held.size <= MAX_HELD_PACKETS) return [];
    if (seq > this.next) this.next = Math.min(...this.held.keys()); // too many held: stop waiting
    const ready: Uint8Array[] = [];
    let p: Uint8Array | undefined;
    while ((p = this.held.get(this.next)) !== undefined) {
      this.held.delete(this.next);
      ready.push(p);
      this.next++;
    }
    return ready;
  }
}
