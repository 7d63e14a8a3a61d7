/**
 * The gateway's side of the internal WebSocket to a client's Session object: opening it (the
 * connection facts go as upgrade headers, protocol/internal-frame.ts), holding the client's packets
 * while it opens, then forwarding them in bursts (burst.ts).
 */
import type { Env } from "../env";
import { SENT_CLOSE_REASON_CHARS, withFramesSent } from "../protocol/internal-close";
import { encodeConnectHeaders, type SessionConnect } from "../protocol/internal-frame";
import { BurstBatcher } from "./burst";

/**
 * Opens the internal WebSocket to the Session object named by the client id; throws when the
 * session refuses it or cannot be reached.
 */
export async function openSessionSocket(env: Env, connect: SessionConnect): Promise<WebSocket> {
  // The client id names the Session object: all the session's state is there.
  const stub = env.SESSION.get(env.SESSION.idFromName(connect.clientId));
  const headers = { Upgrade: "websocket", ...encodeConnectHeaders(connect) };
  const response = await stub.fetch("https://session.internal/connect", { headers });
  const socket = response.webSocket;
  if (!socket) throw new Error(`session refused the connection: ${response.status}`);
  socket.binaryType = "arraybuffer";
  socket.accept();
  return socket;
}

export class SessionLink {
  private socket?: WebSocket;
  /** Packets that arrived while the session socket was opening (bounded by `maxHeldBytes`). */
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private paused = false;
  private readonly burst = new BurstBatcher(
    (frame) => this.socket!.send(frame),
    (fn) => setTimeout(fn, 0),
  );

  constructor(private readonly maxHeldBytes: number) {}

  /** Holds a packet until the session socket is open; false when the packets held now exceed the limit. */
  hold(packet: Uint8Array): boolean {
    this.held.push(packet);
    this.heldBytes += packet.length;
    return this.heldBytes <= this.maxHeldBytes;
  }

  /** The session socket is open: the packets held go first, in order. */
  attach(socket: WebSocket): void {
    this.socket = socket;
    this.burst.addAll(this.held);
    this.held = [];
    this.heldBytes = 0;
  }

  /** A packet for the session, once attached. */
  forward(packet: Uint8Array): void {
    this.burst.add(packet);
  }

  /**
   * From now on the client's packets are held (`hold`, within the same limit) until `resume`: while
   * the gateway hands routing back to the session (edge-route.ts).
   */
  pause(): void {
    this.paused = true;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** The packets held since `pause` go now, in order, and the next ones straight after them. */
  resume(): void {
    this.paused = false;
    if (this.socket) this.attach(this.socket);
  }

  /** Sends what the current burst holds (before the connection ends, say). */
  flush(): void {
    if (this.socket) this.burst.flush();
  }

  /**
   * Closes the session socket, if open, with the internal close code and reason, and the count of
   * frames sent on it, so that the session handles them all before it ends the connection
   * (internal-close.ts).
   */
  close(code: number, reason: string): void {
    this.held = [];
    safeClose(this.socket, code, withFramesSent(reason, this.burst.framesSent));
  }
}

/** Closes a WebSocket that may already be closed; the reason is cut to what a close frame carries. */
export function safeClose(ws: WebSocket | undefined, code: number, reason: string): void {
  try {
    ws?.close(code, reason.slice(0, SENT_CLOSE_REASON_CHARS));
  } catch {
    // already closed
  }
}
