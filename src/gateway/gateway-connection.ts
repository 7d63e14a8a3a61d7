/**
 * One client connection at the edge: frames the byte stream, admits the CONNECT, answers PINGREQ,
 * enforces keep-alive and the packet size, and pipes whole packets to and from the client's
 * Session object over an internal WebSocket.
 */
import type { BrokerConfig } from "../config";
import { registryStub, type Env } from "../env";
import { registryShardFor } from "../registry/client-registry";
import { encodePacket, encodeWithin, parsePacket, type Packet } from "../protocol/codec";
import { ConnectReturnCode, InternalClose, PacketType, ReasonCode, type ProtocolVersion } from "../protocol/constants";
import { PacketFramer } from "../protocol/framer";
import { encodeConnectHeaders, encodeFrame } from "../protocol/internal-frame";
import { counters } from "../observability/counters";
import { authenticate, type AuthOutcome } from "../auth/authenticate";
import { currentHooks, runHook, type AuthenticateInput } from "../hooks";
import { SCRAM_METHOD, startScram, type ScramExchange } from "../auth/scram";
import type { Identity } from "../auth/acl";
import type { AuthConfig } from "../auth/auth-config";
import { admitConnect, peekProtocolLevel, refuseConnectBytes, type Admission, type ConnectFields } from "./admission";
import { OutboundBudget } from "./outbound-budget";
import { closeReasonText, hexCode } from "../protocol/internal-close";
import { logEvent, SampledLog } from "../observability/log";

const PINGRESP = new Uint8Array([0xd0, 0x00]);

/** CONNACK codes per authentication refusal (v5 reason code, 3.1.1 return code). */
const REFUSALS = {
  "bad-credentials": { v5: ReasonCode.BAD_USERNAME_OR_PASSWORD, v3: ConnectReturnCode.BAD_USERNAME_OR_PASSWORD },
  "not-authorized": { v5: ReasonCode.NOT_AUTHORIZED, v3: ConnectReturnCode.NOT_AUTHORIZED },
  unavailable: { v5: ReasonCode.SERVER_UNAVAILABLE, v3: ConnectReturnCode.SERVER_UNAVAILABLE },
} as const;

interface ConnectCredentials {
  username?: string;
  password?: Uint8Array;
  properties?: { authenticationMethod?: string; authenticationData?: Uint8Array; maximumPacketSize?: number };
}

type State = "awaiting-connect" | "authenticating" | "opening" | "open" | "closed";

export class GatewayConnection {
  private state: State = "awaiting-connect";
  private readonly framer: PacketFramer;
  private version: ProtocolVersion = 4;
  /** The v5 client's Maximum Packet Size from its CONNECT: nothing larger is sent to it [MQTT-3.1.2-24]. */
  private clientMaxPacketSize?: number;
  private session?: WebSocket;
  /** Packets that arrived while the session socket was opening (bounded by maxPendingClientBytes). */
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private timer?: ReturnType<typeof setTimeout>;
  private keepAliveMs = 0;
  private lastActivity = Date.now();
  /** What this connection may make the gateway hold for its client (outbound-budget.ts). */
  private readonly outbound: OutboundBudget;
  private clientId?: string;
  /** QoS 0 PUBLISHes dropped for this slow client and not yet reported to the registry. */
  private unreportedDrops = 0;
  private dropReport?: ReturnType<typeof setTimeout>;
  /** The client id CONNECT named (or the one assigned), for the operator log of a refusal. */
  private claimedClientId?: string;
  /** The code of the refusal CONNACK sent, for the operator log. */
  private refusalCode?: string;
  /** At most one log line per 10 s about QoS 0 messages dropped for this slow client. */
  private readonly slowLog = new SampledLog("warn", "client.slow_consumer");

  constructor(
    private readonly client: WebSocket,
    private readonly env: Env,
    private readonly config: BrokerConfig,
    private readonly auth: AuthConfig,
    private readonly remoteAddress?: string,
  ) {
    this.framer = new PacketFramer(config.maxPacketSize);
    this.outbound = new OutboundBudget(config.maxClientOutboundBytes, config.clientReadRate, config.maxClientOutboundBytes * BEHIND_LIMIT_BUDGETS, Date.now());
  }

