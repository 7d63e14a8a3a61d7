/**
 * Rule counters (src/rules/rule-tally.ts, docs/RULES.md "Failures and counters"): a session's counts
 * go out as one report once its actions' outcomes are in, never held on a long timer (which would keep
 * the object from hibernating), the registries' sums add up, and `/metrics`
 * shows one labelled series per configured rule, its name escaped.
 */
import { describe, expect, it } from "vitest";
import { renderPrometheus, summarize } from "../../src/observability/metrics";
import { FLUSH_AFTER_MS } from "../../src/observability/totals";
import type { RegistryStats } from "../../src/registry/client-registry";
import { configuredRuleCounts, REPORT_SPACING_MS, RuleTally, type RuleCounts } from "../../src/rules/rule-tally";
import { parseExposition } from "../support/prometheus";

describe("a session's rule tally", () => {
  /** A tally on a fake clock: its timers are listed, and run by hand. */
  function tallyOnFakeClock() {
    const clock = { at: 1_000_000 };
    const timers: { ms: number; fn: () => void }[] = [];
    const sent: [string, RuleCounts][] = [];
    const tally = new RuleTally(
      { now: () => clock.at, later: (ms, fn) => void timers.push({ ms, fn }) },
      (clientId, counts) => sent.push([clientId, counts]),
    );
    const runTimers = () => {
      for (const t of timers.splice(0)) t.fn();
    };
    return { clock, timers, sent, tally, runTimers };
  }
  /** Lets settled promises' reactions run. */
  const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

  it("reports the counts of one turn together, at once, to the first client's registry", () => {
    const { timers, sent, tally, runTimers } = tallyOnFakeClock();
    tally.add("hot", "matched", "c1");
    tally.add("hot", "ok", "c1");
    tally.add("hot", "matched", "c2");
    tally.add("alert", "failed", "c1");
    expect(timers.map((t) => t.ms)).toEqual([0]); // one timer for all of them, and no wait
    expect(sent).toEqual([]);
    runTimers();
    expect(sent).toEqual([["c1", { hot: { matched: 2, ok: 1, failed: 0 }, alert: { matched: 0, ok: 0, failed: 1 } }]]);
    tally.flush(); // nothing counted since: no report
    expect(sent).toHaveLength(1);
  });

  it("waits for an action under way, so its outcome goes in the same report as the match", async () => {
    const { timers, sent, tally, runTimers } = tallyOnFakeClock();
    let finish!: () => void;
    const action = new Promise<void>((resolve) => (finish = resolve)).then(() => tally.add("hot", "ok", "c1"));
    tally.add("hot", "matched", "c1");
    const counted = tally.track(action);
    runTimers(); // the turn's timer finds the action under way: nothing goes
    await settle();
    expect(sent).toEqual([]);
    expect(timers).toEqual([]); // and nothing waits on a timer meanwhile: the settling brings the report
    finish();
    await counted;
    expect(timers.map((t) => t.ms)).toEqual([0]);
    runTimers();
    expect(sent).toEqual([["c1", { hot: { matched: 1, ok: 1, failed: 0 } }]]);
  });

  it("a failed action counts the same way (the tracked work rejects)", async () => {
    const { sent, tally, runTimers } = tallyOnFakeClock();
    const action = Promise.reject(new Error("queue full")).catch((err: unknown) => {
      tally.add("hot", "failed", "c1");
      throw err;
    });
    action.catch(() => undefined);
    tally.add("hot", "matched", "c1");
    await tally.track(action);
    runTimers();
    expect(sent).toEqual([["c1", { hot: { matched: 1, ok: 0, failed: 1 } }]]);
  });

  it("sends at most one report per REPORT_SPACING_MS; a busier object's counts wait out the rest of it", () => {
    const { clock, timers, sent, tally, runTimers } = tallyOnFakeClock();
    tally.add("hot", "matched", "c1");
    runTimers();
    clock.at += 30;
    tally.add("hot", "matched", "c1");
    expect(timers.map((t) => t.ms)).toEqual([REPORT_SPACING_MS - 30]);
    tally.add("hot", "matched", "c1"); // no second timer
    expect(timers).toHaveLength(1);
    clock.at += REPORT_SPACING_MS - 30;
    runTimers();
    expect(sent.map(([, c]) => c.hot!.matched)).toEqual([1, 2]);
    clock.at += 5 * REPORT_SPACING_MS; // a rare publisher: straight away again
    tally.add("hot", "matched", "c1");
    expect(timers.map((t) => t.ms)).toEqual([0]);
  });

  it("an object whose actions never all settle still reports, FLUSH_AFTER_MS after its oldest count", async () => {
    const { clock, timers, sent, tally, runTimers } = tallyOnFakeClock();
    const never = new Promise<void>(() => undefined);
    void tally.track(never);
    tally.add("hot", "matched", "c1");
    runTimers();
    expect(sent).toEqual([]);
    clock.at += FLUSH_AFTER_MS - 1;
    tally.add("hot", "matched", "c1");
    runTimers();
    expect(sent).toEqual([]);
    clock.at += 1;
    tally.add("hot", "matched", "c1");
    expect(timers.map((t) => t.ms)).toEqual([0]);
    runTimers();
    expect(sent).toEqual([["c1", { hot: { matched: 3, ok: 0, failed: 0 } }]]);
    await settle();
  });
});

