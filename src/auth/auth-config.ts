/**
 * Who may connect and what they may do, from `env` (secrets for credentials). Parsed once per
 * isolate. See README.md "Authentication and authorization".
 */
import { parseAclRules, type AclPolicy } from "./acl";
import { unknownUserPolicy, type UnknownUserPolicy } from "./stored-credential";
import { parseHash } from "./password";

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

const TRUE_WORDS = ["1", "true", "yes", "on"];
const FALSE_WORDS = ["0", "false", "no", "off"];
const str = (v: unknown) => (typeof v === "string" && v.trim() !== "" ? v.trim() : undefined);

/** A yes/no variable: unset is false; a value that is neither is an error, not a silent "no". */
export function flag(env: Record<string, unknown>, name: string): boolean {
  const value = env[name] === true ? "true" : str(env[name])?.toLowerCase();
  if (value === undefined || FALSE_WORDS.includes(value)) return false;
  if (TRUE_WORDS.includes(value)) return true;
  throw new AuthConfigError(`${name} must be true or false, got ${JSON.stringify(String(env[name]).slice(0, 40))}`);
}

/** An http(s) URL variable, or undefined when unset. */
function url(env: Record<string, unknown>, name: string): string | undefined {
  const value = str(env[name]);
  if (value === undefined) return undefined;
  let parsed: URL | undefined;
  try {
    parsed = new URL(value);
  } catch {
    parsed = undefined;
  }
  if (!parsed || (parsed.protocol !== "https:" && parsed.protocol !== "http:")) {
    throw new AuthConfigError(`${name} must be an http(s) URL`);
  }
  return value;
}

export function loadAuthConfig(env: Record<string, unknown>): AuthConfig {
  const users = new Map<string, UserEntry>();
  const rawUsers = str(env.AUTH_USERS);
  if (rawUsers) {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(rawUsers);
    } catch {
      throw new AuthConfigError('AUTH_USERS must be JSON: {"user": "pbkdf2-sha256$..."}');
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed))
      throw new AuthConfigError("AUTH_USERS must be a JSON object of users");
    for (const [name, entry] of Object.entries(parsed)) {
      const user = typeof entry === "string" ? { hash: entry, roles: [] } : (entry as UserEntry | null);
      if (!user || typeof user.hash !== "string")
        throw new AuthConfigError(`AUTH_USERS: entry for ${JSON.stringify(name)} needs a hash`);
      // a hash in another format would make the user's every login fail, silently
      if (!parseHash(user.hash)) {
        throw new AuthConfigError(
          `AUTH_USERS: the hash of ${JSON.stringify(name)} is not pbkdf2-sha256$<iterations>$<salt>$<hash> (make one with npm run hash-password)`,
        );
      }
      const roles = user.roles ?? [];
      if (!Array.isArray(roles) || roles.some((r) => typeof r !== "string"))
        throw new AuthConfigError(`AUTH_USERS: roles of ${JSON.stringify(name)} must be a list of strings`);
      users.set(name, { hash: user.hash, roles });
    }
  }
  const secret = str(env.JWT_SECRET);
  const jwksUrl = url(env, "JWT_JWKS_URL");
  const hookUrl = url(env, "AUTH_HOOK_URL");
  const hookTimeoutMs = Number(str(env.AUTH_HOOK_TIMEOUT_MS) ?? 3000);
  if (!Number.isInteger(hookTimeoutMs) || hookTimeoutMs < 1 || hookTimeoutMs > 60000) {
    throw new AuthConfigError("AUTH_HOOK_TIMEOUT_MS must be an integer from 1 to 60000");
  }
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
  if (aclDefault && aclDefault !== "allow" && aclDefault !== "deny")
    throw new AuthConfigError("ACL_DEFAULT must be allow or deny");
  const denialReason = str(env.ACL_DENIAL_REASON) ?? "not-authorized";
  if (denialReason !== "not-authorized" && denialReason !== "unspecified") {
    throw new AuthConfigError("ACL_DENIAL_REASON must be not-authorized or unspecified");
  }
  return {
    allowAnonymous: flag(env, "ALLOW_ANONYMOUS"),
    users,
    // AUTH_SALT_SECRET keeps unknown users' salts stable when AUTH_USERS changes; without it the
    // AUTH_USERS secret keys them (stable across isolates, but they change when a user is edited).
    unknownUsers: unknownUserPolicy(str(env.AUTH_SALT_SECRET) ?? rawUsers ?? "", users),
    jwt:
      secret || jwksUrl ? { secret, jwksUrl, issuer: str(env.JWT_ISSUER), audience: str(env.JWT_AUDIENCE) } : undefined,
    hook: hookUrl ? { url: hookUrl, timeoutMs: hookTimeoutMs } : undefined,
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
