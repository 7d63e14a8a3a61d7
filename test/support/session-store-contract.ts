/**
 * One contract for every SessionStore (src/session/store): each implementation runs it, the way
 * Aedes' persistence implementations share one abstract test suite. `reopen` gives a store over the
 * same state, as a Durable Object has after a wake (the in-memory store gives itself back).
 */
import { describe, expect, it } from "vitest";
import {
  OutState,
  queuedMessageBytes,
  RELEASED_IDS_KEPT,
  type OutboundRow,
  type SessionMeta,
  type SessionStore,
} from "../../src/session/store";
import type { Delivery, QoS, Subscription } from "../../src/protocol/message";
import { at, atLeast } from "./elements";

export type StoreBody = (store: SessionStore, reopen: () => SessionStore) => void | Promise<void>;
export type StoreRun = (body: StoreBody) => Promise<void>;

const bytes = (...values: number[]) => new Uint8Array(values);

function delivery(id: string, qos: QoS, more: Partial<Delivery> = {}): Delivery {
  return {
    message: {
      id,
      origin: "publisher",
      topic: `t/${id}`,
      payload: bytes(1, 2, 3),
      qos,
      retain: false,
      receivedAt: 1000,
    },
    qos,
    retain: false,
    ...more,
  };
}

const ids = (rows: OutboundRow[]) => rows.map((r) => r.msgId);
/** Pending, queued, in flight, and whether any is queued. */
const counts = (s: SessionStore) => [s.pendingCount(), s.queuedCount(), s.inflightCount(), s.hasQueued()];
const ALL_STATES = Object.values(OutState);