describe("rule counts in /metrics", () => {
  const registry = (rules: RuleCounts): RegistryStats => ({
    connected: 0,
    connectedByVersion: {},
    connectsTotal: 0,
    disconnectsTotal: 0,
    dropped: {},
    sessionInvocations: 0,
    deep: 0,
    queued: 0,
    rules,
  });

  it("sums the registries, and shows the configured rules only, zero for one not counted yet", () => {
    const summary = summarize(
      [
        registry({ hot: { matched: 2, ok: 2, failed: 0 }, gone: { matched: 9, ok: 9, failed: 0 } }),
        registry({ hot: { matched: 1, ok: 0, failed: 1 } }),
      ],
      [],
    );
    expect(summary.rules.hot).toEqual({ matched: 3, ok: 2, failed: 1 });
    const shown = configuredRuleCounts([{ name: "hot" }, { name: "quiet" }], summary.rules);
    expect(shown).toEqual({ hot: { matched: 3, ok: 2, failed: 1 }, quiet: { matched: 0, ok: 0, failed: 0 } });
    const families = parseExposition(renderPrometheus({ ...summary, rules: shown }));
    const samples = (name: string) =>
      families.find((f) => f.name === name)!.metrics.map((m) => [JSON.stringify(m.labels), m.value]);
    expect(samples("mqtt_rule_matches_total")).toEqual([
      ['{"rule":"hot"}', "3"],
      ['{"rule":"quiet"}', "0"],
    ]);
    expect(samples("mqtt_rule_actions_total")).toEqual([
      ['{"rule":"hot","outcome":"ok"}', "2"],
      ['{"rule":"hot","outcome":"failed"}', "1"],
      ['{"rule":"quiet","outcome":"ok"}', "0"],
      ['{"rule":"quiet","outcome":"failed"}', "0"],
    ]);
  });

  it("escapes a rule's name in its label (RULES refuses such names; this holds whatever reaches it)", () => {
    const hostile = 'x"} 1\nmqtt_fake_total 9\n# TYPE \\ end\\n';
    const summary = { ...summarize([], []), rules: { [hostile]: { matched: 4, ok: 0, failed: 0 } } };
    const families = parseExposition(renderPrometheus(summary));
    expect(families.map((f) => f.name)).not.toContain("mqtt_fake_total");
    const matches = families.find((f) => f.name === "mqtt_rule_matches_total")!;
    expect(matches.metrics.map((m) => [m.labels?.rule, m.value])).toEqual([[hostile, "4"]]);
  });

  it("without rules, no rule series", () => {
    const names = parseExposition(renderPrometheus(summarize([], []))).map((f) => f.name);
    expect(names.filter((n) => n.startsWith("mqtt_rule_"))).toEqual([]);
  });
});