  start(): void {
    // Newer compatibility dates deliver binary messages as Blob by default; we want bytes.
    this.client.binaryType = "arraybuffer";
    this.client.addEventListener("message", (event) => this.onClientData(event.data));
    this.client.addEventListener("close", () => this.onClientGone());
    this.client.addEventListener("error", () => this.onClientGone());
    // [MQTT-3.1.4-1]-adjacent: a connection that does not send CONNECT in time is closed
    this.timer = setTimeout(() => {
      if (this.state === "awaiting-connect") this.abort("CONNECT not received in time");
    }, this.config.connectTimeoutMs);
  }

  private onClientData(data: ArrayBuffer | string): void {
    if (this.state === "closed") return;
    // [MQTT-6.0.0-1] MQTT control packets travel in binary frames; a text frame closes the connection
    if (typeof data === "string") return this.abort("text frame", ReasonCode.MALFORMED_PACKET);
    this.lastActivity = Date.now();
    const bytes = new Uint8Array(data);
    // [MQTT-3.1.0-1] the first packet must be CONNECT: anything else (an HTTP request sent down the
    // socket, say) is refused at its first byte, not after the CONNECT timeout or once enough bytes
    // arrived to frame some other packet
    if (this.state === "awaiting-connect" && this.framer.bufferedBytes === 0 && bytes.length > 0 && bytes[0] >> 4 !== PacketType.CONNECT) {
      return this.abort("first packet is not CONNECT");
    }
    const { packets, error } = this.framer.push(bytes);
    for (const packet of packets) {
      if ((this.state as State) === "closed") return;
      this.onPacket(packet);
    }
    if (error === "too-large") this.abort("packet too large", ReasonCode.PACKET_TOO_LARGE);
    else if (error) this.abort("malformed remaining length", ReasonCode.MALFORMED_PACKET);
  }

  private onPacket(packet: Uint8Array): void {
    const type = packet[0] >> 4;
    // Its first byte was checked on arrival (onClientData): the first packet is a CONNECT [MQTT-3.1.0-1].
    if (this.state === "awaiting-connect") return this.onConnect(packet);
    if (this.state === "authenticating") {
      void this.continueEnhancedAuth(packet);
      return;
    }
    // PINGREQ is answered here so that keep-alive traffic never wakes the Session object.
    if (type === PacketType.PINGREQ && packet[0] === 0xc0 && packet.length === 2) {
      counters.pingsAnsweredAtEdge++;
      this.client.send(PINGRESP);
      return;
    }
    this.toSession(packet);
  }

  private onConnect(packet: Uint8Array): void {
    const parsed = parsePacket(packet, undefined);
    if ("error" in parsed) {
      const level = peekProtocolLevel(packet);
      if (level !== undefined && ![3, 4, 5].includes(level)) {
        // [MQTT-3.1.2-2] unsupported protocol level: CONNACK 0x01 (3.1.1) / 0x84 (5.0), then close
        const refusal = level > 5
          ? ({ cmd: "connack", reasonCode: ReasonCode.UNSUPPORTED_PROTOCOL_VERSION, sessionPresent: false } as Packet)
          : ({ cmd: "connack", returnCode: ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION, sessionPresent: false } as Packet);
        this.client.send(encodePacket(refusal, level > 5 ? 5 : 4));
      }
      return this.abort(`malformed CONNECT: ${parsed.error}`);
    }
    const connect = parsed.packet as unknown as ConnectFields;
    this.version = connect.protocolVersion;
    this.claimedClientId = typeof connect.clientId === "string" ? connect.clientId : undefined;
    const max = (parsed.packet as unknown as ConnectCredentials).properties?.maximumPacketSize;
    if (this.version === 5 && typeof max === "number" && max > 0) this.clientMaxPacketSize = max;
    const methods = this.auth.users.size > 0 ? [SCRAM_METHOD] : [];
    const admission =
      refuseConnectBytes(packet, this.version) ?? admitConnect(connect, this.config, () => crypto.randomUUID(), methods);
    if (!admission.ok) {
      if (admission.connack) this.sendConnackRefusal(admission.connack, admission.reason);
      return this.abort(admission.reason);
    }
    this.keepAliveMs = admission.keepAlive * 1000;
    this.claimedClientId = admission.clientId;
    this.pending.push(packet);
    this.pendingBytes += packet.length;
    const credentials = parsed.packet as unknown as ConnectCredentials;
    if (credentials.properties?.authenticationMethod === SCRAM_METHOD) return this.startEnhancedAuth(credentials, admission);
    this.state = "opening";
    clearTimeout(this.timer);
    void this.authenticateAndOpen(credentials, admission);
  }

  private scram?: { exchange: Promise<ScramExchange | undefined>; admission: Extract<Admission, { ok: true }> };

