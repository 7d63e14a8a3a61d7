/**
 * The Session object's internal WebSockets from the gateway, one per client connection: what each
 * socket carries across hibernation (its attachment: the facts the gateway established, validated
 * when read back and cached), finding a socket again after hibernation, its packets put back in the
 * gateway's order, and sending and closing.
 */
import type { ProtocolVersion } from "../protocol/constants";
import { decodeConnectHeaders } from "../protocol/internal-frame";
import { SENT_CLOSE_REASON_CHARS } from "../protocol/internal-close";
import { InboundOrder } from "../protocol/internal-order";
import type { ConnectionInfo } from "./session";
import type { SessionMeta } from "./store";

/**
 * Survives hibernation with the socket (serializeAttachment: at most 2,048 bytes; the identity, the
 * largest part, is kept once).
 */
export interface Attachment extends ConnectionInfo {
  version: ProtocolVersion;
  /** CONNECT has been handled on this socket. */
  connected: boolean;
  /** The values of a session that writes no row, without the identity (Session.saveMeta). */
  meta?: Omit<SessionMeta, "identity">;
}

/** A new connection's attachment, from the headers of the gateway's upgrade request. */
export function attachmentFromUpgrade(h: Headers, connId: string): Attachment {
  return { connId, ...decodeConnectHeaders(h), connected: false };
}

const optional = (value: unknown, type: "string" | "number" | "object" | "boolean") =>
  value === undefined || (typeof value === type && value !== null);

/** Whether a value read back from a socket is an Attachment this code wrote (the shape, not the values). */
export function isAttachment(value: unknown): value is Attachment {
  if (typeof value !== "object" || value === null) return false;
  const a = value as Record<string, unknown>;
  return (
    typeof a["connId"] === "string" &&
    typeof a["clientId"] === "string" &&
    typeof a["assignedClientId"] === "boolean" &&
    typeof a["version"] === "number" &&
    typeof a["connected"] === "boolean" &&
    optional(a["serverKeepAlive"], "number") &&
    optional(a["identity"], "object") &&
    optional(a["authResponse"], "object") &&
    optional(a["remoteAddress"], "string") &&
    optional(a["routeAtEdge"], "boolean") &&
    optional(a["meta"], "object")
  );
}

export class SessionSockets {
  /** Attachments read in this wake: deserialized and checked once per socket, not per message. */
  private readonly attachments = new WeakMap<WebSocket, Attachment>();
  private readonly sockets = new Map<string, WebSocket>();
  /** Per connection, packets put back in the gateway's order (protocol/internal-order.ts). */
  private readonly inbound = new Map<string, InboundOrder<Uint8Array[]>>();
  /**
   * Connections whose socket closed before every frame sent ahead of the close had arrived: how many
   * frames the gateway sent, the end to run once they are in, and the bound on the wait
   * (protocol/internal-close.ts). At most one per open socket.
   */
  private readonly endsWaiting = new Map<
    string,
    { framesSent: number; end: () => Promise<void>; timer: ReturnType<typeof setTimeout> }
  >();
  /** Sockets whose connection has ended: a frame arriving on one later is not handled. */
  private readonly ended = new WeakSet<WebSocket>();

  /** `accepted`: the object's hibernatable sockets (ctx.getWebSockets). */
  constructor(private readonly accepted: () => WebSocket[]) {}

  /** A socket just accepted (ctx.acceptWebSocket), with its connection's attachment. */
  opened(ws: WebSocket, attachment: Attachment): void {
    this.save(ws, attachment);
    this.sockets.set(attachment.connId, ws);
    this.inbound.set(attachment.connId, new InboundOrder<Uint8Array[]>(0));
  }

  /** The attachment of a socket an event came on; throws if it has none this code wrote. */
  attachment(ws: WebSocket): Attachment {
    const a = this.read(ws);
    if (!a) throw new Error("Session object: a WebSocket without a valid connection attachment");
    this.sockets.set(a.connId, ws);
    return a;
  }

  /** The packets of a frame, and of any frames it released, in the gateway's order. */
  inOrder(connId: string, seq: number, packets: Uint8Array[]): Uint8Array[][] {
    let order = this.inbound.get(connId);
    if (!order) {
      // After hibernation the expected number is not known: order resumes from the first arrival.
      order = new InboundOrder<Uint8Array[]>(seq);
      this.inbound.set(connId, order);
    }
    return order.accept(seq, packets);
  }

  /** Whether the socket's connection has ended (`gone`): its late frames are not handled. */
  hasEnded(ws: WebSocket): boolean {
    return this.ended.has(ws);
  }

  /**
   * The socket closed after the gateway sent `framesSent` frames on it: true when some of them may
   * not have arrived yet, and then `end` waits for `endWhenComplete`, a new connection (`endsNow`),
   * or the bound, whichever comes first. The bound is `waitMs`; after hibernation, when this wake has
   * seen no frame of the connection, which ones were handled before is not known (keeping the number
   * across hibernation would mean writing the socket's attachment per frame): the end then waits for
   * the last frame only `wokenWaitMs`, which is all it waits when every frame was handled before.
   */
  endAfterFrames(
    connId: string,
    framesSent: number,
    end: () => Promise<void>,
    { waitMs, wokenWaitMs }: { waitMs: number; wokenWaitMs: number },
  ): boolean {
    const order = this.inbound.get(connId);
    if (framesSent === 0 || (order && order.expected >= framesSent) || this.endsWaiting.has(connId)) return false;
    const timer = setTimeout(
      () => this.takeEnd(connId)?.().catch((err) => console.error("session end failed", err)),
      order ? waitMs : wokenWaitMs,
    );
    this.endsWaiting.set(connId, { framesSent, end, timer });
    return true;
  }

