// The SQLite SessionStore inside a real Durable Object, against the contract every store passes,
// and its schema's one upgrade path.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { counters, countingSql } from "../../src/observability/counters";
import { RELEASED_IDS_KEPT, SqliteSessionStore } from "../../src/session/store";
import { Schema, SCHEMA_VERSION } from "../../src/session/store/schema";
import { sessionStoreContract } from "../support/session-store-contract";
import { uid } from "../support/ids";

/** Runs `body` with the SQLite of a fresh Session object (its own Session never started). */
const inFreshObject = (body: (sql: SqlStorage) => void | Promise<void>) =>
  runInDurableObject(env.SESSION.get(env.SESSION.idFromName(uid("store"))), (_o, state) => body(state.storage.sql));

sessionStoreContract("SqliteSessionStore", (body) =>
  inFreshObject((sql) => body(new SqliteSessionStore(sql), () => new SqliteSessionStore(sql))),
);

describe("SqliteSessionStore: released inbound QoS 2 ids", () => {
  it("keeping the newest released ids costs no row: 3 per message, as when PUBREL deleted its row", () =>
    inFreshObject((sql) => {
      const store = new SqliteSessionStore(countingSql(sql));
      const message = (id: number) => {
        store.putInboundQos2(id, `m${id}`, false);
        store.markInboundQos2Routed(id, `m${id}`);
        expect(store.releaseInboundQos2(id)).toBe("released");
      };
      for (let id = 1; id <= RELEASED_IDS_KEPT; id++) message(id); // the table, then the kept ids
      const before = counters.sqlRowsWritten;
      for (let id = RELEASED_IDS_KEPT + 1; id <= RELEASED_IDS_KEPT + 100; id++) message(id);
      expect(counters.sqlRowsWritten - before).toBe(300);
      expect(sql.exec(`SELECT COUNT(*) AS n FROM inq2`).one().n).toBe(RELEASED_IDS_KEPT);
    }));
});

describe("SqliteSessionStore: schema", () => {
  const tables = (sql: SqlStorage) =>
    sql
      .exec<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
      .toArray()
      .map((r) => r.name);

  it("creates a table when first written, meta with the schema version first", () =>
    inFreshObject((sql) => {
      const store = new SqliteSessionStore(sql);
      store.loadMeta();
      store.subscriptions();
      expect(tables(sql)).toEqual([]); // reading writes nothing
      store.putTopicAliasIn(1, "a");
      expect(tables(sql)).toEqual(["alias_in", "meta"]);
      expect(new Schema(sql).version()).toBe(SCHEMA_VERSION);
      expect(SCHEMA_VERSION).toBe(1);
    }));

  it("holds the meta of a session with nothing to keep without a row: a reopened store does not see it", () =>
    inFreshObject((sql) => {
      const store = new SqliteSessionStore(sql);
      store.holdMeta({ clientId: "c", connId: "k", expiryInterval: 0 });
      store.clearTopicAliases();
      store.clearState();
      expect(tables(sql)).toEqual([]);
      expect(new SqliteSessionStore(sql).loadMeta()).toEqual({});
      store.clearAll();
      expect(tables(sql)).toEqual([]);
    }));

  it("runs each migration step after the database's version, for the tables that exist", () =>
    inFreshObject((sql) => {
      const sub = { filter: "a", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 } as const;
      new SqliteSessionStore(sql).putSubscription(sub);
      const steps = [{ subs: [`ALTER TABLE subs ADD COLUMN note TEXT`], outq: [`ALTER TABLE outq ADD COLUMN x TEXT`] }];
      const schema = new Schema(sql, steps);
      expect(schema.version()).toBe(2);
      const columns = sql
        .exec<{ name: string }>(`PRAGMA table_info(subs)`)
        .toArray()
        .map((c) => c.name);
      expect(columns).toContain("note");
      expect(tables(sql)).not.toContain("outq");
      new Schema(sql, steps); // at version 2 already: nothing runs again (a second ALTER would throw)
    }));

  it("refuses a database written by a newer schema than the code knows", () =>
    inFreshObject((sql) => {
      new SqliteSessionStore(sql).writeMeta({ clientId: "c" });
      sql.exec(`UPDATE meta SET schema_version = ?`, SCHEMA_VERSION + 1);
      expect(() => new SqliteSessionStore(sql)).toThrow(/schema version 2/);
    }));
});
