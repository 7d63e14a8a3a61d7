/**
 * Session Durable Object: the shell over Session, handling platform events only (the gateway's
 * WebSocket, alarms, RPC) and delegating each. It is the server side of the internal WebSocket from
 * the gateway (Hibernation API), so an idle session costs nothing; state lives in SQLite and
 * per-connection facts in the socket attachment (session-sockets.ts). What the session may do to
 * the world is its SessionIO (session-links.ts).
 */
import { applyLogLevel } from "../observability/log";
import { DurableObject } from "cloudflare:workers";
import { authConfigFor } from "../auth/auth-config";
import { configFor } from "../config";
import { BusyClock } from "../observability/busy-clock";
import { counters, countingSql, countObjectCall, countSessionBusy } from "../observability/counters";
import { topicShardStub, type Env } from "../env";
import type { Delivery, DeliveryReply } from "../protocol/message";
import { CallRateMeter } from "../util/call-pacing";
import { CALL_GAP_MS, CallSequencer, type CallOrder } from "../util/ordered-calls";
import { decodeFrame } from "../protocol/internal-frame";
import { endCause } from "../protocol/internal-close";
import { Session, type EndCause, type SessionDescription } from "./session";
import { hookContext, sessionIO } from "./session-links";
import { SessionReporter } from "./session-reporter";
import { attachmentFromUpgrade, SessionSockets, type Attachment } from "./session-sockets";
import { ShardLinks } from "./shard-links";
import { SqliteSessionStore } from "./store";

/** Shards whose calls to this session are put in order (more than any deployment's shard count). */
const MAX_ORDERED_CALLERS = 1024;
/**
 * Longest wait, after an internal socket closed, for frames the gateway sent before the close: on a
 * reliable socket they come (in the tests' runs, right after the close); the bound is for a gateway
 * that failed.
 */
const CLOSE_FRAMES_WAIT_MS = 2000;
/**
 * The same wait in a wake that has seen no frame of the connection (after hibernation), for its last
 * frame: short, because it is also what a close waits when every frame was handled before the wake.
 */
const WOKEN_CLOSE_FRAMES_WAIT_MS = 250;

