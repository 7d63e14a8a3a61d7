/**
 * docs/grafana-dashboard.json cannot drift from /metrics: every metric a PromQL expression names
 * (panels and variables) is one the broker renders. docs/prometheus.yml scrapes the path the
 * broker serves, with the admin token.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { renderPrometheus, summarize } from "../../src/observability/metrics";
import { parseExposition } from "../support/prometheus";

const rendered = new Set(parseExposition(renderPrometheus(summarize([], []))).map((f) => f.name));
const dashboard = JSON.parse(readFileSync(new URL("../../docs/grafana-dashboard.json", import.meta.url), "utf8"));

const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "and",
  "or",
  "unless",
  "offset",
]);

/**
 * The metric names in a PromQL expression: identifiers left once label matchers `{...}`, ranges
 * `[...]`, grouping lists `by (...)`, strings and `$variables` are removed, other than functions
 * (followed by "(") and keywords.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\$\w+/g, " ");
  return [...bare.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)]
    .filter((m) => !m[2] && !KEYWORDS.has(m[1]!)) // group 1 is not optional: always there
    .map((m) => m[1]!);
}

type Panel = {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: { expr: string; datasource?: unknown }[];
};
const panels: Panel[] = dashboard.panels.flatMap((p: Panel & { panels?: Panel[] }) => [p, ...(p.panels ?? [])]);
const queries = panels.filter((p) => p.type !== "row");
const variableQueries: string[] = dashboard.templating.list
  .filter((v: { type: string }) => v.type === "query")
  .map((v: { query: { query: string } }) => v.query.query);

describe("Grafana dashboard", () => {
  it("reads metric names out of PromQL", () => {
    expect(
      metricNames('sum by (reason) (rate(mqtt_messages_dropped_total{job=~"$job", x="a{b}"}[$__rate_interval])) > 0'),
    ).toEqual(["mqtt_messages_dropped_total"]);
    expect(metricNames("label_values(mqtt_connections_total, job)")).toEqual(["mqtt_connections_total", "job"]);
  });

  it("queries only metrics the broker renders", () => {
    const exprs = [
      ...queries.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...variableQueries.map((q) => q.replace(/,\s*\w+\)$/, ")")),
    ];
    expect(exprs.length).toBeGreaterThan(10);
    for (const expr of exprs) {
      const names = metricNames(expr);
      expect(names.length, `a metric in ${expr}`).toBeGreaterThan(0);
      for (const name of names) expect(rendered, `${name} in ${expr}`).toContain(name);
    }
  });

  it("covers connections, messages, drops, retained, deep queues and invocations", () => {
    const used = new Set(queries.flatMap((p) => (p.targets ?? []).flatMap((t) => metricNames(t.expr))));
    for (const name of [
      "mqtt_connected_clients",
      "mqtt_connections_total",
      "mqtt_messages_received_total",
      "mqtt_messages_delivered_total",
      "mqtt_messages_dropped_total",
      "mqtt_retained_messages",
      "mqtt_deep_queues",
      "mqtt_durable_object_invocations_total",
    ]) {
      expect(used, name).toContain(name);
    }
  });

  it("is importable: schema 39, a Prometheus datasource variable that every panel uses, unique panel ids", () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: "datasource", type: "datasource", query: "prometheus" }),
    );
    for (const p of queries) {
      expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: "${datasource}" });
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
    }
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
  });

  it("has a Prometheus scrape example for /metrics with the admin token as bearer", () => {
    const config = readFileSync(new URL("../../docs/prometheus.yml", import.meta.url), "utf8");
    expect(config).toMatch(/^\s+metrics_path: \/metrics$/m);
    expect(config).toMatch(/^\s+authorization:\n\s+type: Bearer\n\s+credentials_file: /m);
  });
});
