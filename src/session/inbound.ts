/**
 * Messages from the client: a PUBLISH goes through a named list of steps (aliases, checks, rate,
 * authorization, Receive Maximum, routing), QoS 2 through InboundQos2 until PUBREL, and every
 * acknowledgement goes out in the order of the PUBLISHes it answers [MQTT-4.6.0-2..4].
 */
import { fromHook, runHook, type HookMessage } from "../hooks";
import { payloadInPublish } from "../protocol/codec";
import { matchCode, ReasonCode } from "../protocol/constants";
import { encodeEdgeOrder, type EdgeAckedCount, type EdgeOrder } from "../protocol/internal-frame";
import type { QoS, RoutedMessage, UserProperty } from "../protocol/message";
import type { AckPacket, PublishPacket, PubrelPacket } from "../protocol/packets";
import { messagePropertiesFrom } from "../protocol/properties";
import { isBrokerOnlyTopic, topicNameError } from "../protocol/topic";
import { isUtf8, publishPropertiesProblem } from "../protocol/validate";
import { logEvent, SampledLog } from "../observability/log";
import { TaskChain } from "../util/task-chain";
import { InboundQos2, type Qos2Arrival } from "./inbound-qos2";
import { PublishRate } from "./publish-rate";
import { ackPacket, type Refusal, type SessionContext } from "./session-context";

/** A PUBLISH from the client on its way through the steps. */
interface InboundPublish {
  connId: string;
  packet: PublishPacket;
  qos: QoS;
  packetId: number;
  /** For QoS 2: new, or a copy of a message awaiting PUBREL (set by the Receive Maximum step). */
  arrival?: Qos2Arrival;
  /** A QoS 1/2 PUBLISH beyond the publish rate: acknowledged no sooner than this (epoch ms). */
  ackAt?: number;
  /** The gateway routes this connection's QoS 0/1 messages and sends their PUBACKs (edge orders). */
  atEdge: boolean;
}

/** A step answered the PUBLISH itself (an acknowledgement with a failure code, say): no step after it runs. */
const ANSWERED = "answered";
/** What a step returns: undefined to go on, ANSWERED, or a Refusal that ends the connection. */
type StepResult = Refusal | typeof ANSWERED | undefined;
type PublishStep = (this: Inbound, p: InboundPublish) => StepResult | Promise<StepResult>;

export class Inbound {
  /** The steps of a PUBLISH, in order: the first that answers or refuses ends it. */
  private static readonly publishSteps: PublishStep[] = [
    Inbound.prototype.resolveTopicAlias,
    Inbound.prototype.checkProperties,
    Inbound.prototype.checkTopicName,
    Inbound.prototype.checkRate,
    Inbound.prototype.checkAcl,
    Inbound.prototype.checkAuthorizeHook,
    Inbound.prototype.checkPayloadFormat,
    Inbound.prototype.checkReceiveMaximum,
    Inbound.prototype.route,
  ];

  /** Incoming topic aliases of the live connection, cached from the store (the truth across hibernation). */
  private aliases = new Map<number, string>();
  /** The publish rate limit of the live connection (in memory). */
  private readonly rate: PublishRate;
  /** QoS 0 PUBLISHes dropped beyond the rate and not reported yet (reported once a second, not each). */
  private rateDrops = 0;
  /** At most one log line per 10 s for a client slowed by the rate limit (with how many PUBLISHes were). */
  private readonly rateLog = new SampledLog("warn", "publish.rate_limited");
  /** Acknowledgements waiting for their routing, in PUBLISH order; a failure drops the connection unacknowledged. */
  private ackChain: Promise<void> = Promise.resolve();
  /** Inbound QoS 1/2 PUBLISHes whose PUBACK/PUBREC is not sent yet. */
  private pendingAcks = 0;
  /** The user's onPublish hook runs one message at a time, in PUBLISH order [MQTT-4.6.0-6]. */
  private readonly hookOrder = new TaskChain();
  /** The QoS 2 flows from the client awaiting PUBREL. */
  private readonly qos2: InboundQos2;
  /**
   * Routing at the edge: QoS 1 PUBLISHes of this connection handed to the gateway (a message to route
   * or a PUBACK to send), and how many of them the gateway says it has acknowledged, both since the
   * connection opened. After hibernation this object starts at 0 while the gateway may still hold
   * PUBACKs: the gateway's count of the orders it received lifts `edgeHanded` again (gatewayAcked).
   */
  private edgeHanded = 0;
  private edgeAcked = 0;
  /** Edge orders waiting for an earlier one's onPublish hook: they go to the gateway in PUBLISH order. */
  private edgeWaiting = 0;
  private edgeChain: Promise<void> = Promise.resolve();

