/**
 * One client connection at the edge, as a state machine. States, and the events that move them:
 *
 *   awaiting-connect --CONNECT admitted--------------------> opening  (password, token, hook, none)
 *   awaiting-connect --CONNECT with SCRAM--> authenticating --AUTH response--> opening
 *   opening --session socket open--> open
 *   any --abort (refusal, protocol error, timeout), client gone, session gone--> closed
 *
 * The client's bytes are framed into whole packets here (PacketFramer), with the packet size and
 * the first packet checked on arrival. Who the client is: connect-auth.ts. In `open` the
 * connection pipes whole packets both ways: to the session in bursts (session-link.ts), to the
 * client within its outbound budget (outbound-budget.ts, slow-consumer.ts); it answers PINGREQ
 * itself, enforces keep-alive, and ends the connection before its invocation's CPU limit does
 * (cpu-budget.ts). Over 400 lines as one concern, the connection's states and their moves; every part
 * it uses is its own module.
 */
import type { ConnectPacket } from "../protocol/packets";
import type { BrokerConfig } from "../config";
import type { Env } from "../env";
import { encodePacket, encodeWithin, parsePacket, type Packet } from "../protocol/codec";
import { ConnectReturnCode, InternalClose, PacketType, ReasonCode, type ProtocolVersion } from "../protocol/constants";
import { PacketFramer } from "../protocol/framer";
import {
  decodeEdgeOrder,
  encodeEdgeAcked,
  encodeEdgeHandBack,
  isEdgeOrder,
  type AuthResponse,
  type SessionConnect,
} from "../protocol/internal-frame";
import { ShardLinks } from "../session/shard-links";
import { topicShardStub } from "../env";
import { publishManyByFetch } from "../topics/shard-publish-request";
import { closeReasonText, hexCode } from "../protocol/internal-close";
import { counters } from "../observability/counters";
import { logEvent } from "../observability/log";
import type { Identity } from "../auth/acl";
import type { AuthConfig } from "../auth/auth-config";
import { admitConnect, peekProtocolLevel, refuseConnectBytes, type Admission, type ConnectFields } from "./admission";
import { authenticateConnect, authMethods, refusalCodes, ScramLogin, wantsScram, type Refusal } from "./connect-auth";
import { ConnectTimeout, pendingConnections } from "./connect-timeout";
import { GatewayCpuBudget } from "./cpu-budget";
import { EdgeRouter } from "./edge-route";
import { OutboundBudget } from "./outbound-budget";
import { openSessionSocket, safeClose, SessionLink } from "./session-link";
import { SlowConsumerDrops } from "./slow-consumer";

const PINGRESP = new Uint8Array([0xd0, 0x00]);

/** A client behind its outbound budget is disconnected once this many budgets more have gone to it. */
const BEHIND_LIMIT_BUDGETS = 8;

/** The CONNACK when the Session object cannot be opened. */
const SESSION_UNAVAILABLE = {
  reasonCode: ReasonCode.SERVER_UNAVAILABLE,
  returnCode: ConnectReturnCode.SERVER_UNAVAILABLE,
  sessionPresent: false,
} as const;

type State = "awaiting-connect" | "authenticating" | "opening" | "open" | "closed";
type Admitted = Extract<Admission, { ok: true }>;
type RefusalCodes = { reasonCode?: number; returnCode?: number; sessionPresent: false };

