/** Bindings of the Worker (wrangler.toml). Config variables are read through config.ts. */
import type { SessionObject } from "./session/session-object";
import type { TopicShardObject } from "./topics/topic-shard-object";

export interface Env {
  SESSION: DurableObjectNamespace<SessionObject>;
  TOPIC_SHARD: DurableObjectNamespace<TopicShardObject>;
  /** Optional Workers rate limiting binding: connection attempts per client address. */
  CONNECT_LIMITER?: RateLimit;
  [variable: string]: unknown;
}
