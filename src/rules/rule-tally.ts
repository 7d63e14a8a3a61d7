/**
 * Per-rule counts of one Session object (messages matched, actions that succeeded, actions that
 * failed), gathered in memory and sent to the client's registry shard FLUSH_AFTER_MS after the first
 * unsent count, as one report: a rule firing costs no call of its own. The registries keep them as
 * counters (Totals), and `/metrics` and the dashboard sum them (docs/RULES.md "Counters").
 *
 * What can be lost: the counts of at most the last FLUSH_AFTER_MS when the object restarts before
 * sending them (an object is evictable only after 10 s without events, later than that), and those of
 * a report the registry did not receive (logged by the reporter).
 */
import { FLUSH_AFTER_MS } from "../observability/totals";

export interface RuleCount {
  /** Messages the rule matched (its filter, and its `where` held). */
  matched: number;
  /** Actions that did what they do: sent, routed, written, POSTed (or queued, with a retryQueue). */
  ok: number;
  failed: number;
}

export type RuleCounts = Record<string, RuleCount>;

export const RULE_OUTCOMES: readonly (keyof RuleCount)[] = ["matched", "ok", "failed"];

export class RuleTally {
  private counts = new Map<string, RuleCount>();
  private clientId = "";
  private due = false;

  constructor(
    /** Calls fn after ms (the object's timer). */
    private readonly later: (ms: number, fn: () => void) => void,
    /** Sends the counts to the registry of clientId. */
    private readonly send: (clientId: string, counts: RuleCounts) => void,
  ) {}

  /** Counts one outcome of a rule, for the client whose message it was. Bounded: one entry per rule (RULES). */
  add(rule: string, outcome: keyof RuleCount, clientId: string): void {
    let count = this.counts.get(rule);
    if (!count) this.counts.set(rule, (count = { matched: 0, ok: 0, failed: 0 }));
    count[outcome]++;
    this.clientId ||= clientId;
    if (this.due) return;
    this.due = true;
    this.later(FLUSH_AFTER_MS, () => this.flush());
  }

  /** Sends what is counted, if anything, and starts again from zero. */
  flush(): void {
    this.due = false;
    if (this.counts.size === 0) return;
    const counts = Object.fromEntries(this.counts);
    this.counts = new Map();
    const clientId = this.clientId;
    this.clientId = "";
    this.send(clientId, counts);
  }
}

/** Adds counts into a total (the registry's sum, the metrics' sum). */
export function addRuleCounts(into: RuleCounts, counts: RuleCounts): void {
  for (const [rule, c] of Object.entries(counts)) {
    const t = (into[rule] ??= { matched: 0, ok: 0, failed: 0 });
    t.matched += c.matched;
    t.ok += c.ok;
    t.failed += c.failed;
  }
}

/**
 * The counts of the rules in RULES now, in their order, zero for a rule not counted yet: a rule
 * removed from RULES keeps its counters in the registries but is no longer shown, so `/metrics` has
 * at most one series per configured rule (RULES holds at most 100).
 */
export function configuredRuleCounts(rules: readonly { name: string }[], counts: RuleCounts): RuleCounts {
  const out: RuleCounts = {};
  for (const { name } of rules) out[name] = Object.assign({ matched: 0, ok: 0, failed: 0 }, counts[name]);
  return out;
}
