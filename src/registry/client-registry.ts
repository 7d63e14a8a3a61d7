/**
 * One shard of the client registry: which clients are connected now (for the admin API) and the
 * broker-wide counters that sessions report (connects, disconnects, drops by reason, rules' counts).
 * Sessions report here only when a connection starts or ends, when they drop a message, or at most
 * once per 5 s with their rules' counts: never per delivered message, so the registry is off the hot path. A client's shard is hash(clientId) mod R.
 */
import { Totals } from "../observability/totals";
import { RULE_OUTCOMES, type RuleCount, type RuleCounts } from "../rules/rule-tally";
import { fnv1a } from "../topics/shard-rule";
import { Presence } from "./presence";

/** A connected client, as its session reported it. */
export interface PresenceRecord {
  clientId: string;
  connId: string;
  /** Epoch ms of the CONNACK. */
  connectedAt: number;
  version: number;
  username?: string;
  remoteAddress?: string;
  /** The session was resumed (Session Present). */
  sessionPresent: boolean;
  /** Session expiry granted, in seconds. */
  expiryInterval: number;
}

export interface RegistryStats {
  connected: number;
  connectedByVersion: Record<string, number>;
  connectsTotal: number;
  disconnectsTotal: number;
  /** Messages sessions dropped, by reason (queue_full, expired, too_large_for_client). */
  dropped: Record<string, number>;
  /** Session object invocations reported by sessions (approximate: counted in memory between reports). */
  sessionInvocations: number;
  /** Each rule's counts as sessions reported them (every name ever reported here). */
  rules: RuleCounts;
  /** Sessions whose queue holds QUEUE_REPORT_FLOOR or more messages, as last reported. */
  deep: number;
  /** Messages in those queues, each counted at its level (a lower bound within a factor of two). */
  queued: number;
}

/**
 * What is reported to a client's registry shard (RPC `report`): by its session, a connection
 * accepted or ended, messages dropped, a queue depth level; by the gateway, messages dropped for a
 * slow consumer.
 */
export type RegistryEvent =
  | { kind: "connected"; record: PresenceRecord }
  | { kind: "disconnected"; clientId: string; connId: string }
  | { kind: "dropped"; reason: string; count: number }
  /** A session's queue depth level (see queueLevel in session.ts); 0 once it is back under the first. */
  | { kind: "queue"; clientId: string; level: number }
  /** A session's rule counts since its last such report (src/rules/rule-tally.ts). */
  | { kind: "rules"; counts: RuleCounts };

/** Most records one list call returns. */
export const MAX_LIST = 1000;

export function registryShardFor(clientId: string, shardCount: number): number {
  return fnv1a(`client:${clientId}`) % shardCount;
}

export function registryName(index: number): string {
  return `registry:${index}`;
}

export class ClientRegistry {
  private readonly totals: Totals;
  /** Connected clients, written with the counters (presence.ts); read through `presence.table()`. */
  private readonly presence: Presence;

  constructor(
    private readonly sql: SqlStorage,
    now: () => number,
    /** Asks for flushTotals() at `at` (the object's alarm, merged with the `$SYS` publisher's). */
    scheduleTotals: (at: number) => void,
  ) {
    this.presence = new Presence(sql);
    sql.exec(`CREATE TABLE IF NOT EXISTS queues (client_id TEXT PRIMARY KEY, level INTEGER) WITHOUT ROWID`);
    this.totals = new Totals(sql, now, scheduleTotals);
  }

  /** One reported event, with the Session object invocations its reporter counted since its last one. */
  report(event: RegistryEvent, sessionInvocations: number): void {
    switch (event.kind) {
      case "connected":
        this.connected(event.record);
        break;
      case "disconnected":
        this.disconnected(event.clientId, event.connId);
        break;
      case "dropped":
        this.dropped(event.reason, event.count);
        break;
      case "queue":
        this.queueLevel(event.clientId, event.level);
        break;
      case "rules":
        for (const [rule, count] of Object.entries(event.counts)) {
          for (const outcome of RULE_OUTCOMES) this.totals.add(`rule:${rule}:${outcome}`, count[outcome]);
        }
        break;
    }
    this.totals.add("session_invocations", sessionInvocations);
  }

