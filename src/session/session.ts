/**
 * The MQTT session, one per client id: it owns the session's state and dispatches each packet to
 * the flow that handles it, and it runs CONNECT, the end of a connection and of the session, the
 * alarm and the admin actions. The flows: inbound.ts (PUBLISH from the client, PUBREL), outbound.ts
 * (delivery to the client and its acknowledgements), subscriptions.ts, will.ts, reauth.ts. It owns
 * no I/O: it calls its SessionIO for sockets, shards and alarms, and keeps its state in the store it
 * is given. The Durable Object shell wires both.
 *
 * About 430 lines: the state every flow shares, the dispatch, and the connection's lifecycle (which
 * touches every flow in a fixed order) are one concern; the flows themselves live in their modules.
 */
import type { BrokerConfig } from "../config";
import { isAllowed, type AclAction, type AclPolicy, type Identity } from "../auth/acl";
import { unknownUserPolicy, type UserDirectory } from "../auth/stored-credential";
import type { HookContext } from "../hooks";
import { encodeWithin, joinFrames, parsePacket } from "../protocol/codec";
import { PacketType, ReasonCode, type ProtocolVersion } from "../protocol/constants";
import { hexCode } from "../protocol/internal-close";
import { decodeEdgeAcked, isEdgeHandBack } from "../protocol/internal-frame";
import type { ConnectPacket, DisconnectPacket, Packet, PacketWithReason } from "../protocol/packets";
import { packetViolation } from "../protocol/validate";
import { logEvent } from "../observability/log";
import { logText } from "../observability/log-text";
import { TaskChain } from "../util/task-chain";
import * as connect from "./connect";
import { Inbound } from "./inbound";
import { Outbound } from "./outbound";
import { Reauthentication } from "./reauth";
import type { Refusal, SessionContext } from "./session-context";
import type { ConnectionInfo, EndCause, SessionDescription, SessionIO } from "./session-io";
import { needsNoRow, type SessionMeta, type SessionStore } from "./store";
import { Subscriptions } from "./subscriptions";
import { Will } from "./will";

export type { ConnectionInfo, DropReason, EndCause, SessionDescription, SessionEvent, SessionIO } from "./session-io";
export { QUEUE_REPORT_FLOOR, queueLevel } from "./outbound";

/** How many outbound messages describe() lists. */
const DESCRIBED_OUTBOUND = 20;

/** The identity of a session no connection has owned yet (anonymous). */
const NO_IDENTITY: Identity = {};

/** A PUBACK or PUBCOMP: the client frees a place in the in-flight window. */
function isWindowAck(bytes: Uint8Array): boolean {
  const type = (bytes[0] ?? 0) >> 4;
  return type === PacketType.PUBACK || type === PacketType.PUBCOMP;
}

export class Session {
  /**
   * The SessionContext the flows get: one small object per session, its getters and methods on a
   * shared prototype. (An object literal with getters and arrow functions cost about 1.6 KB per
   * session: V8 makes it a dictionary, and each arrow function a closure with its own properties.)
   * Declared inside Session so that it may read the session's private state.
   */
  private static readonly FlowContext = class implements SessionContext {
    constructor(private readonly session: Session) {}
    get io(): SessionIO {
      return this.session.io;
    }
    get config(): BrokerConfig {
      return this.session.config;
    }
    get store(): SessionStore {
      return this.session.store;
    }
    get acl(): AclPolicy {
      return this.session.acl;
    }
    get meta(): SessionMeta {
      return this.session.meta;
    }
    get version(): ProtocolVersion {
      return this.session.version;
    }
    get identity(): Identity {
      return this.session.identity;
    }
    get denialCode(): number {
      return this.session.acl.hideDenialReason ? ReasonCode.UNSPECIFIED_ERROR : ReasonCode.NOT_AUTHORIZED;
    }
    isCurrent(connId: string): boolean {
      return this.session.isCurrent(connId);
    }
    allowed(action: AclAction, topicOrFilter: string): boolean {
      return this.session.allowed(action, topicOrFilter);
    }
    hookContext(): HookContext {
      return this.session.io.hookContext(this.session.meta.clientId!, this.session.identity);
    }
    send(connId: string, packets: Packet[]): void {
      this.session.send(connId, packets);
    }
    encode(packet: Packet): Uint8Array | undefined {
      return this.session.encode(packet);
    }
    withReason<P extends PacketWithReason>(packet: P, reason: string): P {
      return this.session.withReason(packet, reason);
    }
    serverError(connId: string, err: unknown): Promise<void> {
      return this.session.serverError(connId, err);
    }
    windowAckFollows(connId: string): boolean {
      const next = this.session.unhandled[0];
      return next !== undefined && next.windowAck && next.connId === connId;
    }
  };

