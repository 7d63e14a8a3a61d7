/**
 * Bridge Durable Object: one per bridge in BRIDGES, named by it. It holds the outbound connection to
 * the remote broker (a TCP socket from `cloudflare:sockets`, TLS for mqtts://, or a WebSocket for
 * ws(s)://) and drives the MQTT client of bridge-client.ts over it.
 *
 * - Inbound: a message from the remote is routed like a local publish, through numbered calls to the
 *   shards (session/shard-links.ts), with this bridge as its origin; its PUBACK / PUBREC goes upstream
 *   once the shard answered.
 * - Outbound: the bridge subscribes in the shards under its subscriber id (`$bridge:<name>`) with No
 *   Local; a shard delivers to it as to a session (topics/topic-shard-object.ts picks this class by
 *   the prefix), and `deliver` queues QoS 1/2 messages in this object's SQLite before it answers, so
 *   the local publisher's PUBACK means the message is durable here. Rows go when the remote acknowledged.
 * - Kept alive by an alarm every ALARM_MS that reconnects it, also after an eviction; started by the
 *   Worker on each isolate's first request (index.ts), so a deploy starts it without waiting for one.
 * - Its counts are saved with that alarm and on each connect and disconnect, one row each time they
 *   changed, not one per message: an eviction loses none, a crash at most those of the last ALARM_MS.
 */
import { DurableObject } from "cloudflare:workers";
import { connect } from "cloudflare:sockets";
import { configFor } from "../config";
import { topicShardStub, type Env } from "../env";
import { applyLogLevel, logEvent, SampledLog } from "../observability/log";
import type { Delivery, DeliveryReply, RoutedMessage, Subscription } from "../protocol/message";
import { propertiesFromJson, propertiesToJson } from "../protocol/properties";
import { isBrokerOnlyTopic, topicNameError } from "../protocol/topic";
import type { RuleEngine } from "../rules/rule-engine";
import { ruleEngineFor } from "../rules/rule-runner";
import { reportRuleCounts } from "../session/session-reporter";
import { ShardLinks } from "../session/shard-links";
import { CALL_GAP_MS, CallSequencer, type CallOrder } from "../util/ordered-calls";
import {
  BridgeClient,
  readInbound,
  reconnectDelay,
  type BridgeCounts,
  type BridgeDropReason,
  type BridgeStatus,
  type BridgeStore,
  type InboundMessage,
  type QueuedMessage,
} from "./bridge-client";
import { NO_COUNTS } from "./bridge-client";
import { bridgesFor, bridgeSubscriberId, type BridgeConfig } from "./bridge-config";
import { localSubscriptions, toLocal, toRemote } from "./topic-map";

/** How often the alarm wakes the object and reconnects it if needed (docs/COST.md: the bridge's cost). */
export const ALARM_MS = 30000;
/** A remote that has not answered CONNECT within this is given up on (the next attempt after the backoff). */
const CONNACK_TIMEOUT_MS = 10000;

interface Transport {
  send(bytes: Uint8Array): void;
  close(): void;
}

