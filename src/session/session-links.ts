/**
 * The Session's links to the world around it, built as its SessionIO: the client's connection
 * (SessionSockets), the topic shards (ShardLinks), the registry and the user's lifecycle hooks
 * (SessionReporter), the object's one alarm, and the context the user's hooks run with.
 */
import type { Env } from "../env";
import { ruleEngineFor } from "../rules/rule-runner";
import { currentHooks, hookMessage, type HookContext } from "../hooks";
import { counters } from "../observability/counters";
import { brokerMessage } from "../topics/shard-router";
import type { Identity } from "../auth/acl";
import type { SessionIO } from "./session";
import type { SessionReporter } from "./session-reporter";
import type { SessionSockets } from "./session-sockets";
import type { ShardLinks } from "./shard-links";

export interface SessionLinks {
  env: Env;
  sockets: SessionSockets;
  shards: ShardLinks;
  reporter: SessionReporter;
  /** The object's storage, for its one alarm. */
  storage: DurableObjectStorage;
}

/** What the session core may do (kept off the RPC surface). */
export function sessionIO(links: SessionLinks): SessionIO {
  const { sockets, shards, storage } = links;
  const rules = ruleEngineFor(links.env, {
    route: (message) => shards.route(message),
    report: (clientId, counts) => links.reporter.reportRules(clientId, counts),
  });
  return {
    send: (connId, frame) => sockets.send(connId, frame),
    close: (connId, reason) => sockets.close(connId, reason),
    route: (message) => shards.route(message),
    applyRules: rules && ((message) => rules.apply(message)),
    redistribute: (shareFilter, leaving, message) => shards.redistribute(shareFilter, leaving, message),
    subscribe: (clientId, subs, retainedFor) => shards.subscribe(clientId, subs, retainedFor),
    unsubscribe: (clientId, filters) => shards.unsubscribe(clientId, filters),
    keepWithConnection: (connId, meta) => sockets.keepMeta(connId, meta),
    routeAtSession: (connId) => sockets.routeAtSession(connId),
    setAlarm: (at) => {
      counters.alarmWrites++;
      if (at === undefined) void storage.deleteAlarm();
      else void storage.setAlarm(at);
    },
    later: (ms, fn) => void setTimeout(fn, ms),
    now: () => Date.now(),
    newId: () => crypto.randomUUID(),
    report: (event) => links.reporter.report(event),
    hooks: currentHooks(),
    hookContext: (clientId, identity) => hookContext(links.env, shards, clientId, identity),
  };
}

/** The context of a user hook run for a client: its `publish` routes like the client's own messages. */
export function hookContext(env: Env, shards: ShardLinks, clientId: string, identity: Identity): HookContext {
  return {
    env,
    clientId,
    identity,
    publish: (p) => shards.route(brokerMessage("hook", hookMessage(p), Date.now())),
  };
}
