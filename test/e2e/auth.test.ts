/** Identity and permissions through the real Worker: passwords, JWT, HTTP hook, ACL, ownership. */
import { generateKeyPair, importJWK, SignJWT } from "jose";
import { afterEach, describe, expect, inject, it } from "vitest";
import { E2E_JWT_SECRET, E2E_USERS } from "./global-setup";
import { closeAll, connect, rawClient, recorder, REFUSAL_CLOSE_MS, scramStart } from "../support/clients";
import { uid } from "../support/ids";

afterEach(closeAll);

const secret = new TextEncoder().encode(E2E_JWT_SECRET);
async function token(claims: Record<string, unknown>, expiresIn = "5m"): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(secret);
}

describe.each([4, 5] as const)("username and password, MQTT v%i", (version) => {
  it("accepts the right password", async () => {
    const raw = await rawClient(version);
    const connack = await raw.connect({ clientId: uid(), username: "alice", password: Buffer.from(E2E_USERS.alice) });
    expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(0);
  });

  it.each([
    ["a wrong password", "alice", "nope"],
    ["an unknown user", "mallory", "whatever"],
  ])("refuses %s the same way (v5 0x86, 3.1.1 4)", async (_what, username, password) => {
    const raw = await rawClient(version);
    const connack = await raw.connect({ clientId: uid(), username, password: Buffer.from(password) });
    if (version === 5) {
      expect(connack.reasonCode).toBe(0x86);
      expect(connack.properties?.reasonString).toBeUndefined(); // reveals nothing
    } else expect(connack.returnCode).toBe(4);
    await raw.waitClosed(REFUSAL_CLOSE_MS);
  });
});

describe.each([4, 5] as const)("JWT as the password, MQTT v%i", (version) => {
  it("accepts a valid token and enforces its topic grants", async () => {
    const jwt = await token({ sub: "device-7", mqtt: { publish: ["dev/%c/up"], subscribe: ["dev/%c/down"] } });
    const clientId = uid("jwt");
    const raw = await rawClient(version);
    const connack = await raw.connect({ clientId, username: "jwt", password: Buffer.from(jwt) });
    expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(0);
    raw.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [
        { topic: `dev/${clientId}/down`, qos: 1 },
        { topic: "dev/other/down", qos: 1 },
      ],
    });
    expect((await raw.next("suback")).granted).toEqual([1, version === 5 ? 0x87 : 0x80]);
    raw.send({ cmd: "publish", topic: "dev/other/up", payload: Buffer.from("x"), qos: 1, messageId: 2 });
    const puback = await raw.next("puback");
    if (version === 5) expect(puback.reasonCode).toBe(0x87);
  });

  it("refuses an expired or badly signed token", async () => {
    const expired = await token({ sub: "d" }, "-1m");
    const forged = await new SignJWT({ sub: "d" })
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode("x".repeat(40)));
    for (const jwt of [expired, forged]) {
      const raw = await rawClient(version);
      const connack = await raw.connect({ clientId: uid(), username: "jwt", password: Buffer.from(jwt) });
      expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(version === 5 ? 0x86 : 4);
    }
  });

  it("accepts an ES256 token verified with keys from the JWKS URL", async () => {
    const key = await importJWK(JSON.parse(inject("jwtPrivateJwk")), "ES256");
    const jwt = await new SignJWT({ sub: "es-device" })
      .setProtectedHeader({ alg: "ES256", kid: "e2e" })
      .setExpirationTime("5m")
      .sign(key);
    const raw = await rawClient(version);
    const connack = await raw.connect({ clientId: uid(), username: "jwt", password: Buffer.from(jwt) });
    expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(0);
    const other = await generateKeyPair("ES256");
    const forged = await new SignJWT({ sub: "es-device" })
      .setProtectedHeader({ alg: "ES256", kid: "e2e" })
      .sign(other.privateKey);
    const bad = await rawClient(version);
    const refused = await bad.connect({ clientId: uid(), username: "jwt", password: Buffer.from(forged) });
    expect(version === 5 ? refused.reasonCode : refused.returnCode).toBe(version === 5 ? 0x86 : 4);
  });

  it("refuses a token bound to another client id (v5 0x87, 3.1.1 5)", async () => {
    const jwt = await token({ sub: "d", client_id: "the-right-one" });
    const raw = await rawClient(version);
    const connack = await raw.connect({ clientId: uid("wrong"), username: "jwt", password: Buffer.from(jwt) });
    expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(version === 5 ? 0x87 : 5);
  });
});

