/**
 * What a session tells the world off the message path (SessionIO.report): presence, drops and queue
 * levels to the client's registry shard, with the invocations counted since the last report; a
 * `$SYS` subscription to registry 0, which runs the publisher; and the user's onConnect and
 * onDisconnect hooks. Nothing here is awaited, and a failure never affects the session.
 */
import type { Identity } from "../auth/acl";
import type { BrokerConfig } from "../config";
import { registryStub, type Env } from "../env";
import { currentHooks, runHook, type HookContext } from "../hooks";
import { registryShardFor, type RegistryEvent } from "../registry/client-registry";
import type { RuleCounts } from "../rules/rule-tally";
import type { SessionEvent } from "./session";

export class SessionReporter {
  /** Invocations of the Session object not yet reported to the registry (metrics; lost if evicted first). */
  private invocations = 0;

  constructor(
    private readonly env: Env,
    private readonly config: BrokerConfig,
    private readonly hookContext: (clientId: string, identity: Identity) => HookContext,
  ) {}

  /** Counts one invocation of the Session object, reported with the next event. */
  invoked(): void {
    this.invocations++;
  }

  report(event: SessionEvent): void {
    if (event.kind === "sys-watch") {
      registryStub(this.env, 0)
        .watchSys()
        .catch((err) => console.warn("$SYS start failed", err));
      return;
    }
    this.runLifecycleHook(event);
    const clientId = event.kind === "connected" ? event.record.clientId : event.clientId;
    const registry = registryStub(this.env, registryShardFor(clientId, this.config.registryShardCount));
    const invocations = this.invocations;
    this.invocations = 0;
    registry.report(registryEvent(event), invocations).catch((err) => console.warn("registry report failed", err));
  }

  /** The rules' counts of this object since its last such report (rule-tally.ts), to the client's registry. */
  reportRules(clientId: string, counts: RuleCounts): void {
    const invocations = this.invocations;
    this.invocations = 0;
    void reportRuleCounts(this.env, this.config, clientId, counts, invocations);
  }

  /** The user's onConnect / onDisconnect hooks (not awaited: they never delay the session). */
  private runLifecycleHook(event: SessionEvent): void {
    const hooks = currentHooks();
    if (event.kind === "connected" && hooks.onConnect) {
      const ctx = this.hookContext(event.record.clientId, event.identity);
      const info = {
        protocolVersion: event.record.version,
        sessionPresent: event.record.sessionPresent,
        remoteAddress: event.record.remoteAddress,
      };
      void runHook("onConnect", undefined, () => hooks.onConnect!(ctx, info));
    } else if (event.kind === "disconnected" && hooks.onDisconnect) {
      const ctx = this.hookContext(event.clientId, event.identity);
      void runHook("onDisconnect", undefined, () => hooks.onDisconnect!(ctx));
    }
  }
}

/**
 * Sends rule counts (rule-tally.ts) to the registry shard of clientId, with the Session object
 * invocations counted since the last report (0 from the Worker). A failure is logged: those counts are lost.
 */
export function reportRuleCounts(
  env: Env,
  config: BrokerConfig,
  clientId: string,
  counts: RuleCounts,
  sessionInvocations = 0,
): Promise<void> {
  const registry = registryStub(env, registryShardFor(clientId, config.registryShardCount));
  return registry
    .report({ kind: "rules", counts }, sessionInvocations)
    .catch((err) => console.warn("registry report failed", err));
}

/** The registry's part of a session event (no identity: the registry keeps presence and counts). */
function registryEvent(event: Exclude<SessionEvent, { kind: "sys-watch" }>): RegistryEvent {
  switch (event.kind) {
    case "connected":
      return { kind: "connected", record: event.record };
    case "disconnected":
      return { kind: "disconnected", clientId: event.clientId, connId: event.connId };
    case "dropped":
      return { kind: "dropped", reason: event.reason, count: event.count };
    case "queue":
      return { kind: "queue", clientId: event.clientId, level: event.level };
  }
}
