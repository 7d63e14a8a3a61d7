/** The Prometheus text the broker renders, read back by a real exposition-format parser. */
import { describe, expect, it } from "vitest";
import { renderPrometheus, summarize } from "../../src/observability/metrics";
import { parseExposition } from "../support/prometheus";

describe("Prometheus exposition", () => {
  it("parses: every family has HELP and TYPE, counters end in _total, one sample per line", () => {
    const families = parseExposition(renderPrometheus(summarize([], [])));
    expect(families.map((f) => f.name)).toContain("mqtt_messages_dropped_total");
    expect(families.find((f) => f.name === "mqtt_connected_clients")?.metrics.map((s) => s.labels?.protocol)).toEqual([
      "3.1",
      "3.1.1",
      "5.0",
    ]);
  });

  it("escapes label values: a hostile drop reason reads back unchanged and ends nothing", () => {
    const hostile = 'x"} 1\nmqtt_fake_total 9\n# TYPE \\ end\\n';
    const summary = summarize([], []);
    summary.dropped = { [hostile]: 7 };
    const families = parseExposition(renderPrometheus(summary));
    expect(families.map((f) => f.name)).not.toContain("mqtt_fake_total");
    const dropped = families.find((f) => f.name === "mqtt_messages_dropped_total")!;
    expect(dropped.metrics.filter((s) => s.labels?.reason === hostile).map((s) => s.value)).toEqual(["7"]);
  });
});
