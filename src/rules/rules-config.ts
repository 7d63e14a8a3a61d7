/**
 * `RULES` (docs/RULES.md): an ordered JSON list of `{name, filter, where?, actions}`, checked and
 * compiled once per isolate. Every problem names the rule (by position and name) and what is wrong,
 * so a mistyped rule is seen at start (`/health`, the start-up log), never as messages that vanish.
 */
import type { QoS } from "../protocol/message";
import { parseSharedFilter, topicFilterError, type TopicLimits } from "../protocol/topic";
import { compileTemplate, type TopicTemplate } from "./template";
import { compilePath, compileWhere, WhereError, type WhereCondition } from "./where";

/** Limits of RULES itself (more is a configuration error). */
export const RULES_LIMITS = Object.freeze({
  maxRules: 100,
  maxActionsPerRule: 8,
  maxWebhookHeaders: 8,
  /** Workers Analytics Engine takes at most 20 blobs and 20 doubles per data point. */
  maxAnalyticsFields: 20,
});

/** A rule name goes into logs and counters as it is: letters, digits, `-`, `_` and `.`, at most 64. */
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
/** An HTTP header name (a token: RFC 9110 5.1, narrowed). */
const HEADER = /^[A-Za-z0-9-]{1,64}$/;
/** A Worker binding's name, as wrangler accepts it. */
const BINDING = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

export interface RepublishAction {
  type: "republish";
  topic: TopicTemplate;
  qos: QoS;
  retain: boolean;
}

export interface QueueAction {
  type: "queue";
  /** The name of a Queue producer binding (wrangler.toml `[[queues.producers]]`). */
  binding: string;
}

export interface WebhookAction {
  type: "webhook";
  /** http: or https: */
  url: string;
  /** Request headers, each [header name, name of the secret (or variable) holding its value]. */
  headers: [string, string][];
  /**
   * A Queue producer binding this Worker also consumes (`[[queues.consumers]]`): the request is sent to
   * it before the acknowledgement and POSTed by the Worker's queue() handler, retried there
   * (webhook-queue.ts), so it is at-least-once. Absent: the session POSTs it, best effort.
   */
  retryQueue?: string;
}

export interface AnalyticsAction {
  type: "analytics";
  /** The name of a Workers Analytics Engine binding (`[[analytics_engine_datasets]]`). */
  binding: string;
  /** Values (as `where` names them: `topic[1]`, `payload.temp`, ...) written as the point's blobs, doubles and index. */
  blobs: MessagePath[];
  doubles: MessagePath[];
  index?: MessagePath;
}

/** A compiled value name (where.ts compilePath). */
export type MessagePath = ReturnType<typeof compilePath>;

export type RuleAction = RepublishAction | QueueAction | WebhookAction | AnalyticsAction;

export interface Rule {
  name: string;
  filter: string;
  where?: WhereCondition;
  actions: RuleAction[];
}

export class RulesError extends Error {}

