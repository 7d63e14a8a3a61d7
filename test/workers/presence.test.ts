// A registry shard's presence (src/registry/presence.ts) inside a real ClientRegistry object's SQLite:
// changes are written together, and a connection that comes and goes in between writes no row.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Presence } from "../../src/registry/presence";
import type { PresenceRecord } from "../../src/registry/client-registry";
import { uid } from "../support/ids";

const record = (clientId: string, connId: string): PresenceRecord => ({
  clientId,
  connId,
  connectedAt: 1,
  version: 4,
  sessionPresent: false,
  expiryInterval: 0,
});

/** Runs `body` with the SQLite of a fresh registry object, counting the rows each step writes. */
const inFreshRegistry = (body: (sql: SqlStorage, written: () => number) => void) =>
  runInDurableObject(env.REGISTRY.get(env.REGISTRY.idFromName(uid("presence"))), (_o, state) => {
    let rows = 0;
    const sql = state.storage.sql;
    const counting = {
      exec: (query: string, ...bindings: unknown[]) => {
        const cursor = sql.exec(query, ...bindings);
        rows += cursor.rowsWritten;
        return cursor;
      },
    } as unknown as SqlStorage;
    body(counting, () => {
      const n = rows;
      rows = 0;
      return n;
    });
  });

const ids = (sql: SqlStorage) =>
  sql
    .exec<{ client_id: string; conn_id: string }>(`SELECT client_id, conn_id FROM presence ORDER BY client_id`)
    .toArray()
    .map((r) => `${r.client_id}@${r.conn_id}`);

describe("registry presence", () => {
  it("writes nothing for a connection that comes and goes between writes", () =>
    inFreshRegistry((sql, written) => {
      const presence = new Presence(sql);
      written(); // the table
      presence.connected(record("a", "1"));
      presence.disconnected("a", "1");
      presence.flush();
      expect(written()).toBe(0);
      expect(ids(sql)).toEqual([]);
    }));

  it("writes one row for a connection that stays, and one when it ends; readers see unwritten changes", () =>
    inFreshRegistry((sql, written) => {
      const presence = new Presence(sql);
      written();
      presence.connected(record("a", "1"));
      expect(written()).toBe(0);
      expect(presence.get("a")).toEqual(record("a", "1")); // a look-up sees it and writes nothing
      expect(written()).toBe(0);
      expect(ids(presence.table())).toEqual(["a@1"]); // a reader of many writes first
      expect(written()).toBe(1);
      presence.disconnected("a", "1");
      expect(presence.get("a")).toBeUndefined();
      presence.flush();
      expect(written()).toBe(1);
      expect(ids(sql)).toEqual([]);
    }));

  it("keeps a take-over's connection when the older one's end arrives after it, written or not", () =>
    inFreshRegistry((sql) => {
      const presence = new Presence(sql);
      presence.connected(record("a", "1"));
      presence.flush();
      presence.connected(record("a", "2"));
      presence.disconnected("a", "1"); // the older connection's end, after the take-over
      expect(presence.get("a")?.connId).toBe("2");
      presence.flush();
      expect(ids(sql)).toEqual(["a@2"]);
      presence.disconnected("a", "1"); // again, once the take-over is written
      presence.flush();
      expect(ids(sql)).toEqual(["a@2"]);
    }));

  it("an unwritten connection that came and went removes the row it replaced, as its writes would have", () =>
    inFreshRegistry((sql) => {
      const presence = new Presence(sql);
      presence.connected(record("a", "1"));
      presence.flush();
      presence.connected(record("a", "2")); // the end of 1 was lost (say, its session restarted)
      presence.disconnected("a", "2");
      presence.flush();
      expect(ids(sql)).toEqual([]);
    }));
});
