/**
 * Invocation and write counters of this isolate. Cheap (plain integers, never written anywhere per
 * message); read by tests and, when DEBUG_COUNTERS is set, by `GET /debug/counters` for the
 * benchmark. Under `wrangler dev` every object runs in one isolate, so the numbers are the whole
 * broker's; deployed, they are one isolate's and only indicative.
 */
export const counters = {
  /** Events delivered to Session objects (fetch, WebSocket message/close, alarm, RPC). */
  sessionInvocations: 0,
  /** Session object WebSocket messages (a subset of the above; billed 20:1 when deployed). */
  sessionWebSocketMessages: 0,
  /** `deliver` calls from TopicShards into Session objects (a subset of sessionInvocations). */
  sessionDeliverCalls: 0,
  /** RPC calls into TopicShard objects. */
  shardInvocations: 0,
  /** RPC calls into ClientRegistry objects (connection events and drops; never per message). */
  registryInvocations: 0,
  /** SQLite rows written by any object (billed per row). */
  sqlRowsWritten: 0,
  /** Rows written by metrics counters (Totals): one per object per write, plus the alarm that schedules it. */
  metricsRowsWritten: 0,
  /** setAlarm/deleteAlarm calls (each billed as a row written). */
  alarmWrites: 0,
  /** PINGREQs the gateway answered without waking a Session object. */
  pingsAnsweredAtEdge: 0,
};

export type Counters = typeof counters;

export function snapshot(): Counters {
  return { ...counters };
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