  constructor(private readonly session: SessionContext) {
    this.qos2 = new InboundQos2(session.store);
    this.rate = new PublishRate(session.config.maxPublishRate);
  }

  /** A new network connection: no aliases yet [MQTT-3.3.2-7], and a full rate bucket. */
  connected(now: number): void {
    this.aliases = new Map();
    this.rate.connected(now);
    this.edgeHanded = 0;
    this.edgeAcked = 0;
  }

  /**
   * The gateway's counts of this connection's QoS 1 orders (for Receive Maximum): it received no more
   * than were handed over, so its count is a floor for ours, the one this object forgot if it
   * hibernated. It tells them before every QoS 1/2 PUBLISH while it holds a PUBACK (connection.ts).
   */
  gatewayAcked({ received, acked }: EdgeAckedCount): void {
    this.edgeHanded = Math.max(this.edgeHanded, received);
    this.edgeAcked = acked;
  }

  async handlePublish(connId: string, packet: PublishPacket, atEdge = false): Promise<Refusal | undefined> {
    // packetViolation saw to it that a QoS 1/2 PUBLISH has its packet id
    const p: InboundPublish = { connId, packet, qos: packet.qos, packetId: packet.messageId ?? 0, atEdge };
    for (const step of Inbound.publishSteps) {
      let result = step.call(this, p);
      if (result instanceof Promise) result = await result; // only the hook step is asynchronous
      if (result === ANSWERED) return undefined;
      if (result) return result;
    }
    return undefined;
  }

  /**
   * v5 topic aliases from the client [MQTT-3.3.2-7..12]: a PUBLISH with a topic sets the alias, one
   * with an empty topic uses it. Rewrites packet.topic; refuses an invalid alias.
   */
  private resolveTopicAlias({ packet }: InboundPublish): StepResult {
    const alias = this.session.version === 5 ? packet.properties?.topicAlias : undefined;
    if (alias === undefined) return undefined;
    const max = this.session.config.topicAliasMaximum;
    if (alias === 0 || alias > max) {
      return { reasonCode: ReasonCode.TOPIC_ALIAS_INVALID, reason: `topic alias ${alias} is outside 1..${max}` };
    }
    if (packet.topic) {
      if (this.aliases.get(alias) !== packet.topic) {
        this.aliases.set(alias, packet.topic);
        this.session.store.putTopicAliasIn(alias, packet.topic);
      }
      return undefined;
    }
    const topic = this.aliases.get(alias) ?? this.session.store.topicAliasIn(alias);
    if (topic === undefined) {
      return { reasonCode: ReasonCode.PROTOCOL_ERROR, reason: `topic alias ${alias} is not set` };
    }
    this.aliases.set(alias, topic);
    packet.topic = topic;
    return undefined;
  }

  /** v5: properties a client's PUBLISH must not carry, or carries ill-formed. */
  private checkProperties({ packet }: InboundPublish): StepResult {
    if (this.session.version !== 5) return undefined;
    return publishPropertiesProblem(packet.properties, this.session.config);
  }

  private checkTopicName({ packet }: InboundPublish): StepResult {
    const topicError = topicNameError(packet.topic, this.session.config);
    return topicError ? { reasonCode: ReasonCode.TOPIC_NAME_INVALID, reason: `topic name ${topicError}` } : undefined;
  }

