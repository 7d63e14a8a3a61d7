/**
 * User hooks: the user's own code, run inside the broker at named moments. Install them with
 * `createBroker({ hooks })` (src/library.ts) in your own Worker. Every hook is optional and may be
 * async; a hook that throws is logged and treated as a refusal (authorize*, authenticate) or as
 * "pass unchanged" (onPublish), so user code can never crash a session.
 *
 * Where each runs:
 * - `authenticate`: in the Worker, after CONNECT is admitted and before any Durable Object wakes.
 * - `authorizePublish`, `authorizeSubscribe`, `onPublish`: in the client's Session object (and in
 *   the Worker for HTTP publishes, as client `http-api`), after the ACL allowed the action.
 * - `onConnect`, `onDisconnect`: in the Session object, after CONNACK and when the connection ends.
 * Wills and `$SYS` messages are the broker's own and do not pass through onPublish.
 */
import type { Identity } from "./auth/acl";
import type { MessageProperties, QoS, UserProperty } from "./protocol/message";
import { userPropertyList } from "./protocol/user-properties";

/**
 * An application message as hooks see it (and may return it). Its `properties.userProperties` is
 * the list of `[name, value]` pairs in the order the publisher sent them, repeated names included
 * (MQTT 5 requires that order to be kept [MQTT-3.3.2-18]): return them in the order subscribers
 * should get them.
 */
export interface HookMessage {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: MessageProperties;
}

/**
 * What a hook may publish: text or bytes, QoS 0 and no retain unless said. User Properties as
 * `[name, value]` pairs, or as an object `{ name: value | value[] }` (JavaScript's key order: names
 * that look like integers first, the values of a name together).
 */
export interface HookPublish {
  topic: string;
  payload?: string | Uint8Array;
  qos?: QoS;
  retain?: boolean;
  properties?: Omit<MessageProperties, "userProperties"> & {
    userProperties?: UserProperty[] | Record<string, string | string[]>;
  };
}

export interface HookContext<E = Record<string, unknown>> {
  /** The Worker's bindings (your Queue, KV, secrets...). */
  env: E;
  clientId: string;
  /** Who the client authenticated as (empty for anonymous clients). */
  identity: Identity;
  /** Routes a message through the broker like any publish; resolves with the subscribers matched. */
  publish(message: HookPublish): Promise<number>;
}

export interface AuthenticateInput {
  clientId: string;
  username?: string;
  password?: Uint8Array;
  remoteAddress?: string;
}

/**
 * `undefined`: let the built-in methods decide; otherwise the hook's decision. An allow without an
 * identity gives the client no username: CONNECT's username is only the client's claim.
 */
export type AuthenticateResult =
  | { allow: true; identity?: Identity }
  /** bad-credentials: v5 0x86 / v3 4; not-authorized: 0x87 / 5; unavailable: 0x88 / 3. */
  | { allow: false; reason?: "bad-credentials" | "not-authorized" | "unavailable" }
  | undefined;

export interface ConnectInfo {
  protocolVersion: number;
  sessionPresent: boolean;
  remoteAddress?: string;
}

export interface BrokerHooks<E = Record<string, unknown>> {
  authenticate?(input: AuthenticateInput, env: E): AuthenticateResult | Promise<AuthenticateResult>;
  authorizePublish?(ctx: HookContext<E>, message: HookMessage): boolean | Promise<boolean>;
  authorizeSubscribe?(ctx: HookContext<E>, filter: string, qos: QoS): boolean | Promise<boolean>;
  /** Return the message (changed or not) to route it, `null` to drop it (the publisher is still acknowledged). */
  onPublish?(
    ctx: HookContext<E>,
    message: HookMessage,
  ): HookMessage | null | undefined | Promise<HookMessage | null | undefined>;
  onConnect?(ctx: HookContext<E>, info: ConnectInfo): void | Promise<void>;
  onDisconnect?(ctx: HookContext<E>): void | Promise<void>;
}

// The env type parameter is erased once installed: createBroker<E> checks it where the user writes the
// hooks, and the runtime passes the Worker's env to them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type InstalledHooks = BrokerHooks<any>;

let installed: InstalledHooks = {};

/** Installs the hooks for this Worker (called once by createBroker, at module load). */
export function installHooks(hooks: InstalledHooks): void {
  installed = hooks;
}

export function currentHooks(): InstalledHooks {
  return installed;
}

/** Runs a hook; a throw is logged and answered with `fallback`. */
export async function runHook<T>(name: string, fallback: T, call: () => T | Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    console.error(`hook ${name} failed`, err);
    return fallback;
  }
}

/** Turns a hook's publish request into a message. */
export function hookMessage(p: HookPublish): HookMessage {
  const payload = typeof p.payload === "string" ? new TextEncoder().encode(p.payload) : (p.payload ?? new Uint8Array());
  return {
    topic: p.topic,
    payload,
    qos: p.qos ?? 0,
    retain: p.retain ?? false,
    properties: hookProperties(p.properties),
  };
}

/** The message an onPublish hook returned, with its User Properties as pairs whichever form it used. */
export function fromHook(m: HookMessage): HookMessage {
  return m.properties?.userProperties ? { ...m, properties: hookProperties(m.properties) } : m;
}

function hookProperties(props: HookPublish["properties"]): MessageProperties | undefined {
  if (props?.userProperties === undefined) return props as MessageProperties | undefined;
  const { userProperties, ...others } = props;
  const list = userPropertyList(userProperties);
  return list ? { ...others, userProperties: list } : others;
}