export class GatewayConnection {
  private state: State = "awaiting-connect";
  private readonly framer: PacketFramer;
  private version: ProtocolVersion = 4;
  /** The v5 client's Maximum Packet Size from its CONNECT: nothing larger is sent to it [MQTT-3.1.2-24]. */
  private clientMaxPacketSize?: number;
  /** The internal WebSocket to the client's Session object, and the packets on their way there. */
  private readonly session: SessionLink;
  /** The SCRAM login under way (state "authenticating") and the admission it completes. */
  private scram?: { login: ScramLogin; admission: Admitted };
  /** The CONNECT timeout until the CONNECT is handled, then the keep-alive check. */
  private timer?: ReturnType<typeof setTimeout>;
  /** Whether the CONNECT timeout, when it runs out, starts again (connect-timeout.ts). */
  private readonly connectTimeout: ConnectTimeout;
  private keepAliveMs = 0;
  private lastActivity = Date.now();
  /** What this connection may make the gateway hold for its client (outbound-budget.ts). */
  private readonly outbound: OutboundBudget;
  /** The CPU this connection has made the gateway spend, estimated, against its budget. */
  private readonly cpu: GatewayCpuBudget;
  /** QoS 0 PUBLISHes dropped for this client when it is slow (from the session's opening). */
  private drops?: SlowConsumerDrops;
  /** The client id CONNECT named (or the one assigned), for the operator log of a refusal. */
  private claimedClientId?: string;
  /** The code of the refusal CONNACK sent, for the operator log. */
  private refusalCode?: string;
  /** ROUTE_AT_EDGE: routes what the session hands back and sends its PUBACKs (made when the session opens). */
  private edge?: EdgeRouter;
  /** The gateway's counts the session last heard (edge-route.ts: its Receive Maximum). */
  private told = { received: 0, acked: 0 };
  /** The gateway's calls to shards on this connection, against EDGE_ROUTE_CALL_BUDGET (subrequests). */
  private edgeCalls = 0;
  /** Routing handed back to the session: asked (the client's packets held), then done. */
  private handBack: "none" | "asked" | "done" = "none";
  /** Set when the connection ended during the hand-back: closes the session socket once it is over. */
  private afterHandBack?: (handedBack: boolean) => void;
  /** A routed message failed: no hand-back will complete (edge-route.ts), nothing held is sent. */
  private routingFailed = false;

  constructor(
    private readonly client: WebSocket,
    private readonly env: Env,
    private readonly config: BrokerConfig,
    private readonly auth: AuthConfig,
    private readonly remoteAddress?: string,
    /** Keeps the invocation alive for work a connection leaves pending (a routed message), when it ends. */
    private readonly waitUntil: (work: Promise<unknown>) => void = () => undefined,
  ) {
    this.framer = new PacketFramer(config.maxPacketSize);
    const budget = config.maxClientOutboundBytes;
    this.outbound = new OutboundBudget(budget, config.clientReadRate, budget * BEHIND_LIMIT_BUDGETS, Date.now());
    this.session = new SessionLink(config.maxPendingClientBytes);
    this.connectTimeout = new ConnectTimeout(config.connectTimeoutMs, Date.now());
    this.cpu = new GatewayCpuBudget(config.gatewayCpuBudgetMs, {
      nsPerInboundPacket: config.gatewayCpuNsPerInboundPacket,
      nsPerInboundKib: config.gatewayCpuNsPerInboundKib,
      nsPerOutboundFrame: config.gatewayCpuNsPerOutboundFrame,
      nsPerOutboundKib: config.gatewayCpuNsPerOutboundKib,
    });
  }

  start(): void {
    // Newer compatibility dates deliver binary messages as Blob by default; we want bytes.
    this.client.binaryType = "arraybuffer";
    this.client.addEventListener("message", (event) => this.onClientData(event.data));
    this.client.addEventListener("close", () => this.onClientGone());
    this.client.addEventListener("error", () => this.onClientGone());
    pendingConnections.began();
    this.armConnectTimeout();
  }

  /**
   * [MQTT-3.1.4-1]-adjacent: a connection that does not send CONNECT in time is closed; while other
   * connections of this isolate are still connecting, the runtime may not have read it yet, and the
   * timeout starts again (connect-timeout.ts).
   */
  private armConnectTimeout(): void {
    this.timer = setTimeout(() => {
      if (this.state !== "awaiting-connect") return;
      if (this.connectTimeout.startsAgain(pendingConnections.size - 1, Date.now())) return this.armConnectTimeout();
      this.abort("CONNECT not received in time");
    }, this.config.connectTimeoutMs);
  }

  /** Every change of state: open or closed, the connection leaves the isolate's pending ones. */
  private moveTo(next: State): void {
    const pending = (state: State) => state !== "open" && state !== "closed";
    if (pending(this.state) && !pending(next)) pendingConnections.ended();
    this.state = next;
  }

