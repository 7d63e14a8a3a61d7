/**
 * Topic aliases of the live connection in both directions (`alias_in`, `alias_out`): they live as
 * long as one network connection [MQTT-3.3.2-7], and are kept here so they survive hibernation.
 */
import { SqliteTable } from "./schema";

export interface TopicAliasTable {
  clearTopicAliases(): void;
  /** The topic the client bound to this alias. */
  topicAliasIn(alias: number): string | undefined;
  putTopicAliasIn(alias: number, topic: string): void;
  /** The aliases we bound towards the client, by topic (a copy). */
  topicAliasesOut(): Map<string, number>;
  putTopicAliasOut(topic: string, alias: number): void;
}

export class SqliteTopicAliases extends SqliteTable implements TopicAliasTable {
  clearTopicAliases(): void {
    if (this.schema.has("alias_in")) this.sql.exec(`DELETE FROM alias_in`);
    if (this.schema.has("alias_out")) this.sql.exec(`DELETE FROM alias_out`);
  }

  topicAliasIn(alias: number): string | undefined {
    if (!this.schema.has("alias_in")) return undefined;
    const rows = this.sql.exec<{ topic: string }>(`SELECT topic FROM alias_in WHERE alias = ?`, alias).toArray();
    return rows[0]?.topic;
  }

  putTopicAliasIn(alias: number, topic: string): void {
    this.schema.ensure("alias_in");
    this.sql.exec(`INSERT OR REPLACE INTO alias_in (alias, topic) VALUES (?, ?)`, alias, topic);
  }

  topicAliasesOut(): Map<string, number> {
    const map = new Map<string, number>();
    if (!this.schema.has("alias_out")) return map;
    for (const r of this.sql.exec<{ topic: string; alias: number }>(`SELECT topic, alias FROM alias_out`)) {
      map.set(r.topic, r.alias);
    }
    return map;
  }

  putTopicAliasOut(topic: string, alias: number): void {
    this.schema.ensure("alias_out");
    this.sql.exec(`INSERT OR REPLACE INTO alias_out (topic, alias) VALUES (?, ?)`, topic, alias);
  }
}