  /** The session's values (client id, live connection, will, expiry...); written through the store. */
  private meta: SessionMeta;
  /** Packets, connection ends and admin actions, handled one at a time in arrival order. */
  private readonly tasks = new TaskChain();
  /**
   * The packets received and not yet handled, in order: their connection, and whether each is a
   * PUBACK or PUBCOMP (SessionContext.windowAckFollows). As long as the chain of packets waiting.
   */
  private readonly unhandled: { connId: string; windowAck: boolean }[] = [];
  /** What the flows share with this session. */
  private readonly context: SessionContext;
  /** PUBLISH and PUBREL from the client. */
  private readonly inbound: Inbound;
  /** Delivery to the client, and the acknowledgements of what it was sent. */
  private readonly outbound: Outbound;
  /** SUBSCRIBE, UNSUBSCRIBE and shared subscriptions' hand-over. */
  private readonly subscriptions: Subscriptions;
  /** The will of the live (or last) connection. */
  private readonly will: Will;
  /** AUTH: re-authentication of the live connection. */
  private readonly reauth: Reauthentication;

  constructor(
    /** The session's durable state. */
    private readonly store: SessionStore,
    /** Sockets, shards, alarms, time, reports and hooks. */
    private readonly io: SessionIO,
    /** The broker's limits and options. */
    private readonly config: BrokerConfig,
    /** Who may publish and subscribe to what. */
    private readonly acl: AclPolicy = { rules: [], defaultAllow: true },
    /** Users for SCRAM re-authentication. */
    users: UserDirectory = { users: new Map(), unknownUsers: unknownUserPolicy("", new Map()) },
  ) {
    this.meta = store.loadMeta();
    this.context = new Session.FlowContext(this);
    this.inbound = new Inbound(this.context);
    this.outbound = new Outbound(this.context, () => this.subscriptions.readCheckNeeded());
    this.subscriptions = new Subscriptions(this.context, this.outbound);
    this.will = new Will(this.context);
    this.reauth = new Reauthentication(this.context, users);
  }

  /** The identity that owns this session (the one of its connections). */
  private get identity(): Identity {
    return this.meta.identity ?? NO_IDENTITY;
  }

  private allowed(action: AclAction, topicOrFilter: string): boolean {
    return isAllowed(this.acl, this.identity, this.meta.clientId ?? "", action, topicOrFilter);
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
    this.unhandled.push({ connId: info.connId, windowAck: isWindowAck(bytes) });
    return this.tasks.run(() => {
      this.unhandled.shift(); // this packet's own entry: packets are handled in the order received
      return this.handle(info, bytes, version).catch((err) => this.fail(info.connId, err));
    });
  }

  private async handle(info: ConnectionInfo, bytes: Uint8Array, version: ProtocolVersion | undefined): Promise<void> {
    // A type-0 packet is the gateway's count of the QoS 1 orders it received and the PUBLISHes it
    // acknowledged (it refuses one from a client), also once it handed routing back (routeAtEdge
    // false): its last counts come then.
    const gatewayAcked = info.routeAtEdge !== undefined ? decodeEdgeAcked(bytes) : undefined;
    if (gatewayAcked !== undefined) {
      if (this.isCurrent(info.connId)) this.inbound.gatewayAcked(gatewayAcked);
      return;
    }
    // The gateway's call budget is spent: this session routes the connection's next PUBLISHes itself.
    if (info.routeAtEdge && isEdgeHandBack(bytes)) {
      if (!this.isCurrent(info.connId)) return;
      this.inbound.handBack(info.connId);
      info.routeAtEdge = false;
      this.io.routeAtSession?.(info.connId);
      return;
    }
    const parsed = parsePacket(bytes, version);
    if ("error" in parsed) {
      if (version === undefined || !this.isCurrent(info.connId)) return this.io.close(info.connId, "malformed CONNECT");
      const reasonCode = parsed.reasonCode ?? ReasonCode.MALFORMED_PACKET;
      return this.refuse(info.connId, { reasonCode, reason: parsed.error });
    }
    const { packet } = parsed;
    if (packet.cmd === "connect") {
      // [MQTT-3.1.0-2] a second CONNECT on a connection is a protocol error
      if (version !== undefined) {
        return this.refuse(info.connId, { reasonCode: ReasonCode.PROTOCOL_ERROR, reason: "second CONNECT" });
      }
      return this.handleConnect(info, packet);
    }
    if (!this.isCurrent(info.connId)) return; // a stale connection (taken over or ended)
    const refusal = packetViolation(packet) ?? (await this.dispatch(info, packet));
    if (refusal) return this.refuse(info.connId, refusal);
  }

