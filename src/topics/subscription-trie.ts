/** Subscription index: a trie over topic levels, one entry per (filter, client). */
import type { QoS, SubscriptionOptions } from "../protocol/message";

interface TrieNode {
  children: Map<string, TrieNode>;
  subscribers: Map<string, SubscriptionOptions>;
  /** Shared subscriptions at this filter: share name -> members [MQTT-4.8.2]. */
  groups: Map<string, Map<string, SubscriptionOptions>>;
}

/** A shared subscription group that matched a topic: one member gets each message. */
export interface GroupMatch {
  /** The full filter, `$share/{group}/{filter}`. */
  shareFilter: string;
  members: [clientId: string, options: SubscriptionOptions][];
}

/** What one client gets for one topic: a single copy [MQTT-3.3.5-1]. */
export interface ClientMatch {
  qos: QoS;
  retainAsPublished: boolean;
  subscriptionIds: number[];
}

function newNode(): TrieNode {
  return { children: new Map(), subscribers: new Map(), groups: new Map() };
}

export class SubscriptionTrie {
  private readonly root = newNode();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /**
   * Adds or replaces a client's subscription; returns true when it is new. With `group`, the
   * subscription is a member of the shared subscription `$share/{group}/{filter}`.
   */
  add(filter: string, clientId: string, options: SubscriptionOptions, group?: string): boolean {
    let node = this.root;
    for (const level of filter.split("/")) {
      let next = node.children.get(level);
      if (!next) node.children.set(level, (next = newNode()));
      node = next;
    }
    let members = node.subscribers;
    if (group !== undefined) {
      members = node.groups.get(group) ?? new Map();
      node.groups.set(group, members);
    }
    const isNew = !members.has(clientId);
    members.set(clientId, options);
    if (isNew) this.count++;
    return isNew;
  }

  /** Removes a client's subscription (or shared membership); returns true when one existed. */
  remove(filter: string, clientId: string, group?: string): boolean {
    const path: [TrieNode, string][] = [];
    let node = this.root;
    for (const level of filter.split("/")) {
      const next = node.children.get(level);
      if (!next) return false;
      path.push([node, level]);
      node = next;
    }
    if (group === undefined) {
      if (!node.subscribers.delete(clientId)) return false;
    } else {
      const members = node.groups.get(group);
      if (!members?.delete(clientId)) return false;
      if (members.size === 0) node.groups.delete(group);
    }
    this.count--;
    // Prune empty branches so the trie does not grow with churn.
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, level] = path[i]!;
      const child = parent.children.get(level)!;
      if (child.subscribers.size > 0 || child.children.size > 0 || child.groups.size > 0) break;
      parent.children.delete(level);
    }
    return true;
  }

  /**
   * Every client with a subscription matching `topic`, merged to one entry per client at the
   * highest matching QoS, carrying every matching subscription identifier [MQTT-3.3.4-3..5].
   * `origin` is the publisher: its own No Local subscriptions are skipped [MQTT-3.8.3-3].
   */
  match(topic: string, origin?: string): Map<string, ClientMatch> {
    return this.matchAll(topic, origin).clients;
  }

  /** Non-shared matches per client, and every shared group whose filter matches. */
  matchAll(topic: string, origin?: string): { clients: Map<string, ClientMatch>; groups: GroupMatch[] } {
    const result = new Map<string, ClientMatch>();
    const groups: GroupMatch[] = [];
    const levels = topic.split("/");
    const dollar = topic.startsWith("$");
    const collect = (node: TrieNode, filter: string) => {
      for (const [group, members] of node.groups) {
        groups.push({ shareFilter: `$share/${group}/${filter}`, members: [...members] });
      }
      for (const [clientId, options] of node.subscribers) {
        if (options.noLocal && clientId === origin) continue;
        const current = result.get(clientId);
        if (!current) {
          result.set(clientId, {
            qos: options.qos,
            retainAsPublished: options.retainAsPublished,
            subscriptionIds: options.subscriptionId ? [options.subscriptionId] : [],
          });
        } else {
          current.qos = Math.max(current.qos, options.qos) as QoS;
          current.retainAsPublished ||= options.retainAsPublished;
          if (options.subscriptionId) current.subscriptionIds.push(options.subscriptionId);
        }
      }
    };
    const walk = (node: TrieNode, depth: number, path: string) => {
      // [MQTT-4.7.2-1] a first-level wildcard does not match a topic that begins with '$'
      const wildcardsAllowed = !(depth === 0 && dollar);
      if (wildcardsAllowed) {
        const hash = node.children.get("#");
        if (hash) collect(hash, depth === 0 ? "#" : `${path}/#`); // '#' matches this level and below, even nothing
      }
      if (depth === levels.length) {
        collect(node, path);
        return;
      }
      const level = levels[depth]!; // depth < levels.length here
      const exact = node.children.get(level);
      if (exact) walk(exact, depth + 1, depth === 0 ? level : `${path}/${level}`);
      if (wildcardsAllowed) {
        const plus = node.children.get("+");
        if (plus) walk(plus, depth + 1, depth === 0 ? "+" : `${path}/+`);
      }
    };
    walk(this.root, 0, "");
    return { clients: result, groups };
  }
}
