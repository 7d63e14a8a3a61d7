/**
 * The MQTT session state machine, one per client id: CONNECT/CONNACK, subscriptions, QoS 0/1/2 in
 * both directions, the will, expiry. It owns no I/O: it calls its SessionIO for sockets, shards and
 * alarms, and keeps its state in a SessionStore. The Durable Object shell wires both.
 */
import type { BrokerConfig } from "../config";
import { encodeWithin, joinFrames, parsePacket, type Packet } from "../protocol/codec";
import { ConnectReturnCode, ReasonCode, SUBACK_FAILURE_V3, type ProtocolVersion } from "../protocol/constants";
import { isAllowed, subscribeGrant, type AclAction, type AclPolicy, type Identity } from "../auth/acl";
import { unknownUserPolicy, type UserDirectory } from "../auth/stored-credential";
import { startScram, type ScramExchange } from "../auth/scram";
import type { Delivery, DeliveryOutcome, QoS, RoutedMessage, Subscription, UserProperty } from "../protocol/message";
import { messagePropertiesFrom, remainingExpiry } from "../protocol/properties";
import { isBrokerOnlyTopic, parseSharedFilter, topicFilterError, topicNameError } from "../protocol/topic";
import { isUtf8, packetViolation, publishPropertiesProblem } from "../protocol/validate";
import type { PresenceRecord } from "../registry/client-registry";
import { fromHook, runHook, type BrokerHooks, type HookContext, type HookMessage } from "../hooks";
import { logText } from "../observability/log-text";
import { logEvent, SampledLog } from "../observability/log";
import { hexCode } from "../protocol/internal-close";
import {
  OutState,
  SqliteSessionStore,
  type OutboundRow,
  type OutboundSummary,
  type SessionMeta,
  type SessionStore,
  type StoredWill,
} from "./store";

/**
 * How long after a failed shared-subscription hand-over it is tried again (alarm): 5 s, doubling
 * with each failure in a row up to 5 min, so a shard that stays unavailable is not called every 5 s.
 */
const HANDOVER_RETRY_MS = 5000;
const HANDOVER_RETRY_MAX_MS = 300_000;

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
  /** Registers subscriptions with their shards; returns retained messages for `retainedFor` filters. */
  subscribe(clientId: string, subs: Subscription[], retainedFor: string[]): Promise<RoutedMessage[][]>;
  /** Removes subscriptions from their shards. */
  unsubscribe(clientId: string, filters: string[]): Promise<void>;
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

/** Queue depths are reported only at these levels: none for the shallow queues of normal traffic. */
export const QUEUE_REPORT_FLOOR = 16;

/** The reporting level of a queue depth: 0 below the floor, else the power of two at or under it. */
export function queueLevel(depth: number): number {
  return depth < QUEUE_REPORT_FLOOR ? 0 : 2 ** Math.floor(Math.log2(depth));
}

/** Why a session dropped a message (documented outcomes, counted in metrics). */
export type DropReason = "queue_full" | "expired" | "too_large_for_client";

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
}

/** How many outbound messages describe() lists. */
const DESCRIBED_OUTBOUND = 20;

const willSummary = (w: StoredWill) => ({ topic: w.topic, qos: w.qos, retain: w.retain, delay: w.delay, bytes: w.payload.length });

/** The identity of a session no connection has owned yet (anonymous). */
const NO_IDENTITY: Identity = {};

/** A QoS 1 message in flight to the client and not written to SQLite (Session.unstored). */
interface UnstoredMessage {
  delivery: Delivery;
  /** Its place in the outbound order, given out when it was sent. */
  seq: number;
  /** Settles the shard's `deliver` call for this message (acknowledged or written). */
  settle: () => void;
}

/** mqtt-packet objects as we read and build them (its types are narrower than the wire allows). */
type AnyPacket = Record<string, any>;

export class Session {
  private meta: SessionMeta;
  private readonly store: SessionStore;
  /** Serialises inbound packet handling so acknowledgements keep the order of their PUBLISHes [MQTT-4.6.0-2]. */
  private chain: Promise<void> = Promise.resolve();
  /**
   * QoS 1 messages sent to the live connection that are neither acknowledged nor written yet, by
   * packet id (see deliver). Each has a shard waiting on its `deliver` call, so none is ever only
   * here: if this object dies, that call fails and the publisher is not acknowledged.
   */
  private readonly unstored = new Map<number, UnstoredMessage>();
  /** Topic aliases of the live connection, cached from SQLite (the truth across hibernation). */
  private aliasesIn = new Map<number, string>();
  private aliasesOut?: Map<string, number>;

  private readonly acl: AclPolicy;
  /** Users for SCRAM re-authentication. */
  private readonly users: UserDirectory;
  /** A re-authentication in progress on the live connection (in memory: it spans two packets). */
  private reauth?: ScramExchange;

  constructor(
    sql: SqlStorage,
    private readonly io: SessionIO,
    private readonly config: BrokerConfig,
    acl: AclPolicy = { rules: [], defaultAllow: true },
    users: UserDirectory = { users: new Map(), unknownUsers: unknownUserPolicy("", new Map()) },
  ) {
    this.acl = acl;
    this.users = users;
    this.store = new SqliteSessionStore(sql);
    this.meta = this.store.loadMeta();
  }

  /** The identity that owns this session (the one of its connections). */
  private get identity(): Identity {
    return this.meta.identity ?? NO_IDENTITY;
  }

  /** The v5 reason code for a SUBSCRIBE or PUBLISH the ACL or an authorize hook refuses. */
  private get denialCode(): number {
    return this.acl.hideDenialReason ? ReasonCode.UNSPECIFIED_ERROR : ReasonCode.NOT_AUTHORIZED;
  }

  private allowed(action: AclAction, topicOrFilter: string, identity = this.identity): boolean {
    return isAllowed(this.acl, identity, this.meta.clientId ?? "", action, topicOrFilter);
  }

  /**
   * Whether messages delivered to this session need the read check: some subscription is granted
   * only in part (a deny rule narrows a wildcard, or it is wider than the allow rules). Worked out
   * once per identity and set of subscriptions; a session the ACL wholly allows checks nothing per
   * message. `readCheck` is reset wherever the subscriptions change.
   */
  private readCheckNeeded(): boolean {
    const identity = this.identity;
    if (this.readCheck?.identity !== identity) {
      const clientId = this.meta.clientId ?? "";
      const partial = (filter: string) => subscribeGrant(this.acl, this.identity, clientId, parseSharedFilter(filter)?.filter ?? filter) !== "full";
      this.readCheck = { identity, needed: this.store.subscriptions().some((s) => partial(s.filter)) };
    }
    return this.readCheck.needed;
  }
  private readCheck?: { identity: Identity; needed: boolean };