  // --- events from the client -------------------------------------------------------------------

  private onClientData(data: ArrayBuffer | string): void {
    if (this.state === "closed") return;
    // [MQTT-6.0.0-1] MQTT control packets travel in binary frames; a text frame closes the connection
    if (typeof data === "string") return this.abort("text frame", ReasonCode.MALFORMED_PACKET);
    this.lastActivity = Date.now();
    const bytes = new Uint8Array(data);
    // [MQTT-3.1.0-1] the first packet must be CONNECT: anything else (an HTTP request sent down the
    // socket, say) is refused at its first byte, not after the CONNECT timeout or once enough bytes
    // arrived to frame some other packet
    const awaitingFirst = this.state === "awaiting-connect" && this.framer.bufferedBytes === 0;
    if (awaitingFirst && bytes.length > 0 && bytes[0]! >> 4 !== PacketType.CONNECT) {
      return this.abort("first packet is not CONNECT");
    }
    const { packets, error } = this.framer.push(bytes);
    this.cpu.inbound(packets.length, bytes.length);
    for (const packet of packets) {
      if ((this.state as State) === "closed") return;
      this.onPacket(packet);
    }
    if (error === "too-large") this.abort("packet too large", ReasonCode.PACKET_TOO_LARGE);
    else if (error) this.abort("malformed remaining length", ReasonCode.MALFORMED_PACKET);
    else this.checkCpuBudget(); // after the packets went on: finish() sends them to the session first
  }

  private onPacket(packet: Uint8Array): void {
    // Its first byte was checked on arrival (onClientData): the first packet is a CONNECT [MQTT-3.1.0-1].
    if (this.state === "awaiting-connect") return this.onConnect(packet);
    if (this.state === "authenticating") {
      void this.onAuthResponse(packet);
      return;
    }
    // PINGREQ (0xC0, no body) is answered here so that keep-alive traffic never wakes the Session object.
    if (packet[0] === 0xc0 && packet.length === 2) {
      counters.pingsAnsweredAtEdge++;
      this.client.send(PINGRESP);
      return;
    }
    // Packet type 0 is reserved, forbidden from a client (MQTT 2.1.2): the gateway and the session use it.
    if (packet[0]! >> 4 === 0) return this.abort("reserved packet type 0", ReasonCode.MALFORMED_PACKET);
    if (this.state === "open" && this.session.isPaused) {
      // Routing is being handed back to the session (handBackRouting): held until it is.
      if (this.session.hold(packet)) return;
      return this.abort("too much data while routing was handed back to the session", ReasonCode.QUOTA_EXCEEDED);
    }
    if (this.state === "open") {
      this.tellAcked(packet);
      return this.session.forward(packet);
    }
    // opening: held until the session socket is open
    if (!this.session.hold(packet)) {
      return this.abort("too much data before the session opened", ReasonCode.QUOTA_EXCEEDED);
    }
  }

  /** awaiting-connect: admit the CONNECT, then authenticate (SCRAM: authenticating; else: opening). */
  private onConnect(packet: Uint8Array): void {
    const parsed = parsePacket(packet, undefined);
    if ("error" in parsed) {
      const level = peekProtocolLevel(packet);
      if (level !== undefined && ![3, 4, 5].includes(level)) {
        // [MQTT-3.1.2-2] unsupported protocol level: CONNACK 0x01 (3.1.1) / 0x84 (5.0), then close
        const refusal: Packet =
          level > 5
            ? { cmd: "connack", reasonCode: ReasonCode.UNSUPPORTED_PROTOCOL_VERSION, sessionPresent: false }
            : { cmd: "connack", returnCode: ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION, sessionPresent: false };
        this.client.send(encodePacket(refusal, level > 5 ? 5 : 4));
      }
      return this.abort(`malformed CONNECT: ${parsed.error}`);
    }
    const connect = parsed.packet as ConnectPacket;
    const fields = parsed.packet as unknown as ConnectFields;
    this.version = fields.protocolVersion;
    this.claimedClientId = typeof connect.clientId === "string" ? connect.clientId : undefined;
    const max = connect.properties?.maximumPacketSize;
    if (this.version === 5 && typeof max === "number" && max > 0) this.clientMaxPacketSize = max;
    const admission =
      refuseConnectBytes(packet, this.version) ??
      admitConnect(fields, this.config, () => crypto.randomUUID(), authMethods(this.auth));
    if (!admission.ok) {
      if (admission.connack) this.sendConnackRefusal(admission.connack, admission.reason);
      return this.abort(admission.reason);
    }
    this.keepAliveMs = admission.keepAlive * 1000;
    this.claimedClientId = admission.clientId;
    this.session.hold(packet); // the CONNECT goes first; its size is within the packet size
    if (wantsScram(connect)) return this.startScram(connect, admission);
    this.moveTo("opening");
    clearTimeout(this.timer);
    void this.authenticateAndOpen(connect, admission);
  }