  /** [MQTT-4.12] enhanced authentication: CONNECT -> AUTH 0x18 (challenge) -> AUTH 0x18 (response) -> CONNACK. */
  private startEnhancedAuth(connect: ConnectCredentials, admission: Extract<Admission, { ok: true }>): void {
    // Authenticating from now on, while the challenge is derived (stored-credential.ts).
    this.state = "authenticating";
    const exchange = startScram(connect.properties?.authenticationData ?? new Uint8Array(), this.auth);
    this.scram = { exchange, admission };
    void exchange.then((started) => {
      if (this.state !== "authenticating") return; // closed, or the client answered before the challenge
      if (!started) return this.refuseConnect("bad-credentials", "malformed SCRAM client-first-message");
      const challenge = {
        cmd: "auth",
        reasonCode: ReasonCode.CONTINUE_AUTHENTICATION,
        properties: { authenticationMethod: SCRAM_METHOD, authenticationData: Buffer.from(started.serverFirst) },
      };
      if (!this.sendPacket(challenge)) this.abort("AUTH challenge exceeds the client's Maximum Packet Size");
    }, () => this.abort("authentication failed", ReasonCode.UNSPECIFIED_ERROR));
  }

  private async continueEnhancedAuth(packet: Uint8Array): Promise<void> {
    const { exchange, admission } = this.scram!;
    this.scram = undefined;
    const parsed = parsePacket(packet, 5);
    const auth = "packet" in parsed ? (parsed.packet as unknown as Record<string, any>) : undefined;
    // [MQTT-4.12.0-2..4] only AUTH with Continue Authentication and the same method may follow
    if (auth?.cmd !== "auth" || auth.reasonCode !== ReasonCode.CONTINUE_AUTHENTICATION || auth.properties?.authenticationMethod !== SCRAM_METHOD) {
      return this.abort("expected AUTH during enhanced authentication", ReasonCode.PROTOCOL_ERROR);
    }
    this.state = "opening";
    clearTimeout(this.timer);
    const started = await exchange;
    const result = started ? await started.finish(auth.properties.authenticationData ?? new Uint8Array()) : { ok: false as const };
    if ((this.state as State) === "closed") return;
    if (!result.ok) return this.refuseConnect("bad-credentials", "SCRAM proof refused");
    const authResponse = { method: SCRAM_METHOD, data: btoa(result.serverFinal) };
    await this.openSession(admission.clientId, admission.assigned, admission.serverKeepAlive, { username: result.username, roles: result.roles }, authResponse);
  }

  private refuseConnect(refusal: keyof typeof REFUSALS, reason: string): void {
    const code = REFUSALS[refusal];
    // no Reason String: a refused login learns nothing beyond its code (test/e2e/auth.test.ts)
    this.sendConnackRefusal({ reasonCode: code.v5, returnCode: code.v3, sessionPresent: false });
    this.abort(`authentication refused: ${reason}`);
  }

  /** A refusal CONNACK: the code of this protocol level, and in v5 the reason, if any, as a Reason String. */
  private sendConnackRefusal(codes: { reasonCode?: number; returnCode?: number; sessionPresent: false }, reason?: string): void {
    const code = this.version === 5 ? codes.reasonCode : codes.returnCode;
    this.refusalCode = this.version === 5 ? hexCode(code ?? 0) : String(code);
    const connack = this.version === 5
      ? { cmd: "connack", reasonCode: codes.reasonCode, sessionPresent: false, properties: reason ? { reasonString: reason } : undefined }
      : { cmd: "connack", returnCode: codes.returnCode, sessionPresent: false };
    this.sendPacket(connack);
  }

  /**
   * Sends a packet the gateway builds, within the client's Maximum Packet Size (encodeWithin: without
   * its Reason String if need be); false when even that does not fit and nothing was sent.
   */
  private sendPacket(packet: Record<string, unknown>): boolean {
    const bytes = encodeWithin(packet as unknown as Packet, this.version, this.clientMaxPacketSize);
    if (!bytes) return false;
    try {
      this.client.send(bytes);
    } catch {
      // client already gone
    }
    return true;
  }

  /** The `authenticate` moment, then the session; a refusal is a CONNACK with the right code. */
  private async authenticateAndOpen(connect: ConnectCredentials, admission: Extract<Admission, { ok: true }>): Promise<void> {
    const input = { clientId: admission.clientId, username: connect.username, password: connect.password, remoteAddress: this.remoteAddress };
    const outcome = (await this.authenticateHook(input)) ?? (await authenticate(input, this.auth));
    if (this.state === "closed") return;
    if (!outcome.ok) return this.refuseConnect(outcome.refusal, outcome.refusal);
    await this.openSession(admission.clientId, admission.assigned, admission.serverKeepAlive, outcome.identity);
  }

