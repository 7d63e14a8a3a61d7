/**
 * The ACL on wildcard subscriptions (src/auth/acl.ts `subscribeGrant`, the read check in the
 * Session's `deliver`): a deny rule narrows what a wildcard subscriber receives, live and retained,
 * instead of refusing the wildcard; a filter a deny rule wholly covers is refused. The policy is the
 * one the Eclipse Paho interoperability suites expect (`test/nosubscribe` refused), plus a `%c` deny.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startBroker } from "./global-setup";
import { rawClient } from "../support/clients";
import { uid } from "../support/ids";
import { until } from "../support/until";
import type { RawClient } from "../support/raw-client";

const ACL = [
  { allow: false, action: "subscribe", topics: ["test/nosubscribe"] },
  { allow: true, action: "subscribe", topics: ["public/#"] },
  // a device may write its secret but not read it back; `%c` is its own client id
  { allow: false, action: "subscribe", topics: ["devices/%c/secret"] },
];

let broker: Awaited<ReturnType<typeof startBroker>>;
const opened: RawClient[] = [];

beforeAll(async () => {
  broker = await startBroker({ ALLOW_ANONYMOUS: "true", ACL: JSON.stringify(ACL), ACL_DEFAULT: "allow" });
});
afterAll(async () => {
  await broker?.stop();
});
afterEach(() => opened.splice(0).forEach((c) => c.close()));

async function client(version: 4 | 5, clientId = uid("acl")): Promise<RawClient> {
  const c = await rawClient(version, "mqtt", `${broker.base.replace("http", "ws")}/mqtt`);
  opened.push(c);
  const connack = await c.connect({ clientId });
  expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(0);
  c.autoAck = true;
  return c;
}

/** Publishes at QoS 1 and waits for the PUBACK, so the message is routed (and retained) before going on. */
async function publish(c: RawClient, topic: string, payload: string, retain = false): Promise<void> {
  const messageId = Math.floor(Math.random() * 60000) + 1;
  c.send({ cmd: "publish", topic, payload: Buffer.from(payload), qos: 1, retain, messageId });
  await c.until(() => c.all("puback").some((p) => p.messageId === messageId), 5000, `PUBACK ${messageId}`);
}

/** Topics a client received, after a control message published last has arrived. */
async function topicsAfterControl(c: RawClient, publisher: RawClient, control: string): Promise<string[]> {
  await publish(publisher, control, "control");
  await c.until(() => c.all("publish").some((p) => p.topic === control), 5000, `control message on ${control}`);
  return c.all("publish").map((p) => p.topic);
}

