/**
 * Session Durable Object: a thin shell over Session. It is the server side of the internal
 * WebSocket from the gateway (Hibernation API), so an idle session costs nothing; state lives in
 * SQLite and per-connection facts in the socket attachment.
 */
import { applyLogLevel } from "../observability/log";
import { DurableObject } from "cloudflare:workers";
import { authConfigFor } from "../auth/auth-config";
import { configFor, type BrokerConfig } from "../config";
import { counters, countingSql } from "../observability/counters";
import { registryStub, topicShardStub, type Env } from "../env";
import type { ProtocolVersion } from "../protocol/constants";
import type { Delivery, DeliveryOutcome, RoutedMessage, Subscription } from "../protocol/message";
import { shardForTopic, shardsForFilter } from "../topics/shard-rule";
import type { TopicShardObject } from "../topics/topic-shard-object";
import { Batcher } from "../util/batcher";
import { CALL_GAP_MS, CallSequencer, OrderedChannels, type CallOrder } from "../util/ordered-calls";
import { InboundOrder } from "../protocol/internal-order";
import { decodeConnectHeaders, decodeFrame } from "../protocol/internal-frame";
import { endCause } from "../protocol/internal-close";
import { registryShardFor } from "../registry/client-registry";
import { currentHooks, hookMessage, runHook } from "../hooks";
import { Session, type ConnectionInfo, type EndCause, type SessionDescription, type SessionEvent, type SessionIO } from "./session";

/** Most messages routed to one shard in one call. */
const MAX_ROUTE_BATCH = 128;
/** Shards whose calls to this session are put in order (more than any deployment's shard count). */
const MAX_ORDERED_CALLERS = 1024;

/** Survives hibernation with the socket (serializeAttachment, well under 16 KB). */
interface Attachment extends ConnectionInfo {
  version: ProtocolVersion;
  /** CONNECT has been handled on this socket. */
  connected: boolean;
}

