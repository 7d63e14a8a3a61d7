/**
 * Load generator for slow-consumer tests, run in a worker thread so that the test's own event loop
 * (which times the control pair) is not starved by the flood. MQTT.js publishers without
 * permessage-deflate, random payloads (a constant one would compress to nothing on the wire).
 * workerData: { url, topic, qos, publishers, rate (msg/s each), seconds, size }; posts { sent }.
 */
import { randomBytes } from "node:crypto";
import { parentPort, workerData } from "node:worker_threads";
import mqtt from "mqtt";

const { url, topic, qos, publishers, rate, seconds, size } = workerData;
const clients = await Promise.all(
  Array.from({ length: publishers }, (_, i) =>
    mqtt.connectAsync(url, {
      protocolVersion: 4,
      reconnectPeriod: 0,
      clientId: `flood-${process.pid}-${Date.now()}-${i}`,
      wsOptions: { perMessageDeflate: false },
    }),
  ),
);
const tickMs = 10;
const start = Date.now();
let sent = 0;
while (Date.now() - start < seconds * 1000) {
  // Catch up to the target rate: a late tick sends what the schedule owed.
  const due = Math.floor(((Date.now() - start) / 1000) * rate);
  for (const c of clients) for (let n = sent / publishers; n < due; n++) c.publish(topic, randomBytes(size), { qos });
  sent = Math.max(sent, due * publishers);
  await new Promise((r) => setTimeout(r, tickMs));
}
await Promise.all(clients.map((c) => c.endAsync()));
parentPort.postMessage({ sent });