  /**
   * The publish rate limit (PublishRate): beyond MAX_PUBLISH_RATE a publisher is slowed (QoS 0
   * dropped and counted, QoS 1/2 acknowledged late); beyond twice it, the connection ends (0x96).
   */
  private checkRate(p: InboundPublish): StepResult {
    const { io, config, meta } = this.session;
    const now = io.now();
    const verdict = this.rate.admit(now);
    if (verdict.kind === "pass") return undefined;
    const limit = config.maxPublishRate;
    if (verdict.kind === "cut") {
      logEvent("warn", "publish.rate_exceeded", { clientId: meta.clientId, rate: this.rate.recentRate(now), limit });
      return { reasonCode: ReasonCode.MESSAGE_RATE_TOO_HIGH, reason: `more than twice ${limit} PUBLISH/s` };
    }
    this.rateLog.record(now, { clientId: meta.clientId, rate: this.rate.recentRate(now), limit });
    if (p.qos > 0) {
      p.ackAt = verdict.ackAt;
      return undefined;
    }
    // QoS 0 is at most once [MQTT-4.3.1]: dropping it slows the publisher without losing what it was promised.
    if (this.rateDrops++ === 0) {
      io.later(1000, () => {
        io.report({ kind: "dropped", clientId: meta.clientId ?? "", reason: "publish_rate", count: this.rateDrops });
        this.rateDrops = 0;
      });
    }
    return ANSWERED;
  }

  /**
   * `$SYS/...` is written by the broker only, whatever the ACL says (and after alias resolution, so
   * an alias mapped to a `$SYS` topic is refused too).
   */
  private checkAcl(p: InboundPublish): StepResult {
    const topic = p.packet.topic;
    if (isBrokerOnlyTopic(topic) || !this.session.allowed("publish", topic)) return this.refusePublish(p);
    return undefined;
  }

  /** The user's authorizePublish hook, when there is one. */
  private checkAuthorizeHook(p: InboundPublish): StepResult | Promise<StepResult> {
    const authorize = this.session.io.hooks.authorizePublish;
    if (!authorize) return undefined; // no promise, so no wait, without the hook
    const ctx = this.session.hookContext();
    const allowed = runHook("authorizePublish", false, () => authorize(ctx, hookView(this.toMessage(p.packet, ""))));
    return allowed.then((ok) => (ok ? undefined : this.refusePublish(p)));
  }

  /** [MQTT-3.3.2-4]-adjacent: we validate the payload the sender declared as UTF-8 (0x99). */
  private checkPayloadFormat(p: InboundPublish): StepResult {
    const { packet, qos, packetId } = p;
    const declaredUtf8 = this.session.version === 5 && packet.properties?.payloadFormatIndicator;
    if (!declaredUtf8 || isUtf8(packet.payload)) return undefined;
    if (qos === 0) return { reasonCode: ReasonCode.PAYLOAD_FORMAT_INVALID, reason: "payload is not UTF-8" };
    const refusal = ackPacket(qos === 1 ? "puback" : "pubrec", packetId, ReasonCode.PAYLOAD_FORMAT_INVALID);
    this.sendAnswer(p, this.session.withReason(refusal, "payload is not valid UTF-8"));
    return ANSWERED;
  }

  /**
   * [MQTT-3.3.4-9] more unacknowledged QoS 1/2 PUBLISHes than our Receive Maximum (a repeated QoS 2
   * one is not new).
   */
  private checkReceiveMaximum(p: InboundPublish): StepResult {
    if (p.qos === 2) p.arrival = this.qos2.publishReceived(p.packetId);
    const isNew = p.qos === 1 || p.arrival?.kind === "new";
    const atGateway = Math.max(0, this.edgeHanded - this.edgeAcked);
    if (isNew && this.pendingAcks + atGateway + this.qos2.awaitingRelease() >= this.session.config.receiveMaximum) {
      return { reasonCode: ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, reason: "receive maximum exceeded" };
    }
    return undefined;
  }

