/** The cron trigger writes broker-wide figures to a Workers Analytics Engine binding (METRICS). */
import { createScheduledController, env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { writeMetricsPoint } from "../../src/observability/metrics-collector";
import { uid } from "../support/ids";
import { atLeast } from "../support/elements";

class RecordingDataset {
  points: AnalyticsEngineDataPoint[] = [];
  writeDataPoint(point: AnalyticsEngineDataPoint): void {
    this.points.push(point);
  }
}

describe("metrics sink", () => {
  it("writes one data point per cron run with the summed counters, and nothing without the binding", async () => {
    const topic = `sink/${uid()}`;
    for (let i = 0; i < 3; i++) {
      const res = await SELF.fetch("http://broker/api/v1/publish", {
        method: "POST",
        headers: { authorization: "Bearer workers-test-admin", "content-type": "application/json" },
        body: JSON.stringify({ topic, payload: "12345" }),
      });
      expect(res.status).toBe(200);
    }
    const sink = new RecordingDataset();
    await worker.scheduled(createScheduledController(), { ...env, METRICS: sink } as never);
    expect(sink.points).toHaveLength(1);
    const [point] = atLeast(sink.points, 1);
    const names = point.blobs![0]!.toString().split(",");
    const value = (name: string) => point.doubles![names.indexOf(name)];
    expect(value("received")).toBeGreaterThanOrEqual(3);
    expect(value("received_bytes")).toBeGreaterThanOrEqual(15);
    expect(value("dropped")).toBeGreaterThanOrEqual(3); // nobody subscribed: no_subscribers
    expect(await writeMetricsPoint(env)).toBe(false); // no METRICS binding: nothing to write, no calls made
  });
});