export function sessionStoreContract(name: string, run: StoreRun): void {
  describe(`${name}: session meta`, () => {
    it("is empty for a session never written, and after clearAll", () =>
      run((store, reopen) => {
        expect(store.loadMeta()).toEqual({});
        store.writeMeta({ clientId: "c", expiryInterval: 60 });
        store.clearAll();
        expect(store.loadMeta()).toEqual({});
        expect(reopen().loadMeta()).toEqual({});
      }));

    it("round-trips every value, the will's binary payload and ordered user properties, the identity", () =>
      run((store, reopen) => {
        const meta: SessionMeta = {
          clientId: "client-1",
          owner: "alice",
          identity: { username: "alice", roles: ["ops", "dev"], grants: { publish: ["a/#"], subscribe: ["b/+"] } },
          version: 5,
          expiryInterval: 300,
          connId: "conn-1",
          will: {
            topic: "wills/client-1",
            payload: bytes(0, 255, 10, 0),
            qos: 2,
            retain: true,
            properties: {
              payloadFormatIndicator: false,
              messageExpiryInterval: 30,
              contentType: "application/octet-stream",
              responseTopic: "replies",
              correlationData: bytes(9, 8, 7),
              userProperties: [
                ["b", "1"],
                ["a", "2"],
                ["b", "0"],
              ],
            },
            delay: 20,
          },
          willAt: 123456,
          expireAt: 654321,
          clientReceiveMax: 10,
          clientMaxPacketSize: 2048,
          clientTopicAliasMax: 4,
          problemInfo: false,
          droppedQueueFull: 3,
          connectedAt: 1111,
          remoteAddress: "192.0.2.1",
          queueLevel: 2,
        };
        store.writeMeta(meta);
        expect(store.loadMeta()).toEqual(meta);
        const again = reopen().loadMeta();
        expect(again).toEqual(meta);
        expect(again.will?.payload).toBeInstanceOf(Uint8Array);
        expect(again.will?.properties?.userProperties).toEqual([
          ["b", "1"],
          ["a", "2"],
          ["b", "0"],
        ]);
      }));

    it("writes the whole meta: values left out are gone; a loaded copy changes nothing until written", () =>
      run((store, reopen) => {
        store.writeMeta({ clientId: "c", will: { topic: "w", payload: bytes(), qos: 0, retain: false, delay: 0 } });
        expect(reopen().loadMeta().will).toEqual({ topic: "w", payload: bytes(), qos: 0, retain: false, delay: 0 });
        const loaded = store.loadMeta();
        loaded.clientId = "changed";
        expect(store.loadMeta().clientId).toBe("c");
        store.writeMeta({ clientId: "c", problemInfo: true });
        expect(reopen().loadMeta()).toEqual({ clientId: "c", problemInfo: true });
      }));
  });

  describe(`${name}: meta held without a row`, () => {
    const sub: Subscription = { filter: "a", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 };
    /** Every write that can put a first row in a table other than meta. */
    const firstRows: [string, (s: SessionStore) => void][] = [
      ["a subscription", (s) => s.putSubscription(sub)],
      ["a queued message", (s) => s.enqueue(delivery("m", 1), OutState.QUEUED)],
      ["an inbound QoS 2 id", (s) => s.putInboundQos2(1, "in", false)],
      ["an incoming topic alias", (s) => s.putTopicAliasIn(1, "a")],
      ["an outgoing topic alias", (s) => s.putTopicAliasOut("a", 1)],
    ];

    it.each(firstRows)("is loaded as held, and written before %s", (_what, write) =>
      run((store, reopen) => {
        store.holdMeta({ clientId: "c", connId: "k" });
        expect(store.loadMeta()).toEqual({ clientId: "c", connId: "k" });
        expect(store.metaStored()).toBe(false);
        write(store);
        expect(store.metaStored()).toBe(true);
        expect(reopen().loadMeta()).toEqual({ clientId: "c", connId: "k" });
      }),
    );

    it("is written at once when the meta already has a row; clearAll forgets what is held", () =>
      run((store, reopen) => {
        store.holdMeta({ clientId: "c" });
        store.clearAll();
        expect(store.loadMeta()).toEqual({});
        store.writeMeta({ clientId: "c", expiryInterval: 60 });
        store.holdMeta({ clientId: "c", connId: "k2" });
        expect(reopen().loadMeta()).toEqual({ clientId: "c", connId: "k2" });
      }));
  });

  describe(`${name}: subscriptions`, () => {
    const sub = (filter: string, qos: QoS, more: Partial<Subscription> = {}): Subscription => ({
      filter,
      qos,
      noLocal: false,
      retainAsPublished: false,
      retainHandling: 0,
      ...more,
    });
    const byFilter = (subs: Subscription[]) => [...subs].sort((a, b) => a.filter.localeCompare(b.filter));

    it("stores options, replaces by filter, counts and deletes", () =>
      run((store, reopen) => {
        expect(store.subscriptions()).toEqual([]);
        expect(store.hasSubscription("a/#")).toBe(false);
        expect(store.deleteSubscription("a/#")).toBe(false);
        store.putSubscription(sub("a/#", 1, { noLocal: true, retainHandling: 2, subscriptionId: 7 }));
        store.putSubscription(sub("$share/g/b", 2, { retainAsPublished: true }));
        store.putSubscription(sub("a/#", 0, { retainHandling: 1 }));
        const expected = [sub("$share/g/b", 2, { retainAsPublished: true }), sub("a/#", 0, { retainHandling: 1 })];
        expect(byFilter(store.subscriptions())).toEqual(expected);
        expect(byFilter(reopen().subscriptions())).toEqual(expected);
        expect(store.subscriptionCount()).toBe(2);
        expect(store.hasSubscription("a/#")).toBe(true);
        expect(store.deleteSubscription("a/#")).toBe(true);
        expect(store.deleteSubscription("a/#")).toBe(false);
        expect(reopen().subscriptionCount()).toBe(1);
      }));
  });

  describe(`${name}: outbound queue`, () => {
    it("gives rows in seq order, whatever order they were written in [MQTT-4.6.0-1]", () =>
      run((store, reopen) => {
        const [s1, s2, s3] = [store.nextSeq(), store.nextSeq(), store.nextSeq()];
        expect(s1 < s2 && s2 < s3).toBe(true);
        expect(store.enqueue(delivery("m3", 1), OutState.QUEUED, null, s3)).toBe(true);
        expect(store.enqueue(delivery("m1", 1), OutState.SENT, 11, s1)).toBe(true);
        expect(store.enqueue(delivery("m2", 1), OutState.QUEUED, null, s2)).toBe(true);
        expect(store.enqueue(delivery("m4", 1), OutState.QUEUED)).toBe(true);
        expect(store.enqueue(delivery("other", 1), OutState.QUEUED, null, s2)).toBe(false); // seq taken
        expect(ids(store.outboundRows(ALL_STATES))).toEqual(["m1", "m2", "m3", "m4"]);
        expect(ids(store.outboundRows([OutState.QUEUED], 2))).toEqual(["m2", "m3"]);
        const woken = reopen();
        expect(ids(woken.outboundRows([OutState.QUEUED]))).toEqual(["m2", "m3", "m4"]);
        expect(woken.nextSeq()).toBeGreaterThan(store.outboundRows([OutState.QUEUED]).at(-1)!.seq);
      }));

    it("round-trips a delivery: payload, properties in order, subscription ids, share filter", () =>
      run((store, reopen) => {
        const d = delivery("m", 2, { retain: true, subscriptionIds: [3, 1], shareFilter: "$share/g/t/#" });
        d.message.retain = true;
        d.message.payload = bytes(0, 200, 0);
        d.message.properties = {
          userProperties: [
            ["z", "1"],
            ["a", "2"],
          ],
          correlationData: bytes(5),
        };
        store.enqueue(d, OutState.QUEUED);
        store.enqueue(delivery("plain", 1, { subscriptionIds: [] }), OutState.QUEUED);
        const [row, plain] = atLeast(reopen().outboundRows([OutState.QUEUED]), 2);
        expect(row).toMatchObject({ msgId: "m", state: OutState.QUEUED, packetId: null });
        expect(row.delivery).toEqual(d);
        expect(plain.delivery.subscriptionIds).toBeUndefined();
        expect(plain.delivery.shareFilter).toBeUndefined();
      }));

    it("counts and finds messages through QoS 1 and QoS 2 flows by packet id", () =>
      run((store, reopen) => {
        expect(counts(store)).toEqual([0, 0, 0, false]);
        store.enqueue(delivery("q1", 1), OutState.QUEUED);
        store.enqueue(delivery("q2", 2), OutState.QUEUED);
        expect(counts(store)).toEqual([2, 2, 0, true]);
        const [r1, r2] = atLeast(store.outboundRows([OutState.QUEUED]), 2);
        store.markSent(r1.seq, 5);
        store.markSent(r2.seq, 6);
        expect(counts(store)).toEqual([2, 0, 2, false]);
        expect(store.isPacketIdInFlight(5)).toBe(true);
        expect(store.isPacketIdInFlight(7)).toBe(false);
        expect(store.findInflight(6, OutState.SENT)).toMatchObject({ msgId: "q2", packetId: 6, state: OutState.SENT });
        expect(store.findInflight(6, OutState.RELEASED)).toBeUndefined();
        store.markReleased(r2.seq); // PUBREC
        expect(store.findInflight(6, OutState.SENT)).toBeUndefined();
        expect(reopen().findInflight(6, OutState.RELEASED)?.msgId).toBe("q2");
        expect(store.inflightCount()).toBe(2);
        store.finish(store.findInflight(5, OutState.SENT)!); // PUBACK
        store.finish(store.findInflight(6, OutState.RELEASED)!); // PUBCOMP
        for (const s of [store, reopen()]) {
          expect(counts(s)).toEqual([0, 0, 0, false]);
          expect([s.isPacketIdInFlight(5), s.isPacketIdInFlight(6)]).toEqual([false, false]);
          expect(ids(s.outboundRows(ALL_STATES))).toEqual(["q2"]); // QoS 2 kept as DONE, QoS 1 gone
          expect(s.outboundRows([OutState.DONE])[0]).toMatchObject({ packetId: null, state: OutState.DONE });
        }
      }));

    it("refuses a QoS 2 message id it knows (in any state), and keeps the newest DONE rows only", () =>
      run((store) => {
        expect(store.enqueue(delivery("once", 2), OutState.SENT, 1)).toBe(true);
        expect(store.enqueue(delivery("once", 2), OutState.QUEUED)).toBe(false);
        expect(store.enqueue(delivery("twice", 1), OutState.QUEUED)).toBe(true);
        expect(store.enqueue(delivery("twice", 1), OutState.QUEUED)).toBe(true);
        store.finish(store.findInflight(1, OutState.SENT)!);
        expect(store.enqueue(delivery("once", 2), OutState.QUEUED)).toBe(false); // DONE still recognised
        for (let i = 0; i < 65; i++) {
          store.enqueue(delivery(`d${i}`, 2), OutState.SENT, 100 + i);
          store.finish(store.findInflight(100 + i, OutState.SENT)!);
        }
        const done = store.outboundRows([OutState.DONE]);
        expect(done.length).toBe(64);
        expect(at(done, 0).msgId).toBe("d1");
        expect(store.enqueue(delivery("once", 2), OutState.QUEUED)).toBe(true); // forgotten
        expect(store.enqueue(delivery("d64", 2), OutState.QUEUED)).toBe(false);
      }));

    it("counts the bytes of the messages queued or in flight, as MAX_QUEUED_BYTES counts them", () =>
      run((store, reopen) => {
        expect(store.pendingBytes()).toBe(0);
        const big = delivery("big", 2, { message: { ...delivery("big", 2).message, payload: new Uint8Array(1000) } });
        const [a, b, c] = [delivery("a", 1), big, delivery("c", 1)];
        const size = (...ds: Delivery[]) => ds.reduce((sum, d) => sum + queuedMessageBytes(d), 0);
        // each counts its payload, topic, ids and the row overhead
        expect(queuedMessageBytes(big) - queuedMessageBytes(a)).toBe(997 + 2 + 2);
        store.enqueue(a, OutState.SENT, 1);
        store.enqueue(b, OutState.SENT, 2);
        store.enqueue(c, OutState.QUEUED);
        for (const s of [store, reopen()]) expect(s.pendingBytes()).toBe(size(a, b, c));
        store.markSent(at(store.outboundRows([OutState.QUEUED]), 0).seq, 3); // a state change keeps its bytes
        store.markReleased(store.findInflight(2, OutState.SENT)!.seq);
        expect(store.pendingBytes()).toBe(size(a, b, c));
        store.finish(store.findInflight(2, OutState.RELEASED)!); // kept as DONE: no longer counted
        store.finish(store.findInflight(1, OutState.SENT)!);
        for (const s of [store, reopen()]) expect(s.pendingBytes()).toBe(size(c));
        store.clearState();
        expect(store.pendingBytes()).toBe(0);
      }));

    it("gives the highest packet id of any row, discards, and summarises the head for the admin API", () =>
      run((store, reopen) => {
        expect(store.highestPacketId()).toBe(0);
        expect(store.outboundHead(10)).toEqual([]);
        store.enqueue(delivery("a", 1), OutState.SENT, 9);
        store.enqueue(delivery("b", 2), OutState.SENT, 3);
        store.enqueue(delivery("c", 1), OutState.QUEUED);
        store.enqueue(delivery("d", 1), OutState.QUEUED);
        store.markReleased(store.findInflight(3, OutState.SENT)!.seq);
        expect(reopen().highestPacketId()).toBe(9);
        const head = reopen().outboundHead(3);
        expect(head).toEqual([
          { topic: "t/a", qos: 1, state: "sent", packetId: 9, bytes: 3, receivedAt: 1000 },
          { topic: "t/b", qos: 2, state: "released (PUBREL sent)", packetId: 3, bytes: 3, receivedAt: 1000 },
          { topic: "t/c", qos: 1, state: "queued", packetId: undefined, bytes: 3, receivedAt: 1000 },
        ]);
        store.finish(store.findInflight(9, OutState.SENT)!);
        expect(store.highestPacketId()).toBe(3);
        store.discard(at(store.outboundRows([OutState.QUEUED]), 0).seq);
        for (const s of [store, reopen()]) {
          expect(ids(s.outboundRows([OutState.QUEUED]))).toEqual(["d"]);
          expect([s.queuedCount(), s.pendingCount()]).toEqual([1, 2]);
        }
      }));

    it("holds shared-subscription messages for hand-over: queued and QoS 1 in flight, never QoS 2 in flight", () =>
      run((store, reopen) => {
        const shared = (id: string, qos: QoS, filter = "$share/g/t") => delivery(id, qos, { shareFilter: filter });
        store.enqueue(shared("s1-sent", 1), OutState.SENT, 1);
        store.enqueue(shared("s2-sent", 2), OutState.SENT, 2);
        store.enqueue(shared("s-queued", 2), OutState.QUEUED);
        store.enqueue(shared("other-queued", 1, "$share/h/u"), OutState.QUEUED);
        store.enqueue(delivery("own", 1), OutState.QUEUED);
        expect(store.hasHandovers()).toBe(false);

        const unsubscribed = store.holdForHandover("$share/g/t"); // an unsubscribe: its queued ones only
        expect(ids(unsubscribed)).toEqual(["s-queued"]);
        expect(at(unsubscribed, 0).state).toBe(OutState.HANDOVER);
        expect(store.queuedCount()).toBe(2);
        store.requeue(at(unsubscribed, 0).seq); // its hand-over failed
        expect(ids(reopen().outboundRows([OutState.QUEUED]))).toEqual(["s-queued", "other-queued", "own"]);

        const ended = store.holdForHandover(); // the session ends
        expect(ids(ended)).toEqual(["s1-sent", "s-queued", "other-queued"]);
        expect(ended.every((r) => r.state === OutState.HANDOVER && r.packetId === null)).toBe(true);
        for (const s of [store, reopen()]) {
          expect(s.hasHandovers()).toBe(true);
          expect(ids(s.handoverRows())).toEqual(["s1-sent", "s-queued", "other-queued"]);
          expect([s.pendingCount(), s.queuedCount(), s.inflightCount()]).toEqual([2, 1, 1]);
          expect(s.isPacketIdInFlight(1)).toBe(false);
          expect(s.findInflight(2, OutState.SENT)?.msgId).toBe("s2-sent");
        }
        expect(store.holdForHandover()).toEqual([]);
      }));
  });

  describe(`${name}: inbound QoS 2`, () => {
    it("records, marks routed only for the same message id, counts and releases by packet id", () =>
      run((store, reopen) => {
        expect(store.inboundQos2(1)).toBeUndefined();
        expect(store.inboundQos2Count()).toBe(0);
        expect(store.releaseInboundQos2(1)).toBe("unknown");
        store.putInboundQos2(1, "m1", false);
        store.putInboundQos2(2, "m2", true);
        store.markInboundQos2Routed(1, "another");
        expect(store.inboundQos2(1)).toEqual({ msgId: "m1", routed: false });
        store.markInboundQos2Routed(1, "m1");
        expect(reopen().inboundQos2(1)).toEqual({ msgId: "m1", routed: true });
        store.putInboundQos2(2, "m2-again", false); // the same packet id after a PUBREL was lost
        expect(store.inboundQos2(2)).toEqual({ msgId: "m2-again", routed: false });
        expect([store.inboundQos2Count(), reopen().inboundQos2Count()]).toEqual([2, 2]);
        expect(store.releaseInboundQos2(1)).toBe("released");
        expect(store.inboundQos2(1)).toBeUndefined();
        expect([store.releaseInboundQos2(1), reopen().releaseInboundQos2(1)]).toEqual(["repeated", "repeated"]);
        expect([store.inboundQos2Count(), reopen().inboundQos2Count()]).toEqual([1, 1]);
        // A released id used again is a new message awaiting PUBREL [MQTT-4.3.3-12].
        store.putInboundQos2(1, "m1-new", false);
        expect([store.inboundQos2(1), store.inboundQos2Count()]).toEqual([{ msgId: "m1-new", routed: false }, 2]);
      }));

    it(`keeps only the newest ${RELEASED_IDS_KEPT} released ids`, () =>
      run((store, reopen) => {
        // Like a client counting packet ids up: each id awaits PUBREL, then is released.
        const ids = Array.from({ length: RELEASED_IDS_KEPT + 10 }, (_, i) => i + 1);
        for (const id of ids) {
          store.putInboundQos2(id, `m${id}`, true);
          expect(store.releaseInboundQos2(id)).toBe("released");
        }
        const after = reopen();
        const old = ids.slice(0, 10);
        const kept = ids.slice(10);
        expect(old.map((id) => after.releaseInboundQos2(id))).toEqual(old.map(() => "unknown"));
        expect(kept.map((id) => after.releaseInboundQos2(id))).toEqual(kept.map(() => "repeated"));
        expect(after.inboundQos2Count()).toBe(0);
        // A burst awaiting PUBREL, then released: still only the newest are kept.
        for (const id of [101, 102, 103]) after.putInboundQos2(id, `m${id}`, true);
        for (const id of [101, 102, 103]) after.releaseInboundQos2(id);
        const again = reopen();
        expect([11, 12, 13, 14].map((id) => again.releaseInboundQos2(id))).toEqual([
          "unknown",
          "unknown",
          "unknown",
          "repeated",
        ]);
        expect([101, 102, 103].map((id) => again.releaseInboundQos2(id))).toEqual(["repeated", "repeated", "repeated"]);
      }));
  });

  describe(`${name}: topic aliases`, () => {
    it("keeps both directions until cleared, and gives out a copy of the outgoing ones", () =>
      run((store, reopen) => {
        expect(store.topicAliasIn(1)).toBeUndefined();
        expect(store.topicAliasesOut()).toEqual(new Map());
        store.putTopicAliasIn(1, "a");
        store.putTopicAliasIn(1, "b");
        store.putTopicAliasOut("x", 1);
        store.putTopicAliasOut("y", 2);
        store.topicAliasesOut().set("z", 3);
        expect(reopen().topicAliasIn(1)).toBe("b");
        expect(reopen().topicAliasesOut()).toEqual(
          new Map([
            ["x", 1],
            ["y", 2],
          ]),
        );
        store.clearTopicAliases();
        expect(reopen().topicAliasIn(1)).toBeUndefined();
        expect(store.topicAliasesOut().size).toBe(0);
      }));
  });

  describe(`${name}: clearing`, () => {
    /** A session with something in every table, one shared message held for hand-over. */
    function fill(store: SessionStore): void {
      store.writeMeta({ clientId: "c", expiryInterval: 60 });
      store.putSubscription({ filter: "a", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 });
      store.putInboundQos2(4, "in", true);
      store.putTopicAliasIn(1, "a");
      store.putTopicAliasOut("a", 1);
      store.enqueue(delivery("queued", 1), OutState.QUEUED);
      store.enqueue(delivery("sent", 2), OutState.SENT, 8);
      store.enqueue(delivery("held", 1, { shareFilter: "$share/g/a" }), OutState.QUEUED);
      store.holdForHandover();
    }

    it("clearState keeps meta, aliases and hand-over rows; clears subscriptions, inbound QoS 2, the queue", () =>
      run((store, reopen) => {
        fill(store);
        store.clearState();
        for (const s of [store, reopen()]) {
          expect(s.loadMeta()).toEqual({ clientId: "c", expiryInterval: 60 });
          expect([s.subscriptionCount(), s.inboundQos2Count(), s.pendingCount()]).toEqual([0, 0, 0]);
          expect(s.isPacketIdInFlight(8)).toBe(false);
          expect(ids(s.outboundRows(ALL_STATES))).toEqual(["held"]);
          expect(s.topicAliasIn(1)).toBe("a");
        }
      }));

    it("clearAll also empties meta and aliases; hand-over rows stay", () =>
      run((store, reopen) => {
        fill(store);
        store.clearAll();
        for (const s of [store, reopen()]) {
          expect(s.loadMeta()).toEqual({});
          expect([s.subscriptionCount(), s.inboundQos2Count(), s.pendingCount()]).toEqual([0, 0, 0]);
          expect(ids(s.handoverRows())).toEqual(["held"]);
          expect([s.topicAliasIn(1), s.topicAliasesOut().size]).toEqual([undefined, 0]);
        }
      }));
  });
}
