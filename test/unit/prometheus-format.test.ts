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

  it("renders each broker bridge's state labelled by its name, and nothing of bridges when there are none", () => {
    const bridge = {
      name: "floor",
      state: "connected" as const,
      lastError: "",
      queuedMessages: 3,
      queuedBytes: 40,
      received: 5,
      sent: 6,
      droppedOffline: 1,
      droppedFull: 2,
      droppedExpired: 3,
      droppedRefused: 4,
      unmapped: 0,
    };
    const families = parseExposition(
      renderPrometheus(summarize([], []), [bridge, { ...bridge, name: "b2", state: "connecting" }]),
    );
    const samples = (name: string) =>
      families.find((f) => f.name === name)!.metrics.map((m) => [JSON.stringify(m.labels), m.value]);
    expect(samples("mqtt_bridge_connected")).toEqual([
      ['{"bridge":"floor"}', "1"],
      ['{"bridge":"b2"}', "0"],
    ]);
    expect(samples("mqtt_bridge_queued_messages")[0]).toEqual(['{"bridge":"floor"}', "3"]);
    expect(samples("mqtt_bridge_messages_total").slice(0, 2)).toEqual([
      ['{"bridge":"floor","direction":"in"}', "5"],
      ['{"bridge":"floor","direction":"out"}', "6"],
    ]);
    expect(samples("mqtt_bridge_dropped_total").slice(0, 4)).toEqual([
      ['{"bridge":"floor","reason":"offline"}', "1"],
      ['{"bridge":"floor","reason":"queue_full"}', "2"],
      ['{"bridge":"floor","reason":"expired"}', "3"],
      ['{"bridge":"floor","reason":"refused"}', "4"],
    ]);
    const none = parseExposition(renderPrometheus(summarize([], []))).map((f) => f.name);
    expect(none.filter((n) => n.startsWith("mqtt_bridge_"))).toEqual([]);
  });
});
