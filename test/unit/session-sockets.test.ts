import { describe, expect, it, vi } from "vitest";
import { SessionHeader } from "../../src/protocol/internal-frame";
import {
  attachmentFromUpgrade,
  isAttachment,
  SessionSockets,
  type Attachment,
} from "../../src/session/session-sockets";

/** A stand-in for a hibernatable WebSocket: its attachment round-trips through structured clone. */
class FakeSocket {
  stored: unknown = null;
  reads = 0;
  sent: Uint8Array[] = [];
  closed?: [number, string];
  serializeAttachment(value: unknown): void {
    this.stored = structuredClone(value);
  }
  deserializeAttachment(): unknown {
    this.reads++;
    return structuredClone(this.stored);
  }
  send(frame: Uint8Array): void {
    this.sent.push(frame);
  }
  close(code: number, reason: string): void {
    this.closed = [code, reason];
  }
}

const asSocket = (fake: FakeSocket) => fake as unknown as WebSocket;

const upgrade = (extra: Record<string, string> = {}) =>
  new Headers({
    [SessionHeader.CLIENT_ID]: encodeURIComponent("dev/1 é"),
    [SessionHeader.VERSION]: "5",
    [SessionHeader.IDENTITY]: encodeURIComponent(JSON.stringify({ username: "u", roles: ["r"] })),
    ...extra,
  });