  /** After a frame of a connection: its waiting end, once every frame sent before the close is in. */
  endWhenComplete(connId: string): (() => Promise<void>) | undefined {
    const waiting = this.endsWaiting.get(connId);
    if (!waiting || (this.inbound.get(connId)?.expected ?? 0) < waiting.framesSent) return undefined;
    return this.takeEnd(connId);
  }

  /** Every waiting end, now (a new connection comes: what closed before it ends first). */
  endsNow(): (() => Promise<void>)[] {
    return [...this.endsWaiting.keys()].flatMap((connId) => this.takeEnd(connId) ?? []);
  }

  /** Frames that arrived but wait for an earlier one that did not come: released, in order, at the end. */
  releaseHeld(connId: string): Uint8Array[][] {
    return this.inbound.get(connId)?.releaseAll() ?? [];
  }

  private takeEnd(connId: string): (() => Promise<void>) | undefined {
    const waiting = this.endsWaiting.get(connId);
    if (!waiting) return undefined;
    clearTimeout(waiting.timer);
    this.endsWaiting.delete(connId);
    return waiting.end;
  }

  /** Marks the socket's CONNECT handled; true when this packet is that CONNECT (its first). */
  firstPacket(ws: WebSocket, a: Attachment): boolean {
    if (a.connected) return false;
    a.connected = true;
    this.save(ws, a);
    return true;
  }

  /** The socket of a connection, if it is still open (found by its attachment after hibernation). */
  socket(connId: string): WebSocket | undefined {
    let ws = this.sockets.get(connId);
    if (!ws) {
      // After hibernation the map is empty: find the socket by its attachment.
      for (const candidate of this.accepted()) {
        const a = this.read(candidate);
        if (a) this.sockets.set(a.connId, candidate);
        if (a?.connId === connId) ws = candidate;
      }
    }
    return ws;
  }

  /**
   * Keeps the values of a session that writes no row in its live connection's attachment: they last
   * as long as the connection, which is as long as such a session lasts.
   */
  keepMeta(connId: string, meta: SessionMeta): void {
    const ws = this.socket(connId);
    const a = ws && this.read(ws);
    if (!ws || !a) return;
    const rest: Attachment["meta"] = { ...meta };
    delete (rest as SessionMeta).identity; // the attachment has the identity already
    this.save(ws, { ...a, meta: rest });
  }

  /** The gateway handed routing back: the connection's attachment says so from now on (ROUTE_AT_EDGE). */
  routeAtSession(connId: string): void {
    const ws = this.socket(connId);
    const a = ws && this.read(ws);
    if (!ws || !a) return;
    a.routeAtEdge = false; // the cached attachment too: the events of this wake read it
    this.save(ws, a);
  }

  /**
   * After hibernation: the values kept with the live connection (keepMeta), if any; the latest
   * connection's, should a taken-over one not be closed yet.
   */
  keptMeta(): SessionMeta | undefined {
    let kept: SessionMeta | undefined;
    for (const ws of this.accepted()) {
      const a = this.read(ws);
      if (!a?.meta || a.meta.connId !== a.connId) continue;
      if (kept && (kept.connectedAt ?? 0) > (a.meta.connectedAt ?? 0)) continue;
      kept = { ...a.meta, identity: a.identity ?? {} };
    }
    return kept;
  }

  /** Sends one frame (no-op if the connection is gone). */
  send(connId: string, frame: Uint8Array): void {
    try {
      this.socket(connId)?.send(frame);
    } catch {
      // The socket closed under us; its close event ends the connection.
    }
  }

  /** Closes a connection's socket from this side. */
  close(connId: string, reason: string): void {
    const ws = this.socket(connId);
    this.sockets.delete(connId);
    try {
      ws?.close(1000, reason.slice(0, SENT_CLOSE_REASON_CHARS));
    } catch {
      // already closed
    }
  }

  /** The socket closed or failed: forgets it and closes this side; returns its attachment. */
  gone(ws: WebSocket): Attachment {
    const a = this.attachment(ws);
    this.ended.add(ws);
    this.sockets.delete(a.connId);
    this.inbound.delete(a.connId);
    try {
      ws.close(1000, "closed");
    } catch {
      // already closed
    }
    return a;
  }

  private read(ws: WebSocket): Attachment | undefined {
    let a = this.attachments.get(ws);
    if (!a) {
      const stored: unknown = ws.deserializeAttachment();
      if (!isAttachment(stored)) return undefined;
      this.attachments.set(ws, (a = stored));
    }
    return a;
  }

  private save(ws: WebSocket, a: Attachment): void {
    this.attachments.set(ws, a);
    ws.serializeAttachment(a);
  }
}