export class SessionObject extends DurableObject<Env> {
  private readonly session: Session;
  private readonly sockets: SessionSockets;
  private readonly reporter: SessionReporter;
  /** Deliveries from each shard, handled in the order the shard made them. */
  private readonly fromShards = new CallSequencer(MAX_ORDERED_CALLERS, CALL_GAP_MS, (ms, fn) => setTimeout(fn, ms));
  /** The shards' `deliver` calls per second, and the spacing each reply asks for (DELIVERY_CALL_RATE). */
  private readonly deliverCalls: CallRateMeter;
  /**
   * Wall time with an event being handled or a shard call awaited: most of what the object is billed
   * for as duration (a test and bench counter, never written; docs/COST.md says what it leaves out).
   */
  private readonly busy = new BusyClock(
    () => Date.now(),
    (ms) => countSessionBusy(this.objectName(), ms),
  );

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevel(env.LOG_LEVEL);
    const config = configFor(env);
    this.deliverCalls = new CallRateMeter(config.deliveryCallRate);
    const auth = authConfigFor(env);
    const sockets = (this.sockets = new SessionSockets(() => ctx.getWebSockets()));
    const shards = new ShardLinks(
      config,
      (index) => topicShardStub(env, index),
      () => crypto.randomUUID(),
      "session",
      undefined,
      undefined,
      // The object waits for the shards' answers (and is billed meanwhile), also after its event returned.
      (call) => this.busy.track(call),
    );
    const reporter = (this.reporter = new SessionReporter(env, config, (clientId, identity) =>
      hookContext(env, shards, clientId, identity),
    ));
    const io = sessionIO({ env, sockets, shards, reporter, storage: ctx.storage });
    const store = new SqliteSessionStore(countingSql(ctx.storage.sql));
    // A session that writes no row kept its values with its connection: after hibernation they are there.
    const kept = store.metaStored() ? undefined : sockets.keptMeta();
    if (kept) store.holdMeta(kept);
    this.session = new Session(store, io, config, auth.acl, auth);
    // A restart (eviction, deploy, crash) drops the socket without a close event: end that connection
    // now, so its will is sent and its expiry starts. Queued before any event this wake delivers.
    const live = this.session.liveConnection;
    if (live && !this.sockets.socket(live)) {
      void this.session.ended(live, { reason: "session object restarted: the connection was lost" });
    }
  }

  /** Named by its client id (the name the gateway and the shards reach it by). */
  private objectName(): string {
    return this.ctx.id.name ?? this.session.clientId ?? this.ctx.id.toString();
  }

  /** Counts one invocation of this object (test counters, and the registry's metrics). */
  private invoked(): void {
    counters.sessionInvocations++;
    countObjectCall("session", this.objectName());
    this.reporter.invoked();
  }

  /** One event: counted, and the object busy until it is handled. */
  private event<T>(handle: () => T | Promise<T>): Promise<T> {
    this.invoked();
    let work: Promise<T>;
    try {
      work = Promise.resolve(handle());
    } catch (err) {
      work = Promise.reject(err);
    }
    return this.busy.track(work);
  }

  /** The gateway opens the internal WebSocket here; the first message on it is the CONNECT. */
  override fetch(request: Request): Promise<Response> {
    return this.event(() => this.upgrade(request));
  }

  private upgrade(request: Request): Response {
    if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
      return new Response("Session objects accept only the gateway's WebSocket", { status: 426 });
    }
    // A connection whose socket closed ahead of some of its frames ends now, before this one's CONNECT.
    for (const end of this.sockets.endsNow()) void end().catch((err) => console.error("session end failed", err));
    const { 0: gatewaySide, 1: sessionSide } = new WebSocketPair();
    this.ctx.acceptWebSocket(sessionSide);
    this.sockets.opened(sessionSide, attachmentFromUpgrade(request.headers, crypto.randomUUID()));
    return new Response(null, { status: 101, webSocket: gatewaySide });
  }

  override webSocketMessage(ws: WebSocket, message: ArrayBuffer | string): Promise<void> {
    return this.event(() => this.frameReceived(ws, message));
  }

  private async frameReceived(ws: WebSocket, message: ArrayBuffer | string): Promise<void> {
    counters.sessionWebSocketMessages++;
    this.deliverCalls.recordOther(Date.now()); // the limit the shards are paced by is on every event
    if (typeof message === "string") return; // the gateway sends MQTT packets only, as binary
    if (this.sockets.hasEnded(ws)) return; // a frame later than its connection's end (2 s after the close)
    const frame = decodeFrame(new Uint8Array(message));
    if ("error" in frame) return; // not a frame the gateway wrote: ignored
    const a = this.sockets.attachment(ws);
    const handled: Promise<void>[] = [];
    for (const packets of this.sockets.inOrder(a.connId, frame.seq, frame.packets)) {
      for (const packet of packets) handled.push(this.receivePacket(ws, a, packet));
    }
    // The socket closed before this frame arrived: the connection ends after its packets.
    const end = this.sockets.endWhenComplete(a.connId);
    if (end) handled.push(end());
    await Promise.all(handled);
  }

  /** One packet of the connection, in the order the client sent it. */
  private receivePacket(ws: WebSocket, a: Attachment, packet: Uint8Array): Promise<void> {
    const expectConnect = this.sockets.firstPacket(ws, a);
    return this.session.receive(a, packet, expectConnect ? undefined : a.version);
  }

  override webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    return this.event(() => this.socketClosed(ws, code, reason));
  }

  private async socketClosed(ws: WebSocket, code: number, reason: string): Promise<void> {
    const cause = endCause(code, reason);
    const a = this.sockets.attachment(ws);
    // Frames the gateway sent before closing may reach this object after the close: the connection
    // ends once they are handled (protocol/internal-close.ts), or after CLOSE_FRAMES_WAIT_MS.
    const end = async () => {
      // Frames that came but wait for one that did not are handled first, in order.
      const handled = this.sockets
        .releaseHeld(a.connId)
        .flatMap((packets) => packets.map((p) => this.receivePacket(ws, a, p)));
      await Promise.all([...handled, this.socketGone(ws, cause)]);
    };
    const framesSent = cause.framesSent;
    const bounds = { waitMs: CLOSE_FRAMES_WAIT_MS, wokenWaitMs: WOKEN_CLOSE_FRAMES_WAIT_MS };
    if (framesSent !== undefined && this.sockets.endAfterFrames(a.connId, framesSent, end, bounds)) return;
    await end();
  }

  override webSocketError(ws: WebSocket): Promise<void> {
    return this.event(() => this.socketGone(ws, { reason: "network: the gateway's connection failed" }));
  }

  private async socketGone(ws: WebSocket, cause: EndCause): Promise<void> {
    const a = this.sockets.gone(ws);
    await this.session.ended(a.connId, cause);
  }

  override alarm(): Promise<void> {
    return this.event(() => this.session.alarm());
  }

  /**
   * RPC from a TopicShard: messages for this session (see Session.deliver). The reply also tells the
   * shard how far apart to make its next calls, so all shards together stay under DELIVERY_CALL_RATE.
   */
  deliver(batch: Delivery[], onlyIfOnline = false, order?: CallOrder): Promise<DeliveryReply> {
    return this.event(async () => {
      counters.sessionDeliverCalls++;
      const spacingMs = this.deliverCalls.record(order?.from ?? "", Date.now());
      const declined: number[] = [];
      const outcome = await this.fromShards.run(order, () => this.session.deliver(batch, onlyIfOnline, true, declined));
      return declined.length ? { outcome, spacingMs, declined } : { outcome, spacingMs };
    });
  }

  // --- administration (RPC from the admin API) ------------------------------------------------

  describe(): Promise<SessionDescription | undefined> {
    return this.event(() => this.session.describe());
  }

  adminDisconnect(): Promise<boolean> {
    return this.event(() => this.session.adminDisconnect());
  }

  adminDelete(): Promise<boolean> {
    return this.event(() => this.session.adminDelete());
  }
}
