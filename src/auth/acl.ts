/**
 * Authorization: rules that allow or deny publish and subscribe on topic filters, per user, client
 * or role, with `%u` (username) and `%c` (client id) substitution. Evaluated in order; the first
 * rule that applies decides; when none applies the default decides.
 */
import { topicMatches } from "../protocol/topic";

export type AclAction = "publish" | "subscribe";

export interface AclRule {
  allow: boolean;
  /** Which actions the rule covers ("all" for both). */
  action: AclAction | "all";
  /**
   * Topic filters the rule covers; `%u` and `%c` are replaced by the username and client id. When
   * the value is unsafe (`unsafeIdentityValue`) an allow pattern matches nothing and a deny pattern
   * matches everything.
   */
  topics: string[];
  /** The rule applies only to these usernames / client ids / roles (any of them) when given. */
  users?: string[];
  clients?: string[];
  roles?: string[];
}

/** Who a connection is, as authentication established it. */
export interface Identity {
  /** Username or token subject; absent for anonymous clients. */
  username?: string;
  roles?: string[];
  /** Topic grants carried by the credential itself (JWT claims): only these are allowed. */
  grants?: { publish?: string[]; subscribe?: string[] };
}

export interface AclPolicy {
  rules: AclRule[];
  /** Decision when no rule applies. */
  defaultAllow: boolean;
}

/** True when every topic `inner` can match is also matched by `outer` (filter containment). */
export function filterCovers(outer: string, inner: string): boolean {
  const o = outer.split("/");
  const i = inner.split("/");
  for (let k = 0; k < o.length; k++) {
    if (o[k] === "#") return !(k === 0 && inner.startsWith("$"));
    if (k >= i.length) return false;
    if (i[k] === "#") return false;
    if (o[k] === "+") {
      if (k === 0 && i[k].startsWith("$")) return false;
      continue;
    }
    if (o[k] !== i[k]) return false;
  }
  return o.length === i.length;
}

/** True when some topic could match both filters. */
export function filtersOverlap(a: string, b: string): boolean {
  const x = a.split("/");
  const y = b.split("/");
  for (let k = 0; k < Math.max(x.length, y.length); k++) {
    if (x[k] === "#" || y[k] === "#") return true;
    if (x[k] === undefined || y[k] === undefined) return false;
    if (x[k] === "+" || y[k] === "+") continue;
    if (x[k] !== y[k]) return false;
  }
  return true;
}

/**
 * Why an identity value may not be put into a topic pattern, or undefined when it may. A value that
 * holds a wildcard (`+`, `#`), a level separator (`/`) or U+0000 would turn `devices/%c/#` into a
 * wider filter than the rule's author wrote (`devices/#`, or another device's levels); a leading `$`
 * would reach the topics reserved for the server (`%c/#` -> `$SYS/#`, MQTT 5.0 section 4.7.2); an empty or absent value
 * names no one (`users//#` is one level every nameless client would share).
 */
export function unsafeIdentityValue(value: string | undefined): string | undefined {
  if (value === undefined || value === "") return "absent or empty";
  if (/[+#\/\u0000]/.test(value)) return "holds +, #, / or U+0000";
  if (value.startsWith("$")) return "starts with $";
  return undefined;
}

/** Marks a pattern whose `%u` or `%c` could not be substituted safely. */
const UNSAFE = Symbol("unsafe substitution");

/**
 * `%u` -> username, `%c` -> client id, in one pass: a username holding `%c` stays literal, never
 * replaced a second time by the (client-chosen) client id.
 */
function substitute(pattern: string, identity: Identity, clientId: string): string | typeof UNSAFE {
  if (!pattern.includes("%")) return pattern;
  let unsafe = false;
  const out = pattern.replace(/%[uc]/g, (token) => {
    const value = token === "%u" ? identity.username : clientId;
    if (unsafeIdentityValue(value) !== undefined) unsafe = true;
    return value ?? "";
  });
  return unsafe ? UNSAFE : out;
}

function applies(rule: AclRule, action: AclAction, identity: Identity, clientId: string): boolean {
  if (rule.action !== "all" && rule.action !== action) return false;
  const who = [
    rule.users && identity.username !== undefined && rule.users.includes(identity.username),
    rule.clients?.includes(clientId),
    rule.roles && identity.roles?.some((r) => rule.roles!.includes(r)),
  ];
  const restricted = rule.users || rule.clients || rule.roles;
  return !restricted || who.some(Boolean);
}

/**
 * May this identity publish to `topic` (a topic name) or subscribe to `filter`?
 * Subscribing needs an allow rule whose filter covers the whole requested filter, and is denied
 * when a deny rule overlaps it; publishing is a plain match.
 */
export function isAllowed(
  policy: AclPolicy,
  identity: Identity,
  clientId: string,
  action: AclAction,
  topicOrFilter: string,
): boolean {
  const grants = identity.grants?.[action];
  if (grants) {
    const granted = grants.some((g) => {
      const pattern = substitute(g, identity, clientId);
      return pattern !== UNSAFE && covers(action, pattern, topicOrFilter);
    });
    if (!granted) return false;
  }
  for (const rule of policy.rules) {
    if (!applies(rule, action, identity, clientId)) continue;
    for (const raw of rule.topics) {
      const pattern = substitute(raw, identity, clientId);
      // Fail closed: an unsafe substitution never grants, and a deny rule with one denies everything
      // (skipping it would let a later, wider allow rule apply: a widening too).
      if (pattern === UNSAFE) {
        if (rule.allow) continue;
        return false;
      }
      if (rule.allow && covers(action, pattern, topicOrFilter)) return true;
      if (!rule.allow && (action === "publish" ? topicMatches(pattern, topicOrFilter) : filtersOverlap(pattern, topicOrFilter))) {
        return false;
      }
    }
  }
  return policy.defaultAllow;
}

function covers(action: AclAction, pattern: string, topicOrFilter: string): boolean {
  return action === "publish" ? topicMatches(pattern, topicOrFilter) : filterCovers(pattern, topicOrFilter);
}

/** Parses the ACL variable (JSON array of rules); throws with a message naming the problem. */
export function parseAclRules(json: string): AclRule[] {
  const value = JSON.parse(json) as unknown;
  if (!Array.isArray(value)) throw new Error("ACL must be a JSON array of rules");
  return value.map((r, i) => {
    const rule = r as Partial<AclRule> & { effect?: string };
    const allow = rule.allow ?? (rule.effect === undefined ? undefined : rule.effect === "allow");
    if (typeof allow !== "boolean") throw new Error(`ACL rule ${i}: needs "allow": true|false`);
    if (!["publish", "subscribe", "all"].includes(rule.action as string)) throw new Error(`ACL rule ${i}: "action" must be publish, subscribe or all`);
    if (!Array.isArray(rule.topics) || !rule.topics.every((t) => typeof t === "string")) throw new Error(`ACL rule ${i}: "topics" must be an array of filters`);
    return { allow, action: rule.action as AclRule["action"], topics: rule.topics, users: rule.users, clients: rule.clients, roles: rule.roles };
  });
}