describe("session sockets", () => {
  it("reads a connection's attachment from the gateway's upgrade headers", () => {
    const headers = upgrade({ [SessionHeader.ASSIGNED]: "1", [SessionHeader.SERVER_KEEP_ALIVE]: "30" });
    const a = attachmentFromUpgrade(headers, "c1");
    expect(a).toEqual({
      connId: "c1",
      clientId: "dev/1 é",
      assignedClientId: true,
      serverKeepAlive: 30,
      version: 5,
      identity: { username: "u", roles: ["r"] },
      authResponse: undefined,
      remoteAddress: undefined,
      connected: false,
    });
    expect(isAttachment(structuredClone(a))).toBe(true);
  });

  it("accepts only attachments of the shape it writes", () => {
    const a = attachmentFromUpgrade(upgrade(), "c1");
    expect(isAttachment(null)).toBe(false);
    expect(isAttachment({ ...a, connId: 7 })).toBe(false);
    expect(isAttachment({ ...a, connected: "yes" })).toBe(false);
    expect(isAttachment({ ...a, identity: null })).toBe(false);
    expect(isAttachment({ ...a, serverKeepAlive: "30" })).toBe(false);
  });

  it("reads a socket's attachment once per wake, and refuses a socket without a valid one", () => {
    const fake = new FakeSocket();
    fake.stored = attachmentFromUpgrade(upgrade(), "c1"); // as left before hibernation
    const sockets = new SessionSockets(() => [asSocket(fake)]);
    const first = sockets.attachment(asSocket(fake));
    expect(sockets.attachment(asSocket(fake))).toBe(first);
    expect(fake.reads).toBe(1);
    const bad = new FakeSocket();
    bad.stored = { connId: "c2" };
    expect(() => sockets.attachment(asSocket(bad))).toThrow(/attachment/);
  });

  it("marks CONNECT handled on the socket, so it survives hibernation", () => {
    const fake = new FakeSocket();
    const sockets = new SessionSockets(() => [asSocket(fake)]);
    sockets.opened(asSocket(fake), attachmentFromUpgrade(upgrade(), "c1"));
    const a = sockets.attachment(asSocket(fake));
    expect(sockets.firstPacket(asSocket(fake), a)).toBe(true);
    expect(sockets.firstPacket(asSocket(fake), a)).toBe(false);
    expect((fake.stored as Attachment).connected).toBe(true);
    // After hibernation (a new instance), the socket is found by its attachment.
    const woken = new SessionSockets(() => [asSocket(new FakeSocket()), asSocket(fake)]);
    woken.send("c1", new Uint8Array([1]));
    expect(fake.sent).toEqual([new Uint8Array([1])]);
    expect(woken.firstPacket(asSocket(fake), woken.attachment(asSocket(fake)))).toBe(false);
  });

  it("keeps the values of a session that writes no row with its live connection, across hibernation", () => {
    const fake = new FakeSocket();
    const sockets = new SessionSockets(() => [asSocket(fake)]);
    sockets.opened(asSocket(fake), attachmentFromUpgrade(upgrade(), "c1"));
    expect(sockets.keptMeta()).toBeUndefined();
    const meta = { clientId: "dev/1 é", connId: "c1", version: 5, identity: { username: "u", roles: ["r"] } };
    sockets.keepMeta("c1", { ...meta, expiryInterval: 0, clientReceiveMax: 10, connectedAt: 1 });
    // the identity is kept once, in the attachment; the whole stays far below the platform's 2,048 bytes
    expect((fake.stored as Attachment).meta).not.toHaveProperty("identity");
    expect(JSON.stringify(fake.stored).length).toBeLessThan(1024);
    const woken = new SessionSockets(() => [asSocket(new FakeSocket()), asSocket(fake)]);
    expect(woken.keptMeta()).toEqual({ ...meta, expiryInterval: 0, clientReceiveMax: 10, connectedAt: 1 });
    // a taken-over connection not closed yet: the latest connection's values are taken
    const older = new FakeSocket();
    sockets.opened(asSocket(older), attachmentFromUpgrade(upgrade(), "c0"));
    sockets.keepMeta("c0", { ...meta, connId: "c0", connectedAt: 0 });
    expect(new SessionSockets(() => [asSocket(fake), asSocket(older)]).keptMeta()?.connId).toBe("c1");
    expect(new SessionSockets(() => [asSocket(older), asSocket(fake)]).keptMeta()?.connId).toBe("c1");
    // values kept for a connection that is no longer the session's are not taken
    sockets.keepMeta("c1", { ...meta, connId: "c0" });
    expect(new SessionSockets(() => [asSocket(fake)]).keptMeta()).toBeUndefined();
  });

  it("puts a connection's frames back in order, resuming from the first seen after hibernation", () => {
    const sockets = new SessionSockets(() => []);
    const p = (n: number) => [new Uint8Array([n])];
    expect(sockets.inOrder("c1", 5, p(5))).toEqual([p(5)]);
    expect(sockets.inOrder("c1", 7, p(7))).toEqual([]);
    expect(sockets.inOrder("c1", 6, p(6))).toEqual([p(6), p(7)]);
  });

  it("forgets a socket that is gone and closes its side", () => {
    const fake = new FakeSocket();
    const sockets = new SessionSockets(() => []);
    sockets.opened(asSocket(fake), attachmentFromUpgrade(upgrade(), "c1"));
    expect(sockets.gone(asSocket(fake)).connId).toBe("c1");
    expect(fake.closed).toEqual([1000, "closed"]);
    expect(sockets.socket("c1")).toBeUndefined();
  });

  const bounds = { waitMs: 60_000, wokenWaitMs: 60_000 };

  it("ends a connection whose socket closed early only once the frames sent before the close are in", async () => {
    const fake = new FakeSocket();
    const ws = asSocket(fake);
    const sockets = new SessionSockets(() => [ws]);
    sockets.opened(ws, attachmentFromUpgrade(upgrade(), "c1"));
    const p = (n: number) => [new Uint8Array([n])];
    sockets.inOrder("c1", 0, p(0));
    let ended = 0;
    const end = async () => void ended++;
    // the gateway sent 3 frames; 1 is in: the end waits
    expect(sockets.endAfterFrames("c1", 3, end, bounds)).toBe(true);
    sockets.inOrder("c1", 2, p(2)); // frame 2 before frame 1: still waiting
    expect(sockets.endWhenComplete("c1")).toBeUndefined();
    sockets.inOrder("c1", 1, p(1));
    await sockets.endWhenComplete("c1")?.();
    expect(ended).toBe(1);
    expect(sockets.endWhenComplete("c1")).toBeUndefined(); // once
    // every frame already in, or none sent: nothing waits
    expect(sockets.endAfterFrames("c1", 3, end, bounds)).toBe(false);
    expect(sockets.endAfterFrames("c9", 0, end, bounds)).toBe(false);
    // after hibernation nothing is known of the frames: the end waits for the last one
    const woken = new SessionSockets(() => [ws]);
    expect(woken.endAfterFrames("c1", 5, end, bounds)).toBe(true);
    woken.inOrder("c1", 4, p(4));
    await woken.endWhenComplete("c1")?.();
    expect(ended).toBe(2);
    // a new connection of the client ends the waiting one first, with what was held
    expect(woken.endAfterFrames("c1", 8, end, bounds)).toBe(true);
    woken.inOrder("c1", 7, p(7)); // frames 5 and 6 missing: 7 is held
    const ends = woken.endsNow();
    expect(ends).toHaveLength(1);
    expect(woken.releaseHeld("c1")).toEqual([p(7)]);
    await ends[0]!();
    expect(ended).toBe(3);
    expect(woken.endsNow()).toEqual([]);
    // once gone, the socket's late frames are not handled
    expect(woken.hasEnded(ws)).toBe(false);
    woken.gone(ws);
    expect(woken.hasEnded(ws)).toBe(true);
  });

  it("ends a connection whose frames never come after the bound: the short one after hibernation", () => {
    vi.useFakeTimers();
    try {
      const ws = asSocket(new FakeSocket());
      const sockets = new SessionSockets(() => [ws]);
      sockets.opened(ws, attachmentFromUpgrade(upgrade(), "c1"));
      let ended = 0;
      expect(sockets.endAfterFrames("c1", 1, async () => void ended++, { waitMs: 20, wokenWaitMs: 60_000 })).toBe(true);
      vi.advanceTimersByTime(19);
      expect(ended).toBe(0);
      vi.advanceTimersByTime(1);
      expect(ended).toBe(1);
      expect(sockets.endsNow()).toEqual([]);
      // a wake that has seen no frame of the connection: the short bound
      const woken = new SessionSockets(() => [ws]);
      expect(woken.endAfterFrames("c1", 3, async () => void ended++, { waitMs: 60_000, wokenWaitMs: 20 })).toBe(true);
      vi.advanceTimersByTime(20);
      expect(ended).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });
});
