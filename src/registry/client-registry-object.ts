/** ClientRegistry Durable Object: a thin shell over one registry shard (see client-registry.ts). */
import { applyLogLevel } from "../observability/log";
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import { counters, countingSql } from "../observability/counters";
import { configFor } from "../config";
import { collectMetrics, publishSys } from "../observability/metrics-collector";
import { ClientRegistry, type PresenceRecord, type RegistryEvent, type RegistryStats } from "./client-registry";

/** Key (synchronous KV) marking that this registry runs the `$SYS` publisher, so it resumes after a restart. */
const SYS_WATCHED = "sysWatched";

export interface RegistryOverview {
  stats: RegistryStats;
  clients: PresenceRecord[];
  /** Connected clients whose ids start with the prefix asked for. */
  matching: number;
}

export class ClientRegistryObject extends DurableObject<Env> {
  private readonly registry: ClientRegistry;
  /** When the `$SYS` publisher runs next (undefined: it is stopped). */
  private sysAt: number | undefined;
  /** The alarm this instance has set and not yet seen fire. */
  private alarmAt: number | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevel(env.LOG_LEVEL);
    this.registry = new ClientRegistry(countingSql(ctx.storage.sql), Date.now, () => this.scheduleAlarm());
    // Restarted while publishing: the alarm set before the restart (still pending) runs it.
    if (ctx.storage.kv.get(SYS_WATCHED)) this.sysAt = Date.now();
  }

  /**
   * One alarm serves both the counters' write and the `$SYS` publisher: it is set to the earlier of
   * the two, and never moved later than one already set (alarm() sets the next).
   */
  private scheduleAlarm(): void {
    const flushAt = this.registry.totalsDueAt;
    const next = Math.min(flushAt ?? Infinity, this.sysAt ?? Infinity);
    if (next === Infinity || (this.alarmAt !== undefined && this.alarmAt <= next)) return;
    this.alarmAt = next;
    // setAlarm is billed as a row written: the counters' fixed cost, or the publisher's.
    if (next === flushAt) counters.metricsRowsWritten++;
    else counters.alarmWrites++;
    void this.ctx.storage.setAlarm(next);
  }

  /**
   * Sessions report their events with the invocations they counted since their last report; the
   * gateway reports its drops with none.
   */
  async report(event: RegistryEvent, sessionInvocations = 0): Promise<void> {
    counters.registryInvocations++;
    this.registry.report(event, sessionInvocations);
  }

  async get(clientId: string): Promise<PresenceRecord | undefined> {
    counters.registryInvocations++;
    return this.registry.get(clientId);
  }

  async list(after: string, limit: number, prefix = ""): Promise<PresenceRecord[]> {
    counters.registryInvocations++;
    return this.registry.list(after, limit, prefix);
  }

  /** This shard's part of the dashboard's refresh (src/api/overview.ts): figures and one page of clients. */
  async overview(prefix: string, after: string, limit: number): Promise<RegistryOverview> {
    counters.registryInvocations++;
    return { stats: this.registry.stats(), clients: this.registry.list(after, limit, prefix), matching: this.registry.countMatching(prefix) };
  }

  /**
   * Registry 0 runs the `$SYS` publisher: started by a `$SYS` subscription, it publishes every
   * SYS_INTERVAL_SECONDS while anyone matches, then stops (an alarm, so nothing runs when unwatched).
   */
  async watchSys(): Promise<void> {
    counters.registryInvocations++;
    if (this.sysAt !== undefined) return;
    this.setSysAt(Date.now());
    this.scheduleAlarm();
  }

  async alarm(): Promise<void> {
    counters.registryInvocations++;
    this.alarmAt = undefined;
    this.registry.flushTotals();
    if (this.sysAt !== undefined && this.sysAt <= Date.now()) {
      const summary = await collectMetrics(this.env);
      const matched = await publishSys(this.env, summary).catch(() => 0);
      this.setSysAt(matched > 0 ? Date.now() + configFor(this.env).sysIntervalSeconds * 1000 : undefined);
    }
    this.scheduleAlarm();
  }

  /** Moves the publisher's next run; starting or stopping it is written (one row each). */
  private setSysAt(at: number | undefined): void {
    if ((at === undefined) !== (this.sysAt === undefined)) {
      counters.sqlRowsWritten++;
      if (at === undefined) this.ctx.storage.kv.delete(SYS_WATCHED);
      else this.ctx.storage.kv.put(SYS_WATCHED, 1);
    }
    this.sysAt = at;
  }

  async stats(): Promise<RegistryStats> {
    counters.registryInvocations++;
    return this.registry.stats();
  }
}
