/**
 * The QoS 2 flow of messages from the client, as a state machine whose methods are the protocol
 * events. Until PUBREL, a PUBLISH with the same packet id is the same message: it is acknowledged,
 * not routed again [MQTT-4.3.3-10] [MQTT311-4.3.3-2].
 *
 *   publishReceived "new" -> publishAccepted (routing) -> routed -> pubrelReceived -> released
 *
 * A released packet id is kept (the newest RELEASED_IDS_KEPT) only to recognise a PUBREL the client
 * sends again because our PUBCOMP was lost with its connection; a PUBLISH with that id is new.
 *
 * The store keeps each packet id with its message id and whether it is routed (the truth across
 * restarts); the routing in progress is kept here, in memory: it lives no longer than this object.
 */
import type { PubrelMatch, SessionStore } from "./store";

/** The store methods the flow uses (any SessionStore implementation has them). */
export type Qos2Store = Pick<
  SessionStore,
  "inboundQos2" | "inboundQos2Count" | "putInboundQos2" | "markInboundQos2Routed" | "releaseInboundQos2"
>;

/** What a QoS 2 PUBLISH is, given the packet ids awaiting PUBREL. */
export type Qos2Arrival =
  /** A new message: route it (publishAccepted). */
  | { kind: "new" }
  /** Known, but its routing failed or this object restarted during it: route it again under `msgId`. */
  | { kind: "retry"; msgId: string }
  /** Its first copy is being routed now: answer this one when that one is. */
  | { kind: "routing"; routed: Promise<number> }
  /** Routed already: PUBREC again. */
  | { kind: "routed" };

export class InboundQos2 {
  /**
   * Packet ids whose message is being routed now, with its message id, so that a copy of the PUBLISH
   * arriving meanwhile, on this connection or a later one of the same session, is not routed again.
   * The message id tells an entry of an ended session (clean start) from the new session's use of
   * the packet id.
   */
  private readonly routing = new Map<number, { msgId: string; routed: Promise<number> }>();

  constructor(private readonly store: Qos2Store) {}

  /** A QoS 2 PUBLISH arrived with `packetId`: is it new, or a copy of one awaiting PUBREL? */
  publishReceived(packetId: number): Qos2Arrival {
    const known = this.store.inboundQos2(packetId);
    if (!known) return { kind: "new" };
    if (known.routed) return { kind: "routed" };
    const routing = this.routing.get(packetId);
    if (routing?.msgId === known.msgId) return { kind: "routing", routed: routing.routed };
    return { kind: "retry", msgId: known.msgId };
  }

  /**
   * The message `msgId` under `packetId` is accepted: recorded, then routed by `route` (the PUBREC
   * waits for the result). Routed is recorded when routing completes, whatever became of the
   * connection that sent it: the client resends the PUBLISH after a drop, and that copy must not be
   * routed again. Only this message's row is marked (a PUBREL or a clean start may have removed it
   * meanwhile).
   */
  publishAccepted(packetId: number, msgId: string, route: () => Promise<number>): Promise<number> {
    this.store.putInboundQos2(packetId, msgId, false);
    const routed = route();
    this.routing.set(packetId, { msgId, routed });
    const settled = () => {
      if (this.routing.get(packetId)?.routed === routed) this.routing.delete(packetId);
    };
    routed.then(() => this.store.markInboundQos2Routed(packetId, msgId)).then(settled, settled);
    return routed;
  }

  /** A refused message (3.1.1 has no code for it): its flow completes as if routed, and nothing is. */
  publishRefused(packetId: number): void {
    this.store.putInboundQos2(packetId, `refused:${packetId}`, true);
  }

  /**
   * PUBREL: the flow of `packetId` ends ("released"), or ended already and this PUBREL is a resend
   * ("repeated"); "unknown" when no message awaited it, now or among the newest released.
   */
  pubrelReceived(packetId: number): PubrelMatch {
    return this.store.releaseInboundQos2(packetId);
  }

  /** Messages received and awaiting PUBREL (they count towards our Receive Maximum). */
  awaitingRelease(): number {
    return this.store.inboundQos2Count();
  }
}