  /** Presence changes are written with the counters: each one counts, so their write is due (presence.ts). */
  private connected(record: PresenceRecord): void {
    this.presence.connected(record);
    this.totals.add("connects");
  }

  private disconnected(clientId: string, connId: string): void {
    this.presence.disconnected(clientId, connId);
    this.totals.add("disconnects");
  }

  private dropped(reason: string, count: number): void {
    this.totals.add(`dropped:${reason}`, count);
  }

  /** Writes the counters' unwritten increments (one row), if any, and the presence changes. */
  flushTotals(): void {
    this.presence.flush();
    this.totals.flush();
  }

  /** The rules' counters, `rule:<name>:<outcome>` in the totals (a rule name holds no `:`). */
  private ruleCounts(): RuleCounts {
    const counts: RuleCounts = {};
    for (const [key, value] of Object.entries(this.totals.withPrefix("rule:"))) {
      const cut = key.lastIndexOf(":");
      const outcome = key.slice(cut + 1) as keyof RuleCount;
      if (!RULE_OUTCOMES.includes(outcome)) continue;
      (counts[key.slice(0, cut)] ??= { matched: 0, ok: 0, failed: 0 })[outcome] = value;
    }
    return counts;
  }

  /** When flushTotals() is due (undefined: everything is written). */
  get totalsDueAt(): number | undefined {
    return this.totals.flushDueAt;
  }

  /** A session's queue depth level (0: shallow again; the row goes). */
  private queueLevel(clientId: string, level: number): void {
    if (level === 0) this.sql.exec(`DELETE FROM queues WHERE client_id = ?`, clientId);
    else
      this.sql.exec(
        `INSERT INTO queues (client_id, level) VALUES (?, ?) ON CONFLICT (client_id) DO UPDATE SET level = excluded.level`,
        clientId,
        level,
      );
  }

  get(clientId: string): PresenceRecord | undefined {
    return this.presence.get(clientId);
  }

  /**
   * Connected clients whose ids start with `prefix` and come after `after`, in id order (SQLite
   * compares text as UTF-8 bytes, that is by code point: see codePointCompare in src/http/overview.ts).
   */
  list(after: string, limit: number, prefix = ""): PresenceRecord[] {
    return this.presence
      .table()
      .exec<{ record: string }>(
        `SELECT record FROM presence WHERE client_id > ? AND client_id >= ? AND substr(client_id, 1, length(?)) = ?
         ORDER BY client_id LIMIT ?`,
        after,
        prefix,
        prefix,
        prefix,
        Math.max(1, Math.min(limit, MAX_LIST)),
      )
      .toArray()
      .map((r) => JSON.parse(r.record) as PresenceRecord);
  }

  /** How many connected clients' ids start with `prefix`. */
  countMatching(prefix: string): number {
    return this.presence
      .table()
      .exec<{ n: number }>(
        `SELECT COUNT(*) AS n FROM presence WHERE client_id >= ? AND substr(client_id, 1, length(?)) = ?`,
        prefix,
        prefix,
        prefix,
      )
      .one().n;
  }

  stats(): RegistryStats {
    const byVersion: Record<string, number> = {};
    let connected = 0;
    for (const r of this.presence
      .table()
      .exec<{ v: number; n: number }>(
        `SELECT json_extract(record, '$.version') AS v, COUNT(*) AS n FROM presence GROUP BY v`,
      )) {
      byVersion[String(r.v)] = r.n;
      connected += r.n;
    }
    return {
      connected,
      connectedByVersion: byVersion,
      connectsTotal: this.totals.get("connects"),
      disconnectsTotal: this.totals.get("disconnects"),
      dropped: this.totals.withPrefix("dropped:"),
      sessionInvocations: this.totals.get("session_invocations"),
      rules: this.ruleCounts(),
      ...this.sql
        .exec<{ deep: number; queued: number }>(
          `SELECT COUNT(*) AS deep, COALESCE(SUM(level), 0) AS queued FROM queues`,
        )
        .one(),
    };
  }
}