  /** Routes the message; QoS 1/2 are acknowledged once routing is durable, in PUBLISH order. */
  private route(p: InboundPublish): StepResult {
    const { connId, packet, qos, packetId, arrival } = p;
    if (p.atEdge && qos < 2) return this.routeAtEdge(p);
    const clientId = this.session.meta.clientId;
    if (arrival) {
      const pubrec = (matched: number) => ackPacket("pubrec", packetId, this.matchCode(matched));
      // after any acknowledgement still due, in order
      if (arrival.kind === "routed") this.sendAfterAcks(connId, ackPacket("pubrec", packetId));
      // Its first copy is still being routed (perhaps for an earlier connection of this session):
      // this one is answered when that one is.
      else if (arrival.kind === "routing") this.acknowledgeAfter(connId, arrival.routed, pubrec, false);
      else {
        // A retry keeps the message id (subscriber sessions that hold it ignore it).
        const msgId = arrival.kind === "retry" ? arrival.msgId : `${clientId}:${this.session.io.newId()}`;
        const message = this.toMessage(packet, msgId);
        const routed = this.qos2.publishAccepted(packetId, message.id, () => this.routeThroughHooks(message));
        this.acknowledgeAfter(connId, routed, pubrec, true, p.ackAt);
      }
      return undefined;
    }
    const message = this.toMessage(packet, `${clientId}:${this.session.io.newId()}`);
    const routed = this.routeThroughHooks(message);
    if (qos === 1) {
      const puback = (matched: number) => ackPacket("puback", packetId, this.matchCode(matched));
      this.acknowledgeAfter(connId, routed, puback, true, p.ackAt);
    } else routed.catch(() => undefined); // QoS 0: at most once
    return undefined;
  }

  /**
   * QoS 0/1 routed by the gateway (edge orders): the message, after the onPublish hook, goes back to
   * the gateway, which routes it and sends the PUBACK once its shard answered, so this object waits
   * for no shard. Orders reach the gateway in PUBLISH order, a hook's result included: the gateway
   * sends every QoS 1 PUBACK in that order [MQTT-4.6.0-2], and its calls to a shard keep the
   * messages' order per topic [MQTT-4.6.0-6] (QoS 2 keeps the session's path: the order is per topic
   * and QoS).
   */
  private routeAtEdge({ connId, packet, qos, packetId, ackAt }: InboundPublish): StepResult {
    const { io, meta } = this.session;
    const transformed = this.throughHook(this.toMessage(packet, `${meta.clientId}:${io.newId()}`));
    const ackDelayMs = ackAt === undefined ? 0 : Math.max(0, ackAt - io.now());
    const order = (message: RoutedMessage | null): EdgeOrder | undefined => {
      if (message) return { kind: "route", message, packetId: qos === 1 ? packetId : 0, ackDelayMs };
      // Dropped by the hook: acknowledged as any accepted message that matched nobody.
      if (qos === 1) return this.edgeAck(ackPacket("puback", packetId, matchCode(this.session.version, 0)));
      return undefined;
    };
    // The rules run here, before the hand-over, so that they run whoever routes [docs/RULES.md]; a
    // QoS 1 message goes to the gateway (which acknowledges it) only once its rules' actions are done.
    const afterRules = (message: RoutedMessage | null) => {
      const ruled = message && this.session.io.applyRules?.(message);
      if (!ruled) return order(message);
      if (qos === 0) {
        ruled.catch(() => undefined); // at most once: nothing to wait for
        return order(message);
      }
      return ruled.then(
        () => order(message),
        (err: unknown) => void this.session.serverError(connId, err),
      );
    };
    if (qos === 1) this.edgeHanded++;
    this.handToGateway(connId, transformed instanceof Promise ? transformed.then(afterRules) : afterRules(transformed));
    return undefined;
  }

  /**
   * An acknowledgement the session decided (a refusal), after the ones still waiting for their
   * routing [MQTT-4.6.0-2, 4.6.0-3]: for QoS 1 through the gateway when it routes, where they wait.
   */
  private sendAnswer(p: InboundPublish, ack: AckPacket): void {
    if (!p.atEdge || p.qos !== 1) return this.sendAfterAcks(p.connId, ack);
    const order = this.edgeAck(ack);
    if (!order) return;
    this.edgeHanded++;
    this.handToGateway(p.connId, order);
  }

