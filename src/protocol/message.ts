/** The message and subscription shapes that travel between the gateway, sessions and shards. */

export type QoS = 0 | 1 | 2;

/** One User Property, `[name, value]`. A message's list keeps the wire order and any repeated names. */
export type UserProperty = [name: string, value: string];

/** MQTT 5 properties a PUBLISH carries from publisher to subscriber unchanged [MQTT-3.3.2]. */
export interface MessageProperties {
  payloadFormatIndicator?: boolean;
  messageExpiryInterval?: number;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Uint8Array;
  /** In the order the publisher sent them [MQTT-3.3.2-17, 3.3.2-18]. */
  userProperties?: UserProperty[];
}

/** An application message on its way through the broker. */
export interface RoutedMessage {
  /** Unique per accepted publish; lets a session recognise a re-routed copy (exactly-once). */
  id: string;
  /** Client id of the publisher (for No Local). */
  origin: string;
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: MessageProperties;
  /** Epoch ms when the broker accepted it (message expiry counts from here). */
  receivedAt: number;
}

/** Subscription options [MQTT-3.8.3.1]. */
export interface SubscriptionOptions {
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId?: number;
}

export interface Subscription extends SubscriptionOptions {
  filter: string;
}

/** One message for one session, at the QoS and flags its matching subscriptions grant. */
export interface Delivery {
  message: RoutedMessage;
  qos: QoS;
  retain: boolean;
  subscriptionIds?: number[];
  /** Set when the message came through a shared subscription `$share/{group}/{filter}`. */
  shareFilter?: string;
}

/**
 * What a session did with a batch: took it, is offline (and took nothing, when asked), does not
 * exist, or may not read the one shared-subscription message it was offered (another member may).
 */
export type DeliveryOutcome = "ok" | "offline" | "gone" | "unreadable";

/**
 * A session's answer to a shard's `deliver` call: what it did with the batch, and how long the shard
 * should keep between its next calls to it (0: none; a hot session spreads its calls: util/call-pacing.ts).
 */
export interface DeliveryReply {
  outcome: DeliveryOutcome;
  spacingMs: number;
  /**
   * With "ok": the places in the batch of shared-subscription messages the session declined because
   * its owner may not read their topics (each may go to another member of its group).
   */
  declined?: number[];
}
