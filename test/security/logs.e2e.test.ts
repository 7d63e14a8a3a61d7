/**
 * Client strings in the broker's log: a retained PUBLISH beyond the shard's limit is logged with its
 * topic. A topic holding line breaks and terminal escapes must neither start a log line of its own
 * nor reach the operator's terminal raw (src/observability/log-text.ts).
 */
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_VARS, startBroker } from "../e2e/global-setup";
import { until } from "../support/until";

let broker: Awaited<ReturnType<typeof startBroker>>;

beforeAll(async () => {
  broker = await startBroker({ ...E2E_VARS, MAX_RETAINED_PER_SHARD: "0" });
});
afterAll(async () => broker?.stop());

describe("log lines with hostile client strings", () => {
  it("a topic with a newline and an ANSI escape is logged quoted and escaped", async () => {
    const client = await mqtt.connectAsync(`${broker.base.replace("http", "ws")}/mqtt`, {
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    const forged = "FORGED: admin logged in";
    await client.publishAsync(`logs/x\n${forged}\u001b[2J`, "v", { qos: 1, retain: true });
    await client.endAsync();
    // positive control: the line that carries the topic was written
    await until(() => broker.output().includes("retained limit reached"), "the retained-limit log line");
    const lines = broker.output().split(/\r?\n/);
    expect(lines.some((l) => l.includes(`logs/x\\u000a${forged}\\u001b[2J`))).toBe(true);
    expect(lines.some((l) => l.trimStart().startsWith(forged))).toBe(false);
    expect(broker.output()).not.toContain("\u001b[2J");
  });
});
