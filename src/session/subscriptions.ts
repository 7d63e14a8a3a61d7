/**
 * The session's subscriptions: SUBSCRIBE and UNSUBSCRIBE, the read check for subscriptions the ACL
 * grants only in part, and shared subscriptions' hand-over of messages to another member of the
 * group when this session leaves it [MQTT-4.8.2].
 */
import { subscribeGrant, type Identity } from "../auth/acl";
import { runHook } from "../hooks";
import { ReasonCode, SUBACK_FAILURE_V3 } from "../protocol/constants";
import type { Delivery, QoS, Subscription } from "../protocol/message";
import { parseSharedFilter, topicFilterError } from "../protocol/topic";
import { logText } from "../observability/log-text";
import type { Outbound } from "./outbound";
import type { SubackPacket, SubscribePacket, UnsubackPacket, UnsubscribePacket } from "../protocol/packets";
import type { Refusal, SessionContext } from "./session-context";
import type { OutboundRow } from "./store";

/**
 * How long after a failed shared-subscription hand-over it is tried again (alarm): 5 s, doubling
 * with each failure in a row up to 5 min, so a shard that stays unavailable is not called every 5 s.
 */
const HANDOVER_RETRY_MS = 5000;
const HANDOVER_RETRY_MAX_MS = 300_000;

export class Subscriptions {
  /**
   * Whether messages delivered to this session need the read check, worked out for one identity
   * (its JSON) and set of subscriptions; undefined whenever the subscriptions change.
   */
  private readCheck?: { identity: Identity; needed: boolean };
  /** Hand-over attempts in a row that left a row behind (in memory: a restart starts again at 5 s). */
  private handoverFailures = 0;

  constructor(
    private readonly session: SessionContext,
    private readonly outbound: Outbound,
  ) {}

  /**
   * Whether messages delivered to this session need the read check: some subscription is granted
   * only in part (a deny rule narrows a wildcard, or it is wider than the allow rules). Worked out
   * once per identity and set of subscriptions; a session the ACL wholly allows checks nothing per
   * message.
   */
  readCheckNeeded(): boolean {
    const { meta, acl, store } = this.session;
    const identity = this.session.identity;
    if (this.readCheck?.identity !== identity) {
      const clientId = meta.clientId ?? "";
      const partial = (filter: string) =>
        subscribeGrant(acl, identity, clientId, parseSharedFilter(filter)?.filter ?? filter) !== "full";
      this.readCheck = { identity, needed: store.subscriptions().some((s) => partial(s.filter)) };
    }
    return this.readCheck.needed;
  }

  /** The subscriptions were cleared with the session's state (a clean start). */
  cleared(): void {
    this.readCheck = undefined;
  }

