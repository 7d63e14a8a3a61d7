/** Bindings of the Worker (wrangler.toml). Config variables are read through config.ts. */
import type { SessionObject } from "./session/session-object";
import type { TopicShardObject } from "./topics/topic-shard-object";
import { shardIndexFromName, shardName } from "./topics/shard-rule";
import type { ClientRegistryObject } from "./registry/client-registry-object";
import { registryName } from "./registry/client-registry";
import type { BridgeObject } from "./bridge/bridge-object";

export interface Env {
  SESSION: DurableObjectNamespace<SessionObject>;
  TOPIC_SHARD: DurableObjectNamespace<TopicShardObject>;
  REGISTRY: DurableObjectNamespace<ClientRegistryObject>;
  /** One object per broker bridge (BRIDGES), named by the bridge. */
  BRIDGE: DurableObjectNamespace<BridgeObject>;
  /** Optional Workers rate limiting binding: connection attempts per client address. */
  CONNECT_LIMITER?: RateLimit;
  [variable: string]: unknown;
}

/** The stub of TopicShard i (its name is the shard rule's). */
export function topicShardStub(env: Env, index: number): DurableObjectStub<TopicShardObject> {
  return env.TOPIC_SHARD.get(env.TOPIC_SHARD.idFromName(shardName(index)));
}

/**
 * The index of the topic shard with this id, among the first `count` (undefined: none of them).
 * The runtime's `id.name` when it gives one; else found by deriving each shard's id (a local hash).
 */
export function topicShardIndex(env: Env, id: DurableObjectId, count: number): number | undefined {
  const named = shardIndexFromName(id.name);
  if (named !== undefined) return named;
  for (let i = 0; i < count; i++) if (env.TOPIC_SHARD.idFromName(shardName(i)).equals(id)) return i;
  return undefined;
}

/** The stub of registry shard i. */
export function registryStub(env: Env, index: number): DurableObjectStub<ClientRegistryObject> {
  return env.REGISTRY.get(env.REGISTRY.idFromName(registryName(index)));
}

/** The stub of a client's Session object (the object exists only once its client has connected). */
export function sessionStub(env: Env, clientId: string): DurableObjectStub<SessionObject> {
  return env.SESSION.get(env.SESSION.idFromName(clientId));
}

/** The stub of the Bridge object of the bridge with this name (BRIDGES). */
export function bridgeStub(env: Env, name: string): DurableObjectStub<BridgeObject> {
  return env.BRIDGE.get(env.BRIDGE.idFromName(name));
}
