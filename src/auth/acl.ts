/**
 * Authorization: rules that allow or deny publish and subscribe on topic filters, per user, client
 * or role, with `%u` (username) and `%c` (client id) substitution. Evaluated in order; the first
 * rule that applies decides; when none applies the default decides.
 */
import { filterCovers, filtersOverlap, topicMatches } from "../protocol/topic";

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
  /**
   * v5 refusals of a SUBSCRIBE or PUBLISH say 0x80 "Unspecified error" instead of 0x87 "Not
   * authorized", for operators who do not want to reveal that a topic is protected (§3.9.3 lists 0x80
   * for a server that "does not wish to reveal the reason").
   */
  hideDenialReason?: boolean;
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
  if (/[+#/\u0000]/.test(value)) return "holds +, #, / or U+0000";
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
 * How much of a subscription the ACL grants. "full": every topic the filter can match may be read,
 * so delivery needs no check. "partial": some may (an allow rule overlaps the filter and no deny rule
 * covers the part it left), so each delivered message is checked against the reader's rights
 * (`isAllowed` on its topic name). "refused": none may. A deny rule therefore narrows what a wildcard
 * subscriber receives instead of refusing the wildcard (Mosquitto's model).
 */
export type SubscribeGrant = "full" | "partial" | "refused";

const GRANT_ORDER: SubscribeGrant[] = ["refused", "partial", "full"];

/**
 * May this identity publish to `topic` (a topic name), or subscribe to `filter`? For a topic name,
 * "subscribe" is the right to read it: the check each message to a partially granted subscription
 * passes on delivery. For a filter with wildcards it is true when the grant is at least partial.
 */
export function isAllowed(
  policy: AclPolicy,
  identity: Identity,
  clientId: string,
  action: AclAction,
  topicOrFilter: string,
): boolean {
  if (action === "subscribe") return subscribeGrant(policy, identity, clientId, topicOrFilter) !== "refused";
  const grants = identity.grants?.publish;
  if (grants && !grants.some((g) => matchesSafely(g, identity, clientId, topicOrFilter))) return false;
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
      if (topicMatches(pattern, topicOrFilter)) return rule.allow;
    }
  }
  return policy.defaultAllow;
}

function matchesSafely(grant: string, identity: Identity, clientId: string, topic: string): boolean {
  const pattern = substitute(grant, identity, clientId);
  return pattern !== UNSAFE && topicMatches(pattern, topic);
}

/**
 * The grant for a SUBSCRIBE to `filter` (the filter of a shared subscription, without `$share/g/`).
 * Rules are read in order as for a topic name, the first one to match a topic decides it; a filter
 * stands for all its topics at once, so the walk records whether earlier rules allowed or denied some
 * of them. Credential grants (JWT, hook) are allow-only rules ending in a deny; both must grant.
 */
export function subscribeGrant(
  policy: AclPolicy,
  identity: Identity,
  clientId: string,
  filter: string,
): SubscribeGrant {
  const grants = identity.grants?.subscribe;
  const byCredential = grants ? grantOfGrants(grants, identity, clientId, filter) : "full";
  if (byCredential === "refused") return "refused";
  const byRules = grantOfRules(policy, identity, clientId, filter);
  return GRANT_ORDER[Math.min(GRANT_ORDER.indexOf(byCredential), GRANT_ORDER.indexOf(byRules))]!;
}

function grantOfGrants(grants: string[], identity: Identity, clientId: string, filter: string): SubscribeGrant {
  let some = false;
  for (const g of grants) {
    const pattern = substitute(g, identity, clientId);
    if (pattern === UNSAFE) continue; // grants nothing
    if (filterCovers(pattern, filter)) return "full";
    if (filtersOverlap(pattern, filter)) some = true;
  }
  return some ? "partial" : "refused";
}

function grantOfRules(policy: AclPolicy, identity: Identity, clientId: string, filter: string): SubscribeGrant {
  let allowedSome = false;
  let deniedSome = false;
  for (const rule of policy.rules) {
    if (!applies(rule, "subscribe", identity, clientId)) continue;
    for (const raw of rule.topics) {
      const pattern = substitute(raw, identity, clientId);
      // Fail closed as for names: an unsafe allow pattern covers nothing, an unsafe deny pattern all.
      if (pattern === UNSAFE) {
        if (rule.allow) continue;
        return allowedSome ? "partial" : "refused";
      }
      if (filterCovers(pattern, filter, rule.allow))
        return rule.allow ? (deniedSome ? "partial" : "full") : allowedSome ? "partial" : "refused";
      if (!filtersOverlap(pattern, filter, rule.allow)) continue;
      if (rule.allow) allowedSome = true;
      else deniedSome = true;
    }
  }
  if (policy.defaultAllow) return deniedSome ? "partial" : "full";
  return allowedSome ? "partial" : "refused";
}

/** Parses the ACL variable (JSON array of rules); throws with a message naming the problem. */
export function parseAclRules(json: string): AclRule[] {
  const value = JSON.parse(json) as unknown;
  if (!Array.isArray(value)) throw new Error("ACL must be a JSON array of rules");
  return value.map((r, i) => {
    const rule = r as Partial<AclRule> & { effect?: string };
    const allow = rule.allow ?? (rule.effect === undefined ? undefined : rule.effect === "allow");
    if (typeof allow !== "boolean") throw new Error(`ACL rule ${i}: needs "allow": true|false`);
    if (!["publish", "subscribe", "all"].includes(rule.action as string))
      throw new Error(`ACL rule ${i}: "action" must be publish, subscribe or all`);
    if (!Array.isArray(rule.topics) || !rule.topics.every((t) => typeof t === "string"))
      throw new Error(`ACL rule ${i}: "topics" must be an array of filters`);
    return {
      allow,
      action: rule.action as AclRule["action"],
      topics: rule.topics,
      users: rule.users,
      clients: rule.clients,
      roles: rule.roles,
    };
  });
}
