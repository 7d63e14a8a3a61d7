/**
 * Inside the workers pool (workerd, cloudflare:test), for test/workers and the security workers
 * tests: raw MQTT clients over real WebSockets into the Worker under test, and the objects' metrics
 * counters written on demand. test/support/clients.ts is the counterpart against `wrangler dev`.
 */
import { env, runDurableObjectAlarm, runInDurableObject, SELF } from "cloudflare:test";
import { DEFAULT_CONFIG } from "../../src/config";
import { registryStub, topicShardStub } from "../../src/env";
import { allShards } from "../../src/topics/shard-rule";
import type { TopicShard } from "../../src/topics/topic-shard";
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
 * Writes every TopicShard's and ClientRegistry's unwritten metrics counters now
 * (observability/totals.ts), as they would be FLUSH_AFTER_MS later: a shard's from its timer (run here
 * through the object's core: no test-only method on its RPC surface), a registry's from its alarm.
 */
export async function flushCounters(): Promise<void> {
  for (const i of allShards(DEFAULT_CONFIG.shardCount)) {
    await runInDurableObject(topicShardStub(env, i), (shard) => (shard as unknown as ShardCore).shard.flushTotals());
  }
  for (const i of allShards(DEFAULT_CONFIG.registryShardCount)) await runDurableObjectAlarm(registryStub(env, i));
}

/** What flushCounters reaches inside a TopicShardObject (a private field). */
interface ShardCore {
  shard: TopicShard;
}
