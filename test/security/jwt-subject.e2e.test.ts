/**
 * Security #11, finding: a JWT without `sub` (or with a non-string `sub`) took its username from the
 * CONNECT packet, so a valid token plus username `bob` became bob: bob's topics, and bob's sessions.
 * Decision: a token is the only source of its username; one with no usable `sub` names no one and is
 * refused (CONNACK 0x86 / 3.1.1 return code 4; HTTP 401). Main e2e broker (bob is a password user).
 */
import { SignJWT } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { E2E_JWT_SECRET, E2E_USERS } from "../e2e/global-setup";
import { brokerHttp, closeAll, rawClient } from "../support/clients";
import { uid } from "../support/ids";

afterEach(closeAll);

const secret = new TextEncoder().encode(E2E_JWT_SECRET);
const jwt = (claims: Record<string, unknown>) =>
  new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt().setExpirationTime("5m").sign(secret);

/** bob connects with his password and leaves a session behind (60 s expiry). */
async function bobsSession(): Promise<string> {
  const clientId = uid("bob");
  const bob = await rawClient(5);
  const connack = await bob.connect({
    clientId,
    clean: false,
    properties: { sessionExpiryInterval: 60 },
    username: "bob",
    password: Buffer.from(E2E_USERS.bob),
  });
  expect(connack.reasonCode).toBe(0);
  bob.send({ cmd: "disconnect", reasonCode: 0 });
  await bob.waitClosed();
  return clientId;
}

const tokens: [string, Record<string, unknown>][] = [
  ["no sub", {}],
  ["a numeric sub", { sub: 42 }],
  ["an empty sub", { sub: "" }],
];

describe.each([4, 5] as const)("finding: a JWT without a usable sub, MQTT v%i", (version) => {
  it.each(tokens)(
    "with %s plus CONNECT username bob is refused and cannot resume bob's session [MQTT-3.1.4-2]",
    async (_what, claims) => {
      const clientId = await bobsSession();
      const intruder = await rawClient(version);
      const connack = await intruder.connect({
        clientId,
        clean: false,
        properties: version === 5 ? { sessionExpiryInterval: 60 } : undefined,
        username: "bob",
        password: Buffer.from(await jwt(claims)),
      });
      if (version === 5) expect(connack.reasonCode).toBe(0x86);
      else expect(connack.returnCode).toBe(4);
      expect(connack.sessionPresent).toBe(false);
      await intruder.waitClosed();
      // bob's session is still his: he resumes it
      const bob = await rawClient(5);
      const again = await bob.connect({
        clientId,
        clean: false,
        properties: { sessionExpiryInterval: 60 },
        username: "bob",
        password: Buffer.from(E2E_USERS.bob),
      });
      expect(again.reasonCode).toBe(0);
      expect(again.sessionPresent).toBe(true);
    },
  );
});

describe("finding: the same token over HTTP publish", () => {
  it.each(tokens)("a JWT with %s is refused with 401", async (_what, claims) => {
    const res = await fetch(`${brokerHttp()}/api/v1/publish`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${await jwt(claims)}` },
      body: JSON.stringify({ topic: "public/x", payload: "x" }),
    });
    expect(res.status).toBe(401);
    const ok = await fetch(`${brokerHttp()}/api/v1/publish`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${await jwt({ sub: "someone" })}` },
      body: JSON.stringify({ topic: "public/x", payload: "x" }),
    });
    expect(ok.status).toBe(200); // control: the same kind of token with a sub is accepted
  });
});