  private edgeAck(ack: AckPacket): EdgeOrder | undefined {
    const packet = this.session.encode(ack);
    return packet && { kind: "ack", packet };
  }

  /**
   * The gateway hands routing back (its call budget is spent): it answers once every order for the
   * PUBLISHes before the hand-back has gone, and holds the client's next packets until those are
   * routed and acknowledged, so the session's own calls and PUBACKs come after them [MQTT-4.6.0-2]
   * [MQTT-4.6.0-6].
   */
  handBack(connId: string): void {
    this.handToGateway(connId, { kind: "handed-back" });
  }

  /** Sends an edge order after any earlier one still waiting for its hook. */
  private handToGateway(connId: string, order: EdgeOrder | undefined | Promise<EdgeOrder | undefined>): void {
    if (!(order instanceof Promise) && this.edgeWaiting === 0) return this.sendEdgeOrder(connId, order);
    this.edgeWaiting++;
    const previous = this.edgeChain;
    this.edgeChain = (async () => {
      await previous;
      try {
        this.sendEdgeOrder(connId, await order);
      } finally {
        this.edgeWaiting--;
      }
    })();
  }

  private sendEdgeOrder(connId: string, order: EdgeOrder | undefined): void {
    if (!order) return;
    if (this.session.isCurrent(connId)) return this.session.io.send(connId, encodeEdgeOrder(order));
    // The connection is gone: nothing to acknowledge, but an accepted message is still routed.
    if (order.kind === "route") this.session.io.route(order.message).catch(() => undefined);
  }

  /**
   * Routes a client's message, after the user's onPublish hook when there is one (throughHook):
   * resolves 0 matches for a message the hook dropped (the publisher is acknowledged as for any
   * accepted message).
   */
  private routeThroughHooks(message: RoutedMessage): Promise<number> {
    const transformed = this.throughHook(message);
    if (!(transformed instanceof Promise)) return transformed ? this.routeWithRules(transformed) : Promise.resolve(0);
    return transformed.then((m) => (m ? this.routeWithRules(m) : 0));
  }

  /**
   * Routes the message and runs the operator's rules on it (src/rules), in publish order: resolves
   * with the routing's matches once both are done, so a QoS 1/2 acknowledgement waits for the rules'
   * `queue` actions (at-least-once); a failed one rejects, and the publisher resends.
   */
  private routeWithRules(message: RoutedMessage): Promise<number> {
    const { io } = this.session;
    const routed = io.route(message);
    const ruled = io.applyRules?.(message);
    if (!ruled) return routed;
    return Promise.all([routed, ruled]).then(([matched]) => matched);
  }

  /**
   * The message after the user's onPublish hook, when there is one: it may rewrite the message or
   * drop it (null). Without a hook, the message itself at once. Hooks run one at a time so that
   * messages keep their order [MQTT-4.6.0-6].
   */
  private throughHook(message: RoutedMessage): RoutedMessage | Promise<RoutedMessage | null> {
    const { io, config } = this.session;
    const hook = io.hooks.onPublish;
    if (!hook) return message;
    const ctx = this.session.hookContext();
    const transformed = this.hookOrder.run(() => runHook("onPublish", undefined, () => hook(ctx, hookView(message))));
    return transformed.then((result) => {
      if (result === null) return null;
      if (result === undefined) return message;
      const problem = topicNameError(result.topic, config);
      if (problem) {
        console.error(`hook onPublish returned an invalid topic (${problem}); message dropped`);
        return null;
      }
      return { ...message, ...fromHook(result), payload: new Uint8Array(result.payload) };
    });
  }