  /** Hands a packet of the live connection to its handler; a refusal ends the connection (handle). */
  private dispatch(info: ConnectionInfo, packet: Packet): Refusal | void | Promise<Refusal | undefined> {
    const { connId } = info;
    switch (packet.cmd) {
      case "publish":
        return this.inbound.handlePublish(connId, packet, info.routeAtEdge === true);
      case "puback":
        return this.outbound.handlePuback(connId, packet);
      case "pubrec":
        return this.outbound.handlePubrec(connId, packet);
      case "pubrel":
        return this.inbound.handlePubrel(connId, packet);
      case "pubcomp":
        return this.outbound.handlePubcomp(connId, packet);
      case "subscribe":
        return this.subscriptions.handleSubscribe(connId, packet);
      case "unsubscribe":
        return this.subscriptions.handleUnsubscribe(connId, packet);
      case "pingreq":
        return this.send(connId, [{ cmd: "pingresp" }]);
      case "disconnect":
        return this.handleDisconnect(connId, packet);
      case "auth":
        return this.reauth.handleAuth(info, packet);
      default:
        return { reasonCode: ReasonCode.PROTOCOL_ERROR, reason: `unexpected ${packet.cmd}` };
    }
  }

  // --- CONNECT ----------------------------------------------------------------------------

  private async handleConnect(info: ConnectionInfo, packet: ConnectPacket): Promise<void> {
    const req = connect.connectRequest(info, packet);
    const now = this.io.now();
    const previous = this.meta;
    const existed = previous.clientId !== undefined && !(previous.expireAt !== undefined && now >= previous.expireAt);
    const refusal = connect.connectRefusal(req, previous, existed, this.acl);
    if (refusal) return connect.refuseConnect(this.io, req, refusal);

    // Messages in flight to the older connection are written before anything reads the queue.
    this.outbound.flight.storeUnacknowledged(true);
    if (previous.connId && previous.connId !== info.connId) connect.takeOver(this.io, previous, info.clientId);
    await this.will.beforeConnect(previous, req.cleanStart, existed);

    const sessionPresent = existed && !req.cleanStart;
    if (!sessionPresent && previous.clientId !== undefined) {
      await this.subscriptions.dropAll();
      await this.subscriptions.handOverShared(); // the previous session ended
    }
    if (!sessionPresent) {
      this.store.clearState();
      this.subscriptions.cleared();
      this.outbound.queueGone();
    }
    this.store.clearTopicAliases(); // aliases live as long as one network connection [MQTT-3.3.2-7]
    this.inbound.connected(now);
    this.outbound.connected();

    const requestedExpiry = connect.requestedExpiry(req, this.config);
    const expiryInterval = Math.min(requestedExpiry, this.config.maxSessionExpiry);
    this.meta = connect.connectedMeta(req, previous, sessionPresent, expiryInterval, now);
    this.saveMeta();
    this.scheduleAlarm();

    const connack = connect.connack(req, this.config, sessionPresent, requestedExpiry, expiryInterval);
    const connackBytes = encodeWithin(connack, req.version, this.meta.clientMaxPacketSize);
    if (connackBytes) this.io.send(info.connId, connackBytes);
    else {
      // Not even without its optional properties does the CONNACK fit the client's Maximum Packet
      // Size (an Assigned Client Identifier, say): it must not be sent [MQTT-3.1.2-24], and without
      // it the client cannot go on. The connection ends as if the network had failed.
      this.io.close(info.connId, "CONNACK exceeds the client's Maximum Packet Size");
      return this.connectionEnded(info.connId, { reason: "CONNACK exceeds the client's Maximum Packet Size" });
    }
    connect.reportConnected(this.io, req, sessionPresent, expiryInterval, now);
    // [MQTT-4.4.0-1] resend unacknowledged PUBLISH (with DUP) and PUBREL packets of a resumed session
    if (sessionPresent) this.outbound.resendInflight(info.connId);
    this.outbound.pump();
    if (this.meta.queueLevel) this.outbound.checkQueueLevel();
  }

  // --- DISCONNECT and the end of a connection ------------------------------------------------

