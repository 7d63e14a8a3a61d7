/**
 * The session's boundary: what it needs from the world around it (SessionIO), what it reports, and
 * the facts and descriptions it exchanges with its Durable Object shell. Re-exported by session.ts.
 */
import type { BrokerHooks, HookContext } from "../hooks";
import type { Identity } from "../auth/acl";
import type { QoS, RoutedMessage, Subscription } from "../protocol/message";
import type { PresenceRecord } from "../registry/client-registry";
import type { OutboundSummary, SessionMeta } from "./store";

/** What the session needs from the world around it. */
export interface SessionIO {
  /** Sends one frame of encoded packets on a connection (no-op if it is gone). */
  send(connId: string, frame: Uint8Array): void;
  /** Closes a connection (after any DISCONNECT the session sent). */
  close(connId: string, reason: string): void;
  /**
   * Routes a message to the shard that owns its topic; resolves, with the number of matching
   * sessions and groups, once it is durable for every QoS>0 match.
   */
  route(message: RoutedMessage): Promise<number>;
  /** Hands a message this session took through a shared subscription to another member. */
  redistribute(shareFilter: string, leaving: string, message: RoutedMessage): Promise<void>;
  /**
   * Runs the operator's rules (RULES, src/rules) on a message the client published, after the ACL and
   * the hooks: undefined when no rule matched; else settles when the acknowledgement may go, and
   * rejects when an action it must wait for failed (docs/RULES.md). Absent: no rules.
   */
  applyRules?(message: RoutedMessage): Promise<void> | undefined;
  /** Registers subscriptions with their shards; returns retained messages for `retainedFor` filters. */
  subscribe(clientId: string, subs: Subscription[], retainedFor: string[]): Promise<RoutedMessage[][]>;
  /** Removes subscriptions from their shards. */
  unsubscribe(clientId: string, filters: string[]): Promise<void>;
  /**
   * Keeps the values of a session that writes no row (Session.saveMeta) with its live connection,
   * so that they outlive hibernation as long as the connection does (SessionSockets.keepMeta).
   */
  keepWithConnection(connId: string, meta: SessionMeta): void;
  /** The gateway handed routing back (ROUTE_AT_EDGE): remembered with the connection across hibernation. */
  routeAtSession?(connId: string): void;
  /** Schedules the one alarm (undefined: none). */
  setAlarm(at: number | undefined): void;
  /** Runs `fn` after `ms` milliseconds, in this object's lifetime (setTimeout). */
  later(ms: number, fn: () => void): void;
  now(): number;
  newId(): string;
  /** Tells the outside world (registry, metrics, user hooks) what happened; never awaited. */
  report(event: SessionEvent): void;
  /** The user's hooks and the context they run with (src/hooks.ts). */
  hooks: BrokerHooks;
  hookContext(clientId: string, identity: Identity): HookContext;
}

/** What a session reports, off the message path: connections starting and ending, drops. */
export type SessionEvent =
  | { kind: "connected"; record: PresenceRecord; identity: Identity }
  | { kind: "disconnected"; clientId: string; connId: string; version: number; identity: Identity }
  | { kind: "dropped"; clientId: string; reason: DropReason; count: number }
  /** The queue depth crossed a reporting level (see queueLevel); 0 once it is back under the first. */
  | { kind: "queue"; clientId: string; level: number }
  /** A `$SYS/...` subscription was made: the `$SYS` publisher should run. */
  | { kind: "sys-watch"; clientId: string };

/** Why a session dropped a message (documented outcomes, counted in metrics). */
export type DropReason = "queue_full" | "expired" | "too_large_for_client" | "publish_rate";

/** What the admin API shows of one session. */
export interface SessionDescription {
  clientId: string;
  connected: boolean;
  protocolVersion: number;
  username?: string;
  remoteAddress?: string;
  connectedAt?: number;
  expiryInterval: number;
  /** Epoch ms at which the offline session ends. */
  expiresAt?: number;
  subscriptions: Subscription[];
  queued: number;
  inflight: number;
  droppedQueueFull: number;
  hasWill: boolean;
  /** The will as stored (payload size, not the payload). */
  will?: { topic: string; qos: QoS; retain: boolean; delay: number; bytes: number };
  /** The first stored outbound QoS 1/2 messages (queued and in flight), oldest first. */
  outbound: OutboundSummary[];
}

/** Facts the gateway established about a connection before handing it over. */
export interface ConnectionInfo {
  connId: string;
  clientId: string;
  /** The gateway assigned the client id (v5: returned as Assigned Client Identifier). */
  assignedClientId: boolean;
  /** Keep-alive the gateway enforces when it differs from the client's (v5 Server Keep Alive). */
  serverKeepAlive?: number;
  /** Who the gateway authenticated (absent: anonymous). */
  identity?: Identity;
  /** Enhanced authentication's final data for CONNACK (v5 [MQTT-4.12.0-?]). */
  authResponse?: { method: string; data: string };
  /** The client's address as the edge saw it. */
  remoteAddress?: string;
  /** The gateway routes the connection's QoS 0/1 messages and sends their PUBACKs (protocol/internal-frame.ts). */
  routeAtEdge?: boolean;
}

/** Why a connection ended, for the operator log: a reason and, where one was sent, the v5 code. */
export interface EndCause {
  reason: string;
  code?: string;
}