  /** [MQTT-4.12] enhanced authentication: CONNECT -> AUTH 0x18 challenge -> AUTH 0x18 response -> CONNACK. */
  private startScram(connect: ConnectPacket, admission: Admitted): void {
    // Authenticating from now on, while the challenge is derived (stored-credential.ts).
    this.moveTo("authenticating");
    const login = new ScramLogin(connect, this.auth);
    this.scram = { login, admission };
    void login.challenge().then(
      (challenge) => {
        if (this.state !== "authenticating") return; // closed, or the client answered before the challenge
        if (!challenge) return this.refuseConnect("bad-credentials", "malformed SCRAM client-first-message");
        if (!this.sendPacket(challenge)) this.abort("AUTH challenge exceeds the client's Maximum Packet Size");
      },
      () => this.abort("authentication failed", ReasonCode.UNSPECIFIED_ERROR),
    );
  }

  /** authenticating: the client's answer to the challenge; a good proof opens the session. */
  private async onAuthResponse(packet: Uint8Array): Promise<void> {
    const { login, admission } = this.scram!;
    this.scram = undefined;
    const parsed = parsePacket(packet, 5);
    const response = "packet" in parsed ? parsed.packet : undefined;
    if (!ScramLogin.isResponse(response)) {
      return this.abort("expected AUTH during enhanced authentication", ReasonCode.PROTOCOL_ERROR);
    }
    this.moveTo("opening");
    clearTimeout(this.timer);
    const outcome = await login.finish(response);
    if ((this.state as State) === "closed") return;
    if (!outcome.ok) return this.refuseConnect("bad-credentials", "SCRAM proof refused");
    await this.openSession(admission, outcome.identity, outcome.authResponse);
  }

  /** opening: the `authenticate` moment and the configured methods, then the session. */
  private async authenticateAndOpen(connect: ConnectPacket, admission: Admitted): Promise<void> {
    const outcome = await authenticateConnect(connect, admission.clientId, this.remoteAddress, this.auth, this.env);
    if (this.state === "closed") return;
    if (!outcome.ok) return this.refuseConnect(outcome.refusal, outcome.refusal);
    await this.openSession(admission, outcome.identity);
  }

  private refuseConnect(refusal: Refusal, reason: string): void {
    // no Reason String: a refused login learns nothing beyond its code (test/e2e/auth.test.ts)
    this.sendConnackRefusal(refusalCodes(refusal));
    this.abort(`authentication refused: ${reason}`);
  }

  // --- the session ------------------------------------------------------------------------------

  /** opening: the internal socket to the Session object; a failure is CONNACK Server unavailable. */
  private async openSession(admission: Admitted, identity: Identity, authResponse?: AuthResponse): Promise<void> {
    const connect: SessionConnect = {
      clientId: admission.clientId,
      assignedClientId: admission.assigned,
      serverKeepAlive: admission.serverKeepAlive,
      version: this.version,
      identity,
      authResponse,
      remoteAddress: this.remoteAddress,
      routeAtEdge: this.config.routeAtEdge === 1,
    };
    try {
      this.onSessionOpen(await openSessionSocket(this.env, connect), connect.clientId);
    } catch (err) {
      console.error("gateway: opening session failed", err);
      if (this.state !== "closed") this.sendConnackRefusal(SESSION_UNAVAILABLE, "session unavailable");
      this.abort("session unavailable");
    }
  }