  private async handleDisconnect(connId: string, packet: DisconnectPacket): Promise<Refusal | undefined> {
    const newExpiry = packet.properties?.sessionExpiryInterval;
    if (this.version === 5 && newExpiry !== undefined) {
      // [3.14.2.2.2, no statement id: U-5.0-disconnect-expiry in docs/conformance] a session that was
      // to end with the connection cannot be extended at DISCONNECT
      if (this.meta.expiryInterval === 0 && newExpiry !== 0) {
        return { reasonCode: ReasonCode.PROTOCOL_ERROR, reason: "session expiry cannot change from 0" };
      }
      this.meta.expiryInterval = Math.min(newExpiry, this.config.maxSessionExpiry);
    }
    // [MQTT-3.14.4-3] a normal DISCONNECT discards the will; 0x04 asks for it to be sent
    const keepWill = this.version === 5 && packet.reasonCode === ReasonCode.DISCONNECT_WITH_WILL;
    if (!keepWill) this.will.cancel();
    this.io.close(connId, "client disconnected");
    const code = this.version === 5 ? hexCode(packet.reasonCode ?? 0) : undefined;
    await this.connectionEnded(connId, { reason: "client DISCONNECT", code });
    return undefined;
  }

  /** The connection's socket closed: handled after every packet that arrived before it. */
  ended(connId: string, cause: EndCause = { reason: "connection closed" }): Promise<void> {
    return this.tasks.run(() =>
      this.connectionEnded(connId, cause).catch((err) => console.error("session end failed", err)),
    );
  }

  /** Ends the connection's part of the session (will, expiry). Safe to call more than once. */
  private async connectionEnded(connId: string, cause: EndCause): Promise<void> {
    if (!this.isCurrent(connId)) return;
    logEvent("info", "connection.ended", { clientId: this.meta.clientId, reason: cause.reason, code: cause.code });
    // Unacknowledged messages of the connection are kept for its resumption [MQTT-4.4.0-1], unless
    // the session ends with it.
    this.outbound.flight.storeUnacknowledged((this.meta.expiryInterval ?? 0) > 0);
    const clientId = this.meta.clientId ?? "";
    this.io.report({ kind: "disconnected", clientId, connId, version: this.version, identity: this.identity });
    const now = this.io.now();
    const expiry = this.meta.expiryInterval ?? 0;
    this.meta.connId = undefined;
    if (expiry > 0) this.meta.expireAt = now + expiry * 1000;
    await this.will.connectionEnded(now, expiry);
    this.saveMeta();
    if (expiry === 0) return this.endSession();
    this.scheduleAlarm();
  }

  /**
   * Writes the session's values; a session that needs no row (it ends with its connection and has
   * no will: `needsNoRow`) holds them in memory and in its connection's socket attachment instead,
   * which outlives hibernation exactly as long as the session: a new clean session writes nothing.
   */
  private saveMeta(): void {
    if (!needsNoRow(this.meta)) return this.store.writeMeta(this.meta);
    this.store.holdMeta(this.meta);
    if (this.meta.connId) this.io.keepWithConnection(this.meta.connId, this.meta);
  }

  /**
   * Sets (or clears) the one alarm. An alarm is only ever set while the meta has a row (a will's
   * delay, an expiry, a hand-over's rows all write it), so a session with none has no alarm to clear:
   * not clearing it saves a billed write per connect and per end of a clean session.
   */
  private scheduleAlarm(): void {
    const at = this.nextAlarm();
    if (at === undefined && !this.store.metaStored()) return;
    this.io.setAlarm(at);
  }

  /** Alarm: a hand-over to retry, a delayed will became due, or an offline session expired. */
  async alarm(): Promise<void> {
    await this.subscriptions.retryHandovers();
    const now = this.io.now();
    await this.will.alarm(now);
    if (this.meta.connId === undefined && this.meta.expireAt !== undefined && now >= this.meta.expireAt) {
      return this.endSession();
    }
    this.scheduleAlarm();
  }

  private nextAlarm(): number | undefined {
    const retry = this.subscriptions.handoverRetryAt();
    const times = [this.meta.willAt, this.meta.connId ? undefined : this.meta.expireAt, retry].filter(
      (t): t is number => t !== undefined,
    );
    return times.length ? Math.min(...times) : undefined;
  }

  private async endSession(): Promise<void> {
    await this.will.sessionEnds();
    await this.subscriptions.dropAll();
    // Unwritten messages are dropped, but a shared subscription's are written first, and handed over.
    this.outbound.flight.storeUnacknowledged(false);
    await this.subscriptions.handOverShared();
    this.outbound.queueGone();
    this.store.clearAll();
    this.meta = {};
    this.scheduleAlarm(); // a retry of failed hand-overs, if any
  }

  // --- delivery to the client (outbound.ts) ---------------------------------------------------

