/**
 * Per-rule counts of one Session object (messages matched, actions that succeeded, actions that
 * failed), gathered in memory and sent to the client's registry shard as one report once the rule
 * work under way is done: the registries keep them as counters (Totals), and `/metrics` and the
 * dashboard sum them (docs/RULES.md "Counters").
 *
 * When a report goes, and why no timer waits for long: a pending timer keeps a Durable Object from
 * hibernating, and Cloudflare bills duration for an object "idle in memory but unable to hibernate".
 * One report (a registry request, $0.15 per million) costs as much as ~96 ms of a 128 MB object's
 * duration ($12.50 per million GB-s), so holding counts on a timer for longer than that to save a
 * report costs more than the report. So:
 * - Counts wait while an action whose outcome is still to be counted is under way (`track`), so a
 *   message's match and its actions' outcomes go in one report; the object is not idle then anyway.
 * - Then they go at once, but at most one report per REPORT_SPACING_MS: a busier object's counts wait
 *   for the rest of that spacing (a timer of at most ~1 report's worth of duration).
 * - An object whose actions never all settle (a steady stream of them) still reports, at its next
 *   count or settled action FLUSH_AFTER_MS after its oldest unsent count.
 * A device that publishes rarely thus costs one report per matching message and no duration.
 *
 * What can be lost: the counts not yet reported when the object restarts (an object is evictable
 * only after 10 s without events, and it reports sooner unless an action hangs), and those of a
 * report the registry did not receive (logged by the reporter).
 */
import { FLUSH_AFTER_MS } from "../observability/totals";

/** Least time between two reports of one tally: about what one report costs in duration (above). */
export const REPORT_SPACING_MS = 100;

export interface RuleCount {
  /** Messages the rule matched (its filter, and its `where` held). */
  matched: number;
  /** Actions that did what they do: sent, routed, written, POSTed (or queued, with a retryQueue). */
  ok: number;
  failed: number;
}

export type RuleCounts = Record<string, RuleCount>;

export const RULE_OUTCOMES: readonly (keyof RuleCount)[] = ["matched", "ok", "failed"];

/** The object's clock and timer. */
export interface TallyClock {
  now(): number;
  /** Calls fn after ms. */
  later(ms: number, fn: () => void): void;
}

export class RuleTally {
  private counts = new Map<string, RuleCount>();
  private clientId = "";
  /** When the oldest count not yet reported was made (undefined: none). */
  private oldestAt: number | undefined;
  /** Actions under way whose outcome is still to be counted. */
  private working = 0;
  private lastReportAt = Number.NEGATIVE_INFINITY;
  /** A report is due on the timer. */
  private due = false;

  constructor(
    private readonly clock: TallyClock,
    /** Sends the counts to the registry of clientId. */
    private readonly send: (clientId: string, counts: RuleCounts) => void,
  ) {}

  /** Counts one outcome of a rule, for the client whose message it was. Bounded: one entry per rule (RULES). */
  add(rule: string, outcome: keyof RuleCount, clientId: string): void {
    let count = this.counts.get(rule);
    if (!count) this.counts.set(rule, (count = { matched: 0, ok: 0, failed: 0 }));
    count[outcome]++;
    this.clientId ||= clientId;
    this.oldestAt ??= this.clock.now();
    this.consider();
  }

  /**
   * An action whose outcome will be counted when work settles (counted before it settles): the
   * counts wait for it, so one report carries a message's match and its outcomes. What it returns
   * settles once the tally has taken the settling into account (a Worker keeps its invocation for it).
   */
  track(work: Promise<unknown>): Promise<void> {
    this.working++;
    const settled = () => {
      this.working--;
      this.consider();
    };
    return work.then(settled, settled);
  }

  /** Sends what is counted, if anything, and starts again from zero. */
  flush(): void {
    if (this.counts.size === 0) return;
    const counts = Object.fromEntries(this.counts);
    this.counts = new Map();
    const clientId = this.clientId;
    this.clientId = "";
    this.oldestAt = undefined;
    this.lastReportAt = this.clock.now();
    this.send(clientId, counts);
  }

  /** Whether the counts should go now: nothing under way that they wait for, or they waited long enough. */
  private ready(): boolean {
    if (this.counts.size === 0) return false;
    return this.working === 0 || this.clock.now() - this.oldestAt! >= FLUSH_AFTER_MS;
  }

  private consider(): void {
    if (this.due || !this.ready()) return;
    this.due = true;
    // Even "at once" goes through the timer (0 ms): the counts of the current turn go together, and an
    // action its match started in this turn is tracked before the report is made.
    const wait = Math.max(0, this.lastReportAt + REPORT_SPACING_MS - this.clock.now());
    this.clock.later(wait, () => {
      this.due = false;
      if (this.ready()) this.flush(); // else the action it now waits for calls consider when it settles
    });
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
