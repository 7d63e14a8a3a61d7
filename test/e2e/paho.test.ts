/**
 * A second, independent client implementation: Eclipse Paho for Python (Debian's python3-paho-mqtt),
 * MQTT 3.1.1 and 5.0 over WebSocket. CI installs it; elsewhere the test is skipped when it is absent.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { brokerHttp } from "../support/clients";
import { uid } from "../support/ids";

const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
const hasPaho = (() => {
  try {
    execFileSync(python, ["-c", "import paho.mqtt.client"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
if (!hasPaho && process.env.CI) throw new Error("CI must have python3-paho-mqtt installed (see .ci/run)");

const script = fileURLToPath(new URL("./clients/paho_roundtrip.py", import.meta.url));

describe.skipIf(!hasPaho).each([4, 5] as const)("Eclipse Paho (Python) client, MQTT v%i", (version) => {
  it("connects, subscribes with a wildcard, gets the retained message and QoS 0/1/2", () => {
    const { hostname, port } = new URL(brokerHttp());
    const root = uid("paho");
    const out = execFileSync(python, [script, hostname, port, String(version), root], { timeout: 25000 }).toString();
    const result = JSON.parse(out.trim().split("\n").pop()!);
    expect(Object.values(result.connacks)).toEqual([0, 0]);
    const byTopic = Object.fromEntries(result.received.map((m: any) => [m.topic, m]));
    expect(byTopic[`${root}/retained`]).toMatchObject({ payload: "kept", retain: true, qos: 1 });
    expect(byTopic[`${root}/q0`]).toMatchObject({ payload: "m0", qos: 0, retain: false });
    expect(byTopic[`${root}/q1`]).toMatchObject({ payload: "m1", qos: 1 });
    expect(byTopic[`${root}/q2`]).toMatchObject({ payload: "m2", qos: 2 });
  });
});
