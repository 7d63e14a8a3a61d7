/**
 * Who may connect and what they may do, from `env` (secrets for credentials). Parsed once per
 * isolate. See README.md "Authentication and authorization".
 */
import { parseAclRules, type AclPolicy } from "./acl";
import { unknownUserPolicy, type UnknownUserPolicy } from "./stored-credential";

export interface UserEntry {
  hash: string;
  roles: string[];
}

export interface AuthConfig {
  /** Clients without credentials may connect (local development; off unless turned on). */
  allowAnonymous: boolean;
  users: Map<string, UserEntry>;
  /** Stand-in credentials for usernames not in `users` (stored-credential.ts). */
  unknownUsers: UnknownUserPolicy;
  jwt?: { secret?: string; jwksUrl?: string; issuer?: string; audience?: string };
  hook?: { url: string; timeoutMs: number };
  acl: AclPolicy;
}

export class AuthConfigError extends Error {}

const truthy = (v: unknown) => typeof v === "string" && ["1", "true", "yes", "on"].includes(v.trim().toLowerCase());
const str = (v: unknown) => (typeof v === "string" && v.trim() !== "" ? v.trim() : undefined);

export function loadAuthConfig(env: Record<string, unknown>): AuthConfig {
  const users = new Map<string, UserEntry>();
  const rawUsers = str(env.AUTH_USERS);
  if (rawUsers) {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(rawUsers);
    } catch {
      throw new AuthConfigError("AUTH_USERS must be JSON: {\"user\": \"pbkdf2-sha256$...\"}");
    }
    for (const [name, entry] of Object.entries(parsed)) {
      if (typeof entry === "string") users.set(name, { hash: entry, roles: [] });
      else if (entry && typeof (entry as UserEntry).hash === "string") {
        users.set(name, { hash: (entry as UserEntry).hash, roles: (entry as UserEntry).roles ?? [] });
      } else throw new AuthConfigError(`AUTH_USERS: entry for ${JSON.stringify(name)} needs a hash`);
    }
  }
  const secret = str(env.JWT_SECRET);
  const jwksUrl = str(env.JWT_JWKS_URL);
  const hookUrl = str(env.AUTH_HOOK_URL);
  let rules: AclPolicy["rules"] = [];
  const rawAcl = str(env.ACL);
  if (rawAcl) {
    try {
      rules = parseAclRules(rawAcl);
    } catch (err) {
      throw new AuthConfigError(`ACL: ${(err as Error).message}`);
    }
  }
  const aclDefault = str(env.ACL_DEFAULT);
  if (aclDefault && aclDefault !== "allow" && aclDefault !== "deny") throw new AuthConfigError("ACL_DEFAULT must be allow or deny");
  const denialReason = str(env.ACL_DENIAL_REASON) ?? "not-authorized";
  if (denialReason !== "not-authorized" && denialReason !== "unspecified") {
    throw new AuthConfigError("ACL_DENIAL_REASON must be not-authorized or unspecified");
  }
  return {
    allowAnonymous: truthy(env.ALLOW_ANONYMOUS),
    users,
    // AUTH_SALT_SECRET keeps unknown users' salts stable when AUTH_USERS changes; without it the
    // AUTH_USERS secret keys them (stable across isolates, but they change when a user is edited).
    unknownUsers: unknownUserPolicy(str(env.AUTH_SALT_SECRET) ?? rawUsers ?? "", users),
    jwt: secret || jwksUrl ? { secret, jwksUrl, issuer: str(env.JWT_ISSUER), audience: str(env.JWT_AUDIENCE) } : undefined,
    hook: hookUrl ? { url: hookUrl, timeoutMs: Number(str(env.AUTH_HOOK_TIMEOUT_MS) ?? 3000) } : undefined,
    // With no rules every authenticated client may do everything; with rules, unmatched is denied.
    acl: {
      rules,
      defaultAllow: aclDefault ? aclDefault === "allow" : rules.length === 0,
      hideDenialReason: denialReason === "unspecified",
    },
  };
}

const cache = new WeakMap<object, AuthConfig>();

export function authConfigFor(env: object): AuthConfig {
  let config = cache.get(env);
  if (!config) {
    config = loadAuthConfig(env as Record<string, unknown>);
    cache.set(env, config);
  }
  return config;
}