describe("HTTP authentication hook", () => {
  it("accepts what the hook allows, with the grants it returns", async () => {
    const raw = await rawClient(5);
    const connack = await raw.connect({ clientId: uid(), username: "hook-user", password: Buffer.from("hook-pass") });
    expect(connack.reasonCode).toBe(0);
    raw.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [
        { topic: "hook/a", qos: 0 },
        { topic: "elsewhere", qos: 0 },
      ],
    });
    expect((await raw.next("suback")).granted).toEqual([0, 0x87]);
  });

  it("refuses what the hook refuses (0x86)", async () => {
    const raw = await rawClient(5);
    const connack = await raw.connect({ clientId: uid(), username: "hook-user", password: Buffer.from("wrong") });
    expect(connack.reasonCode).toBe(0x86);
  });

  it("answers 0x88 when the hook does not answer in time", async () => {
    const raw = await rawClient(5);
    const started = Date.now();
    const connack = await raw.connect({ clientId: uid(), username: "slow", password: Buffer.from("x") });
    expect(connack.reasonCode).toBe(0x88);
    expect(Date.now() - started).toBeLessThan(2900);
  });
});

describe.each([4, 5] as const)("ACL, MQTT v%i", (version) => {
  const alice = () => ({ username: "alice", password: Buffer.from(E2E_USERS.alice) });

  it("confines alice to users/alice/# with %u substitution: users/bob/# refused (SUBACK 0x87 / 0x80), # narrowed", async () => {
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid(), ...alice() });
    raw.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [
        { topic: "users/alice/#", qos: 1 },
        { topic: "users/bob/#", qos: 1 },
        { topic: "#", qos: 0 },
      ],
    });
    // `#` overlaps her allow rule, so it is granted; the deny rule on # narrows what it delivers
    expect((await raw.next("suback")).granted).toEqual(version === 5 ? [1, 0x87, 0] : [1, 0x80, 0]);
    const other = await connect(version);
    const mine = `users/alice/${uid("inbox")}`;
    await other.publishAsync(`users/bob/${uid("inbox")}`, "not hers", { qos: 1 });
    await other.publishAsync(mine, "hers", { qos: 1 });
    await raw.until(() => raw.all("publish").some((p) => p.topic === mine), 5000, "her own message");
    expect(raw.all("publish").filter((p) => !p.topic.startsWith("users/alice/"))).toEqual([]);
  });

  it("does not route an unauthorized PUBLISH (v5 PUBACK 0x87; 3.1.1 acknowledged and dropped) [MQTT311-3.3.5-2]", async () => {
    const topic = "users/bob/inbox";
    const watcher = await connect(version);
    const rec = recorder(watcher);
    await watcher.subscribeAsync(topic, { qos: 1 });
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid(), ...alice() });
    raw.send({ cmd: "publish", topic, payload: Buffer.from("sneaky"), qos: 1, messageId: 4 });
    const puback = await raw.next("puback");
    if (version === 5) expect(puback.reasonCode).toBe(0x87);
    raw.send({ cmd: "publish", topic, payload: Buffer.from("sneaky2"), qos: 2, messageId: 5 });
    const pubrec = await raw.next("pubrec");
    if (version === 5) expect(pubrec.reasonCode).toBe(0x87);
    else {
      raw.send({ cmd: "pubrel", messageId: 5 });
      await raw.next("pubcomp");
    }
    // A marker on the same topic (one shard, in order) sent after both were answered: anything of
    // the refused ones that was routed reaches the watcher before it.
    await watcher.publishAsync(topic, "marker", { qos: 1 });
    await rec.waitFor(1);
    expect(rec.messages.map((m) => m.payload)).toEqual(["marker"]);
  });

  it("a readonly role may subscribe but not publish", async () => {
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid(), username: "bob", password: Buffer.from(E2E_USERS.bob) });
    expect((await raw.subscribe("anything/#", 1)).granted).toEqual([1]);
    raw.send({ cmd: "publish", topic: "anything/x", payload: Buffer.from("x"), qos: 1, messageId: 9 });
    const puback = await raw.next("puback");
    if (version === 5) expect(puback.reasonCode).toBe(0x87);
  });

  it("refuses a will on a topic the client may not publish to", async () => {
    const raw = await rawClient(version);
    const connack = await raw.connect({
      clientId: uid(),
      ...alice(),
      will: { topic: "public/status", payload: Buffer.from("x"), qos: 0 },
    });
    expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(version === 5 ? 0x87 : 5);
  });
});

describe("session ownership", () => {
  it("a client may not resume or take over a session another identity owns [MQTT-3.1.4-2] [MQTT311-3.1.4-2]", async () => {
    const clientId = uid("owned");
    const owner = await rawClient(5);
    await owner.connect({
      clientId,
      clean: false,
      properties: { sessionExpiryInterval: 60 },
      username: "alice",
      password: Buffer.from(E2E_USERS.alice),
    });
    const intruder = await rawClient(5);
    const connack = await intruder.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
    expect(connack.reasonCode).toBe(0x87);
    await intruder.waitClosed();
    // The owner's connection is untouched.
    owner.send({ cmd: "pingreq" });
    await owner.next("pingresp");
    expect(owner.closed).toBe(false);
  });
});

