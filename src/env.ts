/** Bindings of the Worker (wrangler.toml). Config variables are read through config.ts. */
import type { SessionObject } from "./session/session-object";
import type { TopicShardObject } from "./topics/topic-shard-object";
import { shardName } from "./topics/shard-rule";

export interface Env {
  SESSION: DurableObjectNamespace<SessionObject>;
  TOPIC_SHARD: DurableObjectNamespace<TopicShardObject>;
  /** Optional Workers rate limiting binding: connection attempts per client address. */
  CONNECT_LIMITER?: RateLimit;
  [variable: string]: unknown;
}

/** The stub of TopicShard i (its name is the shard rule's). */
export function topicShardStub(env: Env, index: number): DurableObjectStub<TopicShardObject> {
  return env.TOPIC_SHARD.get(env.TOPIC_SHARD.idFromName(shardName(index)));
}
