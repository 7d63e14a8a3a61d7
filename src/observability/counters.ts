/**
 * Invocation and write counters of this isolate. Cheap (plain integers, never written anywhere per
 * message); read by tests and, when DEBUG_COUNTERS is set, by `GET /debug/counters` for the
 * benchmark. Under `wrangler dev` every object runs in one isolate, so the numbers are the whole
 * broker's; deployed, they are one isolate's and only indicative.
 */
export const counters = {
  /** Events delivered to Session objects (fetch, WebSocket message/close, alarm, RPC). */
  sessionInvocations: 0,
  /**
   * Wall time (ms) Session objects were busy: an event being handled or a shard call being waited for
   * (observability/busy-clock.ts); billed duration also has pending timers and wakes, not counted here.
   */
  sessionBusyMs: 0,
  /** Session object WebSocket messages (a subset of the above; billed 20:1 when deployed). */
  sessionWebSocketMessages: 0,
  /** `deliver` calls from TopicShards into Session objects (a subset of sessionInvocations). */
  sessionDeliverCalls: 0,
  /**
   * The most `deliver` calls one TopicShard had in flight at once (MAX_SHARD_DELIVERIES_IN_FLIGHT
   * bounds it): how many Session objects one shard was waking at the same moment.
   */
  shardDeliveriesInFlightPeak: 0,
  /** `deliver` calls that waited in their TopicShard for one in flight to settle. */
  shardDeliveriesWaited: 0,
  /** RPC calls into TopicShard objects. */
  shardInvocations: 0,
  /** `publishMany` calls a Session object made (it is awake, and billed, until the shard answers). */
  sessionPublishCalls: 0,
  /** `publishMany` calls the gateway made for messages a session handed it (ROUTE_AT_EDGE: not billed while waiting). */
  gatewayPublishCalls: 0,
  /** `publishMany` calls a Bridge object made for messages from its remote broker (src/bridge/). */
  bridgePublishCalls: 0,
  /** RPC calls into ClientRegistry objects (connection events and drops; never per message). */
  registryInvocations: 0,
  /** SQLite rows written by any object (billed per row). */
  sqlRowsWritten: 0,
  /** Rows written by metrics counters (Totals): one per object per write, plus the alarm that schedules it. */
  metricsRowsWritten: 0,
  /**
   * Rows written by the registries' presence (src/registry/presence.ts), apart from sqlRowsWritten:
   * written with the counters, seconds after the connection that caused them, so they would land in
   * whatever a test or a bench run measures then. Billed like any row.
   */
  presenceRowsWritten: 0,
  /**
   * QoS 1 deliveries written because their client had not acknowledged them within ACK_WAIT_MS (a
   * subset of sqlRowsWritten's cause: about 2 rows each, in flight and finished). A subscriber that
   * keeps up causes none (docs/ARCHITECTURE.md, "Acknowledged or written").
   */
  deliveriesWrittenLate: 0,
  /** setAlarm/deleteAlarm calls (each billed as a row written). */
  alarmWrites: 0,
  /**
   * QoS 0 PUBLISHes to 3.1.1 subscribers sent as the publisher's Session object encoded them, with no
   * encoding of their own (protocol/codec.ts payloadInPublish).
   */
  publishesSentAsGiven: 0,
  /** PINGREQs the gateway answered without waking a Session object. */
  pingsAnsweredAtEdge: 0,
  /** Actions of matching rules started (src/rules/rule-engine.ts): queue sends and republishes. */
  ruleActionsTaken: 0,
  /** Rule actions that failed: a queue send rejected, a republish whose topic could not be made or routed. */
  ruleActionsFailed: 0,
  /** `where` conditions that ran out of their step budget (counted false for that message). */
  ruleConditionOverruns: 0,
  /** `where` evaluations that threw (a bug: none by design; counted false for that message). */
  ruleConditionFaults: 0,
  /** Republished copies at RULES_MAX_DEPTH that a rule would have matched: routed without running rules. */
  ruleChainsCut: 0,
};

export type Counters = typeof counters;

export function snapshot(): Counters {
  return { ...counters };
}

let isolate: string | undefined;

/**
 * This isolate's identity, made when first asked: a reader comparing two readings of the counters
 * (the benchmark) can tell that the isolate restarted in between, which set every count back to zero.
 */
export function isolateId(): string {
  return (isolate ??= crypto.randomUUID());
}

/** The object classes whose incoming calls are also counted one object at a time. */
export type ObjectClass = "session" | "shard" | "registry";

/**
 * Objects counted one by one, per class. Bounded: beyond this many, the least recently called object
 * of the class is forgotten (its count starts again from zero if it is called again). The busy
 * objects the benchmark looks for (a hot backend session, a shard) are called all the time, so they
 * are never the least recently called.
 */
export const MAX_COUNTED_OBJECTS = 1024;

const callsByObject: Record<ObjectClass, Map<string, number>> = {
  session: new Map(),
  shard: new Map(),
  registry: new Map(),
};

/**
 * Counts one incoming call (any event: RPC, WebSocket message, alarm) into the object `name` of a
 * class: the benchmark's per-object request rate, to find the hottest object against a Durable
 * Object's soft limit (docs/SCALE.md).
 */
export function countObjectCall(kind: ObjectClass, name: string): void {
  addForObject(callsByObject[kind], name, 1);
}

/** Adds `n` to an object's count, keeping at most MAX_COUNTED_OBJECTS, the least recently counted dropped first. */
function addForObject(counts: Map<string, number>, name: string, n: number): void {
  const before = counts.get(name);
  // Deleted and set again, so the map's order is least recently counted first.
  if (before !== undefined) counts.delete(name);
  else if (counts.size >= MAX_COUNTED_OBJECTS) counts.delete(counts.keys().next().value!);
  counts.set(name, (before ?? 0) + n);
}

/** Busy wall time (ms) of each counted Session object (observability/busy-clock.ts), bounded as the calls. */
const sessionBusyMs = new Map<string, number>();

/**
 * Adds a busy stretch of the Session object `name`: the benchmark's measure of publishers' sessions'
 * billed duration (its events and shard calls; docs/COST.md).
 */
export function countSessionBusy(name: string, ms: number): void {
  counters.sessionBusyMs += ms;
  addForObject(sessionBusyMs, name, ms);
}

/** Busy ms counted so far for each counted Session object (object name -> ms). */
export function sessionBusySnapshot(): Record<string, number> {
  return Object.fromEntries(sessionBusyMs);
}

/** Calls counted so far into each counted object, per class (object name -> calls). */
export function callsByObjectSnapshot(): Record<ObjectClass, Record<string, number>> {
  return {
    session: Object.fromEntries(callsByObject.session),
    shard: Object.fromEntries(callsByObject.shard),
    registry: Object.fromEntries(callsByObject.registry),
  };
}

/** Wraps a Durable Object's SqlStorage so every statement's rows written are counted. */
export function countingSql(sql: SqlStorage): SqlStorage {
  return new Proxy(sql, {
    get(target, property, receiver) {
      if (property === "exec") {
        return (query: string, ...bindings: unknown[]) => {
          const cursor = target.exec(query, ...bindings);
          counters.sqlRowsWritten += cursor.rowsWritten;
          return cursor;
        };
      }
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