export class SessionObject extends DurableObject<Env> {
  private readonly config: BrokerConfig;
  private readonly session: Session;
  private readonly sockets = new Map<string, WebSocket>();
  /** Per connection, packets put back in the gateway's order (protocol/internal-order.ts). */
  private readonly inbound = new Map<string, InboundOrder<Uint8Array[]>>();
  /** Calls to shards, numbered so that each shard handles this session's calls in order. */
  private readonly shards = new OrderedChannels<number, DurableObjectStub<TopicShardObject>>(
    (index) => topicShardStub(this.env, index),
    () => crypto.randomUUID(),
    Number.MAX_SAFE_INTEGER, // one per shard: bounded by the shard count
  );
  /** Deliveries from each shard, handled in the order the shard made them. */
  private readonly fromShards = new CallSequencer(MAX_ORDERED_CALLERS, CALL_GAP_MS, (ms, fn) => setTimeout(fn, ms));
  /** Invocations of this object not yet reported to the registry (metrics; lost if evicted first). */
  private invocations = 0;
  /** Publishes to one shard from packets that arrived together go in one call. */
  private readonly routes = new Batcher<number, RoutedMessage, number>(
    (index, messages) => this.shards.call(index, (shard, order) => shard.publishMany(messages, order)),
    (fn) => setTimeout(fn, 0),
    MAX_ROUTE_BATCH,
  );

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevel(env.LOG_LEVEL);
    this.config = configFor(env);
    const auth = authConfigFor(env);
    this.session = new Session(countingSql(ctx.storage.sql), this.io(), this.config, auth.acl, auth);
    // A restart (eviction, deploy, crash) drops the socket without a close event: end that connection
    // now, so its will is sent and its expiry starts. Queued before any event this wake delivers.
    const live = this.session.liveConnection;
    if (live && !this.socket(live)) void this.session.ended(live, { reason: "session object restarted: the connection was lost" });
  }

  /** Counts one invocation of this object (test counters, and the registry's metrics). */
  private invoked(): void {
    counters.sessionInvocations++;
    this.invocations++;
  }

  /** The gateway opens the internal WebSocket here; the first message on it is the CONNECT. */
  async fetch(request: Request): Promise<Response> {
    this.invoked();
    if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
      return new Response("Session objects accept only the gateway's WebSocket", { status: 426 });
    }
    const attachment: Attachment = { connId: crypto.randomUUID(), ...decodeConnectHeaders(request.headers), connected: false };
    const pair = new WebSocketPair();
    const [gatewaySide, sessionSide] = Object.values(pair);
    this.ctx.acceptWebSocket(sessionSide);
    sessionSide.serializeAttachment(attachment);
    this.sockets.set(attachment.connId, sessionSide);
    this.inbound.set(attachment.connId, new InboundOrder<Uint8Array[]>(0));
    return new Response(null, { status: 101, webSocket: gatewaySide });
  }

  async webSocketMessage(ws: WebSocket, message: ArrayBuffer | string): Promise<void> {
    this.invoked();
    counters.sessionWebSocketMessages++;
    if (typeof message === "string") return; // the gateway sends MQTT packets only, as binary
    const frame = decodeFrame(new Uint8Array(message));
    if ("error" in frame) return;
    const a = ws.deserializeAttachment() as Attachment;
    this.sockets.set(a.connId, ws);
    let order = this.inbound.get(a.connId);
    if (!order) {
      // After hibernation the expected number is not known: order resumes from the first arrival.
      order = new InboundOrder<Uint8Array[]>(frame.seq);
      this.inbound.set(a.connId, order);
    }
    const handled: Promise<void>[] = [];
    for (const packets of order.accept(frame.seq, frame.packets)) {
      for (const packet of packets) handled.push(this.receivePacket(ws, a, packet));
    }
    await Promise.all(handled);
  }

  /** One packet of the connection, in the order the client sent it. */
  private receivePacket(ws: WebSocket, a: Attachment, packet: Uint8Array): Promise<void> {
    const expectConnect = !a.connected;
    if (expectConnect) {
      a.connected = true;
      ws.serializeAttachment(a);
    }
    return this.session.receive(a, packet, expectConnect ? undefined : a.version);
  }

  async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    this.invoked();
    await this.socketGone(ws, endCause(code, reason));
  }

  async webSocketError(ws: WebSocket): Promise<void> {
    this.invoked();
    await this.socketGone(ws, { reason: "network: the gateway's connection failed" });
  }

  private async socketGone(ws: WebSocket, cause: EndCause): Promise<void> {
    const a = ws.deserializeAttachment() as Attachment;
    this.sockets.delete(a.connId);
    this.inbound.delete(a.connId);
    try {
      ws.close(1000, "closed");
    } catch {
      // already closed
    }
    await this.session.ended(a.connId, cause);
  }

  async alarm(): Promise<void> {
    this.invoked();
    await this.session.alarm();
  }

  /** RPC from a TopicShard: messages for this session (see Session.deliver). */
  async deliver(batch: Delivery[], onlyIfOnline = false, order?: CallOrder): Promise<DeliveryOutcome> {
    this.invoked();
    return this.fromShards.run(order, () => this.session.deliver(batch, onlyIfOnline, true));
  }

  // --- SessionIO: what the session core may do (kept off the RPC surface) --------------------

  private io(): SessionIO {
    return {
      send: (connId, frame) => this.sendFrame(connId, frame),
      close: (connId, reason) => this.closeSocket(connId, reason),
      route: (message) => this.route(message),
      redistribute: (shareFilter, leaving, message) =>
        this.shards.call(this.topicShardIndex(message.topic), (shard, order) => shard.redistribute(shareFilter, leaving, message, order)),
      subscribe: (clientId, subs, retainedFor) => this.subscribeShards(clientId, subs, retainedFor),
      unsubscribe: (clientId, filters) => this.unsubscribeShards(clientId, filters),
      setAlarm: (at) => {
        counters.alarmWrites++;
        if (at === undefined) void this.ctx.storage.deleteAlarm();
        else void this.ctx.storage.setAlarm(at);
      },
      later: (ms, fn) => void setTimeout(fn, ms),
      now: () => Date.now(),
      newId: () => crypto.randomUUID(),
      report: (event) => this.report(event),
      hooks: currentHooks(),
      hookContext: (clientId, identity) => ({
        env: this.env,
        clientId,
        identity,
        publish: (p) => this.route({ ...hookMessage(p), id: `hook:${crypto.randomUUID()}`, origin: "", receivedAt: Date.now() }),
      }),
    };
  }

  /** Presence and drops go to the client's registry shard; a failure there never affects the session. */
  private report(event: SessionEvent): void {
    if (event.kind === "sys-watch") {
      registryStub(this.env, 0).watchSys().catch((err) => console.warn("$SYS start failed", err));
      return;
    }
    this.runLifecycleHook(event);
    const clientId = event.kind === "connected" ? event.record.clientId : event.clientId;
    const registry = registryStub(this.env, registryShardFor(clientId, this.config.registryShardCount));
    const invocations = this.invocations;
    this.invocations = 0;
    const sent =
      event.kind === "connected" ? registry.connected(event.record, invocations)
      : event.kind === "disconnected" ? registry.disconnected(event.clientId, event.connId, invocations)
      : event.kind === "dropped" ? registry.dropped(event.reason, event.count, invocations)
      : registry.queueLevel(event.clientId, event.level, invocations);
    sent.catch((err) => console.warn("registry report failed", err));
  }

  /** The user's onConnect / onDisconnect hooks (not awaited: they never delay the session). */
  private runLifecycleHook(event: SessionEvent): void {
    const hooks = currentHooks();
    if (event.kind === "connected" && hooks.onConnect) {
      const ctx = this.io().hookContext(event.record.clientId, event.identity);
      const info = { protocolVersion: event.record.version, sessionPresent: event.record.sessionPresent, remoteAddress: event.record.remoteAddress };
      void runHook("onConnect", undefined, () => hooks.onConnect!(ctx, info));
    } else if (event.kind === "disconnected" && hooks.onDisconnect) {
      const ctx = this.io().hookContext(event.clientId, event.identity);
      void runHook("onDisconnect", undefined, () => hooks.onDisconnect!(ctx));
    }
  }

  // --- administration (RPC from the admin API) ------------------------------------------------

  async describe(): Promise<SessionDescription | undefined> {
    this.invoked();
    return this.session.describe();
  }

  async adminDisconnect(): Promise<boolean> {
    this.invoked();
    return this.session.adminDisconnect();
  }

  async adminDelete(): Promise<boolean> {
    this.invoked();
    return this.session.adminDelete();
  }


  private socket(connId: string): WebSocket | undefined {
    let ws = this.sockets.get(connId);
    if (!ws) {
      // After hibernation the map is empty: find the socket by its attachment.
      for (const candidate of this.ctx.getWebSockets()) {
        const a = candidate.deserializeAttachment() as Attachment | null;
        if (a) this.sockets.set(a.connId, candidate);
        if (a?.connId === connId) ws = candidate;
      }
    }
    return ws;
  }

  private sendFrame(connId: string, frame: Uint8Array): void {
    try {
      this.socket(connId)?.send(frame);
    } catch {
      // The socket closed under us; its close event ends the connection.
    }
  }

  private closeSocket(connId: string, reason: string): void {
    const ws = this.socket(connId);
    this.sockets.delete(connId);
    try {
      ws?.close(1000, reason.slice(0, 120));
    } catch {
      // already closed
    }
  }

  private topicShardIndex(topic: string): number {
    return shardForTopic(topic, this.config.shardCount, this.config.shardLevels);
  }

  private route(message: RoutedMessage): Promise<number> {
    return this.routes.add(this.topicShardIndex(message.topic), message);
  }

  private async subscribeShards(clientId: string, subs: Subscription[], retainedFor: string[]): Promise<RoutedMessage[][]> {
    const byShard = new Map<number, { subs: Subscription[]; retainedFor: string[] }>();
    for (const sub of subs) {
      for (const index of shardsForFilter(sub.filter, this.config.shardCount, this.config.shardLevels)) {
        let entry = byShard.get(index);
        if (!entry) byShard.set(index, (entry = { subs: [], retainedFor: [] }));
        entry.subs.push(sub);
        if (retainedFor.includes(sub.filter)) entry.retainedFor.push(sub.filter);
      }
    }
    const merged: RoutedMessage[][] = retainedFor.map(() => []);
    await Promise.all(
      [...byShard].map(async ([index, entry]) => {
        const found = await this.shards.call(index, (shard, order) => shard.subscribe(clientId, entry.subs, entry.retainedFor, order));
        // (RPC's types widen the [name, value] tuples of User Properties to string[])
        entry.retainedFor.forEach((filter, i) => merged[retainedFor.indexOf(filter)].push(...(found[i] as RoutedMessage[])));
      }),
    );
    return merged;
  }

  private async unsubscribeShards(clientId: string, filters: string[]): Promise<void> {
    const byShard = new Map<number, string[]>();
    for (const filter of filters) {
      for (const index of shardsForFilter(filter, this.config.shardCount, this.config.shardLevels)) {
        byShard.set(index, [...(byShard.get(index) ?? []), filter]);
      }
    }
    await Promise.all([...byShard].map(([index, list]) => this.shards.call(index, (shard, order) => shard.unsubscribe(clientId, list, order))));
  }
}