/** Parses and compiles RULES (absent or empty: no rules); throws RulesError naming the rule. */
export function parseRules(raw: unknown, limits: TopicLimits): Rule[] {
  if (raw === undefined || raw === "") return [];
  let list: unknown;
  try {
    list = typeof raw === "string" ? JSON.parse(raw) : raw;
  } catch {
    throw new RulesError("RULES must be JSON: a list of {name, filter, where?, actions}");
  }
  if (!Array.isArray(list)) throw new RulesError("RULES must be a JSON list of {name, filter, where?, actions}");
  if (list.length > RULES_LIMITS.maxRules) throw new RulesError(`RULES holds at most ${RULES_LIMITS.maxRules} rules`);
  const names = new Set<string>();
  return list.map((entry: unknown, index) => {
    const label = `RULES[${index}]`;
    try {
      const rule = parseRule(entry, limits);
      if (names.has(rule.name)) throw new RulesError(`the name "${rule.name}" is used twice`);
      names.add(rule.name);
      return rule;
    } catch (err) {
      const name = isRecord(entry) && typeof entry.name === "string" && NAME.test(entry.name) ? ` (${entry.name})` : "";
      throw new RulesError(`${label}${name}: ${(err as Error).message}`);
    }
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function onlyKeys(value: Record<string, unknown>, allowed: string[], what: string): void {
  const extra = Object.keys(value).find((k) => !allowed.includes(k));
  if (extra !== undefined) throw new RulesError(`${what} has an unknown field ${JSON.stringify(extra.slice(0, 40))}`);
}

function parseRule(entry: unknown, limits: TopicLimits): Rule {
  if (!isRecord(entry)) throw new RulesError("must be an object {name, filter, where?, actions}");
  onlyKeys(entry, ["name", "filter", "where", "actions"], "a rule");
  const { name, filter, where, actions } = entry;
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new RulesError("name must be 1 to 64 letters, digits, '-', '_' or '.'");
  }
  const filterProblem = typeof filter === "string" ? topicFilterError(filter, limits) : "must be a string";
  if (filterProblem) throw new RulesError(`filter ${filterProblem}`);
  // A rule sees each published message once, so a shared subscription's filter means nothing here.
  if (parseSharedFilter(filter as string)) throw new RulesError("filter must not be a $share filter");
  let condition: WhereCondition | undefined;
  if (where !== undefined) {
    try {
      condition = compileWhere(where as string);
    } catch (err) {
      if (err instanceof WhereError) throw new RulesError(`where: ${err.message}`);
      throw err;
    }
  }
  if (!Array.isArray(actions) || actions.length === 0) throw new RulesError("actions must be a non-empty list");
  if (actions.length > RULES_LIMITS.maxActionsPerRule) {
    throw new RulesError(`a rule has at most ${RULES_LIMITS.maxActionsPerRule} actions`);
  }
  const parsed = actions.map((a: unknown, i) => parseAction(a, `actions[${i}]`));
  return { name, filter: filter as string, where: condition, actions: parsed };
}

function parseAction(action: unknown, label: string): RuleAction {
  if (!isRecord(action)) throw new RulesError(`${label} must be an object with a type`);
  switch (action.type) {
    case "republish": {
      onlyKeys(action, ["type", "topic", "qos", "retain"], label);
      const qos = action.qos ?? 0;
      if (qos !== 0 && qos !== 1 && qos !== 2) throw new RulesError(`${label}: qos must be 0, 1 or 2`);
      const retain = action.retain ?? false;
      if (typeof retain !== "boolean") throw new RulesError(`${label}: retain must be true or false`);
      try {
        return { type: "republish", topic: compileTemplate(action.topic as string), qos, retain };
      } catch (err) {
        if (err instanceof WhereError) throw new RulesError(`${label}: topic ${err.message}`);
        throw err;
      }
    }
    case "queue": {
      onlyKeys(action, ["type", "binding"], label);
      if (typeof action.binding !== "string" || !BINDING.test(action.binding)) {
        throw new RulesError(`${label}: binding must name a Queue binding`);
      }
      return { type: "queue", binding: action.binding };
    }
    case "webhook":
      return parseWebhook(action, label);
    case "analytics":
      return parseAnalytics(action, label);
    default:
      throw new RulesError(`${label}: type must be "republish", "queue", "webhook" or "analytics"`);
  }
}

function parseWebhook(action: Record<string, unknown>, label: string): WebhookAction {
  onlyKeys(action, ["type", "url", "headers", "retryQueue"], label);
  let url: URL | undefined;
  try {
    url = new URL(action.url as string);
  } catch {
    // refused below
  }
  if (typeof action.url !== "string" || !url || (url.protocol !== "https:" && url.protocol !== "http:")) {
    throw new RulesError(`${label}: url must be an http: or https: URL`);
  }
  const headers = action.headers ?? {};
  if (!isRecord(headers)) throw new RulesError(`${label}: headers must map header names to secret names`);
  const pairs = Object.entries(headers);
  if (pairs.length > RULES_LIMITS.maxWebhookHeaders) {
    throw new RulesError(`${label}: at most ${RULES_LIMITS.maxWebhookHeaders} headers`);
  }
  for (const [header, secret] of pairs) {
    if (!HEADER.test(header))
      throw new RulesError(`${label}: ${JSON.stringify(header.slice(0, 40))} is no header name`);
    if (typeof secret !== "string" || !BINDING.test(secret)) {
      throw new RulesError(`${label}: header ${header} must name a secret (its value is never written in RULES)`);
    }
  }
  const { retryQueue } = action;
  if (retryQueue !== undefined && (typeof retryQueue !== "string" || !BINDING.test(retryQueue))) {
    throw new RulesError(`${label}: retryQueue must name a Queue binding`);
  }
  return { type: "webhook", url: action.url, headers: pairs as [string, string][], retryQueue };
}

function parseAnalytics(action: Record<string, unknown>, label: string): AnalyticsAction {
  onlyKeys(action, ["type", "binding", "blobs", "doubles", "index"], label);
  if (typeof action.binding !== "string" || !BINDING.test(action.binding)) {
    throw new RulesError(`${label}: binding must name an Analytics Engine binding`);
  }
  const paths = (field: string, value: unknown): MessagePath[] => {
    if (value === undefined) return [];
    if (!Array.isArray(value) || value.length > RULES_LIMITS.maxAnalyticsFields) {
      throw new RulesError(`${label}: ${field} must be a list of at most ${RULES_LIMITS.maxAnalyticsFields} names`);
    }
    return value.map((name: unknown) => path(name, `${field}: `));
  };
  const path = (name: unknown, where: string): MessagePath => {
    try {
      return compilePath(name as string);
    } catch (err) {
      if (err instanceof WhereError) throw new RulesError(`${label}: ${where}${err.message}`);
      throw err;
    }
  };
  const blobs = paths("blobs", action.blobs);
  const doubles = paths("doubles", action.doubles);
  const index = action.index === undefined ? undefined : path(action.index, "index: ");
  return { type: "analytics", binding: action.binding, blobs, doubles, index };
}

/** A binding the rules name that `env` lacks, or holds something that is not a Queue producer. */
export function bindingProblems(rules: Rule[], env: Record<string, unknown>): string[] {
  const problems: string[] = [];
  for (const rule of rules) {
    for (const action of rule.actions) {
      if (action.type === "webhook") {
        for (const [header, secret] of action.headers) {
          if (typeof env[secret] !== "string" || env[secret] === "") {
            problems.push(
              `rule ${rule.name}: no secret ${secret} for header ${header} (wrangler secret put ${secret})`,
            );
          }
        }
      }
      if (action.type === "analytics") {
        const dataset = env[action.binding] as { writeDataPoint?: unknown } | undefined;
        if (typeof dataset?.writeDataPoint !== "function") {
          const what = dataset === undefined ? "no binding" : "not an Analytics Engine binding:";
          problems.push(
            `rule ${rule.name}: ${what} ${action.binding} (add [[analytics_engine_datasets]] to wrangler.toml)`,
          );
        }
      }
      const queue =
        action.type === "queue" ? action.binding : action.type === "webhook" ? action.retryQueue : undefined;
      if (queue === undefined) continue;
      const binding = env[queue];
      if (binding === undefined) {
        problems.push(`rule ${rule.name}: no binding ${queue} (add [[queues.producers]] to wrangler.toml)`);
      } else if (typeof (binding as { send?: unknown }).send !== "function") {
        problems.push(`rule ${rule.name}: binding ${queue} is not a Queue producer`);
      }
    }
  }
  return problems;
}

const compiled = new WeakMap<object, Rule[]>();

/**
 * The rules of this env, compiled once per isolate (env is stable for an isolate). A broker whose
 * RULES is invalid refuses connections (config-check.ts), so this only ever sees valid rules; should
 * it not, it runs none rather than throw in a session.
 */
export function rulesFor(env: object, limits: TopicLimits): Rule[] {
  let rules = compiled.get(env);
  if (!rules) {
    try {
      rules = parseRules((env as Record<string, unknown>).RULES, limits);
    } catch {
      rules = [];
    }
    compiled.set(env, rules);
  }
  return rules;
}
