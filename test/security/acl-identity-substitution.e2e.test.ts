/**
 * Security #11, finding: ACL bypass through wildcards in `%c` and `%u`. With the rule
 * `devices/%c/#`, a client whose id was `#` or `+` was granted `devices/#`: it read, published to and
 * overwrote the retained messages of every other device. The same with `%u` from a JWT `sub` or the
 * HTTP auth hook, with a JWT's own `mqtt` grants, and over HTTP publish. Through the real Worker; the
 * pure rule is in acl-identity-substitution.unit.test.ts.
 */
import { createServer, type Server } from "node:http";
import { SignJWT } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import WebSocket from "ws";
import { E2E_JWT_SECRET, startBroker } from "../e2e/global-setup";
import { uid } from "../support/ids";
import { RawClient } from "../support/raw-client";

const ACL = [
  { allow: true, action: "all", topics: ["devices/%c/#"] },
  { allow: true, action: "all", topics: ["users/%u/#"] },
  { allow: true, action: "all", topics: ["public/#"] },
];

/** The user's auth endpoint: password `as:<name>` logs in as <name>; `no-username` allows without naming anyone. */
async function startHook(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      const { password } = JSON.parse(body || "{}") as { password?: string };
      res.setHeader("content-type", "application/json");
      if (password?.startsWith("as:"))
        return void res.end(JSON.stringify({ allow: true, username: password.slice(3) }));
      if (password === "no-username") return void res.end(JSON.stringify({ allow: true }));
      if (password === "null-grants")
        return void res.end(JSON.stringify({ allow: true, username: "null-grants", publish: null, subscribe: null }));
      res.end(JSON.stringify({ allow: false }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/auth`, server };
}

let broker: Awaited<ReturnType<typeof startBroker>>;
let hook: Awaited<ReturnType<typeof startHook>>;
const opened: RawClient[] = [];

beforeAll(async () => {
  hook = await startHook();
  broker = await startBroker({
    ALLOW_ANONYMOUS: "true",
    JWT_SECRET: E2E_JWT_SECRET,
    AUTH_HOOK_URL: hook.url,
    ACL: JSON.stringify(ACL),
    ACL_DEFAULT: "deny",
  });
});
afterAll(async () => {
  await broker?.stop();
  hook?.server.close();
});
afterEach(() => opened.splice(0).forEach((c) => c.close()));

/** A raw client on the given broker (this file's own, unless `url` says otherwise). */
async function raw(version: 4 | 5 = 5, url = `${broker.base.replace("http", "ws")}/mqtt`): Promise<RawClient> {
  const ws = new WebSocket(url, "mqtt");
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const client = new RawClient(
    {
      send: (data) => ws.send(data),
      close: () => ws.terminate(),
      onBytes: (cb) => ws.on("message", (d: Buffer) => cb(new Uint8Array(d))),
      onClose: (cb) => ws.on("close", cb),
    },
    version,
  );
  opened.push(client);
  return client;
}

const secret = new TextEncoder().encode(E2E_JWT_SECRET);
const jwt = (claims: Record<string, unknown>) =>
  new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt().setExpirationTime("5m").sign(secret);

/** A device that owns `devices/<id>/#`, holds a retained state there and listens to its subtree. */
async function victimDevice(): Promise<{ id: string; client: RawClient }> {
  const id = uid("victim");
  const client = await raw(5);
  expect((await client.connect({ clientId: id })).reasonCode).toBe(0);
  client.autoAck = true;
  client.send({
    cmd: "publish",
    topic: `devices/${id}/state`,
    payload: Buffer.from("v1"),
    qos: 1,
    retain: true,
    messageId: 1,
  });
  expect((await client.next("puback")).reasonCode).toBe(0x10); // no subscribers yet, retained all the same
  expect((await client.subscribe(`devices/${id}/#`, 1, 2)).granted).toEqual([1]);
  await client.next("publish"); // its own retained state, sent on subscribe
  return { id, client };
}

/** The victim publishes to its own subtree and receives it: anything routed before has arrived too. */
async function controlMessage(victim: { id: string; client: RawClient }): Promise<void> {
  victim.client.send({
    cmd: "publish",
    topic: `devices/${victim.id}/echo`,
    payload: Buffer.from("control"),
    qos: 1,
    messageId: 9,
  });
  await victim.client.until(
    () => victim.client.all("publish").some((p) => p.topic === `devices/${victim.id}/echo`),
    5000,
    "control message",
  );
}

const received = (victim: { client: RawClient }, topic: string) =>
  victim.client.all("publish").filter((p) => p.topic === topic);

describe("finding: client id # or + against devices/%c/#", () => {
  for (const attackerId of ["#", "+"]) {
    it(`client id ${attackerId} cannot subscribe to other devices' topics (SUBACK 0x87) nor read their retained state`, async () => {
      const victim = await victimDevice();
      const attacker = await raw(5);
      expect((await attacker.connect({ clientId: attackerId })).reasonCode).toBe(0);
      const filters = [
        "devices/#",
        `devices/${victim.id}/#`,
        `devices/${victim.id}/state`,
        "devices/+/state",
        "public/ok",
      ];
      attacker.send({ cmd: "subscribe", messageId: 1, subscriptions: filters.map((topic) => ({ topic, qos: 1 })) });
      expect((await attacker.next("suback")).granted).toEqual([0x87, 0x87, 0x87, 0x87, 1]);
      // control: a public message the attacker may read arrives, and it saw no retained device state
      attacker.send({ cmd: "publish", topic: "public/ok", payload: Buffer.from("x"), qos: 1, messageId: 2 });
      await attacker.until(() => attacker.all("publish").some((p) => p.topic === "public/ok"), 5000, "public control");
      expect(attacker.all("publish").filter((p) => p.topic.startsWith("devices/"))).toEqual([]);
    });

    it(`client id ${attackerId} cannot publish to another device nor overwrite its retained message (PUBACK 0x87)`, async () => {
      const victim = await victimDevice();
      const attacker = await raw(5);
      expect((await attacker.connect({ clientId: attackerId })).reasonCode).toBe(0);
      attacker.send({
        cmd: "publish",
        topic: `devices/${victim.id}/state`,
        payload: Buffer.from("hijacked"),
        qos: 1,
        retain: true,
        messageId: 1,
      });
      expect((await attacker.next("puback")).reasonCode).toBe(0x87);
      attacker.send({
        cmd: "publish",
        topic: `devices/${victim.id}/cmd`,
        payload: Buffer.from("reboot"),
        qos: 1,
        messageId: 2,
      });
      expect((await attacker.next("puback")).reasonCode).toBe(0x87);
      await controlMessage(victim);
      expect(received(victim, `devices/${victim.id}/cmd`)).toEqual([]);
      expect(received(victim, `devices/${victim.id}/state`).map((p) => p.payload.toString())).toEqual(["v1"]);
      // the retained message is still the victim's: a new subscriber (the victim again) gets "v1"
      victim.client.close();
      const again = await raw(5);
      await again.connect({ clientId: victim.id });
      await again.subscribe(`devices/${victim.id}/state`, 0);
      expect((await again.next("publish")).payload.toString()).toBe("v1");
    });
  }
});

describe("class: other identity values that would widen a grant", () => {
  it("client id <victim>/x cannot publish into the victim's subtree (a level separator in %c)", async () => {
    const victim = await victimDevice();
    const attacker = await raw(5);
    expect((await attacker.connect({ clientId: `${victim.id}/x` })).reasonCode).toBe(0);
    attacker.send({
      cmd: "publish",
      topic: `devices/${victim.id}/x/cmd`,
      payload: Buffer.from("reboot"),
      qos: 1,
      messageId: 1,
    });
    expect((await attacker.next("puback")).reasonCode).toBe(0x87);
    await controlMessage(victim);
    expect(received(victim, `devices/${victim.id}/x/cmd`)).toEqual([]);
  });
});

describe("finding: %u from a JWT sub, the auth hook, and HTTP publish", () => {
  it("JWT sub # is not granted users/# by users/%u/#", async () => {
    const attacker = await raw(5);
    expect(
      (await attacker.connect({ clientId: uid(), username: "x", password: Buffer.from(await jwt({ sub: "#" })) }))
        .reasonCode,
    ).toBe(0);
    attacker.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: ["users/#", "users/alice/#", "public/ok"].map((topic) => ({ topic, qos: 0 })),
    });
    expect((await attacker.next("suback")).granted).toEqual([0x87, 0x87, 0]);
    attacker.send({ cmd: "publish", topic: "users/alice/inbox", payload: Buffer.from("x"), qos: 1, messageId: 2 });
    expect((await attacker.next("puback")).reasonCode).toBe(0x87);
  });

  it("a hook answering username + is not granted users/+/... by users/%u/#", async () => {
    const attacker = await raw(5);
    expect((await attacker.connect({ clientId: uid(), username: "x", password: Buffer.from("as:+") })).reasonCode).toBe(
      0,
    );
    attacker.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: ["users/+/inbox", "users/alice/inbox"].map((topic) => ({ topic, qos: 0 })),
    });
    expect((await attacker.next("suback")).granted).toEqual([0x87, 0x87]);
    attacker.send({ cmd: "publish", topic: "users/alice/inbox", payload: Buffer.from("x"), qos: 1, messageId: 2 });
    expect((await attacker.next("puback")).reasonCode).toBe(0x87);
  });

  it("a JWT sub with a level separator (alice/x) cannot reach alice's subtree", async () => {
    const attacker = await raw(5);
    expect(
      (await attacker.connect({ clientId: uid(), username: "x", password: Buffer.from(await jwt({ sub: "alice/x" })) }))
        .reasonCode,
    ).toBe(0);
    attacker.send({ cmd: "publish", topic: "users/alice/x/inbox", payload: Buffer.from("x"), qos: 1, messageId: 1 });
    expect((await attacker.next("puback")).reasonCode).toBe(0x87);
    expect((await attacker.subscribe("users/alice/x/#", 0, 2)).granted).toEqual([0x87]);
  });

  it("HTTP publish with a JWT whose sub is # is refused (403) on another user's topic", async () => {
    const post = async (topic: string) =>
      fetch(`${broker.base}/api/v1/publish`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${await jwt({ sub: "#" })}` },
        body: JSON.stringify({ topic, payload: "x" }),
      });
    const refused = await post("users/alice/inbox");
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: string }).error).toMatch(/not authorized/);
    expect((await post("public/ok")).status).toBe(200); // control: the token itself is accepted
  });
});

describe("class: the username comes from the authority, never from CONNECT when a hook decides", () => {
  it("a hook that allows without naming a user gives no username: CONNECT's alice gets nothing of alice's", async () => {
    const client = await raw(5);
    expect(
      (await client.connect({ clientId: uid(), username: "alice", password: Buffer.from("no-username") })).reasonCode,
    ).toBe(0);
    client.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: ["users/alice/#", "public/ok"].map((topic) => ({ topic, qos: 0 })),
    });
    expect((await client.next("suback")).granted).toEqual([0x87, 0]);
  });
});

describe("class: a hook's grants that are not lists allow nothing (fail closed)", () => {
  it("a hook answering publish: null and subscribe: null gets nothing, not everything the ACL allows", async () => {
    const client = await raw(5);
    expect(
      (await client.connect({ clientId: uid(), username: "n", password: Buffer.from("null-grants") })).reasonCode,
    ).toBe(0);
    client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "public/null-grants", qos: 0 }] });
    expect((await client.next("suback")).granted).toEqual([0x87]);
    client.send({ cmd: "publish", topic: "public/null-grants", payload: Buffer.from("x"), qos: 1, messageId: 2 });
    expect((await client.next("puback")).reasonCode).toBe(0x87);
  });
});

describe("finding: a JWT's own mqtt grants with %c (broker with ACL_DEFAULT allow)", () => {
  const mainBroker = () => inject("brokerUrl");
  for (const attackerId of ["#", "+"]) {
    it(`client id ${attackerId} with grants devices/%c/# is not granted other devices`, async () => {
      const token = await jwt({ sub: "dev", mqtt: { publish: ["devices/%c/up"], subscribe: ["devices/%c/#"] } });
      const attacker = await raw(5, mainBroker());
      expect(
        (await attacker.connect({ clientId: attackerId, username: "x", password: Buffer.from(token) })).reasonCode,
      ).toBe(0);
      expect((await attacker.subscribe("devices/victim/#", 0)).granted).toEqual([0x87]);
      attacker.send({ cmd: "publish", topic: "devices/victim/up", payload: Buffer.from("x"), qos: 1, messageId: 2 });
      expect((await attacker.next("puback")).reasonCode).toBe(0x87);
    });
  }
});