  /** The user's authenticate hook, when installed and when it decides (src/hooks.ts). */
  private async authenticateHook(input: AuthenticateInput): Promise<AuthOutcome | undefined> {
    const hook = currentHooks().authenticate;
    if (!hook) return undefined;
    const decided = await runHook("authenticate", { allow: false, reason: "unavailable" } as const, () => hook(input, this.env));
    if (decided === undefined) return undefined;
    // The hook is the authority: the identity it returns, never CONNECT's username on its own.
    if (decided.allow) return { ok: true, identity: decided.identity ?? {} };
    return { ok: false, refusal: decided.reason ?? "bad-credentials" };
  }

  private async openSession(
    clientId: string,
    assigned: boolean,
    serverKeepAlive: number | undefined,
    identity: Identity,
    authResponse?: { method: string; data: string },
  ): Promise<void> {
    try {
      const stub = this.env.SESSION.get(this.env.SESSION.idFromName(clientId));
      const connect = { clientId, assignedClientId: assigned, serverKeepAlive, version: this.version, identity, authResponse, remoteAddress: this.remoteAddress };
      const headers = { Upgrade: "websocket", ...encodeConnectHeaders(connect) };
      const response = await stub.fetch("https://session.internal/connect", { headers });
      const session = response.webSocket;
      if (!session) throw new Error(`session refused the connection: ${response.status}`);
      session.binaryType = "arraybuffer";
      session.accept();
      if (this.state === "closed") {
        session.close(InternalClose.CLIENT_GONE, "client gone");
        return;
      }
      this.session = session;
      this.clientId = clientId;
      session.addEventListener("message", (event) => this.toClient(event.data));
      session.addEventListener("close", () => this.onSessionGone());
      session.addEventListener("error", () => this.onSessionGone());
      this.state = "open";
      this.outbox = this.pending;
      this.flushToSession();
      this.pending = [];
      this.pendingBytes = 0;
      this.armKeepAlive();
    } catch (err) {
      console.error("gateway: opening session failed", err);
      const codes = { reasonCode: ReasonCode.SERVER_UNAVAILABLE, returnCode: ConnectReturnCode.SERVER_UNAVAILABLE, sessionPresent: false } as const;
      if (this.state !== "closed") this.sendConnackRefusal(codes, "session unavailable");
      this.abort("session unavailable");
    }
  }

  private toSession(packet: Uint8Array): void {
    if (this.state === "open") {
      // A packet after a quiet spell goes at once (no added latency); the ones that follow it before
      // the client's messages already waiting here are handled go to the session together, as one
      // frame (one event there), or at once when the frame is full.
      this.outbox.push(packet);
      this.outboxBytes += packet.length;
      if (!this.burstOpen) {
        this.burstOpen = true;
        this.flushToSession();
        setTimeout(() => {
          this.burstOpen = false;
          this.flushToSession();
        }, 0);
      } else if (this.outbox.length >= MAX_PACKETS_PER_FRAME || this.outboxBytes >= MAX_FRAME_BYTES) {
        this.flushToSession();
      }
      return;
    }
    this.pendingBytes += packet.length;
    if (this.pendingBytes > this.config.maxPendingClientBytes) {
      return this.abort("too much data before the session opened", ReasonCode.QUOTA_EXCEEDED);
    }
    this.pending.push(packet);
  }

  /** Frames forwarded to the session so far: each carries its number (protocol/internal-frame.ts). */
  private forwarded = 0;
  /** Packets for the session not yet sent (bounded: MAX_PACKETS_PER_FRAME, MAX_FRAME_BYTES). */
  private outbox: Uint8Array[] = [];
  private outboxBytes = 0;
  /** A packet went to the session in this turn: the next ones wait for the end of the turn. */
  private burstOpen = false;

