/**
 * Security #11, finding: SCRAM revealed whether a user exists. A real user always got the same salt,
 * an unknown user a fresh random salt (and 100,000 iterations) on every attempt. Through the real
 * Worker: the challenge (AUTH 0x18, server-first-message) for two unknown users, each asked twice,
 * against alice's (a real user, hashed with 1,000 iterations in the e2e setup) [MQTT-4.12.0-2].
 */
import { afterEach, describe, expect, it } from "vitest";
import { E2E_USERS } from "../e2e/global-setup";
import { closeAll, scramStart } from "../support/clients";
import { uid } from "../support/ids";

afterEach(closeAll);

/** CONNECT with SCRAM-SHA-256 as `username`, up to the server's challenge (AUTH 0x18). */
async function scramChallenge(username: string, password = "whatever") {
  const { raw, scram, challenge } = await scramStart(username, password, uid("enum"));
  expect(challenge.reasonCode).toBe(0x18);
  return { raw, scram, serverFirst: challenge.properties!.authenticationData as Buffer };
}

/** The server-first-message's attributes for `username`: server nonce part, salt, iterations. */
async function challenge(username: string): Promise<{ r: string; s: string; i: string }> {
  const { raw, scram, serverFirst } = await scramChallenge(username);
  raw.close();
  const attrs = Object.fromEntries(
    serverFirst
      .toString()
      .split(",")
      .map((p) => [p[0], p.slice(2)]),
  );
  expect(Object.keys(attrs)).toEqual(["r", "s", "i"]);
  return { r: attrs.r.slice(scram.nonce.length), s: attrs.s, i: attrs.i };
}

describe("finding: SCRAM challenges do not reveal whether a user exists", () => {
  it("an unknown user's salt is the same on every attempt, and differs between unknown users", async () => {
    const mallory = uid("mallory");
    const eve = uid("eve");
    const [m1, m2, e1, e2] = [
      await challenge(mallory),
      await challenge(mallory),
      await challenge(eve),
      await challenge(eve),
    ];
    expect(m2.s).toBe(m1.s);
    expect(e2.s).toBe(e1.s);
    expect(e1.s).not.toBe(m1.s);
  });

  it("its salt, iteration count and nonce have the form of a real user's", async () => {
    const alice = await challenge("alice");
    expect(await challenge("alice")).toMatchObject({ s: alice.s, i: alice.i });
    for (const unknown of [await challenge(uid("mallory")), await challenge(uid("eve"))]) {
      expect(unknown.i).toBe(alice.i);
      expect(Buffer.from(unknown.s, "base64")).toHaveLength(Buffer.from(alice.s, "base64").length);
      expect(unknown.s).toMatch(/^[A-Za-z0-9+/]+=*$/);
      expect(unknown.r).toHaveLength(alice.r.length);
    }
  });

  it("an unknown user is still refused like a wrong password (0x86) [MQTT-4.12.0-4]", async () => {
    for (const [username, password] of [
      [uid("mallory"), "x"],
      ["alice", `not-${E2E_USERS.alice}`],
    ] as const) {
      const { raw, scram, serverFirst } = await scramChallenge(username, password);
      raw.send({
        cmd: "auth",
        reasonCode: 0x18,
        properties: { authenticationMethod: "SCRAM-SHA-256", authenticationData: scram.clientFinal(serverFirst) },
      });
      const connack = await raw.next("connack");
      expect(connack.reasonCode).toBe(0x86);
      expect(connack.properties?.reasonString).toBeUndefined();
    }
  });
});