  /** Publish rate limiter (token bucket, per connection, in memory). */
  private tokens = 0;
  private tokensAt = 0;
  private takePublishToken(): boolean {
    const now = this.io.now();
    const rate = this.config.maxPublishRate;
    this.tokens = Math.min(rate, this.tokens + ((now - this.tokensAt) / 1000) * rate);
    this.tokensAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  get clientId(): string | undefined {
    return this.meta.clientId;
  }

  get version(): ProtocolVersion {
    return (this.meta.version ?? 4) as ProtocolVersion;
  }

  /** Id of the connection the session believes is live, if any. */
  get liveConnection(): string | undefined {
    return this.meta.connId;
  }

  isCurrent(connId: string): boolean {
    return this.meta.connId === connId;
  }

  /** Handles one whole packet from the gateway, in arrival order. */
  receive(info: ConnectionInfo, bytes: Uint8Array, version: ProtocolVersion | undefined): Promise<void> {
    const run = () => this.handle(info, bytes, version).catch((err) => this.fail(info.connId, err));
    this.chain = this.chain.then(run, run);
    return this.chain;
  }

  private async handle(info: ConnectionInfo, bytes: Uint8Array, version: ProtocolVersion | undefined): Promise<void> {
    const parsed = parsePacket(bytes, version);
    if ("error" in parsed) {
      if (version === undefined || !this.isCurrent(info.connId)) return this.io.close(info.connId, "malformed CONNECT");
      return this.protocolError(info.connId, parsed.reasonCode ?? ReasonCode.MALFORMED_PACKET, parsed.error);
    }
    const packet = parsed.packet as AnyPacket;
    if (packet.cmd === "connect") {
      // [MQTT-3.1.0-2] a second CONNECT on a connection is a protocol error
      if (version !== undefined) return this.protocolError(info.connId, ReasonCode.PROTOCOL_ERROR, "second CONNECT");
      return this.connect(info, packet);
    }
    if (!this.isCurrent(info.connId)) return; // a stale connection (taken over or ended)
    const violation = packetViolation(packet);
    if (violation) return this.protocolError(info.connId, violation.reasonCode, violation.reason);
    switch (packet.cmd) {
      case "publish":
        return this.onPublish(info.connId, packet);
      case "puback":
        return this.onPuback(packet);
      case "pubrec":
        return this.onPubrec(info.connId, packet);
      case "pubrel":
        return this.onPubrel(info.connId, packet);
      case "pubcomp":
        return this.onPubcomp(packet);
      case "subscribe":
        return this.onSubscribe(info.connId, packet);
      case "unsubscribe":
        return this.onUnsubscribe(info.connId, packet);
      case "pingreq":
        return this.send(info.connId, [{ cmd: "pingresp" }]);
      case "disconnect":
        return this.onDisconnect(info.connId, packet);
      case "auth":
        return this.onAuth(info, packet);
      default:
        return this.protocolError(info.connId, ReasonCode.PROTOCOL_ERROR, `unexpected ${packet.cmd}`);
    }
  }

  // --- CONNECT ----------------------------------------------------------------------------

  private async connect(info: ConnectionInfo, packet: AnyPacket): Promise<void> {
    const version = packet.protocolVersion as ProtocolVersion;
    const now = this.io.now();
    const cleanStart = packet.clean !== false;
    const previous = this.meta;
    const existed = previous.clientId !== undefined && !(previous.expireAt !== undefined && now >= previous.expireAt);
    const identity = info.identity ?? {};
    const owner = identity.username ?? "";
    // A client may only resume or take over a session that its own identity owns.
    const foreign = existed && previous.owner !== undefined && previous.owner !== owner;
    const willRefused = packet.will && !isAllowed(this.acl, identity, info.clientId, "publish", packet.will.topic);
    if (foreign || willRefused) {
      const reason = foreign ? "session owned by another identity" : "will topic not authorized";
      // no Reason String: whether someone else's session exists under this id is not told
      const connack = version === 5
        ? { cmd: "connack", sessionPresent: false, reasonCode: ReasonCode.NOT_AUTHORIZED }
        : { cmd: "connack", sessionPresent: false, returnCode: ConnectReturnCode.NOT_AUTHORIZED };
      const bytes = encodeWithin(connack as Packet, version, clientMaxPacketSize(version, packet));
      if (bytes) this.io.send(info.connId, bytes);
      logEvent("warn", "connection.refused", { clientId: info.clientId, username: identity.username, remoteAddress: info.remoteAddress, reason, code: codeText(version, 0x87, 5) });
      return this.io.close(info.connId, reason);
    }

    // Messages in flight to the older connection are written before anything reads the queue.
    this.storeUnacknowledged(true);
    // Session takeover [MQTT-3.1.4-3]: the older connection gets DISCONNECT 0x8E and is closed.
    if (previous.connId && previous.connId !== info.connId) {
      if ((previous.version ?? 4) === 5) {
        const disconnect = encodeWithin({ cmd: "disconnect", reasonCode: ReasonCode.SESSION_TAKEN_OVER } as Packet, 5, previous.clientMaxPacketSize);
        if (disconnect) this.io.send(previous.connId, disconnect);
      }
      this.io.close(previous.connId, "session taken over");
      logEvent("info", "connection.ended", { clientId: info.clientId, reason: "session taken over", code: (previous.version ?? 4) === 5 ? "0x8e" : undefined });
    }
    // The will of a connection that ended without DISCONNECT: sent now unless this reconnect, to the
    // same session, arrives within its delay [MQTT-3.1.3-9].
    const pendingWill = previous.will;
    const willWasArmed = pendingWill && (previous.connId !== undefined || previous.willAt !== undefined);
    if (pendingWill && willWasArmed && (cleanStart || pendingWill.delay === 0 || !existed)) {
      await this.publishWill(pendingWill).catch(() => undefined);
    }

    const sessionPresent = existed && !cleanStart;
    if (!sessionPresent && previous.clientId !== undefined) {
      await this.dropSubscriptions();
      await this.handOverShared(); // the previous session ended
    }
    if (!sessionPresent) {
      this.store.clearState();
      this.readCheck = undefined;
      this.queueGone();
    }
    this.store.clearTopicAliases(); // aliases live as long as one network connection [MQTT-3.3.2-7]
    this.aliasesIn = new Map();
    this.aliasesOut = new Map();

    const requestedExpiry =
      version === 5 ? Number(packet.properties?.sessionExpiryInterval ?? 0) : cleanStart ? 0 : this.config.maxSessionExpiry;
    const expiryInterval = Math.min(requestedExpiry, this.config.maxSessionExpiry);
    this.tokens = this.config.maxPublishRate;
    this.tokensAt = now;
    this.meta = {
      clientId: info.clientId,
      owner,
      identity,
      version,
      expiryInterval,
      connId: info.connId,
      will: packet.will ? willFrom(packet) : undefined,
      clientReceiveMax: version === 5 ? packet.properties?.receiveMaximum : undefined,
      clientMaxPacketSize: clientMaxPacketSize(version, packet),
      clientTopicAliasMax: version === 5 ? packet.properties?.topicAliasMaximum : undefined,
      // [MQTT-3.1.2-28] Request Problem Information defaults to 1
      problemInfo: version === 5 ? packet.properties?.requestProblemInformation !== false : undefined,
      droppedQueueFull: sessionPresent ? previous.droppedQueueFull : undefined,
      queueLevel: sessionPresent ? previous.queueLevel : undefined,
      connectedAt: now,
      remoteAddress: info.remoteAddress,
    };
    this.store.writeMeta(this.meta);
    this.io.setAlarm(this.nextAlarm());

    const connack: AnyPacket = { cmd: "connack", sessionPresent };
    if (version === 5) {
      connack.reasonCode = ReasonCode.SUCCESS;
      connack.properties = this.connackProperties(info, requestedExpiry, expiryInterval);
    } else {
      connack.returnCode = 0;
    }
    const connackBytes = encodeWithin(connack as Packet, version, this.meta.clientMaxPacketSize);
    if (connackBytes) this.io.send(info.connId, connackBytes);
    else {
      // Not even without its optional properties does the CONNACK fit the client's Maximum Packet
      // Size (an Assigned Client Identifier, say): it must not be sent [MQTT-3.1.2-24], and without
      // it the client cannot go on. The connection ends as if the network had failed.
      this.io.close(info.connId, "CONNACK exceeds the client's Maximum Packet Size");
      return this.connectionEnded(info.connId, { reason: "CONNACK exceeds the client's Maximum Packet Size" });
    }
    logEvent("info", "connection.accepted", {
      clientId: info.clientId,
      username: identity.username,
      remoteAddress: info.remoteAddress,
      protocol: version === 5 ? "5.0" : version === 4 ? "3.1.1" : "3.1",
      cleanStart,
      sessionPresent,
      keepAlive: info.serverKeepAlive ?? packet.keepalive,
    });
    this.io.report({
      kind: "connected",
      identity,
      record: {
        clientId: info.clientId,
        connId: info.connId,
        connectedAt: now,
        version,
        username: identity.username,
        remoteAddress: info.remoteAddress,
        sessionPresent,
        expiryInterval,
      },
    });
    // [MQTT-4.4.0-1] resend unacknowledged PUBLISH (with DUP) and PUBREL packets of a resumed session
    if (sessionPresent) this.resendInflight(info.connId);
    this.pump();
    if (this.meta.queueLevel) this.checkQueueLevel();
  }

  private connackProperties(info: ConnectionInfo, requested: number, granted: number): Record<string, unknown> {
    const props: Record<string, unknown> = {
      receiveMaximum: this.config.receiveMaximum,
      maximumPacketSize: this.config.maxPacketSize,
      topicAliasMaximum: this.config.topicAliasMaximum,
      retainAvailable: true,
      wildcardSubscriptionAvailable: true,
      subscriptionIdentifiersAvailable: true,
      sharedSubscriptionAvailable: true,
    };
    if (info.assignedClientId) props.assignedClientIdentifier = info.clientId;
    if (granted !== requested) props.sessionExpiryInterval = granted;
    if (info.serverKeepAlive !== undefined) props.serverKeepAlive = info.serverKeepAlive;
    if (info.authResponse) {
      props.authenticationMethod = info.authResponse.method;
      props.authenticationData = Buffer.from(info.authResponse.data, "base64");
    }
    return props;
  }

  // --- PUBLISH from the client ------------------------------------------------------------

  private async onPublish(connId: string, packet: AnyPacket): Promise<void> {
    if (this.version === 5) {
      const problem = this.resolveTopicAlias(packet) ?? publishPropertiesProblem(packet.properties, this.config);
      if (problem) return this.protocolError(connId, problem.reasonCode, problem.reason);
    }
    const topicError = topicNameError(packet.topic, this.config);
    if (topicError) return this.protocolError(connId, ReasonCode.TOPIC_NAME_INVALID, `topic name ${topicError}`);
    const qos = packet.qos as QoS;
    const packetId = packet.messageId as number;
    if (!this.takePublishToken()) {
      return this.protocolError(connId, ReasonCode.MESSAGE_RATE_TOO_HIGH, `more than ${this.config.maxPublishRate} PUBLISH/s`);
    }
    // `$SYS/...` is written by the broker only, whatever the ACL says (and after alias resolution,
    // so an alias mapped to a `$SYS` topic is refused too)
    if (isBrokerOnlyTopic(packet.topic) || !this.allowed("publish", packet.topic)) return this.refusePublish(connId, qos, packetId);
    const authorize = this.io.hooks.authorizePublish;
    if (authorize) {
      const ctx = this.io.hookContext(this.meta.clientId!, this.identity);
      const allowed = await runHook("authorizePublish", false, () => authorize(ctx, hookView(this.toMessage(packet, ""))));
      if (!allowed) return this.refusePublish(connId, qos, packetId);
    }
    if (this.version === 5 && packet.properties?.payloadFormatIndicator && !isUtf8(packet.payload)) {
      // [MQTT-3.3.2-4]-adjacent: we validate the payload the sender declared as UTF-8 (0x99)
      if (qos === 0) return this.protocolError(connId, ReasonCode.PAYLOAD_FORMAT_INVALID, "payload is not UTF-8");
      const refusal = ackPacket(qos === 1 ? "puback" : "pubrec", packetId, ReasonCode.PAYLOAD_FORMAT_INVALID);
      return this.send(connId, [this.withReason(refusal, "payload is not valid UTF-8")]);
    }
    const known = qos === 2 ? this.store.inboundQos2(packetId) : undefined;
    if (qos > 0 && !known && this.pendingAcks + this.store.inboundQos2Count() >= this.config.receiveMaximum) {
      // [MQTT-3.3.4-9] more unacknowledged QoS 1/2 PUBLISHes than our Receive Maximum
      return this.protocolError(connId, ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded");
    }
    if (qos === 2) {
      // [MQTT-4.3.3-10] [MQTT311-4.3.3-2] until PUBREL, a PUBLISH with the same packet id is the same
      // message: it is acknowledged, not routed again (after any acknowledgement still due, in order)
      if (known?.routed) return this.sendAfterAcks(connId, ackPacket("pubrec", packetId));
      const routing = this.inboundRouting.get(packetId);
      if (known && routing?.msgId === known.msgId) {
        // Its first copy is still being routed (perhaps for an earlier connection of this session):
        // this one is answered when that one is.
        return this.acknowledgeAfter(connId, routing.routed, (matched) => ackPacket("pubrec", packetId, this.matchCode(matched)), false);
      }
      // Known but not routing: the routing of an earlier copy failed, or this object restarted during
      // it; retried under the same message id (subscriber sessions that hold it ignore it).
      const message = this.toMessage(packet, known?.msgId ?? `${this.meta.clientId}:${this.io.newId()}`);
      this.store.putInboundQos2(packetId, message.id, false);
      const routed = this.routeThroughHooks(message);
      this.inboundRouting.set(packetId, { msgId: message.id, routed });
      // Routed is recorded when routing completes, whatever became of the connection that sent it:
      // the client resends the PUBLISH after a drop, and that copy must not be routed again. Only
      // this message's row is marked (a PUBREL or a clean start may have removed it meanwhile).
      const settled = () => {
        if (this.inboundRouting.get(packetId)?.routed === routed) this.inboundRouting.delete(packetId);
      };
      routed.then(() => this.store.markInboundQos2Routed(packetId, message.id)).then(settled, settled);
      this.acknowledgeAfter(connId, routed, (matched) => ackPacket("pubrec", packetId, this.matchCode(matched)));
      return;
    }
    const message = this.toMessage(packet, `${this.meta.clientId}:${this.io.newId()}`);
    const routed = this.routeThroughHooks(message);
    if (qos === 1) this.acknowledgeAfter(connId, routed, (matched) => ackPacket("puback", packetId, this.matchCode(matched)));
    else routed.catch(() => undefined); // QoS 0: at most once
  }

  /** onPublish hook results, in PUBLISH order (each waits for the one before it). */
  private hookQueue: Promise<unknown> = Promise.resolve();

  /**
   * Routes a client's message, after the user's onPublish hook when there is one: it may rewrite the
   * message or drop it (resolves 0 matches; the publisher is acknowledged as for any accepted
   * message). Hooks run one at a time so that messages keep their order [MQTT-4.6.0-6].
   */
  private routeThroughHooks(message: RoutedMessage): Promise<number> {
    const hook = this.io.hooks.onPublish;
    if (!hook) return this.io.route(message);
    const ctx = this.io.hookContext(this.meta.clientId!, this.identity);
    const transformed = this.hookQueue.then(() => runHook("onPublish", undefined, () => hook(ctx, hookView(message))));
    this.hookQueue = transformed;
    return transformed.then((result) => {
      if (result === null) return 0;
      if (result === undefined) return this.io.route(message);
      const problem = topicNameError(result.topic, this.config);
      if (problem) {
        console.error(`hook onPublish returned an invalid topic (${problem}); message dropped`);
        return 0;
      }
      return this.io.route({ ...message, ...fromHook(result), payload: new Uint8Array(result.payload) });
    });
  }

  /**
   * An unauthorized PUBLISH is not routed. v5 answers 0x87 [MQTT-3.3.5-2]; 3.1.1 has no code for it,
   * so the flow completes normally and the message is dropped, as the 3.1.1 spec allows.
   */
  private refusePublish(connId: string, qos: QoS, packetId: number): void {
    if (qos === 0) return;
    if (this.version === 5) {
      const ack = ackPacket(qos === 1 ? "puback" : "pubrec", packetId, this.denialCode);
      if (this.acl.hideDenialReason) return this.send(connId, [ack]);
      return this.send(connId, [this.withReason(ack, "not authorized to publish to this topic")]);
    }
    if (qos === 2) this.store.putInboundQos2(packetId, `refused:${packetId}`, true);
    this.send(connId, [ackPacket(qos === 1 ? "puback" : "pubrec", packetId)]);
  }

  /** v5: 0x10 tells the publisher nobody subscribes to the topic (the message was still accepted). */
  private matchCode(matched: number): number {
    return this.version === 5 && matched === 0 ? ReasonCode.NO_MATCHING_SUBSCRIBERS : ReasonCode.SUCCESS;
  }

  /**
   * Topic aliases from the client [MQTT-3.3.2-7..12]: a PUBLISH with a topic sets the alias, one with
   * an empty topic uses it. Rewrites packet.topic; returns a problem when the alias is invalid.
   */
  private resolveTopicAlias(packet: AnyPacket): { reasonCode: number; reason: string } | undefined {
    const alias = packet.properties?.topicAlias;
    if (alias === undefined) return undefined;
    if (alias === 0 || alias > this.config.topicAliasMaximum) {
      return { reasonCode: ReasonCode.TOPIC_ALIAS_INVALID, reason: `topic alias ${alias} is outside 1..${this.config.topicAliasMaximum}` };
    }
    if (packet.topic) {
      if (this.aliasesIn.get(alias) !== packet.topic) {
        this.aliasesIn.set(alias, packet.topic);
        this.store.putTopicAliasIn(alias, packet.topic);
      }
      return undefined;
    }
    const topic = this.aliasesIn.get(alias) ?? this.store.topicAliasIn(alias);
    if (topic === undefined) return { reasonCode: ReasonCode.PROTOCOL_ERROR, reason: `topic alias ${alias} is not set` };
    this.aliasesIn.set(alias, topic);
    packet.topic = topic;
    return undefined;
  }

  /** Sends the acknowledgement once routing is durable, in PUBLISH order; on failure, drops the connection unacknowledged. */
  private ackChain: Promise<void> = Promise.resolve();
  /** Inbound QoS 1/2 PUBLISHes whose PUBACK/PUBREC is not sent yet. */
  private pendingAcks = 0;
  /**
   * Inbound QoS 2 packet ids whose message is being routed now, with its message id (in memory: the
   * routing lives no longer than this object), so that a copy of the PUBLISH arriving meanwhile, on
   * this connection or a later one of the same session, is not routed again. The message id tells
   * an entry of an ended session (clean start) from the new session's use of the packet id.
   */
  private readonly inboundRouting = new Map<number, { msgId: string; routed: Promise<number> }>();
  /** `counted`: the PUBLISH is a new message (a repeated QoS 2 one does not count to Receive Maximum). */
  private acknowledgeAfter(connId: string, routed: Promise<number>, ack: (matched: number) => AnyPacket, counted = true): void {
    const previous = this.ackChain;
    const pending = counted ? 1 : 0;
    this.pendingAcks += pending;
    this.ackChain = (async () => {
      await previous;
      let matched: number;
      try {
        matched = await routed;
      } catch (err) {
        this.pendingAcks -= pending;
        // Not durable: the client keeps the message and resends it on its next connection.
        return this.serverError(connId, err);
      }
      this.pendingAcks -= pending;
      if (this.isCurrent(connId)) this.send(connId, [ack(matched)]);
    })();
  }

  private toMessage(packet: AnyPacket, id: string): RoutedMessage {
    return {
      id,
      origin: this.meta.clientId!,
      topic: packet.topic,
      payload: new Uint8Array(packet.payload),
      qos: packet.qos,
      retain: packet.retain === true,
      properties: this.version === 5 ? messagePropertiesFrom(packet.properties) : undefined,
      receivedAt: this.io.now(),
    };
  }

  private onPubrel(connId: string, packet: AnyPacket): void {
    const found = this.store.deleteInboundQos2(packet.messageId);
    const pubcomp = ackPacket("pubcomp", packet.messageId);
    if (!found && this.version === 5) pubcomp.reasonCode = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND;
    // Wait for earlier acknowledgements so PUBCOMP never overtakes the PUBREC it answers.
    this.sendAfterAcks(connId, pubcomp);
  }

  /** Sends an acknowledgement after those still waiting for their routing [MQTT-4.6.0-2..4]. */
  private sendAfterAcks(connId: string, ack: AnyPacket): void {
    this.ackChain = this.ackChain.then(() => {
      if (this.isCurrent(connId)) this.send(connId, [ack]);
    });
  }

  // --- acknowledgements of our PUBLISHes ----------------------------------------------------

  private onPuback(packet: AnyPacket): void {
    const held = this.unstored.get(packet.messageId);
    if (held) {
      // Acknowledged before it was written: it never needs a row [MQTT-4.3.2-3 ends the flow here].
      this.unstored.delete(packet.messageId);
      held.settle();
    } else {
      const row = this.store.findInflight(packet.messageId, OutState.SENT);
      if (row && row.delivery.qos === 1) this.store.finish(row);
    }
    this.pump();
    if (this.meta.queueLevel) this.checkQueueLevel();
  }

  private onPubrec(connId: string, packet: AnyPacket): void {
    const row = this.store.findInflight(packet.messageId, OutState.SENT);
    if (row && row.delivery.qos === 2 && (packet.reasonCode ?? 0) >= 0x80) {
      this.store.finish(row); // the client refused it: the flow ends here [MQTT-4.3.3]
      return this.pump();
    }
    const pubrel = ackPacket("pubrel", packet.messageId);
    if (row && row.delivery.qos === 2) this.store.markReleased(row.seq);
    else if (this.version === 5 && !this.store.findInflight(packet.messageId, OutState.RELEASED)) {
      pubrel.reasonCode = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND;
    }
    this.send(connId, [pubrel]);
  }

  private onPubcomp(packet: AnyPacket): void {
    const row = this.store.findInflight(packet.messageId, OutState.RELEASED);
    if (row) this.store.finish(row);
    this.pump();
    if (this.meta.queueLevel) this.checkQueueLevel();
  }

  /**
   * Reports the queue depth (messages waiting behind the in-flight window) to the registry when it
   * crosses a level (metrics: queue depths). A client keeping up never reaches the first level.
   */
  private checkQueueLevel(): void {
    const level = queueLevel(this.store.queuedCount());
    if (level === (this.meta.queueLevel ?? 0)) return;
    this.meta.queueLevel = level || undefined;
    this.store.writeMeta(this.meta);
    this.io.report({ kind: "queue", clientId: this.meta.clientId ?? "", level });
  }

  /**
   * The session's queue is gone with its state (the session ended, or started afresh): a deep-queue
   * level it reported must not stay in the registry's gauge.
   */
  private queueGone(): void {
    if (!this.meta.queueLevel) return;
    this.meta.queueLevel = undefined;
    this.io.report({ kind: "queue", clientId: this.meta.clientId ?? "", level: 0 });
  }

  // --- SUBSCRIBE / UNSUBSCRIBE --------------------------------------------------------------

  private async onSubscribe(connId: string, packet: AnyPacket): Promise<void> {
    const v5 = this.version === 5;
    const subscriptionId: number | undefined = v5 ? packet.properties?.subscriptionIdentifier : undefined;
    const codes: number[] = [];
    const accepted: Subscription[] = [];
    const retainedFor: string[] = [];
    let count = this.store.subscriptionCount();
    for (const request of packet.subscriptions as AnyPacket[]) {
      const filter: string = request.topic;
      if (v5 && request.nl && parseSharedFilter(filter)) {
        // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error
        return this.protocolError(connId, ReasonCode.PROTOCOL_ERROR, "No Local set on a shared subscription");
      }
      const failure = this.subscriptionFailure(filter, count) ?? (await this.subscribeHookRefusal(filter, request.qos ?? 0));
      if (failure !== undefined) {
        codes.push(v5 ? failure : SUBACK_FAILURE_V3);
        continue;
      }
      const existed = this.store.hasSubscription(filter) || accepted.some((s) => s.filter === filter);
      if (!existed) count++;
      const qos = Math.min(request.qos ?? 0, 2) as QoS;
      const sub: Subscription = {
        filter,
        qos,
        noLocal: v5 && request.nl === true,
        retainAsPublished: v5 && request.rap === true,
        retainHandling: v5 ? ((request.rh ?? 0) as 0 | 1 | 2) : 0,
        subscriptionId,
      };
      accepted.push(sub);
      codes.push(qos);
      // [MQTT-3.3.1-9..11] retained messages on subscribe, as Retain Handling says
      if (sub.retainHandling === 0 || (sub.retainHandling === 1 && !existed)) retainedFor.push(filter);
    }
    const retained = accepted.length ? await this.io.subscribe(this.meta.clientId!, accepted, retainedFor) : [];
    for (const sub of accepted) this.store.putSubscription(sub);
    this.readCheck = undefined;
    if (accepted.some((sub) => sub.filter.startsWith("$SYS"))) this.io.report({ kind: "sys-watch", clientId: this.meta.clientId! });
    // [MQTT-3.8.4-1] SUBACK with one code per filter, in order [MQTT-3.8.4-6]
    const suback: AnyPacket = { cmd: "suback", messageId: packet.messageId, granted: codes };
    const refused = codes.filter((c) => c >= 0x80);
    this.send(connId, [refused.length ? this.withReason(suback, `${refused.length} filter(s) refused: ${refused.map((c) => `0x${c.toString(16)}`).join(", ")}`) : suback]);
    const deliveries: Delivery[] = [];
    retainedFor.forEach((filter, i) => {
      const sub = accepted.find((s) => s.filter === filter)!;
      for (const message of retained[i] ?? []) {
        deliveries.push({
          // A fresh id per delivery: a re-subscribe must deliver the retained message again [MQTT-3.8.4-3].
          message: { ...message, id: `${message.id}:${this.io.newId()}` },
          qos: Math.min(message.qos, sub.qos) as QoS,
          retain: true, // [MQTT-3.3.1-8] retained messages sent on subscribe carry RETAIN=1
          subscriptionIds: sub.subscriptionId ? [sub.subscriptionId] : undefined,
        });
      }
    });
    if (deliveries.length) this.deliver(deliveries); // the read check there covers retained messages too
  }

  /** 0x87 (or 0x80, ACL_DENIAL_REASON) when the user's authorizeSubscribe hook refuses the filter. */
  private async subscribeHookRefusal(filter: string, qos: QoS): Promise<number | undefined> {
    const hook = this.io.hooks.authorizeSubscribe;
    if (!hook) return undefined;
    const ctx = this.io.hookContext(this.meta.clientId!, this.identity);
    return (await runHook("authorizeSubscribe", false, () => hook(ctx, filter, qos))) ? undefined : this.denialCode;
  }

  /** A SUBACK failure reason for the filter, or undefined when it can be granted. */
  private subscriptionFailure(filter: string, count: number): number | undefined {
    if (topicFilterError(filter, this.config)) return ReasonCode.TOPIC_FILTER_INVALID;
    const shared = parseSharedFilter(filter);
    // [MQTT-4.8.2-1, 4.8.2-2] a share name is at least one character, without '/', '+' or '#', and is followed by a filter
    if (shared && (!shared.group || /[+#]/.test(shared.group) || !shared.filter)) return ReasonCode.TOPIC_FILTER_INVALID;
    if (!this.allowed("subscribe", shared ? shared.filter : filter)) return this.denialCode;
    if (!this.store.hasSubscription(filter) && count >= this.config.maxSubscriptions) return ReasonCode.QUOTA_EXCEEDED;
    return undefined;
  }

  private async onUnsubscribe(connId: string, packet: AnyPacket): Promise<void> {
    const filters = packet.unsubscriptions as string[];
    const removed = filters.filter((f) => this.store.hasSubscription(f));
    if (removed.length) await this.io.unsubscribe(this.meta.clientId!, removed);
    const codes = filters.map((f) =>
      this.store.deleteSubscription(f) ? ReasonCode.SUCCESS : ReasonCode.NO_SUBSCRIPTION_EXISTED,
    );
    this.readCheck = undefined;
    for (const filter of removed) if (parseSharedFilter(filter)) await this.handOverQueued(filter);
    const unsuback: AnyPacket = { cmd: "unsuback", messageId: packet.messageId };
    if (this.version === 5) unsuback.granted = codes;
    this.send(connId, [unsuback]);
  }

  // --- AUTH: re-authentication [MQTT-4.12.1] ------------------------------------------------

  private async onAuth(info: ConnectionInfo, packet: AnyPacket): Promise<void> {
    const method = packet.properties?.authenticationMethod;
    const data: Uint8Array = packet.properties?.authenticationData ?? new Uint8Array();
    // [MQTT-4.12.0-6..7] AUTH only on a connection that authenticated with a method, and with that method
    if (this.version !== 5 || !info.authResponse || method !== info.authResponse.method) {
      return this.protocolError(info.connId, ReasonCode.PROTOCOL_ERROR, "AUTH without the connection's authentication method");
    }
    if (packet.reasonCode === ReasonCode.REAUTHENTICATE) {
      this.reauth = await startScram(data, this.users);
      if (!this.reauth) return this.protocolError(info.connId, ReasonCode.NOT_AUTHORIZED, "malformed SCRAM message");
      const challenge = { cmd: "auth", reasonCode: ReasonCode.CONTINUE_AUTHENTICATION, properties: { authenticationMethod: method, authenticationData: Buffer.from(this.reauth.serverFirst) } };
      return this.send(info.connId, [challenge]);
    }
    const exchange = this.reauth;
    this.reauth = undefined;
    if (packet.reasonCode !== ReasonCode.CONTINUE_AUTHENTICATION || !exchange) {
      return this.protocolError(info.connId, ReasonCode.PROTOCOL_ERROR, "unexpected AUTH");
    }
    const result = await exchange.finish(data);
    // The same identity must prove itself again; anything else ends the connection [MQTT-4.12.1-2]
    if (!result.ok || result.username !== this.meta.owner) {
      return this.protocolError(info.connId, ReasonCode.NOT_AUTHORIZED, "re-authentication failed");
    }
    const done = { cmd: "auth", reasonCode: ReasonCode.SUCCESS, properties: { authenticationMethod: method, authenticationData: Buffer.from(result.serverFinal) } };
    this.send(info.connId, [done]);
  }

  // --- DISCONNECT and the end of a connection ------------------------------------------------

  private async onDisconnect(connId: string, packet: AnyPacket): Promise<void> {
    const newExpiry = packet.properties?.sessionExpiryInterval;
    if (this.version === 5 && newExpiry !== undefined) {
      // [3.14.2.2.2, no statement id: U-5.0-disconnect-expiry in docs/conformance] a session that was to end with the connection cannot be extended at DISCONNECT
      if (this.meta.expiryInterval === 0 && newExpiry !== 0) {
        return this.protocolError(connId, ReasonCode.PROTOCOL_ERROR, "session expiry cannot change from 0");
      }
      this.meta.expiryInterval = Math.min(newExpiry, this.config.maxSessionExpiry);
    }
    // [MQTT-3.14.4-3] a normal DISCONNECT discards the will; 0x04 asks for it to be sent
    const keepWill = this.version === 5 && packet.reasonCode === ReasonCode.DISCONNECT_WITH_WILL;
    if (!keepWill) this.meta.will = undefined;
    this.io.close(connId, "client disconnected");
    await this.connectionEnded(connId, { reason: "client DISCONNECT", code: this.version === 5 ? hexCode(packet.reasonCode ?? 0) : undefined });
  }

  /** The connection's socket closed: handled after every packet that arrived before it. */
  ended(connId: string, cause: EndCause = { reason: "connection closed" }): Promise<void> {
    const run = () => this.connectionEnded(connId, cause).catch((err) => console.error("session end failed", err));
    this.chain = this.chain.then(run, run);
    return this.chain;
  }

  /** Ends the connection's part of the session (will, expiry). Safe to call more than once. */
  private async connectionEnded(connId: string, cause: EndCause): Promise<void> {
    if (!this.isCurrent(connId)) return;
    logEvent("info", "connection.ended", { clientId: this.meta.clientId, reason: cause.reason, code: cause.code });
    // Unacknowledged messages of the connection are kept for its resumption [MQTT-4.4.0-1], unless
    // the session ends with it.
    this.storeUnacknowledged((this.meta.expiryInterval ?? 0) > 0);
    this.io.report({ kind: "disconnected", clientId: this.meta.clientId ?? "", connId, version: this.version, identity: this.identity });
    const now = this.io.now();
    const will = this.meta.will;
    const expiry = this.meta.expiryInterval ?? 0;
    this.meta.connId = undefined;
    if (expiry > 0) this.meta.expireAt = now + expiry * 1000;
    if (will && will.delay > 0 && expiry > 0) {
      // [MQTT-3.1.3-9] the will waits for its delay or the end of the session, whichever is first
      this.meta.willAt = now + Math.min(will.delay, expiry) * 1000;
    } else if (will) {
      this.meta.will = undefined;
      await this.publishWill(will).catch(() => undefined);
    }
    this.store.writeMeta(this.meta);
    if (expiry === 0) return this.endSession();
    this.io.setAlarm(this.nextAlarm());
  }

  /** Alarm: a delayed will became due, or an offline session expired. */
  async alarm(): Promise<void> {
    const handovers = this.store.handoverRows();
    if (handovers.length > 0) await this.handOver(handovers);
    const now = this.io.now();
    if (this.meta.willAt !== undefined && now >= this.meta.willAt && this.meta.will) {
      const will = this.meta.will;
      this.meta.will = undefined;
      this.meta.willAt = undefined;
      this.store.writeMeta(this.meta);
      await this.publishWill(will).catch(() => undefined);
    }
    if (this.meta.connId === undefined && this.meta.expireAt !== undefined && now >= this.meta.expireAt) {
      return this.endSession();
    }
    this.io.setAlarm(this.nextAlarm());
  }

  /** Hand-over attempts in a row that left a row behind (in memory: a restart starts again at 5 s). */
  private handoverFailures = 0;

  private nextAlarm(): number | undefined {
    const backoff = Math.min(HANDOVER_RETRY_MS * 2 ** Math.max(0, this.handoverFailures - 1), HANDOVER_RETRY_MAX_MS);
    const retry = this.store.hasHandovers() ? this.io.now() + backoff : undefined;
    const times = [this.meta.willAt, this.meta.connId ? undefined : this.meta.expireAt, retry].filter(
      (t): t is number => t !== undefined,
    );
    return times.length ? Math.min(...times) : undefined;
  }

  private async endSession(): Promise<void> {
    if (this.meta.will) {
      const will = this.meta.will;
      this.meta.will = undefined;
      await this.publishWill(will).catch(() => undefined);
    }
    await this.dropSubscriptions();
    await this.handOverShared();
    this.storeUnacknowledged(false);
    this.queueGone();
    this.store.clearAll();
    this.meta = {};
    this.io.setAlarm(this.nextAlarm()); // a retry of failed hand-overs, if any
  }

  private async dropSubscriptions(): Promise<void> {
    const filters = this.store.subscriptions().map((s) => s.filter);
    if (filters.length && this.meta.clientId) await this.io.unsubscribe(this.meta.clientId, filters);
  }

  /**
   * The session ends: what it took through shared subscriptions and may give to another member
   * goes to one [MQTT-4.8.2]: messages not yet sent, and QoS 1 in flight (the client may never
   * acknowledge it: the spec says SHOULD). A QoS 2 message once sent goes nowhere else, even
   * though this session ends before completing it [MQTT-4.8.2-5]: it ends with the session.
   */
  private async handOverShared(): Promise<void> {
    this.store.holdForHandover();
    await this.handOver(this.store.handoverRows());
  }

  /**
   * A shared subscription was unsubscribed: its queued messages go to another member. Those it
   * started to send, this session completes [MQTT-3.10.4-3]; one whose hand-over fails stays
   * queued here (a Server MAY deliver messages buffered before the UNSUBSCRIBE, 3.10.4).
   */
  private async handOverQueued(shareFilter: string): Promise<void> {
    for (const failed of await this.handOver(this.store.holdForHandover(shareFilter))) this.store.requeue(failed.seq);
    this.pump();
  }

  /**
   * Gives each row to another member of its group through the shard of its topic; a row leaves
   * this session only once that shard has it safe. Returns the rows whose hand-over failed: they
   * stay in HANDOVER (retried by the alarm, nextAlarm) unless the caller puts them back.
   */
  private async handOver(rows: OutboundRow[]): Promise<OutboundRow[]> {
    const failed: OutboundRow[] = [];
    // `leaving` is "" once the session has ended: its subscriptions are gone from the shards by then,
    // so the shard cannot pick it anyway.
    for (const row of rows) {
      // Under a new id: the chosen member must not mistake it for a duplicate of its own copy.
      const message = { ...row.delivery.message, id: `${row.msgId}:r` };
      try {
        await this.io.redistribute(row.delivery.shareFilter!, this.meta.clientId ?? "", message);
        this.store.discard(row.seq);
      } catch (err) {
        console.warn(`shared hand-over failed, kept for a retry: ${logText(message.topic)}`, err);
        failed.push(row);
      }
    }
    this.handoverFailures = failed.length ? this.handoverFailures + 1 : 0;
    return failed;
  }

  private async publishWill(will: StoredWill): Promise<void> {
    await this.io.route({
      id: `${this.meta.clientId}:will:${this.io.newId()}`,
      origin: this.meta.clientId ?? "",
      topic: will.topic,
      payload: new Uint8Array(will.payload),
      qos: will.qos,
      retain: will.retain,
      properties: will.properties,
      receivedAt: this.io.now(),
    });
  }

  // --- administration (admin API) --------------------------------------------------------------

  /** The session as the admin API shows it; undefined when there is none. */
  describe(): SessionDescription | undefined {
    const m = this.meta;
    if (m.clientId === undefined || (m.connId === undefined && m.expireAt !== undefined && this.io.now() >= m.expireAt)) return undefined;
    return {
      clientId: m.clientId,
      connected: m.connId !== undefined,
      protocolVersion: this.version,
      username: this.identity.username,
      remoteAddress: m.remoteAddress,
      connectedAt: m.connectedAt,
      expiryInterval: m.expiryInterval ?? 0,
      expiresAt: m.connId === undefined ? m.expireAt : undefined,
      subscriptions: this.store.subscriptions(),
      queued: this.store.queuedCount(),
      inflight: this.inflightCount(),
      droppedQueueFull: m.droppedQueueFull ?? 0,
      hasWill: m.will !== undefined,
      will: m.will === undefined ? undefined : willSummary(m.will),
      outbound: this.store.outboundHead(DESCRIBED_OUTBOUND),
    };
  }

  /**
   * An operator closes the client's connection: v5 DISCONNECT 0x98 (administrative action). The
   * connection ended without the client's DISCONNECT, so its will is published [MQTT-3.1.2-8].
   * Resolves false when the client is not connected.
   */
  adminDisconnect(): Promise<boolean> {
    let done = false;
    const run = async () => {
      const connId = this.meta.connId;
      if (!connId) return;
      await this.closeByAdministrator(connId, "disconnected by an administrator");
      done = true;
    };
    this.chain = this.chain.then(run, run);
    return this.chain.then(() => done);
  }

  /** An operator deletes the session: its connection is closed as above, then the session ends now. */
  adminDelete(): Promise<boolean> {
    let existed = false;
    const run = async () => {
      existed = this.describe() !== undefined;
      if (!existed) return;
      const connId = this.meta.connId;
      if (connId) await this.closeByAdministrator(connId, "session deleted by an administrator");
      if (this.meta.clientId !== undefined) await this.endSession();
    };
    this.chain = this.chain.then(run, run);
    return this.chain.then(() => existed);
  }

  /** v5 DISCONNECT 0x98 (administrative action), close, and the end of the connection (its will). */
  private async closeByAdministrator(connId: string, reason: string): Promise<void> {
    if (this.version === 5) this.send(connId, [this.withReason({ cmd: "disconnect", reasonCode: ReasonCode.ADMINISTRATIVE_ACTION }, reason)]);
    this.io.close(connId, reason);
    await this.connectionEnded(connId, { reason: `administrator: ${reason}`, code: this.version === 5 ? "0x98" : undefined });
  }

  // --- delivery to the client -----------------------------------------------------------------

  /**
   * Messages from a shard. "gone" when this session does not exist (the shard forgets it);
   * "offline" without taking anything when `onlyIfOnline` and the client is not connected.
   *
   * The result settles when every QoS 1/2 message is safe here: written to SQLite, or, with
   * `waitForAck`, a QoS 1 message sent straight to the online client and acknowledged by it within
   * ACK_WAIT_MS (then it is never written; after ACK_WAIT_MS it is written as in flight). The shard
   * acknowledges the publisher only then, so an acknowledged message is never only in memory.
   */
  deliver(batch: Delivery[], onlyIfOnline = false, waitForAck = false): DeliveryOutcome | Promise<DeliveryOutcome> {
    if (this.meta.clientId === undefined) return "gone";
    const online = this.meta.connId !== undefined;
    if (onlyIfOnline && !online) return "offline";
    // A partially granted subscription receives only the topics its owner may read (the ACL's
    // subscribe rules on the topic name); the rest were never this subscriber's to have. A shared
    // subscription's message (offered alone) is declined instead, so the shard offers it to another
    // member of the group who may read it.
    if (this.readCheckNeeded()) {
      const readable = batch.filter((d) => this.allowed("subscribe", d.message.topic));
      if (readable.length === 0 && batch.length === 1 && batch[0].shareFilter) return "unreadable";
      batch = readable;
    }
    const immediate: AnyPacket[] = [];
    const held: number[] = [];
    const settled: Promise<void>[] = [];
    let queued = false;
    for (const d of batch) {
      if (d.qos === 0) {
        // QoS 0 is not stored for an offline session (at most once).
        if (online) {
          const p = this.publishPacket(d, undefined, false);
          if (p) immediate.push(p);
        }
        continue;
      }
      if (this.store.pendingCount() + this.unstored.size >= this.config.maxQueuedMessages) {
        // Documented outcome: the newest QoS 1/2 message for a full session is dropped and counted.
        this.meta.droppedQueueFull = (this.meta.droppedQueueFull ?? 0) + 1;
        this.store.writeMeta(this.meta);
        this.reportDrop("queue_full");
        continue;
      }
      // Straight out when nothing is waiting ahead of it and the window has room: stored once, as
      // in flight (one row written). Otherwise it waits in the queue, in order.
      if (online && !queued && this.windowRoom() > 0 && !this.store.hasQueued()) {
        const packetId = this.nextPacketId();
        const packet = this.publishPacket(d, packetId, false);
        if (!packet) {
          this.reportDrop(this.undeliverableReason(d)); // expired or too large for the client
          continue;
        }
        if (waitForAck && d.qos === 1 && !d.shareFilter && this.config.ackWaitMs > 0) {
          settled.push(new Promise((settle) => this.unstored.set(packetId, { delivery: d, seq: this.store.nextSeq(), settle })));
          held.push(packetId);
          immediate.push(packet);
        } else if (this.store.enqueue(d, OutState.SENT, packetId)) immediate.push(packet);
        continue;
      }
      if (this.store.enqueue(d, OutState.QUEUED)) queued = true;
    }
    if (online && immediate.length) this.send(this.meta.connId!, immediate);
    if (online && queued) this.pump();
    if (batch.some((d) => d.qos > 0)) this.checkQueueLevel();
    if (!held.length) return "ok";
    this.io.later(this.config.ackWaitMs, () => this.storeUnacknowledged(true, held));
    return Promise.all(settled).then(() => "ok" as const);
  }

  /**
   * Settles unstored QoS 1 messages (those of `packetIds`, or all): written as in flight when `keep`
   * (resent with DUP and the same packet id on resumption [MQTT-4.4.0-1]), else dropped with the
   * session that held them.
   */
  private storeUnacknowledged(keep: boolean, packetIds: Iterable<number> = [...this.unstored.keys()]): void {
    for (const packetId of packetIds) {
      const m = this.unstored.get(packetId);
      if (!m) continue; // acknowledged meanwhile
      this.unstored.delete(packetId);
      if (keep) this.store.enqueue(m.delivery, OutState.SENT, packetId, m.seq);
      m.settle();
    }
  }

  /** QoS 1/2 messages in flight to the client: written ones and unstored ones. */
  private inflightCount(): number {
    return this.store.inflightCount() + this.unstored.size;
  }

  /** Whether a message in flight to the client (written or unstored) uses this packet id. */
  private packetIdInFlight(packetId: number): boolean {
    return this.unstored.has(packetId) || this.store.isPacketIdInFlight(packetId);
  }

  private reportDrop(reason: DropReason): void {
    this.io.report({ kind: "dropped", clientId: this.meta.clientId ?? "", reason, count: 1 });
    if (reason === "queue_full") this.queueFullLog.record(this.io.now(), { clientId: this.meta.clientId, limit: this.config.maxQueuedMessages });
  }
  /** At most one log line per 10 s for a session whose queue is full (with how many were dropped). */
  private readonly queueFullLog = new SampledLog("warn", "queue.full");

  /** Why publishPacket refused a delivery: its expiry passed, or it exceeds the client's maximum. */
  private undeliverableReason(d: Delivery): DropReason {
    const remaining = remainingExpiry(d.message.properties, d.message.receivedAt, this.io.now());
    return remaining !== undefined && remaining <= 0 ? "expired" : "too_large_for_client";
  }

  /** How many more QoS 1/2 messages may be in flight to the client now [MQTT-4.9.0-2]. */
  private windowRoom(): number {
    const window = Math.min(this.meta.clientReceiveMax ?? 65535, this.config.maxInflight);
    return window - this.inflightCount();
  }

  /** Sends queued QoS 1/2 messages while the in-flight window allows [MQTT-4.9.0-2]. */
  private pump(): void {
    const connId = this.meta.connId;
    if (!connId || !this.store.hasQueued()) return;
    let room = this.windowRoom();
    if (room <= 0) return;
    const packets: AnyPacket[] = [];
    while (room > 0) {
      const rows = this.store.outboundRows([OutState.QUEUED], room);
      if (!rows.length) break;
      for (const row of rows) {
        const packetId = this.nextPacketId();
        const packet = this.publishPacket(row.delivery, packetId, false);
        if (!packet) {
          this.store.discard(row.seq); // expired or too large for the client: never sendable
          this.reportDrop(this.undeliverableReason(row.delivery));
          continue;
        }
        this.store.markSent(row.seq, packetId); // in flight from here: nextPacketId skips it
        packets.push(packet);
        room--;
      }
    }
    if (packets.length) this.send(connId, packets);
  }

  private resendInflight(connId: string): void {
    const packets: AnyPacket[] = [];
    for (const row of this.store.outboundRows([OutState.SENT, OutState.RELEASED])) {
      if (row.state === OutState.RELEASED) {
        packets.push(ackPacket("pubrel", row.packetId!));
      } else {
        // [MQTT-3.3.1-1] DUP is set on a re-delivery; the packet id stays the same
        const p = this.publishPacket(row.delivery, row.packetId!, true, true);
        if (p) packets.push(p);
      }
    }
    if (packets.length) this.send(connId, packets);
  }

  /** Last outbound packet id; in memory only (a restart resumes after the highest one in flight). */
  private lastPacketId?: number;
  private nextPacketId(): number {
    let id = (this.lastPacketId ??= this.store.highestPacketId());
    do id = (id % 65535) + 1;
    while (this.packetIdInFlight(id));
    this.lastPacketId = id;
    return id;
  }

  /** The PUBLISH for a delivery, or undefined when it must not be sent (expired, too large). */
  private publishPacket(d: Delivery, packetId: number | undefined, dup: boolean, ignoreExpiry = false): AnyPacket | undefined {
    const m = d.message;
    const packet: AnyPacket = {
      cmd: "publish",
      topic: m.topic,
      payload: Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength),
      qos: d.qos,
      retain: d.retain,
      dup,
    };
    if (packetId !== undefined) packet.messageId = packetId;
    if (this.version === 5) {
      const props: Record<string, unknown> = {};
      const p = m.properties;
      if (p) {
        if (p.payloadFormatIndicator !== undefined) props.payloadFormatIndicator = p.payloadFormatIndicator;
        if (p.contentType !== undefined) props.contentType = p.contentType;
        if (p.responseTopic !== undefined) props.responseTopic = p.responseTopic;
        if (p.correlationData) props.correlationData = Buffer.from(p.correlationData);
        if (p.userProperties) props.userProperties = p.userProperties;
      }
      // [MQTT-3.3.2-6] the expiry sent is the received value less the time spent waiting
      const remaining = remainingExpiry(p, m.receivedAt, this.io.now());
      if (remaining !== undefined) {
        if (remaining <= 0 && !ignoreExpiry) return undefined;
        props.messageExpiryInterval = Math.max(remaining, 1);
      }
      if (d.subscriptionIds?.length) props.subscriptionIdentifier = d.subscriptionIds;
      if (Object.keys(props).length) packet.properties = props;
    }
    const alias = this.outboundAlias(m.topic);
    if (alias) {
      packet.properties = { ...packet.properties, topicAlias: alias.value };
      if (!alias.isNew) packet.topic = ""; // the client maps the alias back to the topic
    }
    if (this.meta.clientMaxPacketSize !== undefined) {
      // [MQTT-3.1.2-24, 3.1.2-25] a PUBLISH larger than the client's Maximum Packet Size is discarded
      if (!encodeWithin(packet as Packet, this.version, this.meta.clientMaxPacketSize)) {
        if (alias?.isNew) this.aliasesOut!.delete(m.topic);
        return undefined;
      }
    }
    if (alias?.isNew) this.store.putTopicAliasOut(m.topic, alias.value);
    return packet;
  }

  /**
   * Topic aliases to the client, within the Topic Alias Maximum it announced [MQTT-3.3.2-8]: the
   * first topics sent on a connection get aliases 1..max; later ones go with their full topic.
   */
  private outboundAlias(topic: string): { value: number; isNew: boolean } | undefined {
    const max = this.meta.clientTopicAliasMax ?? 0;
    if (this.version !== 5 || max === 0) return undefined;
    this.aliasesOut ??= this.store.topicAliasesOut();
    const existing = this.aliasesOut.get(topic);
    if (existing !== undefined) return { value: existing, isNew: false };
    if (this.aliasesOut.size >= max) return undefined;
    const value = this.aliasesOut.size + 1;
    this.aliasesOut.set(topic, value);
    return { value, isNew: true };
  }

  // --- errors -----------------------------------------------------------------------------

  /** Ends a connection for a protocol error: v5 DISCONNECT with the reason, then close [MQTT-4.13.1-1]. */
  private async protocolError(connId: string, reasonCode: number, reason: string): Promise<void> {
    if (this.version === 5 && this.isCurrent(connId)) {
      this.send(connId, [this.withReason({ cmd: "disconnect", reasonCode }, reason)]);
    }
    this.io.close(connId, reason.slice(0, 100));
    await this.connectionEnded(connId, { reason, code: hexCode(reasonCode) });
  }

  private async serverError(connId: string, err: unknown): Promise<void> {
    console.error(`session error, client ${logText(this.meta.clientId)}`, err);
    await this.protocolError(connId, ReasonCode.UNSPECIFIED_ERROR, "internal error");
  }

  private async fail(connId: string, err: unknown): Promise<void> {
    await this.serverError(connId, err).catch(() => undefined);
  }

  /**
   * Adds a v5 Reason String unless the client asked for no problem information; DISCONNECT, CONNACK
   * and PUBLISH may always carry one [MQTT-3.1.2-29].
   */
  private withReason(packet: AnyPacket, reason: string): AnyPacket {
    const always = packet.cmd === "disconnect" || packet.cmd === "connack";
    if (this.version !== 5 || (!always && this.meta.problemInfo === false)) return packet;
    // send() leaves it out again if it would exceed the client's Maximum Packet Size
    return { ...packet, properties: { ...packet.properties, reasonString: reason } };
  }

  /**
   * Sends packets as one frame, each within the client's Maximum Packet Size (encodeWithin: without
   * its Reason String or User Properties if need be). One that cannot fit at all is not sent.
   */
  private send(connId: string, packets: AnyPacket[]): void {
    const max = this.meta.clientMaxPacketSize;
    const encoded: Uint8Array[] = [];
    for (const p of packets) {
      const bytes = encodeWithin(p as Packet, this.version, max);
      if (bytes) encoded.push(bytes);
    }
    if (encoded.length) this.io.send(connId, joinFrames(encoded));
  }
}

/**
 * A PUBACK/PUBREC/PUBREL/PUBCOMP. An explicit reason code 0 lets the codec send the short v5 form
 * (Remaining Length 2 [MQTT-3.4.2-1]), which every client understands (Paho 1.6 rejects the long one).
 */
function ackPacket(cmd: "puback" | "pubrec" | "pubrel" | "pubcomp", messageId: number, reasonCode: number = ReasonCode.SUCCESS): AnyPacket {
  return { cmd, messageId, reasonCode };
}

/** The Maximum Packet Size a v5 CONNECT announced (absent: no limit beyond the protocol's). */
function clientMaxPacketSize(version: ProtocolVersion, connect: AnyPacket): number | undefined {
  return version === 5 ? connect.properties?.maximumPacketSize : undefined;
}

function willFrom(packet: AnyPacket): StoredWill {
  const will = packet.will;
  return {
    topic: will.topic,
    payload: new Uint8Array(will.payload),
    qos: (will.qos ?? 0) as QoS,
    retain: will.retain === true,
    properties: packet.protocolVersion === 5 ? messagePropertiesFrom(will.properties) : undefined,
    delay: packet.protocolVersion === 5 ? Number(will.properties?.willDelayInterval ?? 0) : 0,
  };
}

/** The hook's view of a message: a copy, so a hook cannot change the broker's own. */
function hookView(m: RoutedMessage): HookMessage {
  const p = m.properties;
  const properties = p ? { ...p, userProperties: p.userProperties?.map(([k, v]) => [k, v] as UserProperty) } : undefined;
  return { topic: m.topic, payload: new Uint8Array(m.payload), qos: m.qos, retain: m.retain, properties };
}

/** Why a connection ended, for the operator log: a reason and, where one was sent, the v5 code. */
export interface EndCause {
  reason: string;
  code?: string;
}

/** The refusal code a client of this version received: v5 reason code, or the 3.1.1 return code. */
function codeText(version: ProtocolVersion, v5: number, v3: number): string {
  return version === 5 ? hexCode(v5) : String(v3);
}
