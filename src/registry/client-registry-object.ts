/** ClientRegistry Durable Object: a thin shell over one registry shard (see client-registry.ts). */
import { applyLogLevel } from "../observability/log";
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import { counters, countingSql, countObjectCall } from "../observability/counters";
import { configFor } from "../config";
import { collectMetrics, publishSys } from "../observability/metrics-collector";
import { ClientRegistry, type PresenceRecord, type RegistryEvent, type RegistryStats } from "./client-registry";
import { RegistryAlarm } from "./registry-alarm";

export interface RegistryOverview {
  stats: RegistryStats;
  clients: PresenceRecord[];
  /** Connected clients whose ids start with the prefix asked for. */
  matching: number;
}

export class ClientRegistryObject extends DurableObject<Env> {
  private readonly registry: ClientRegistry;
  private readonly alarms: RegistryAlarm;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevel(env.LOG_LEVEL);
    this.alarms = new RegistryAlarm(ctx.storage, () => this.registry.totalsDueAt);
    this.registry = new ClientRegistry(countingSql(ctx.storage.sql), Date.now, () => this.alarms.schedule());
  }

  /** Counts one invocation of this object, in all and by its name (`registry:<index>`). */
  private invoked(): void {
    counters.registryInvocations++;
    countObjectCall("registry", this.ctx.id.name ?? this.ctx.id.toString());
  }

  /**
   * Sessions report their events with the invocations they counted since their last report; the
   * gateway reports its drops with none.
   */
  async report(event: RegistryEvent, sessionInvocations = 0): Promise<void> {
    this.invoked();
    this.registry.report(event, sessionInvocations);
  }

  async get(clientId: string): Promise<PresenceRecord | undefined> {
    this.invoked();
    return this.registry.get(clientId);
  }

  async list(after: string, limit: number, prefix = ""): Promise<PresenceRecord[]> {
    this.invoked();
    return this.registry.list(after, limit, prefix);
  }

  /** This shard's part of the dashboard's refresh (src/http/overview.ts): figures and one page of clients. */
  async overview(prefix: string, after: string, limit: number): Promise<RegistryOverview> {
    this.invoked();
    return {
      stats: this.registry.stats(),
      clients: this.registry.list(after, limit, prefix),
      matching: this.registry.countMatching(prefix),
    };
  }

  /**
   * Registry 0 runs the `$SYS` publisher: started by a `$SYS` subscription, it publishes every
   * SYS_INTERVAL_SECONDS while anyone matches, then stops (an alarm, so nothing runs when unwatched).
   */
  async watchSys(): Promise<void> {
    this.invoked();
    this.alarms.startSys();
  }

  override async alarm(): Promise<void> {
    this.invoked();
    const sysDue = this.alarms.fired();
    this.registry.flushTotals();
    if (sysDue) {
      const summary = await collectMetrics(this.env);
      const matched = await publishSys(this.env, summary).catch(() => 0);
      this.alarms.sysRan(matched, configFor(this.env).sysIntervalSeconds * 1000);
    }
    this.alarms.schedule();
  }

  async stats(): Promise<RegistryStats> {
    this.invoked();
    return this.registry.stats();
  }
}
