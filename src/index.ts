/** Worker entry: the edge gateway (Hono app) and the Durable Object classes. */
import { app } from "./gateway/app";

export { SessionObject } from "./session/session-object";
export { TopicShardObject } from "./topics/topic-shard-object";
export { ClientRegistryObject } from "./registry/client-registry-object";
export type { BrokerConfig } from "./config";

export default app;