  /** opening -> open: the packets held go to the session, and keep-alive starts. */
  private onSessionOpen(socket: WebSocket, clientId: string): void {
    if (this.state === "closed") {
      socket.close(InternalClose.CLIENT_GONE, "client gone");
      return;
    }
    this.drops = new SlowConsumerDrops(clientId, this.env, this.config);
    if (this.config.routeAtEdge === 1) this.edge = this.edgeRouter();
    socket.addEventListener("message", (event) => this.onSessionMessage(event.data));
    socket.addEventListener("close", () => this.onSessionGone());
    socket.addEventListener("error", () => this.onSessionGone());
    this.moveTo("open");
    this.session.attach(socket);
    this.armKeepAlive();
  }

  /** open: what the session sends goes to the client, within its outbound budget. */
  private onSessionMessage(data: ArrayBuffer | string): void {
    if (typeof data === "string") return;
    const bytes = new Uint8Array(data);
    // An edge order is acted on even once the client is gone: an accepted message is still routed.
    if (this.edge && isEdgeOrder(bytes)) return this.onEdgeOrder(this.edge, bytes);
    if (this.state === "closed") return;
    const { frame, dropped, stalled } = this.outbound.admit(bytes, Date.now());
    if (dropped) this.drops?.count(dropped);
    if (stalled) return this.abort("slow consumer: outbound budget exceeded", ReasonCode.QUOTA_EXCEEDED);
    if (frame) this.sendToClient(frame);
  }

  /** Bytes from the session's side (the session's frames, the gateway's PUBACKs) to the client, counted against the CPU budget. */
  private sendToClient(bytes: Uint8Array): void {
    this.cpu.outbound(bytes.length);
    try {
      this.client.send(bytes);
    } catch {
      return this.onClientGone();
    }
    this.checkCpuBudget();
  }

  // --- routing at the edge (edge-route.ts) --------------------------------------------------------

  private edgeRouter(): EdgeRouter {
    const shards = new ShardLinks(
      this.config,
      (i) => topicShardStub(this.env, i),
      () => crypto.randomUUID(),
      "gateway",
      () => this.countEdgeCall(),
      // Cancelled at its deadline: a call chain left pending (objects reset) must not hold the connection.
      (shard, messages, order) => publishManyByFetch(shard, messages, order, this.config.edgeRouteTimeoutMs),
    );
    return new EdgeRouter(this.version, {
      route: (message) => {
        const routed = shards.route(message);
        // Once the connection ended, nothing else keeps the invocation alive for the call.
        if (this.state === "closed") this.keepAlive(routed.catch(() => undefined));
        return routed;
      },
      send: (packet) => {
        if (this.state !== "closed") this.sendToClient(packet);
      },
      fail: (err) => {
        console.error("gateway: routing a message failed", err);
        this.routingFailed = true;
        this.afterHandBack?.(false);
        this.abort("routing failed", ReasonCode.UNSPECIFIED_ERROR);
      },
      handedBack: () => {
        if (this.state === "closed") return this.afterHandBack?.(true);
        if (this.state !== "open") return;
        this.handBack = "done";
        this.tellAckedCount(); // the session's Receive Maximum counts every PUBACK sent here
        this.session.resume();
      },
      later: (ms, fn) => setTimeout(fn, ms),
      now: () => Date.now(),
    });
  }

  /**
   * One call from the gateway to a shard: a subrequest of this connection's invocation, which the
   * platform limits (10,000 on Workers Paid, `limits.subrequests`). At EDGE_ROUTE_CALL_BUDGET the
   * session takes routing back, as with ROUTE_AT_EDGE=0, rather than the connection being cut at the
   * limit. The client's packets are held meanwhile (within MAX_PENDING_CLIENT_BYTES), until what the
   * gateway routes is answered and acknowledged: the session's calls and PUBACKs come after
   * [MQTT-4.6.0-2] [MQTT-4.6.0-6]. The calls for orders already on their way still go (the budget
   * leaves room for them).
   */
  private countEdgeCall(): void {
    this.edgeCalls++;
    if (this.edgeCalls < this.config.edgeRouteCallBudget || this.handBack !== "none") return;
    if (this.state !== "open") return;
    this.handBack = "asked";
    this.session.forward(encodeEdgeHandBack());
    this.session.pause();
  }

