/**
 * What the flows of a session (inbound, outbound, subscriptions, will, re-authentication) share with
 * the Session that owns them: its state, its I/O and the few helpers every flow uses. The Session
 * builds one SessionContext and hands it to each flow; the flows never hold a Session.
 */
import type { BrokerConfig } from "../config";
import type { AclAction, AclPolicy, Identity } from "../auth/acl";
import type { HookContext } from "../hooks";
import { ReasonCode, type ProtocolVersion } from "../protocol/constants";
import type { AckPacket, Packet, PacketWithReason } from "../protocol/packets";
import type { SessionIO } from "./session-io";
import type { SessionMeta, SessionStore } from "./store";

/**
 * Why a packet ends its connection: the v5 reason code and the reason (v5 DISCONNECT's Reason
 * String, the close reason and the log). Packet handlers return one; Session.refuse acts on it.
 */
export interface Refusal {
  reasonCode: number;
  reason: string;
}

export interface SessionContext {
  readonly io: SessionIO;
  readonly config: BrokerConfig;
  readonly store: SessionStore;
  readonly acl: AclPolicy;
  /** The session's values; replaced whole at CONNECT and when the session ends, so read it each time. */
  readonly meta: SessionMeta;
  readonly version: ProtocolVersion;
  /** The identity that owns this session (the one of its connections). */
  readonly identity: Identity;
  /** The v5 reason code for a SUBSCRIBE or PUBLISH the ACL or an authorize hook refuses. */
  readonly denialCode: number;
  /** Whether `connId` is the connection the session believes is live. */
  isCurrent(connId: string): boolean;
  allowed(action: AclAction, topicOrFilter: string): boolean;
  /** The context the user's hooks run with, for this session's client and identity. */
  hookContext(): HookContext;
  /** Sends packets as one frame, each within the client's Maximum Packet Size. */
  send(connId: string, packets: Packet[]): void;
  /** A packet encoded within the client's Maximum Packet Size, as `send` would send it (undefined: it cannot fit). */
  encode(packet: Packet): Uint8Array | undefined;
  /** Adds a v5 Reason String unless the client asked for no problem information. */
  withReason<P extends PacketWithReason>(packet: P, reason: string): P;
  /** Ends the connection for an error of ours (v5 DISCONNECT 0x80), after logging it. */
  serverError(connId: string, err: unknown): Promise<void>;
  /**
   * Whether the next packet waiting to be handled is another PUBACK or PUBCOMP of `connId` (one that
   * frees a place in the in-flight window): its handling will send what waits, for both.
   */
  windowAckFollows(connId: string): boolean;
}

/**
 * A PUBACK/PUBREC/PUBREL/PUBCOMP. An explicit reason code 0 lets the codec send the short v5 form
 * (Remaining Length 2 [MQTT-3.4.2-1]), which every client understands (Paho 1.6 rejects the long one).
 */
export function ackPacket(
  cmd: "puback" | "pubrec" | "pubrel" | "pubcomp",
  messageId: number,
  reasonCode: number = ReasonCode.SUCCESS,
): AckPacket {
  return { cmd, messageId, reasonCode };
}