export class BridgeObject extends DurableObject<Env> {
  private bridge: BridgeConfig | undefined;
  private client: BridgeClient | undefined;
  private transport: Transport | undefined;
  private connecting = false;
  private connectStartedAt = 0;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private ticker: ReturnType<typeof setInterval> | undefined;
  /** The local subscriptions are made once per wake (they may have changed with the config). */
  private subscribed: Promise<void> | undefined;
  private readonly links: ShardLinks;
  /** RULES, run on each message routed in as on a client's publish; undefined without RULES. */
  private readonly rules: RuleEngine | undefined;
  /** Deliveries from each shard, run in the order the shard made them. */
  private readonly fromShards = new CallSequencer(1024, CALL_GAP_MS, (ms, fn) => setTimeout(fn, ms));
  /** One sampled log per reason a message for the remote is dropped. */
  private readonly dropLogs: Record<BridgeDropReason, SampledLog> = {
    offline: new SampledLog("info", "bridge.dropped_offline"),
    queue_full: new SampledLog("warn", "bridge.queue_full"),
    expired: new SampledLog("info", "bridge.dropped_expired"),
    refused: new SampledLog("warn", "bridge.refused_by_remote"),
  };

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevel(env.LOG_LEVEL);
    const sql = ctx.storage.sql;
    sql.exec(`CREATE TABLE IF NOT EXISTS bridge_meta (key TEXT PRIMARY KEY, value TEXT)`);
    sql.exec(`CREATE TABLE IF NOT EXISTS bridge_out (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT,
      payload BLOB, qos INTEGER, retain INTEGER, props TEXT, packet_id INTEGER, released INTEGER)`);
    sql.exec(`CREATE TABLE IF NOT EXISTS bridge_in_qos2 (packet_id INTEGER PRIMARY KEY)`);
    migrate(sql);
    this.links = new ShardLinks(
      configFor(env),
      (i) => topicShardStub(env, i),
      () => crypto.randomUUID(),
      "bridge",
    );
    this.rules = ruleEngineFor(env as unknown as Record<string, unknown>, {
      route: (message) => this.links.route(message),
      report: (clientId, counts) => void reportRuleCounts(env, configFor(env), clientId, counts),
    });
    const name = sql.exec<{ value: string }>(`SELECT value FROM bridge_meta WHERE key = 'name'`).toArray()[0]?.value;
    if (name !== undefined) this.configure(name);
  }

  /** The Worker starts the bridge (and the alarm that keeps it going); answers its state. */
  async start(name: string): Promise<BridgeStatus> {
    if (!this.bridge) {
      this.ctx.storage.sql.exec(`INSERT OR REPLACE INTO bridge_meta (key, value) VALUES ('name', ?)`, name);
      this.configure(name);
    }
    await this.keepAlarm(false);
    return this.status();
  }

  override async alarm(): Promise<void> {
    this.client?.saveCounts();
    await this.keepAlarm(true);
  }

  async status(): Promise<BridgeStatus> {
    const c = this.client;
    return {
      name: this.bridge?.name ?? "",
      state: c?.state ?? "unconfigured",
      lastError: c?.lastError ?? "",
      queuedMessages: c?.queuedMessages ?? 0,
      queuedBytes: c?.queuedByteCount ?? 0,
      ...(c?.counts ?? NO_COUNTS),
    };
  }

  /**
   * A shard's deliveries for the remote (the bridge's `out` subscriptions): QoS 1/2 queued in SQLite
   * before the answer, so the shard's "ok" means durable here. A bridge no longer in BRIDGES answers
   * "gone" and the shard forgets its subscriptions.
   */
  async deliver(batch: Delivery[], onlyIfOnline = false, order?: CallOrder): Promise<DeliveryReply> {
    const client = this.client;
    const bridge = this.bridge;
    if (!client || !bridge) return { outcome: "gone", spacingMs: 0 };
    // Asked as a session whose client must be connected (shared subscriptions; a bridge makes none).
    if (onlyIfOnline && client.state !== "connected") return { outcome: "offline", spacingMs: 0 };
    this.ensureRunning();
    return this.fromShards.run(order, () => {
      for (const d of batch) {
        const crossing = toRemote(bridge, d.message.topic, d.qos);
        if (!crossing) {
          client.counts.unmapped++;
          continue;
        }
        const { payload, properties, receivedAt } = d.message;
        client.offer({ topic: crossing.topic, payload, qos: crossing.qos, retain: d.retain, properties, receivedAt });
      }
      return { outcome: "ok" as const, spacingMs: 0 };
    });
  }

  private configure(name: string): void {
    const bridge = bridgesFor(this.env, configFor(this.env)).find((b) => b.name === name);
    if (!bridge) {
      logEvent("warn", "bridge.unconfigured", { bridge: name });
      return;
    }
    this.bridge = bridge;
    const env = this.env;
    const secret = (key: string | undefined) => (key === undefined ? undefined : String(env[key]));
    this.client = new BridgeClient(
      bridge,
      {
        send: (bytes) => this.transport?.send(bytes),
        close: (reason) => this.dropped(this.transport, reason),
        deliverLocal: (message) => this.routeIn(bridge, message),
        dropped: (reason) => {
          const client = this.client!;
          this.dropLogs[reason].record(Date.now(), { bridge: bridge.name, queued: client.queuedMessages });
        },
        now: Date.now,
      },
      sqlStore(this.ctx.storage.sql),
      { username: secret(bridge.usernameSecret), password: secret(bridge.passwordSecret) },
    );
    this.ticker ??= setInterval(() => this.tick(), 1000);
    this.ensureRunning();
  }

  /**
   * Sets the next alarm: always from the alarm itself; from `start` only when none is set. Every
   * status read (`/metrics`, the dashboard, `/api/v1/bridges`) calls `start`: moving the alarm each
   * time would keep it from ever firing under a scrape more often than ALARM_MS, and with it the
   * periodic save of the counts.
   */
  private async keepAlarm(fromAlarm: boolean): Promise<void> {
    if (!this.bridge) return;
    if (fromAlarm || (await this.ctx.storage.getAlarm()) === null) {
      await this.ctx.storage.setAlarm(Date.now() + ALARM_MS);
    }
    this.ensureRunning();
  }

  /** Connects unless connected, connecting, or waiting out a backoff; makes the local subscriptions. */
  private ensureRunning(): void {
    const bridge = this.bridge;
    if (!bridge) return;
    this.subscribed ??= this.subscribeLocally(bridge).catch((err: unknown) => {
      this.subscribed = undefined; // the next call tries again
      logEvent("warn", "bridge.local_subscribe_failed", { bridge: bridge.name, error: String(err) });
    });
    if (this.transport || this.connecting || this.reconnectTimer) return;
    void this.open(bridge);
  }

  /** The `out` mappings as subscriptions in the shards, with No Local; those no longer configured removed. */
  private async subscribeLocally(bridge: BridgeConfig): Promise<void> {
    const id = bridgeSubscriberId(bridge.name);
    const subs: Subscription[] = localSubscriptions(bridge).map((s) => ({
      filter: s.filter,
      qos: s.qos,
      noLocal: true,
      retainAsPublished: true,
      retainHandling: 2,
    }));
    const sql = this.ctx.storage.sql;
    const before = JSON.parse(
      sql.exec<{ value: string }>(`SELECT value FROM bridge_meta WHERE key = 'local_filters'`).toArray()[0]?.value ??
        "[]",
    ) as string[];
    const gone = before.filter((f) => !subs.some((s) => s.filter === f));
    if (gone.length) await this.links.unsubscribe(id, gone);
    if (subs.length) await this.links.subscribe(id, subs, []);
    sql.exec(
      `INSERT OR REPLACE INTO bridge_meta (key, value) VALUES ('local_filters', ?)`,
      JSON.stringify(subs.map((s) => s.filter)),
    );
  }

  /** A message from the remote, routed here like a local publish; resolves once the shard has it. */
  private async routeIn(bridge: BridgeConfig, message: InboundMessage): Promise<void> {
    const crossing = toLocal(bridge, message.topic, message.qos);
    const limits = configFor(this.env);
    // Not ours to route: no mapping (an old subscription of a persistent session), or not a topic here.
    if (!crossing || topicNameError(crossing.topic, limits) || isBrokerOnlyTopic(crossing.topic)) {
      this.client!.counts.unmapped++;
      return;
    }
    const routed: RoutedMessage = {
      id: `bridge:${crypto.randomUUID()}`,
      origin: bridgeSubscriberId(bridge.name),
      topic: crossing.topic,
      payload: message.payload,
      qos: crossing.qos,
      retain: message.retain,
      ...(message.properties ? { properties: message.properties } : {}),
      receivedAt: Date.now(),
    };
    // The rules run beside the routing; a QoS 1/2 message's upstream acknowledgement waits for both, so
    // a failed `queue` send leaves it unacknowledged and the remote sends it again (at least once).
    const ruled = this.rules?.apply(routed);
    if (ruled && routed.qos === 0) ruled.catch(() => undefined); // at most once: nothing waits
    await Promise.all([this.links.route(routed), routed.qos > 0 ? ruled : undefined]);
  }

  private async open(bridge: BridgeConfig): Promise<void> {
    this.connecting = true;
    this.connectStartedAt = Date.now();
    try {
      const transport =
        bridge.transport === "ws" || bridge.transport === "wss"
          ? await this.openWebSocket(bridge)
          : await this.openSocket(bridge);
      this.transport = transport;
      this.client!.opened();
    } catch (err) {
      this.dropped(undefined, `connect failed: ${String((err as Error).message ?? err)}`);
    } finally {
      this.connecting = false;
    }
  }

  private async openSocket(bridge: BridgeConfig): Promise<Transport> {
    const socket = connect(
      { hostname: bridge.host, port: bridge.port },
      { secureTransport: bridge.transport === "tls" ? "on" : "off", allowHalfOpen: false },
    );
    await socket.opened;
    const writer = socket.writable.getWriter();
    const transport: Transport = {
      send: (bytes) => void writer.write(bytes).catch((err: unknown) => this.dropped(transport, String(err))),
      close: () => void socket.close().catch(() => {}),
    };
    void (async () => {
      const reader = socket.readable.getReader();
      try {
        await readInbound(
          () => reader.read(),
          this.client!,
          () => this.transport === transport,
          (bytes) => this.received(bytes),
        );
        this.dropped(transport, "the remote closed the connection");
      } catch (err) {
        this.dropped(transport, `read failed: ${String(err)}`);
      }
    })();
    return transport;
  }

  private async openWebSocket(bridge: BridgeConfig): Promise<Transport> {
    const response = await fetch(bridge.url.replace(/^ws/, "http"), {
      headers: { Upgrade: "websocket", "Sec-WebSocket-Protocol": "mqtt" },
    });
    const ws = response.webSocket;
    if (!ws) throw new Error(`the remote answered the WebSocket upgrade with HTTP ${response.status}`);
    // Under the standard binary type (this compatibility date) binary frames would come as Blobs,
    // which are read asynchronously: ArrayBuffers keep the frames in order with no chain of reads.
    ws.binaryType = "arraybuffer";
    ws.accept();
    const transport: Transport = {
      send: (bytes) => ws.send(bytes),
      close: () => ws.close(1000),
    };
    ws.addEventListener("message", (event) => {
      if (this.transport !== transport) return;
      const data: unknown = event.data;
      if (data instanceof ArrayBuffer) return this.received(new Uint8Array(data));
      // MQTT over WebSocket is binary frames only [MQTT-6.0.0-1]
      this.dropped(transport, "a text frame from the remote");
    });
    ws.addEventListener("close", () => this.dropped(transport, "the remote closed the WebSocket"));
    ws.addEventListener("error", () => this.dropped(transport, "WebSocket error"));
    return transport;
  }

  private received(bytes: Uint8Array): void {
    const client = this.client!;
    const before = client.state;
    client.received(bytes);
    if (before === "connecting" && client.state === "connected") {
      this.attempt = 0;
      client.saveCounts();
      logEvent("info", "bridge.connected", { bridge: this.bridge!.name, queued: client.queuedMessages });
    }
  }

  /** The connection is over (or never was): the client forgets what was in flight; reconnect after the backoff. */
  private dropped(transport: Transport | undefined, reason: string): void {
    if (transport !== this.transport) return; // an earlier connection's late news
    this.transport = undefined;
    transport?.close();
    this.client?.closed(reason);
    this.client?.saveCounts();
    if (this.reconnectTimer) return;
    const delay = reconnectDelay(this.attempt++, Math.random);
    logEvent("warn", "bridge.disconnected", { bridge: this.bridge?.name, reason, retryInMs: delay });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.ensureRunning();
    }, delay);
  }

  private tick(): void {
    const client = this.client;
    if (!client) return;
    if (client.state === "connecting" && Date.now() - this.connectStartedAt > CONNACK_TIMEOUT_MS) {
      return this.dropped(this.transport, "no CONNACK from the remote");
    }
    client.tick();
  }
}