  /** Work the invocation must finish after the connection ended (waitUntil; never throws into the caller). */
  private keepAlive(work: Promise<unknown>): void {
    try {
      this.waitUntil(work);
    } catch (err) {
      console.error("gateway: waitUntil refused", err);
    }
  }

  private onEdgeOrder(edge: EdgeRouter, bytes: Uint8Array): void {
    const order = decodeEdgeOrder(bytes);
    if ("error" in order) return console.error(`gateway: ${order.error}`); // the session wrote it: a bug
    // Decoding the order and routing it: charged as a packet from the client of its size.
    this.cpu.inbound(1, bytes.length);
    edge.handle(order);
  }

  /**
   * Before a QoS 1/2 PUBLISH goes to the session: how many QoS 1 orders the gateway received and how
   * many PUBACKs it sent, so that the session counts Receive Maximum as the client saw it
   * [MQTT-3.3.4-9]. Told when they changed, and also whenever a PUBACK is still to send: a session
   * that hibernated since it last heard them has forgotten what it handed over (inbound.ts).
   */
  private tellAcked(packet: Uint8Array): void {
    const isQos12Publish = packet[0]! >> 4 === PacketType.PUBLISH && (packet[0]! & 0x06) !== 0;
    if (isQos12Publish) this.tellAckedCount();
  }

  private tellAckedCount(): void {
    if (!this.edge) return;
    const { received, acked } = this.edge;
    const changed = received !== this.told.received || acked !== this.told.acked;
    if (!changed && received === acked) return;
    this.told = { received, acked };
    this.session.forward(encodeEdgeAcked(this.told));
  }

  /**
   * The connection's estimated gateway CPU reached its budget: it ends now, with a reason, rather than
   * mid-packet at the platform's limit. v5: DISCONNECT 0x8B Server shutting down, "The Server is shutting
   * down" (3.14.2.1): what happens, as this invocation is ending; 0x9C Use another server would send the
   * client elsewhere (4.11), when the right thing is to come back to the same address, which reaches a
   * fresh invocation. 3.1.1 has no DISCONNECT from the server: the connection is closed. Either way the
   * client reconnects and a persistent session resumes; what was in flight is retransmitted [MQTT-4.4.0-1].
   */
  private checkCpuBudget(): void {
    if (this.state !== "open" || !this.cpu.spent) return;
    const { claimedClientId: clientId, remoteAddress } = this;
    const spentMs = this.cpu.spentMs;
    logEvent("warn", "connection.cpu_budget", {
      clientId,
      remoteAddress,
      spentMs,
      budgetMs: this.config.gatewayCpuBudgetMs,
    });
    this.abort("gateway CPU budget of this connection spent: reconnect", ReasonCode.SERVER_SHUTTING_DOWN);
  }

  /** [MQTT-3.1.2-22] no packet within 1.5 x Keep Alive: the connection is closed (and the will sent). */
  private armKeepAlive(): void {
    if (this.keepAliveMs === 0 || this.state === "closed") return;
    const limit = this.keepAliveMs * 1.5;
    const due = this.lastActivity + limit - Date.now();
    this.timer = setTimeout(
      () => {
        if (this.state === "closed") return;
        if (Date.now() - this.lastActivity >= limit) {
          return this.abort("keep alive timeout", ReasonCode.KEEP_ALIVE_TIMEOUT);
        }
        this.armKeepAlive();
      },
      Math.max(due, 10),
    );
  }

  // --- packets the gateway builds ---------------------------------------------------------------