  async handleSubscribe(connId: string, packet: SubscribePacket): Promise<Refusal | undefined> {
    const { session } = this;
    const v5 = session.version === 5;
    const subscriptionId: number | undefined = v5 ? packet.properties?.subscriptionIdentifier : undefined;
    const codes: number[] = [];
    const accepted: Subscription[] = [];
    const retainedFor: string[] = [];
    let count = session.store.subscriptionCount();
    for (const request of packet.subscriptions) {
      const filter = request.topic;
      if (v5 && request.nl && parseSharedFilter(filter)) {
        // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error
        return { reasonCode: ReasonCode.PROTOCOL_ERROR, reason: "No Local set on a shared subscription" };
      }
      const failure =
        this.subscriptionFailure(filter, count) ?? (await this.subscribeHookRefusal(filter, request.qos ?? 0));
      if (failure !== undefined) {
        codes.push(v5 ? failure : SUBACK_FAILURE_V3);
        continue;
      }
      const existed = session.store.hasSubscription(filter) || accepted.some((s) => s.filter === filter);
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
    const retained = accepted.length ? await session.io.subscribe(session.meta.clientId!, accepted, retainedFor) : [];
    for (const sub of accepted) session.store.putSubscription(sub);
    this.readCheck = undefined;
    if (accepted.some((sub) => sub.filter.startsWith("$SYS"))) {
      session.io.report({ kind: "sys-watch", clientId: session.meta.clientId! });
    }
    // [MQTT-3.8.4-1] SUBACK with one code per filter, in order [MQTT-3.8.4-6]
    const suback: SubackPacket = { cmd: "suback", messageId: packet.messageId, granted: codes };
    const refused = codes.filter((c) => c >= 0x80);
    const refusedText = refused.map((c) => `0x${c.toString(16)}`).join(", ");
    const reason = `${refused.length} filter(s) refused: ${refusedText}`;
    session.send(connId, [refused.length ? session.withReason(suback, reason) : suback]);
    const deliveries: Delivery[] = [];
    retainedFor.forEach((filter, i) => {
      const sub = accepted.find((s) => s.filter === filter)!;
      for (const message of retained[i] ?? []) {
        deliveries.push({
          // A fresh id per delivery: a re-subscribe must deliver the retained message again [MQTT-3.8.4-3].
          message: { ...message, id: `${message.id}:${session.io.newId()}` },
          qos: Math.min(message.qos, sub.qos) as QoS,
          retain: true, // [MQTT-3.3.1-8] retained messages sent on subscribe carry RETAIN=1
          subscriptionIds: sub.subscriptionId ? [sub.subscriptionId] : undefined,
        });
      }
    });
    // The read check in deliver covers retained messages too. Without waitForAck, deliver settles at
    // once: there is nothing to await.
    if (deliveries.length) void this.outbound.deliver(deliveries);
    return undefined;
  }

  /** 0x87 (or 0x80, ACL_DENIAL_REASON) when the user's authorizeSubscribe hook refuses the filter. */
  private async subscribeHookRefusal(filter: string, qos: QoS): Promise<number | undefined> {
    const hook = this.session.io.hooks.authorizeSubscribe;
    if (!hook) return undefined;
    const ctx = this.session.hookContext();
    const allowed = await runHook("authorizeSubscribe", false, () => hook(ctx, filter, qos));
    return allowed ? undefined : this.session.denialCode;
  }

  /** A SUBACK failure reason for the filter, or undefined when it can be granted. */
  private subscriptionFailure(filter: string, count: number): number | undefined {
    const { config, store } = this.session;
    if (topicFilterError(filter, config)) return ReasonCode.TOPIC_FILTER_INVALID;
    const shared = parseSharedFilter(filter);
    // [MQTT-4.8.2-1, 4.8.2-2] a share name is at least one character, without '/', '+' or '#', and is
    // followed by a filter
    const badShare = shared && (!shared.group || /[+#]/.test(shared.group) || !shared.filter);
    if (badShare) return ReasonCode.TOPIC_FILTER_INVALID;
    if (!this.session.allowed("subscribe", shared ? shared.filter : filter)) return this.session.denialCode;
    if (!store.hasSubscription(filter) && count >= config.maxSubscriptions) return ReasonCode.QUOTA_EXCEEDED;
    return undefined;
  }

  async handleUnsubscribe(connId: string, packet: UnsubscribePacket): Promise<undefined> {
    const { session } = this;
    const filters = packet.unsubscriptions;
    const removed = filters.filter((f) => session.store.hasSubscription(f));
    if (removed.length) await session.io.unsubscribe(session.meta.clientId!, removed);
    const codes = filters.map((f) =>
      session.store.deleteSubscription(f) ? ReasonCode.SUCCESS : ReasonCode.NO_SUBSCRIPTION_EXISTED,
    );
    this.readCheck = undefined;
    for (const filter of removed) if (parseSharedFilter(filter)) await this.handOverQueued(filter);
    const unsuback: UnsubackPacket = { cmd: "unsuback", messageId: packet.messageId };
    if (session.version === 5) unsuback.granted = codes;
    session.send(connId, [unsuback]);
    return undefined;
  }

  /** Removes the session's subscriptions from their shards (the session ends or starts afresh). */
  async dropAll(): Promise<void> {
    const { store, meta, io } = this.session;
    const filters = store.subscriptions().map((s) => s.filter);
    if (filters.length && meta.clientId) await io.unsubscribe(meta.clientId, filters);
  }

  // --- shared subscriptions: hand-over -----------------------------------------------------

  /** When the alarm should retry hand-overs that failed (undefined: none is waiting). */
  handoverRetryAt(): number | undefined {
    const backoff = Math.min(HANDOVER_RETRY_MS * 2 ** Math.max(0, this.handoverFailures - 1), HANDOVER_RETRY_MAX_MS);
    return this.session.store.hasHandovers() ? this.session.io.now() + backoff : undefined;
  }

  /** The alarm: retries hand-overs that failed before. */
  async retryHandovers(): Promise<void> {
    const handovers = this.session.store.handoverRows();
    if (handovers.length > 0) await this.handOver(handovers);
  }

  /**
   * The session ends: what it took through shared subscriptions and may give to another member
   * goes to one [MQTT-4.8.2]: messages not yet sent, and QoS 1 in flight (the client may never
   * acknowledge it: the spec says SHOULD). A QoS 2 message once sent goes nowhere else, even
   * though this session ends before completing it [MQTT-4.8.2-5]: it ends with the session.
   */
  async handOverShared(): Promise<void> {
    this.session.store.holdForHandover();
    await this.handOver(this.session.store.handoverRows());
  }

  /**
   * A shared subscription was unsubscribed: its queued messages go to another member. Those it
   * started to send, this session completes [MQTT-3.10.4-3]; one whose hand-over fails stays
   * queued here (a Server MAY deliver messages buffered before the UNSUBSCRIBE, 3.10.4).
   */
  private async handOverQueued(shareFilter: string): Promise<void> {
    const { store } = this.session;
    this.outbound.flight.storeWaiting(true); // unsent ones waiting in memory are queued ones too
    for (const failed of await this.handOver(store.holdForHandover(shareFilter))) store.requeue(failed.seq);
    this.outbound.pump();
  }

  /**
   * Gives each row to another member of its group through the shard of its topic; a row leaves
   * this session only once that shard has it safe. Returns the rows whose hand-over failed: they
   * stay in HANDOVER (retried by the alarm, handoverRetryAt) unless the caller puts them back.
   */
  private async handOver(rows: OutboundRow[]): Promise<OutboundRow[]> {
    const failed: OutboundRow[] = [];
    // `leaving` is "" once the session has ended: its subscriptions are gone from the shards by then,
    // so the shard cannot pick it anyway.
    for (const row of rows) {
      // Under a new id: the chosen member must not mistake it for a duplicate of its own copy.
      const message = { ...row.delivery.message, id: `${row.msgId}:r` };
      try {
        await this.session.io.redistribute(row.delivery.shareFilter!, this.session.meta.clientId ?? "", message);
        this.session.store.discard(row.seq);
      } catch (err) {
        console.warn(`shared hand-over failed, kept for a retry: ${logText(message.topic)}`, err);
        failed.push(row);
      }
    }
    this.handoverFailures = failed.length ? this.handoverFailures + 1 : 0;
    return failed;
  }
}