  private flushToSession(): void {
    if (!this.outbox.length || !this.session) return;
    const packets = this.outbox;
    this.outbox = [];
    this.outboxBytes = 0;
    // Frames of at most MAX_PACKETS_PER_FRAME packets and MAX_FRAME_BYTES (plus one packet).
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < packets.length; i++) {
      bytes += packets[i].length;
      if (i + 1 === packets.length || i + 1 - start >= MAX_PACKETS_PER_FRAME || bytes >= MAX_FRAME_BYTES) {
        try {
          this.session.send(encodeFrame(this.forwarded++, packets.slice(start, i + 1)));
        } catch {
          return; // the session socket is closed: its close event ends the connection
        }
        start = i + 1;
        bytes = 0;
      }
    }
  }

  private toClient(data: ArrayBuffer | string): void {
    if (this.state === "closed" || typeof data === "string") return;
    const { frame, dropped, stalled } = this.outbound.admit(new Uint8Array(data), Date.now());
    if (dropped) this.countDrops(dropped);
    if (stalled) return this.abort("slow consumer: outbound budget exceeded", ReasonCode.QUOTA_EXCEEDED);
    if (!frame) return;
    try {
      this.client.send(frame);
    } catch {
      this.onClientGone();
    }
  }

  /** Drops reach the metrics through the client's registry shard, at most one report per second. */
  private countDrops(count: number): void {
    this.unreportedDrops += count;
    this.slowLog.record(Date.now(), { clientId: this.clientId, dropped: count, limitBytes: this.config.maxClientOutboundBytes });
    this.dropReport ??= setTimeout(() => this.reportDrops(), DROP_REPORT_MS);
  }

  private reportDrops(): void {
    clearTimeout(this.dropReport);
    this.dropReport = undefined;
    const count = this.unreportedDrops;
    this.unreportedDrops = 0;
    if (count === 0 || this.clientId === undefined) return;
    registryStub(this.env, registryShardFor(this.clientId, this.config.registryShardCount))
      .dropped("slow_consumer", count)
      .catch((err) => console.warn("registry report failed", err));
  }

  /** [MQTT-3.1.2-22] no packet within 1.5 x Keep Alive: the connection is closed (and the will sent). */
  private armKeepAlive(): void {
    if (this.keepAliveMs === 0 || this.state === "closed") return;
    const limit = this.keepAliveMs * 1.5;
    const due = this.lastActivity + limit - Date.now();
    this.timer = setTimeout(() => {
      if (this.state === "closed") return;
      if (Date.now() - this.lastActivity >= limit) return this.abort("keep alive timeout", ReasonCode.KEEP_ALIVE_TIMEOUT);
      this.armKeepAlive();
    }, Math.max(due, 10));
  }

  /** Server-side end of the connection for an error: v5 DISCONNECT with the reason, then close both sides. */
  private abort(reason: string, reasonCode?: number): void {
    if (this.state === "closed") return;
    const wasOpen = this.state === "open" || this.state === "opening";
    if (reasonCode !== undefined && this.version === 5 && wasOpen) {
      this.sendPacket({ cmd: "disconnect", reasonCode, properties: { reasonString: reason } });
    }
    // Once the session has the connection it logs how it ended (from the close reason); before, here.
    if (this.state !== "open") {
      const code = this.refusalCode ?? (reasonCode !== undefined && this.version === 5 && wasOpen ? hexCode(reasonCode) : undefined);
      logEvent("warn", "connection.refused", { clientId: this.claimedClientId, remoteAddress: this.remoteAddress, reason, code });
    }
    this.finish(InternalClose.GATEWAY_ABORT, closeReasonText(reason, reasonCode));
  }

  private onClientGone(): void {
    this.finish(InternalClose.CLIENT_GONE, "client closed");
  }

  private onSessionGone(): void {
    this.finish(1000, "session closed");
  }

  private finish(code: number, reason: string): void {
    if (this.state === "closed") return;
    // Packets the client sent before it went (a DISCONNECT, say) still reach the session, first.
    if (this.state === "open") this.flushToSession();
    this.state = "closed";
    clearTimeout(this.timer);
    this.reportDrops();
    this.pending = [];
    safeClose(this.session, code, reason);
    safeClose(this.client, 1000, reason);
  }
}

/** A client behind its outbound budget is disconnected once this many budgets more have gone to it. */
const BEHIND_LIMIT_BUDGETS = 8;
/** Slow-consumer drops are reported to the registry at most this often per connection. */
const DROP_REPORT_MS = 1000;

/** Most packets, and bytes (plus one packet), the gateway puts in one frame to the session. */
const MAX_PACKETS_PER_FRAME = 64;
const MAX_FRAME_BYTES = 65536;

function safeClose(ws: WebSocket | undefined, code: number, reason: string): void {
  try {
    ws?.close(code, reason.slice(0, 120));
  } catch {
    // already closed
  }
}
