/**
 * The `authenticate` moment: CONNECT credentials -> an Identity, or a refusal. Runs in the gateway,
 * before any Durable Object wakes. Refusals say nothing about which part was wrong.
 */
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from "jose";
import type { Identity } from "./acl";
import type { AuthConfig } from "./auth-config";
import { passwordMatches } from "./password";
import { storedCredential } from "./stored-credential";

export interface Credentials {
  clientId: string;
  username?: string;
  password?: Uint8Array;
  remoteAddress?: string;
}

export type AuthOutcome =
  | { ok: true; identity: Identity }
  /** bad-credentials: v5 0x86 / v3 4; not-authorized: v5 0x87 / v3 5; unavailable: v5 0x88 / v3 3. */
  | { ok: false; refusal: "bad-credentials" | "not-authorized" | "unavailable" };

const decoder = new TextDecoder();
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

const jwksCache = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

export async function authenticate(credentials: Credentials, config: AuthConfig): Promise<AuthOutcome> {
  const { username, password } = credentials;
  const passwordText = password ? decoder.decode(password) : undefined;
  if (config.jwt && passwordText && JWT_SHAPE.test(passwordText)) return verifyToken(passwordText, credentials, config);
  if (username !== undefined && config.users.size > 0 && (config.users.has(username) || !config.hook)) {
    // An unknown user is checked against a stand-in of the same cost, so its refusal takes as long.
    const { user, stored } = await storedCredential(username, config);
    const valid = await passwordMatches(password ?? new Uint8Array(), stored);
    return valid && user
      ? { ok: true, identity: { username, roles: user.roles } }
      : { ok: false, refusal: "bad-credentials" };
  }
  if (config.hook && (username !== undefined || password !== undefined)) return callHook(credentials, config.hook);
  if (config.allowAnonymous && config.users.size === 0 && !config.jwt && !config.hook) {
    // Nothing to check credentials against (local development): the claimed username is taken as is.
    return { ok: true, identity: username !== undefined ? { username } : {} };
  }
  if (username === undefined && password === undefined) {
    return config.allowAnonymous ? { ok: true, identity: {} } : { ok: false, refusal: "not-authorized" };
  }
  return { ok: false, refusal: "bad-credentials" };
}

async function verifyToken(token: string, credentials: Credentials, config: AuthConfig): Promise<AuthOutcome> {
  const jwt = config.jwt!;
  let payload: JWTPayload;
  try {
    // HS256 tokens are checked with the shared secret, RS256/ES256 with the JWKS (fetched once, cached).
    const alg = decodeProtectedHeader(token).alg;
    const options = { issuer: jwt.issuer, audience: jwt.audience };
    if (alg === "HS256" && jwt.secret) {
      payload = (await jwtVerify(token, new TextEncoder().encode(jwt.secret), { ...options, algorithms: ["HS256"] }))
        .payload;
    } else if ((alg === "RS256" || alg === "ES256") && jwt.jwksUrl) {
      let keys = jwksCache.get(jwt.jwksUrl);
      if (!keys) jwksCache.set(jwt.jwksUrl, (keys = createRemoteJWKSet(new URL(jwt.jwksUrl))));
      payload = (await jwtVerify(token, keys, { ...options, algorithms: ["RS256", "ES256"] })).payload;
    } else {
      return { ok: false, refusal: "bad-credentials" };
    }
  } catch {
    return { ok: false, refusal: "bad-credentials" };
  }
  // A token may bind the client id: it is then valid for that client only.
  const boundClient = payload.client_id;
  if (typeof boundClient === "string" && boundClient !== credentials.clientId)
    return { ok: false, refusal: "not-authorized" };
  // The token is the only source of the username: without a usable `sub` it names no one, and it is
  // refused rather than falling back to CONNECT's username (that let any valid token act as "bob").
  const username = nonEmptyString(payload.sub);
  if (username === undefined) return { ok: false, refusal: "bad-credentials" };
  const mqtt = (payload.mqtt ?? {}) as { publish?: unknown; subscribe?: unknown };
  return {
    ok: true,
    identity: {
      username,
      roles: list(payload.roles) ?? [],
      grants: payload.mqtt ? { publish: list(mqtt.publish) ?? [], subscribe: list(mqtt.subscribe) ?? [] } : undefined,
    },
  };
}

async function callHook(credentials: Credentials, hook: NonNullable<AuthConfig["hook"]>): Promise<AuthOutcome> {
  try {
    const response = await fetch(hook.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        clientId: credentials.clientId,
        username: credentials.username,
        password: credentials.password ? decoder.decode(credentials.password) : undefined,
        remoteAddress: credentials.remoteAddress,
      }),
      signal: AbortSignal.timeout(hook.timeoutMs),
    });
    if (!response.ok) return { ok: false, refusal: response.status >= 500 ? "unavailable" : "bad-credentials" };
    const body = (await response.json()) as Record<string, unknown>;
    if (body.allow !== true) return { ok: false, refusal: "bad-credentials" };
    // A grant list the hook sent but malformed allows nothing; one it left out restricts nothing.
    const grantList = (v: unknown) => (v === undefined ? undefined : (list(v) ?? []));
    const grants =
      body.publish !== undefined || body.subscribe !== undefined
        ? { publish: grantList(body.publish), subscribe: grantList(body.subscribe) }
        : undefined;
    // The hook's answer is the only source of the username: without one the client has none.
    return { ok: true, identity: { username: nonEmptyString(body.username), roles: list(body.roles) ?? [], grants } };
  } catch {
    return { ok: false, refusal: "unavailable" }; // timeout or network failure
  }
}

const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : undefined);
const nonEmptyString = (v: unknown) => (typeof v === "string" && v !== "" ? v : undefined);
