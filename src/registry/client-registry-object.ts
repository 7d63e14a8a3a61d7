/** ClientRegistry Durable Object: a thin shell over one registry shard (see client-registry.ts). */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import { counters, countingSql } from "../observability/counters";
import { configFor } from "../config";
import { collectMetrics, publishSys } from "../observability/metrics-collector";
import { ClientRegistry, type PresenceRecord, type RegistryStats } from "./client-registry";

export interface RegistryOverview {
  stats: RegistryStats;
  clients: PresenceRecord[];
  /** Connected clients whose ids start with the prefix asked for. */
  matching: number;
}

export class ClientRegistryObject extends DurableObject<Env> {
  private readonly registry: ClientRegistry;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.registry = new ClientRegistry(countingSql(ctx.storage.sql), Date.now);
  }

  // Sessions report their events with the invocations they counted since their last report.

  async connected(record: PresenceRecord, sessionInvocations = 0): Promise<void> {
    counters.registryInvocations++;
    this.registry.connected(record);
    this.registry.sessionInvocations(sessionInvocations);
  }

  async disconnected(clientId: string, connId: string, sessionInvocations = 0): Promise<void> {
    counters.registryInvocations++;
    this.registry.disconnected(clientId, connId);
    this.registry.sessionInvocations(sessionInvocations);
  }

  async dropped(reason: string, count: number, sessionInvocations = 0): Promise<void> {
    counters.registryInvocations++;
    this.registry.dropped(reason, count);
    this.registry.sessionInvocations(sessionInvocations);
  }

  async queueLevel(clientId: string, level: number, sessionInvocations = 0): Promise<void> {
    counters.registryInvocations++;
    this.registry.queueLevel(clientId, level);
    this.registry.sessionInvocations(sessionInvocations);
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
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now());
  }

  async alarm(): Promise<void> {
    counters.registryInvocations++;
    const summary = await collectMetrics(this.env);
    const matched = await publishSys(this.env, summary).catch(() => 0);
    if (matched > 0) await this.ctx.storage.setAlarm(Date.now() + configFor(this.env).sysIntervalSeconds * 1000);
  }

  async stats(): Promise<RegistryStats> {
    counters.registryInvocations++;
    return this.registry.stats();
  }
}
