/**
 * Session-wide values: one typed row (`meta`, id 0) with a column per value, the will in columns of
 * its own and the identity as the one JSON value (its roles and grants are lists).
 */
import type { Identity } from "../../auth/acl";
import type { MessageProperties, QoS } from "../../protocol/message";
import { propertiesFromJson, propertiesToJson } from "../../protocol/properties";
import { blobBytes, SqliteTable } from "./schema";

/** The will message of a connection, kept until it is sent or discarded [MQTT-3.1.2-8]. */
export interface StoredWill {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: MessageProperties;
  /** Will Delay Interval in seconds (v5; 0 for 3.1.1). */
  delay: number;
}

export interface SessionMeta {
  clientId?: string;
  /** Username (or token subject) of the identity that owns the session; "" for anonymous. */
  owner?: string;
  /** The owning connection's Identity (for the ACL outside a connection's events). */
  identity?: Identity;
  version?: number;
  /** Seconds the session outlives its connection (0: it ends with the connection). */
  expiryInterval?: number;
  /** Connection id of the live connection, absent while offline. */
  connId?: string;
  /** Will message of the live connection, absent when none. */
  will?: StoredWill;
  /** Epoch ms at which a delayed will is due. */
  willAt?: number;
  /** Epoch ms at which an offline session ends. */
  expireAt?: number;
  /** The client's Receive Maximum (v5) for outbound QoS 1/2. */
  clientReceiveMax?: number;
  /** The client's Maximum Packet Size (v5). */
  clientMaxPacketSize?: number;
  /** The client's Topic Alias Maximum (v5): aliases we may use towards it. */
  clientTopicAliasMax?: number;
  /** The client's Request Problem Information (v5; absent means 1). */
  problemInfo?: boolean;
  /** QoS 1/2 messages dropped because the queue was full (documented outcome). */
  droppedQueueFull?: number;
  /** Epoch ms of the live (or last) connection's CONNACK. */
  connectedAt?: number;
  /** Address of the live (or last) connection. */
  remoteAddress?: string;
  /** The queue depth level last reported to the registry (absent: 0). */
  queueLevel?: number;
}

export interface MetaTable {
  /** The session's values; {} for a session that never existed (or was cleared). */
  loadMeta(): SessionMeta;
  /** Writes the whole meta (rows written are billed; it is one row). */
  writeMeta(meta: SessionMeta): void;
}

/** The table as a store is made of: what a session calls, clearing (SessionStore.clearAll), and whether it has a row. */
export interface MetaPart extends MetaTable {
  clear(): void;
  /** The meta has been written (a row exists, even if cleared since). */
  stored(): boolean;
}

/**
 * Whether a session with these values needs no row: it ends with its connection (Session Expiry 0,
 * a 3.1.1 clean session) and has no will. Such a session is lost with its connection anyway, so
 * there is nothing to find after a restart; a will must survive one [MQTT-3.1.2-8], an expiry must
 * outlive the connection [MQTT-3.1.2-23]. (What else it keeps, subscriptions or messages, writes
 * the meta first: SessionStore.holdMeta.)
 */
export function needsNoRow(m: SessionMeta): boolean {
  return (m.expiryInterval ?? 0) === 0 && m.will === undefined && m.willAt === undefined;
}

type Row = Record<string, SqlStorageValue>;

export class SqliteMeta extends SqliteTable implements MetaPart {
  loadMeta(): SessionMeta {
    if (!this.schema.has("meta")) return {}; // a session that never existed: nothing written to look at it
    return metaFromRow(this.sql.exec<Row>(`SELECT * FROM meta WHERE id = 0`).one());
  }

  writeMeta(m: SessionMeta): void {
    this.schema.ensure("meta");
    const w = m.will;
    this.sql.exec(
      `UPDATE meta SET client_id = ?, owner = ?, identity = ?, protocol_version = ?, expiry_interval = ?, conn_id = ?,
        will_topic = ?, will_payload = ?, will_qos = ?, will_retain = ?, will_props = ?, will_delay = ?, will_at = ?,
        expire_at = ?, client_receive_max = ?, client_max_packet_size = ?, client_topic_alias_max = ?, problem_info = ?,
        dropped_queue_full = ?, connected_at = ?, remote_address = ?, queue_level = ? WHERE id = 0`,
      m.clientId ?? null,
      m.owner ?? null,
      m.identity ? JSON.stringify(m.identity) : null,
      m.version ?? null,
      m.expiryInterval ?? null,
      m.connId ?? null,
      w?.topic ?? null,
      w?.payload ?? null,
      w?.qos ?? null,
      w ? (w.retain ? 1 : 0) : null,
      w ? propertiesToJson(w.properties) : null,
      w?.delay ?? null,
      m.willAt ?? null,
      m.expireAt ?? null,
      m.clientReceiveMax ?? null,
      m.clientMaxPacketSize ?? null,
      m.clientTopicAliasMax ?? null,
      m.problemInfo === undefined ? null : m.problemInfo ? 1 : 0,
      m.droppedQueueFull ?? null,
      m.connectedAt ?? null,
      m.remoteAddress ?? null,
      m.queueLevel ?? null,
    );
  }

  /** Empties the row; the row itself, with the schema version, stays. */
  clear(): void {
    if (this.schema.has("meta")) this.writeMeta({});
  }

  stored(): boolean {
    return this.schema.has("meta");
  }
}

function metaFromRow(r: Row): SessionMeta {
  // A column reads as null when unset (and as undefined only if it were missing from the row).
  const text = (v: SqlStorageValue | undefined) => (v == null ? undefined : (v as string));
  const num = (v: SqlStorageValue | undefined) => (v == null ? undefined : (v as number));
  return {
    clientId: text(r.client_id),
    owner: text(r.owner),
    identity: r.identity == null ? undefined : (JSON.parse(r.identity as string) as Identity),
    version: num(r.protocol_version),
    expiryInterval: num(r.expiry_interval),
    connId: text(r.conn_id),
    will:
      r.will_topic == null
        ? undefined
        : {
            topic: r.will_topic as string,
            payload: blobBytes(r.will_payload ?? null),
            qos: r.will_qos as QoS,
            retain: r.will_retain === 1,
            properties: propertiesFromJson((r.will_props ?? null) as string | null),
            delay: r.will_delay as number,
          },
    willAt: num(r.will_at),
    expireAt: num(r.expire_at),
    clientReceiveMax: num(r.client_receive_max),
    clientMaxPacketSize: num(r.client_max_packet_size),
    clientTopicAliasMax: num(r.client_topic_alias_max),
    problemInfo: r.problem_info == null ? undefined : r.problem_info === 1,
    droppedQueueFull: num(r.dropped_queue_full),
    connectedAt: num(r.connected_at),
    remoteAddress: text(r.remote_address),
    queueLevel: num(r.queue_level),
  };
}