  /** A refusal CONNACK: the code of this protocol level, and in v5 the reason, if any, as a Reason String. */
  private sendConnackRefusal(codes: RefusalCodes, reason?: string): void {
    const code = this.version === 5 ? codes.reasonCode : codes.returnCode;
    this.refusalCode = this.version === 5 ? hexCode(code ?? 0) : String(code);
    const properties = reason ? { reasonString: reason } : undefined;
    const connack: Packet =
      this.version === 5
        ? { cmd: "connack", reasonCode: codes.reasonCode, sessionPresent: false, properties }
        : { cmd: "connack", returnCode: codes.returnCode, sessionPresent: false };
    this.sendPacket(connack);
  }

  /**
   * Sends a packet the gateway builds, within the client's Maximum Packet Size (encodeWithin: without
   * its Reason String if need be); false when even that does not fit and nothing was sent.
   */
  private sendPacket(packet: Packet): boolean {
    const bytes = encodeWithin(packet, this.version, this.clientMaxPacketSize);
    if (!bytes) return false;
    try {
      this.client.send(bytes);
    } catch {
      // client already gone
    }
    return true;
  }

  // --- the end: any state -> closed -------------------------------------------------------------

  /** Server-side end of the connection for an error: v5 DISCONNECT with the reason, then close both sides. */
  private abort(reason: string, reasonCode?: number): void {
    if (this.state === "closed") return;
    const wasOpen = this.state === "open" || this.state === "opening";
    if (reasonCode !== undefined && this.version === 5 && wasOpen) {
      this.sendPacket({ cmd: "disconnect", reasonCode, properties: { reasonString: reason } });
    }
    // Once the session has the connection it logs how it ended (from the close reason); before, here.
    if (this.state !== "open") {
      const sent = reasonCode !== undefined && this.version === 5 && wasOpen ? hexCode(reasonCode) : undefined;
      const code = this.refusalCode ?? sent;
      const { claimedClientId: clientId, remoteAddress } = this;
      logEvent("warn", "connection.refused", { clientId, remoteAddress, reason, code });
    }
    this.finish(InternalClose.GATEWAY_ABORT, closeReasonText(reason, reasonCode));
  }

  private onClientGone(): void {
    this.finish(InternalClose.CLIENT_GONE, "client closed");
  }

  private onSessionGone(): void {
    this.afterHandBack?.(false); // nothing held can reach it now
    this.finish(1000, "session closed", true);
  }

  private finish(code: number, reason: string, sessionGone = false): void {
    if (this.state === "closed") return;
    const wasOpen = this.state === "open";
    // Packets the client sent before it went (a DISCONNECT, say) still reach the session, first.
    if (wasOpen) this.session.flush();
    this.moveTo("closed");
    clearTimeout(this.timer);
    this.drops?.report();
    if (this.edge?.routing) this.keepAlive(this.edge.settled());
    const handingBack = this.handBack === "asked" && !this.routingFailed;
    if (wasOpen && !sessionGone && handingBack) this.closeSessionAfterHandBack(code, reason);
    else this.session.close(code, reason);
    safeClose(this.client, 1000, reason);
  }

  /**
   * The connection ended while routing was being handed back to the session (countEdgeCall): the
   * packets the client sent meanwhile are held, and they still reach the session once the hand-back
   * is over, before the session socket closes, as they would have on an open connection. A held
   * DISCONNECT is what tells the session not to publish the will [MQTT-3.14.4-3]. If routing fails,
   * or the hand-back is not over within EDGE_ROUTE_TIMEOUT_MS (by then every call of this connection
   * was cancelled), the session socket closes without them, as for any connection that ends on an
   * error.
   */
  private closeSessionAfterHandBack(code: number, reason: string): void {
    let closed!: () => void;
    this.keepAlive(new Promise<void>((resolve) => (closed = resolve)));
    const deadline = setTimeout(() => this.afterHandBack?.(false), this.config.edgeRouteTimeoutMs);
    this.afterHandBack = (handedBack) => {
      this.afterHandBack = undefined;
      clearTimeout(deadline);
      if (handedBack) {
        this.tellAckedCount();
        this.session.resume();
        this.session.flush();
      }
      this.session.close(code, reason);
      closed();
    };
  }
}