describe.each([4, 5] as const)("ACL on wildcard subscriptions, MQTT v%i", (version) => {
  const refused = version === 5 ? 0x87 : 0x80;

  it("grants # beside a deny rule, and delivers every topic but the denied one, live and retained", async () => {
    const root = uid("open");
    const publisher = await client(version);
    await publish(publisher, "test/nosubscribe", "hidden retained", true);
    await publish(publisher, `${root}/kept`, "shown retained", true);
    const sub = await client(version);
    expect((await sub.subscribe("#", 1)).granted).toEqual([1]);
    await sub.until(() => sub.all("publish").some((p) => p.topic === `${root}/kept`), 5000, "the retained message");
    await publish(publisher, "test/nosubscribe", "hidden live");
    await publish(publisher, `${root}/live`, "shown live");
    const topics = await topicsAfterControl(sub, publisher, `${root}/control`);
    expect(topics).toContain(`${root}/live`);
    expect(topics).not.toContain("test/nosubscribe");
    await publish(publisher, "test/nosubscribe", "", true); // the next test starts without it
  });

  it("grants +/+ and test/# but refuses exactly the denied filter (SUBACK 0x87 / 0x80)", async () => {
    const sub = await client(version);
    sub.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: ["test/nosubscribe", "+/+", "test/#", "TopicA/#"].map((topic) => ({ topic, qos: 1 })),
    });
    expect((await sub.next("suback")).granted).toEqual([refused, 1, 1, 1]);
    const publisher = await client(version);
    await publish(publisher, "test/nosubscribe", "hidden");
    await publish(publisher, "test/other", "shown");
    const topics = await topicsAfterControl(sub, publisher, "TopicA/control");
    expect(topics).toContain("test/other");
    expect(topics).not.toContain("test/nosubscribe");
  });

  it("a %c deny rule narrows devices/# to every device's secret but the subscriber's own", async () => {
    const me = uid("dev");
    const other = uid("dev");
    const publisher = await client(version);
    await publish(publisher, `devices/${me}/secret`, "mine, retained", true);
    const sub = await client(version, me);
    expect((await sub.subscribe("devices/#", 1)).granted).toEqual([1]);
    await publish(publisher, `devices/${me}/secret`, "mine, live");
    await publish(publisher, `devices/${other}/secret`, "theirs");
    await publish(publisher, `devices/${me}/state`, "my state");
    const topics = await topicsAfterControl(sub, publisher, `devices/${other}/control`);
    expect(topics).toEqual(expect.arrayContaining([`devices/${other}/secret`, `devices/${me}/state`]));
    expect(topics).not.toContain(`devices/${me}/secret`);
  });

  it("a shared subscription gives each message to a member who may read it, never to one who may not", async () => {
    const group = `$share/${uid("g")}/devices/#`;
    const owner = uid("dev"); // may not read devices/<owner>/secret (the %c deny rule)
    const ownerSub = await client(version, owner);
    const otherSub = await client(version);
    expect((await ownerSub.subscribe(group, 1)).granted).toEqual([1]);
    expect((await otherSub.subscribe(group, 1)).granted).toEqual([1]);
    const publisher = await client(version);
    // round robin offers every other message to the owner first: each must go on to the other member
    for (let i = 0; i < 4; i++) await publish(publisher, `devices/${owner}/secret`, `s${i}`);
    const secrets = (c: RawClient) =>
      c
        .all("publish")
        .filter((p) => p.topic.endsWith("/secret"))
        .map((p) => p.payload.toString());
    await until(() => secrets(otherSub).length === 4, "all four messages at the member who may read them");
    expect(secrets(otherSub)).toEqual(["s0", "s1", "s2", "s3"]);
    // every PUBACK came after the owner's session had declined or taken its offer; a round trip
    // through that session shows what it sent before
    await ownerSub.roundTrip();
    expect(secrets(ownerSub)).toEqual([]);
  });

  it.each(["#", "+"])(
    "a hostile client id (%s) makes the deny rule on devices/<id>/secret deny everything: # is granted for public/# only",
    async (hostileId) => {
      const victim = uid("victim");
      const publisher = await client(version);
      await publish(publisher, `devices/${victim}/secret`, "retained secret", true);
      const sub = await client(version, hostileId);
      sub.send({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: ["#", "devices/#", "public/#"].map((topic) => ({ topic, qos: 1 })),
      });
      // # overlaps the allow rule public/#; devices/# overlaps no allow rule before the unsafe deny
      expect((await sub.next("suback")).granted).toEqual([1, refused, 1]);
      await publish(publisher, `devices/${victim}/secret`, "live secret");
      await publish(publisher, `${uid("elsewhere")}/x`, "default-allowed, but after the unsafe deny");
      const topics = await topicsAfterControl(sub, publisher, `public/${uid("control")}`);
      expect(topics.filter((t) => !t.startsWith("public/"))).toEqual([]);
    },
  );
});

describe("ACL_DENIAL_REASON=unspecified (the policy of Paho's interoperability suites)", () => {
  let quiet: Awaited<ReturnType<typeof startBroker>>;
  beforeAll(async () => {
    quiet = await startBroker({
      ALLOW_ANONYMOUS: "true",
      ACL: JSON.stringify([{ allow: false, action: "all", topics: ["test/nosubscribe"] }]),
      ACL_DEFAULT: "allow",
      ACL_DENIAL_REASON: "unspecified",
    });
  });
  afterAll(async () => {
    await quiet?.stop();
  });

  it("refuses a denied SUBSCRIBE and PUBLISH with 0x80 and no Reason String, and still grants the rest", async () => {
    const c = await rawClient(5, "mqtt", `${quiet.base.replace("http", "ws")}/mqtt`);
    opened.push(c);
    expect((await c.connect({ clientId: uid("quiet") })).reasonCode).toBe(0);
    c.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: ["test/nosubscribe", "test/#"].map((topic) => ({ topic, qos: 1 })),
    });
    expect((await c.next("suback")).granted).toEqual([0x80, 1]);
    c.send({
      cmd: "publish",
      topic: "test/nosubscribe",
      payload: Buffer.from("x"),
      qos: 1,
      retain: false,
      messageId: 7,
    });
    const puback = await c.next("puback");
    expect(puback.reasonCode).toBe(0x80);
    expect(puback.properties?.reasonString).toBeUndefined();
  });
});