  /**
   * An unauthorized PUBLISH is not routed. v5 answers 0x87 [MQTT-3.3.5-2]; 3.1.1 has no code for it,
   * so the flow completes normally and the message is dropped, as the 3.1.1 spec allows.
   */
  private refusePublish(p: InboundPublish): StepResult {
    const { qos, packetId } = p;
    if (qos === 0) return ANSWERED;
    const { session } = this;
    if (session.version === 5) {
      const ack = ackPacket(qos === 1 ? "puback" : "pubrec", packetId, session.denialCode);
      const reason = "not authorized to publish to this topic";
      this.sendAnswer(p, session.acl.hideDenialReason ? ack : session.withReason(ack, reason));
      return ANSWERED;
    }
    if (qos === 2) this.qos2.publishRefused(packetId);
    this.sendAnswer(p, ackPacket(qos === 1 ? "puback" : "pubrec", packetId));
    return ANSWERED;
  }

  /** v5: 0x10 tells the publisher nobody subscribes to the topic (the message was still accepted). */
  private matchCode(matched: number): number {
    return matchCode(this.session.version, matched);
  }

  /**
   * Sends the acknowledgement once routing is durable, in PUBLISH order; on failure, drops the
   * connection unacknowledged. `counted`: the PUBLISH is a new message (a repeated QoS 2 one does not
   * count to Receive Maximum). `ackAt`: not before then (the publish rate's pace); the ones after it wait too.
   */
  private acknowledgeAfter(
    connId: string,
    routed: Promise<number>,
    ack: (matched: number) => AckPacket,
    counted = true,
    ackAt?: number,
  ): void {
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
        return this.session.serverError(connId, err);
      }
      const { io } = this.session;
      if (ackAt !== undefined && ackAt > io.now()) await new Promise<void>((r) => io.later(ackAt - io.now(), r));
      this.pendingAcks -= pending;
      if (this.session.isCurrent(connId)) this.session.send(connId, [ack(matched)]);
    })();
  }

  /** Sends an acknowledgement after those still waiting for their routing [MQTT-4.6.0-2..4]. */
  private sendAfterAcks(connId: string, ack: AckPacket): void {
    this.ackChain = this.ackChain.then(() => {
      if (this.session.isCurrent(connId)) this.session.send(connId, [ack]);
    });
  }

  handlePubrel(connId: string, packet: PubrelPacket): void {
    const packetId = packet.messageId!; // packetViolation saw to it
    // Every PUBREL gets a PUBCOMP [MQTT-4.3.3-11]. One the client resent after a reconnect [MQTT-4.4.0-1]
    // for a flow already released (our PUBCOMP was lost) gets 0x00, as the first did; 0x92 only
    // for an id never awaiting PUBREL or released too long ago (v5 3.7.2.1).
    const found = this.qos2.pubrelReceived(packetId) !== "unknown";
    const code = !found && this.session.version === 5 ? ReasonCode.PACKET_IDENTIFIER_NOT_FOUND : ReasonCode.SUCCESS;
    // Wait for earlier acknowledgements so PUBCOMP never overtakes the PUBREC it answers.
    this.sendAfterAcks(connId, ackPacket("pubcomp", packetId, code));
  }

  private toMessage(packet: PublishPacket, id: string): RoutedMessage {
    return {
      id,
      origin: this.session.meta.clientId!,
      topic: packet.topic,
      // Copied into the PUBLISH a 3.1.1 subscriber at QoS 0 gets, which its session then sends as it is
      payload: payloadInPublish(packet.topic, packet.payload),
      qos: packet.qos,
      retain: packet.retain === true,
      properties: this.session.version === 5 ? messagePropertiesFrom(packet.properties) : undefined,
      receivedAt: this.session.io.now(),
    };
  }
}

/** The hook's view of a message: a copy, so a hook cannot change the broker's own. */
function hookView(m: RoutedMessage): HookMessage {
  const p = m.properties;
  const userProperties = p?.userProperties?.map(([k, v]) => [k, v] as UserProperty);
  const properties = p ? { ...p, userProperties } : undefined;
  return { topic: m.topic, payload: new Uint8Array(m.payload), qos: m.qos, retain: m.retain, properties };
}
