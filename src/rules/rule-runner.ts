/**
 * The rule engine of a place that accepts messages, with the runtime's sinks: the Queue and Analytics
 * Engine bindings and webhook secrets of env, the runtime's fetch, and per-rule counts sent to the
 * registries (rule-tally.ts). The publisher's Session object builds one (client PUBLISHes and wills);
 * the Worker builds one per HTTP publish request (docs/RULES.md "Where rules run").
 */
import { configFor } from "../config";
import type { RoutedMessage } from "../protocol/message";
import { RuleEngine } from "./rule-engine";
import type { RuleCounts } from "./rule-tally";
import { RuleTally } from "./rule-tally";
import { rulesFor } from "./rules-config";

export interface RuleRunnerLinks {
  /** Routes a republished copy as this place routes its messages. */
  route(message: RoutedMessage): Promise<unknown>;
  /** Sends counts to the registry of clientId (SessionReporter.reportRules, or the Worker's own call). */
  report(clientId: string, counts: RuleCounts): void;
  /** Keeps work alive that nothing waits for (a Worker's waitUntil); absent in a Durable Object. */
  background?(work: Promise<unknown>): void;
}

/** The rules of this env as an engine; undefined without RULES (no engine, no cost). */
export function ruleEngineFor(env: Record<string, unknown>, links: RuleRunnerLinks): RuleEngine | undefined {
  const config = configFor(env);
  const rules = rulesFor(env, config);
  if (rules.length === 0) return undefined;
  const later = (ms: number, fn: () => void) => {
    const timer = new Promise<void>((resolve) => setTimeout(resolve, ms)).then(fn);
    links.background?.(timer);
  };
  const tally = new RuleTally({ now: () => Date.now(), later }, (clientId, counts) => links.report(clientId, counts));
  const settings = { ...config, maxPayloadBytes: config.rulesMaxPayloadBytes, maxDepth: config.rulesMaxDepth };
  return new RuleEngine(rules, settings, {
    route: (message) => links.route(message).then(() => 1),
    queue: (binding) => env[binding] as Queue | undefined,
    analytics: (binding) => env[binding] as AnalyticsEngineDataset | undefined,
    fetch: (url, init) => fetch(url, init),
    secret: (name) => (typeof env[name] === "string" ? env[name] : undefined),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    now: () => Date.now(),
    background: links.background,
    count: (rule, outcome, clientId) => tally.add(rule, outcome, clientId),
    counting: (work) => {
      const counted = tally.track(work); // tracked whether or not anything keeps the invocation
      links.background?.(counted);
    },
  });
}
