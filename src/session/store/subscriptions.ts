/** The session's subscriptions (`subs`), one row per filter [MQTT-3.8.4-3: a new one replaces the old]. */
import type { QoS, Subscription } from "../../protocol/message";
import { SqliteTable } from "./schema";

export interface SubscriptionTable {
  /** Every subscription, in no particular order. */
  subscriptions(): Subscription[];
  hasSubscription(filter: string): boolean;
  subscriptionCount(): number;
  /** Adds a subscription or replaces the one with the same filter. */
  putSubscription(s: Subscription): void;
  /** False when there was none with this filter. */
  deleteSubscription(filter: string): boolean;
}

export interface SubscriptionPart extends SubscriptionTable {
  clear(): void;
}

export class SqliteSubscriptions extends SqliteTable implements SubscriptionPart {
  subscriptions(): Subscription[] {
    if (!this.schema.has("subs")) return [];
    return this.sql
      .exec<{ filter: string; qos: number; no_local: number; rap: number; rh: number; sub_id: number | null }>(
        `SELECT filter, qos, no_local, rap, rh, sub_id FROM subs`,
      )
      .toArray()
      .map((r) => ({
        filter: r.filter,
        qos: r.qos as QoS,
        noLocal: r.no_local === 1,
        retainAsPublished: r.rap === 1,
        retainHandling: r.rh as 0 | 1 | 2,
        subscriptionId: r.sub_id ?? undefined,
      }));
  }

  hasSubscription(filter: string): boolean {
    if (!this.schema.has("subs")) return false;
    return this.sql.exec(`SELECT 1 FROM subs WHERE filter = ?`, filter).toArray().length > 0;
  }

  subscriptionCount(): number {
    if (!this.schema.has("subs")) return 0;
    return this.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM subs`).one().n;
  }

  putSubscription(s: Subscription): void {
    this.schema.ensure("subs");
    this.sql.exec(
      `INSERT OR REPLACE INTO subs (filter, qos, no_local, rap, rh, sub_id) VALUES (?, ?, ?, ?, ?, ?)`,
      s.filter,
      s.qos,
      s.noLocal ? 1 : 0,
      s.retainAsPublished ? 1 : 0,
      s.retainHandling,
      s.subscriptionId ?? null,
    );
  }

  deleteSubscription(filter: string): boolean {
    if (!this.schema.has("subs")) return false;
    return this.sql.exec(`DELETE FROM subs WHERE filter = ?`, filter).rowsWritten > 0;
  }

  clear(): void {
    if (this.schema.has("subs")) this.sql.exec(`DELETE FROM subs`);
  }
}
