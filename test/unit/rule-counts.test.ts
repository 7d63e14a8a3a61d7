/**
 * Rule counters (src/rules/rule-tally.ts, docs/RULES.md "Failures and counters"): a session's counts
 * go out as one report FLUSH_AFTER_MS after the first, the registries' sums add up, and `/metrics`
 * shows one labelled series per configured rule, its name escaped.
 */
import { describe, expect, it } from "vitest";
import { renderPrometheus, summarize } from "../../src/observability/metrics";
import { FLUSH_AFTER_MS } from "../../src/observability/totals";
import type { RegistryStats } from "../../src/registry/client-registry";
import { configuredRuleCounts, RuleTally, type RuleCounts } from "../../src/rules/rule-tally";
import { parseExposition } from "../support/prometheus";

describe("a session's rule tally", () => {
  it("sends one report FLUSH_AFTER_MS after its first count, to the first client's registry, then starts again", () => {
    const timers: { ms: number; fn: () => void }[] = [];
    const sent: [string, RuleCounts][] = [];
    const tally = new RuleTally(
      (ms, fn) => timers.push({ ms, fn }),
      (clientId, counts) => sent.push([clientId, counts]),
    );
    tally.add("hot", "matched", "c1");
    tally.add("hot", "ok", "c1");
    tally.add("hot", "matched", "c1");
    tally.add("alert", "failed", "c1");
    expect(timers.map((t) => t.ms)).toEqual([FLUSH_AFTER_MS]); // one timer for all of them
    expect(sent).toEqual([]);
    timers.shift()!.fn();
    expect(sent).toEqual([
      [
        "c1",
        {
          hot: { matched: 2, ok: 1, failed: 0 },
          alert: { matched: 0, ok: 0, failed: 1 },
        },
      ],
    ]);
    tally.add("hot", "ok", "c1");
    expect(timers).toHaveLength(1);
    timers.shift()!.fn();
    expect(sent[1]).toEqual(["c1", { hot: { matched: 0, ok: 1, failed: 0 } }]);
    tally.flush(); // nothing counted since: no report
    expect(sent).toHaveLength(2);
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
