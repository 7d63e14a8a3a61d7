/**
 * Inside the workers pool (workerd, cloudflare:test), for test/workers and the security workers
 * tests: raw MQTT clients over real WebSockets into the Worker under test, and the objects' alarms
 * run on demand. test/support/clients.ts is the counterpart against `wrangler dev`.
 */
import { env, runDurableObjectAlarm, SELF } from "cloudflare:test";
import { DEFAULT_CONFIG } from "../../src/config";
import { registryStub, topicShardStub } from "../../src/env";
import { allShards } from "../../src/topics/shard-rule";
import { RawClient } from "./raw-client";

export async function rawClient(version: 4 | 5 = 5): Promise<RawClient> {
  const res = await SELF.fetch("http://broker.test/mqtt", {
    headers: { Upgrade: "websocket", "Sec-WebSocket-Protocol": "mqtt" },
  });
  const ws = res.webSocket;
  if (!ws) throw new Error(`no WebSocket: ${res.status}`);
  ws.binaryType = "arraybuffer";
  ws.accept();
  return new RawClient(
    {
      send: (data) => ws.send(data),
      close: () => {
        try {
          ws.close(1000, "test");
        } catch {
          // already closed
        }
      },
      onBytes: (cb) => ws.addEventListener("message", (e) => cb(new Uint8Array(e.data as ArrayBuffer))),
      onClose: (cb) => {
        ws.addEventListener("close", cb);
        ws.addEventListener("error", cb);
      },
    },
    version,
  );
}

/**
 * Runs every TopicShard's and ClientRegistry's pending alarm now: their metrics counters are written
 * (observability/totals.ts), as they would be FLUSH_AFTER_MS later.
 */
export async function runCounterAlarms(): Promise<void> {
  const stubs = [
    ...allShards(DEFAULT_CONFIG.shardCount).map((i) => topicShardStub(env, i)),
    ...allShards(DEFAULT_CONFIG.registryShardCount).map((i) => registryStub(env, i)),
  ];
  for (const stub of stubs) await runDurableObjectAlarm(stub);
}
