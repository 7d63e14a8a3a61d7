/**
 * Routing at the edge (ROUTE_AT_EDGE): the QoS 0/1 messages a client's Session object accepted come
 * back to the gateway as edge orders (protocol/internal-frame.ts), and the gateway routes them and
 * sends the PUBACKs. The Session object then has no call pending on a shard for its client's
 * publishes, so it is not billed for the time a shard takes (a Worker's wall time is not billed,
 * only its CPU: docs/COST.md).
 *
 * Every guarantee of the session's own path holds here:
 * - PUBACKs leave in the order of the PUBLISHes [MQTT-4.6.0-2], refusals the session decided (0x87,
 *   0x99) and acknowledgements slowed by the publish rate included: all come through one chain;
 * - a message is acknowledged only once its shard answered (durable for every QoS 1 match); if the
 *   call fails, no PUBACK is sent, then or after, and the connection ends (the client resends);
 * - the messages reach each shard over numbered calls, in the order the session handed them over
 *   [MQTT-4.6.0-6] (ShardLinks, as a session's).
 * Pure code: the shard calls are given (`route`).
 */
import { encodePacket } from "../protocol/codec";
import { matchCode, type ProtocolVersion } from "../protocol/constants";
import type { EdgeOrder } from "../protocol/internal-frame";
import type { RoutedMessage } from "../protocol/message";

export interface EdgeRouteIO {
  /** Routes a message to its shard; resolves with its match count once durable. */
  route(message: RoutedMessage): Promise<number>;
  /** Sends an encoded PUBACK to the client. */
  send(packet: Uint8Array): void;
  /** Routing failed: the connection ends without the PUBACK. */
  fail(err: unknown): void;
  /** Every message handed over before the hand-back is routed and acknowledged: the session routes now. */
  handedBack(): void;
  later(ms: number, fn: () => void): void;
  now(): number;
}

export class EdgeRouter {
  /** QoS 1 PUBACKs sent so far (the session counts its Receive Maximum with it). */
  private ackedCount = 0;
  /** QoS 1 orders received so far, each a PUBACK to send (the session's count again after it hibernated). */
  private receivedCount = 0;
  /**
   * The PUBACKs not sent yet, in PUBLISH order. Bounded by RECEIVE_MAXIMUM: the session counts every
   * QoS 1 PUBLISH it hands over until the gateway says it was acknowledged, and ends a connection that
   * sends more (0x93) [MQTT-3.3.4-9].
   */
  private acks: Promise<void> = Promise.resolve();
  private failed = false;
  /** Messages whose shard has not answered yet (bounded as a session's: RECEIVE_MAXIMUM, the publish rate). */
  private readonly inFlight = new Set<Promise<number>>();

  constructor(
    private readonly version: ProtocolVersion,
    private readonly io: EdgeRouteIO,
  ) {}

  get acked(): number {
    return this.ackedCount;
  }

  get received(): number {
    return this.receivedCount;
  }

  /** Messages whose shard has not answered yet. */
  get routing(): number {
    return this.inFlight.size;
  }

  /** Resolves once every message handed over so far has its shard's answer (or failed). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  /**
   * One edge order from the session. "handed-back" follows the orders of every PUBLISH before the
   * hand-back: once those are routed and their PUBACKs sent, the session may route (`handedBack`).
   */
  handle(order: EdgeOrder): void {
    if (order.kind === "handed-back") {
      void (async () => {
        await this.settled();
        await this.acks;
        if (!this.failed) this.io.handedBack();
      })();
      return;
    }
    if (order.kind === "ack") {
      this.receivedCount++;
      return this.acknowledge(() => order.packet);
    }
    const routed = this.io.route(order.message);
    this.inFlight.add(routed);
    const done = () => void this.inFlight.delete(routed);
    routed.then(done, done);
    // QoS 0: at most once, nothing to answer [MQTT-4.3.1].
    if (order.packetId === 0) return void routed.catch(() => undefined);
    this.receivedCount++;
    const notBefore = order.ackDelayMs > 0 ? this.io.now() + order.ackDelayMs : 0;
    this.acknowledge(async () => {
      const matched = await routed;
      const wait = notBefore - this.io.now();
      if (wait > 0) await new Promise<void>((resolve) => this.io.later(wait, resolve));
      const code = matchCode(this.version, matched);
      return encodePacket({ cmd: "puback", messageId: order.packetId, reasonCode: code }, this.version);
    });
  }

  /** Sends a PUBACK after every earlier one; none after a failure. */
  private acknowledge(ack: () => Uint8Array | Promise<Uint8Array>): void {
    const previous = this.acks;
    this.acks = (async () => {
      await previous;
      let packet: Uint8Array;
      try {
        packet = await ack();
      } catch (err) {
        if (!this.failed) this.io.fail(err);
        this.failed = true;
        return;
      }
      if (this.failed) return;
      this.ackedCount++;
      this.io.send(packet);
    })();
  }
}