/**
 * Schema changes since the bridge_out table first shipped, by the version kept in bridge_meta:
 * 2 adds `received_at` (a message's expiry runs from it; rows from before have none, so no expiry).
 */
function migrate(sql: SqlStorage): void {
  const row = sql.exec<{ value: string }>(`SELECT value FROM bridge_meta WHERE key = 'schema'`).toArray()[0];
  if (Number(row?.value ?? 1) < 2) sql.exec(`ALTER TABLE bridge_out ADD COLUMN received_at INTEGER`);
  sql.exec(`INSERT OR REPLACE INTO bridge_meta (key, value) VALUES ('schema', '2')`);
}

/** The bridge's queue, QoS 2 packet ids and counts in the object's SQLite (bridge-client.ts's BridgeStore). */
function sqlStore(sql: SqlStorage): BridgeStore {
  return {
    load() {
      const queue = sql
        .exec<Record<string, SqlStorageValue>>(`SELECT * FROM bridge_out ORDER BY seq`)
        .toArray()
        .map((r): QueuedMessage => ({
          seq: r.seq as number,
          topic: r.topic as string,
          payload: new Uint8Array(r.payload as ArrayBuffer),
          qos: r.qos as 1 | 2,
          retain: r.retain === 1,
          properties: propertiesFromJson(r.props as string | null),
          packetId: (r.packet_id as number | null) ?? undefined,
          released: r.released === 1,
          // A row from before received_at (schema 1): its expiry counts from this wake.
          receivedAt: (r.received_at as number | null) ?? Date.now(),
        }));
      const inboundQos2 = sql
        .exec<{ packet_id: number }>(`SELECT packet_id FROM bridge_in_qos2`)
        .toArray()
        .map((r) => r.packet_id);
      const counts = sql.exec<{ value: string }>(`SELECT value FROM bridge_meta WHERE key = 'counts'`).toArray()[0];
      return { queue, inboundQos2, counts: counts ? (JSON.parse(counts.value) as Partial<BridgeCounts>) : undefined };
    },
    saveCounts(counts) {
      sql.exec(`INSERT OR REPLACE INTO bridge_meta (key, value) VALUES ('counts', ?)`, JSON.stringify(counts));
    },
    add(m) {
      return sql
        .exec<{ seq: number }>(
          `INSERT INTO bridge_out (topic, payload, qos, retain, props, packet_id, released, received_at)
           VALUES (?, ?, ?, ?, ?, NULL, 0, ?) RETURNING seq`,
          m.topic,
          m.payload,
          m.qos,
          m.retain ? 1 : 0,
          propertiesToJson(m.properties),
          m.receivedAt,
        )
        .one().seq;
    },
    update(m) {
      sql.exec(
        `UPDATE bridge_out SET packet_id = ?, released = ? WHERE seq = ?`,
        m.packetId ?? null,
        m.released ? 1 : 0,
        m.seq,
      );
    },
    remove(seq) {
      sql.exec(`DELETE FROM bridge_out WHERE seq = ?`, seq);
    },
    addInboundQos2(packetId) {
      sql.exec(`INSERT OR IGNORE INTO bridge_in_qos2 (packet_id) VALUES (?)`, packetId);
    },
    removeInboundQos2(packetId) {
      sql.exec(`DELETE FROM bridge_in_qos2 WHERE packet_id = ?`, packetId);
    },
  };
}
