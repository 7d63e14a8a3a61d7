/**
 * Who is calling the HTTP API. Tokens are secrets (`wrangler secret put`):
 * - ADMIN_TOKEN: the admin API, /metrics and the dashboard (and publishing, as user "admin");
 * - API_TOKEN: publishing only, as user API_USERNAME (default "http-api", role "http-api");
 * - a JWT the broker accepts for MQTT (JWT_SECRET / JWT_JWKS_URL) may publish too, with its own
 *   identity and grants. Publishes are then checked by the same ACL as MQTT clients.
 * A browser may send the admin token as the password of HTTP Basic authentication (the dashboard).
 */
import type { Identity } from "../auth/acl";
import type { AuthConfig } from "../auth/auth-config";
import { authenticate } from "../auth/authenticate";

export interface ApiTokens {
  admin?: string;
  publish?: string;
  /** Username of API_TOKEN callers, for the ACL (and %u). */
  publishUsername: string;
}

/** The client id the ACL sees (%c) for HTTP publishers. */
export const HTTP_CLIENT_ID = "http-api";

export function apiTokensFrom(env: Record<string, unknown>): ApiTokens {
  const str = (v: unknown) => (typeof v === "string" && v.trim() !== "" ? v.trim() : undefined);
  return {
    admin: str(env.ADMIN_TOKEN),
    publish: str(env.API_TOKEN),
    publishUsername: str(env.API_USERNAME) ?? "http-api",
  };
}

/** The secret a request presents: `Authorization: Bearer <t>` or Basic with <t> as the password. */
export function presentedToken(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const [scheme = "", value] = authorization.trim().split(/\s+/, 2);
  if (!value) return undefined;
  if (scheme.toLowerCase() === "bearer") return value;
  if (scheme.toLowerCase() === "basic") {
    try {
      const decoded = atob(value);
      return decoded.slice(decoded.indexOf(":") + 1);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Compares secrets without leaking where they differ (both are hashed to equal length first). */
export async function sameSecret(a: string, b: string): Promise<boolean> {
  const enc = new TextEncoder();
  const [x, y] = await Promise.all([
    crypto.subtle.digest("SHA-256", enc.encode(a)),
    crypto.subtle.digest("SHA-256", enc.encode(b)),
  ]);
  const p = new Uint8Array(x);
  const q = new Uint8Array(y);
  let diff = 0;
  for (let i = 0; i < p.length; i++) diff |= p[i]! ^ q[i]!; // equal lengths, checked above
  return diff === 0;
}

export async function isAdmin(authorization: string | undefined, tokens: ApiTokens): Promise<boolean> {
  const token = presentedToken(authorization);
  return token !== undefined && tokens.admin !== undefined && (await sameSecret(token, tokens.admin));
}

/** The identity an HTTP publisher acts as, or undefined when its token is not accepted. */
export async function publisherIdentity(
  authorization: string | undefined,
  tokens: ApiTokens,
  auth: AuthConfig,
): Promise<Identity | undefined> {
  const token = presentedToken(authorization);
  if (token === undefined) return undefined;
  if (tokens.admin && (await sameSecret(token, tokens.admin))) return { username: "admin", roles: ["admin"] };
  if (tokens.publish && (await sameSecret(token, tokens.publish)))
    return { username: tokens.publishUsername, roles: ["http-api"] };
  if (auth.jwt) {
    const outcome = await authenticate(
      { clientId: HTTP_CLIENT_ID, password: new TextEncoder().encode(token) },
      { ...auth, hook: undefined, users: new Map(), allowAnonymous: false },
    );
    if (outcome.ok) return outcome.identity;
  }
  return undefined;
}