  /** Messages from a shard: see Outbound.deliver. */
  deliver(...args: Parameters<Outbound["deliver"]>): ReturnType<Outbound["deliver"]> {
    return this.outbound.deliver(...args);
  }

  // --- administration (admin API) --------------------------------------------------------------

  /** The session as the admin API shows it; undefined when there is none. */
  describe(): SessionDescription | undefined {
    const m = this.meta;
    const expired = m.connId === undefined && m.expireAt !== undefined && this.io.now() >= m.expireAt;
    if (m.clientId === undefined || expired) return undefined;
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
      inflight: this.outbound.flight.inflightCount(),
      droppedQueueFull: m.droppedQueueFull ?? 0,
      hasWill: m.will !== undefined,
      will: this.will.summary(),
      outbound: this.store.outboundHead(DESCRIBED_OUTBOUND),
    };
  }

  /**
   * An operator closes the client's connection: v5 DISCONNECT 0x98 (administrative action). The
   * connection ended without the client's DISCONNECT, so its will is published [MQTT-3.1.2-8].
   * Resolves false when the client is not connected.
   */
  adminDisconnect(): Promise<boolean> {
    return this.tasks.run(async () => {
      const connId = this.meta.connId;
      if (!connId) return false;
      await this.closeByAdministrator(connId, "disconnected by an administrator");
      return true;
    });
  }

  /** An operator deletes the session: its connection is closed as above, then the session ends now. */
  adminDelete(): Promise<boolean> {
    return this.tasks.run(async () => {
      if (this.describe() === undefined) return false;
      const connId = this.meta.connId;
      if (connId) await this.closeByAdministrator(connId, "session deleted by an administrator");
      if (this.meta.clientId !== undefined) await this.endSession();
      return true;
    });
  }

  /** v5 DISCONNECT 0x98 (administrative action), close, and the end of the connection (its will). */
  private async closeByAdministrator(connId: string, reason: string): Promise<void> {
    if (this.version === 5) {
      this.send(connId, [this.withReason({ cmd: "disconnect", reasonCode: ReasonCode.ADMINISTRATIVE_ACTION }, reason)]);
    }
    this.io.close(connId, reason);
    const code = this.version === 5 ? "0x98" : undefined;
    await this.connectionEnded(connId, { reason: `administrator: ${reason}`, code });
  }

  // --- refusals and errors: the one place a connection is ended for them -----------------------

  /**
   * Ends a connection for a refusal: v5 DISCONNECT with its reason code and Reason String, 3.1.1 a
   * plain close [MQTT-4.13.1-1]; then the end of the connection's part of the session.
   */
  private async refuse(connId: string, { reasonCode, reason }: Refusal): Promise<void> {
    if (this.version === 5 && this.isCurrent(connId)) {
      this.send(connId, [this.withReason({ cmd: "disconnect", reasonCode }, reason)]);
    }
    this.io.close(connId, reason.slice(0, 100));
    await this.connectionEnded(connId, { reason, code: hexCode(reasonCode) });
  }

  private async serverError(connId: string, err: unknown): Promise<void> {
    console.error(`session error, client ${logText(this.meta.clientId)}`, err);
    await this.refuse(connId, { reasonCode: ReasonCode.UNSPECIFIED_ERROR, reason: "internal error" });
  }

  private async fail(connId: string, err: unknown): Promise<void> {
    await this.serverError(connId, err).catch(() => undefined);
  }

  /**
   * Adds a v5 Reason String unless the client asked for no problem information; DISCONNECT, CONNACK
   * and PUBLISH may always carry one [MQTT-3.1.2-29].
   */
  private withReason<P extends PacketWithReason>(packet: P, reason: string): P {
    const always = packet.cmd === "disconnect" || packet.cmd === "connack";
    if (this.version !== 5 || (!always && this.meta.problemInfo === false)) return packet;
    // send() leaves it out again if it would exceed the client's Maximum Packet Size
    return { ...packet, properties: { ...packet.properties, reasonString: reason } };
  }

  /**
   * Sends packets as one frame, each within the client's Maximum Packet Size (encodeWithin: without
   * its Reason String or User Properties if need be). One that cannot fit at all is not sent.
   */
  private send(connId: string, packets: Packet[]): void {
    const encoded: Uint8Array[] = [];
    for (const p of packets) {
      const bytes = this.encode(p);
      if (bytes) encoded.push(bytes);
    }
    if (encoded.length) this.io.send(connId, joinFrames(encoded));
  }

  private encode(packet: Packet): Uint8Array | undefined {
    return encodeWithin(packet, this.version, this.meta.clientMaxPacketSize);
  }
}