describe("limits", () => {
  it("disconnects a client publishing faster than twice MAX_PUBLISH_RATE with 0x96", async () => {
    const raw = await rawClient(5);
    await raw.connect({ clientId: uid() });
    // The e2e broker allows 500/s; up to as many again is slowed, not cut: 2,000 at once are cut.
    for (let i = 0; i < 2000; i++) raw.send({ cmd: "publish", topic: "flood/x", payload: Buffer.from("x"), qos: 0 });
    expect((await raw.next("disconnect")).reasonCode).toBe(0x96);
    await raw.waitClosed();
  });
});

describe("MQTT 5 enhanced authentication: SCRAM-SHA-256 [MQTT-4.12]", () => {
  async function scramConnect(username: string, password: string, proofPassword = password) {
    const { raw, scram, challenge } = await scramStart(username, password);
    expect(challenge.reasonCode).toBe(0x18);
    expect(challenge.properties!.authenticationMethod).toBe("SCRAM-SHA-256");
    raw.send({
      cmd: "auth",
      reasonCode: 0x18,
      properties: {
        authenticationMethod: "SCRAM-SHA-256",
        authenticationData: scram.clientFinal(challenge.properties!.authenticationData!, proofPassword),
      },
    });
    return { raw, scram, connack: await raw.next("connack") };
  }

  it("authenticates without sending the password, and the server proves itself [MQTT-4.12.0-2, 4.12.0-5]", async () => {
    const { raw, scram, connack } = await scramConnect("alice", E2E_USERS.alice);
    expect(connack.reasonCode).toBe(0);
    expect(connack.properties!.authenticationMethod).toBe("SCRAM-SHA-256");
    expect(scram.verifyServer(connack.properties!.authenticationData!)).toBe(true);
    // and the identity is alice's: the ACL applies
    expect((await raw.subscribe("users/bob/#", 1)).granted).toEqual([0x87]);
  });

  it("re-authenticates on the live connection (AUTH 0x19) [MQTT-4.12.1-2]", async () => {
    const { ScramClient } = await import("../support/scram-client");
    const { raw } = await scramConnect("alice", E2E_USERS.alice);
    const again = new ScramClient("alice", E2E_USERS.alice);
    raw.send({
      cmd: "auth",
      reasonCode: 0x19,
      properties: { authenticationMethod: "SCRAM-SHA-256", authenticationData: again.clientFirst() },
    });
    const challenge = await raw.next("auth");
    expect(challenge.reasonCode).toBe(0x18);
    raw.send({
      cmd: "auth",
      reasonCode: 0x18,
      properties: {
        authenticationMethod: "SCRAM-SHA-256",
        authenticationData: again.clientFinal(challenge.properties!.authenticationData!),
      },
    });
    const done = await raw.next("auth");
    expect(done.reasonCode).toBe(0);
    expect(again.verifyServer(done.properties!.authenticationData!)).toBe(true);
    // a failed re-authentication ends the connection [MQTT-4.12.1-2]
    const wrong = new ScramClient("alice", "not-her-password");
    raw.send({
      cmd: "auth",
      reasonCode: 0x19,
      properties: { authenticationMethod: "SCRAM-SHA-256", authenticationData: wrong.clientFirst() },
    });
    const c2 = await raw.next("auth");
    raw.send({
      cmd: "auth",
      reasonCode: 0x18,
      properties: {
        authenticationMethod: "SCRAM-SHA-256",
        authenticationData: wrong.clientFinal(c2.properties!.authenticationData!),
      },
    });
    expect((await raw.next("disconnect")).reasonCode).toBe(0x87);
  });

  it("treats AUTH on a connection without an authentication method as a protocol error [MQTT-4.12.0-6]", async () => {
    const raw = await rawClient(5);
    await raw.connect({ clientId: uid() });
    raw.send({ cmd: "auth", reasonCode: 0x19, properties: { authenticationMethod: "SCRAM-SHA-256" } });
    expect((await raw.next("disconnect")).reasonCode).toBe(0x82);
  });

  it("refuses a wrong password with 0x86, and an unknown user the same way [MQTT-4.12.0-4]", async () => {
    expect((await scramConnect("alice", E2E_USERS.alice, "wrong")).connack.reasonCode).toBe(0x86);
    expect((await scramConnect("mallory", "whatever")).connack.reasonCode).toBe(0x86);
  });

  it("refuses a method it does not offer with 0x8C [MQTT-4.12.0-1]", async () => {
    const raw = await rawClient(5);
    const connack = await raw.connect({ clientId: uid(), properties: { authenticationMethod: "KERBEROS" } });
    expect(connack.reasonCode).toBe(0x8c);
  });
});
