/**
 * Inbound QoS 2 messages between PUBREC and PUBREL (`inq2`), by packet id: a PUBLISH resent with
 * the same id is not routed again [MQTT-4.3.3-10], and `routed` records whether the first one was.
 *
 * After PUBREL the row stays, released, for the newest RELEASED_IDS_KEPT packet ids: a PUBREL the
 * client resends (its PUBCOMP was lost with a connection) is then recognised and answered PUBCOMP
 * 0x00 rather than 0x92 (Packet Identifier not found). The `routed` column holds the state: 0 being
 * routed, 1 routed and awaiting PUBREL, 2 and up released, numbered in release order. Keeping them
 * costs no row in the usual flow: releasing updates the row that PUBREL used to delete, and a new
 * packet id takes over the oldest released row once RELEASED_IDS_KEPT are kept (only a release
 * beyond that bound, after a burst awaiting PUBREL, deletes the oldest: one more row).
 */
import { SqliteTable } from "./schema";

/** Packet ids kept after PUBREL to answer a repeated PUBREL PUBCOMP 0x00. */
export const RELEASED_IDS_KEPT = 64;

/** The first `routed` value of a released row; later releases count up from it. */
const FIRST_RELEASE = 2;

/** What a PUBREL found: the message awaiting it, one released already (a resent PUBREL), or none. */
export type PubrelMatch = "released" | "repeated" | "unknown";

export interface InboundQos2Table {
  /** The message awaiting PUBREL under this packet id (a released one is not). */
  inboundQos2(packetId: number): { msgId: string; routed: boolean } | undefined;
  /** How many inbound QoS 2 messages await PUBREL (checked on every QoS 1/2 PUBLISH). */
  inboundQos2Count(): number;
  /** Records a message (or replaces the one with this packet id, awaiting PUBREL or released). */
  putInboundQos2(packetId: number, msgId: string, routed: boolean): void;
  /** Marks an inbound QoS 2 message routed, if its row still awaits PUBREL with this message id. */
  markInboundQos2Routed(packetId: number, msgId: string): void;
  /** PUBREL: releases the message awaiting it, kept as one of the newest RELEASED_IDS_KEPT released. */
  releaseInboundQos2(packetId: number): PubrelMatch;
}

export interface InboundQos2Part extends InboundQos2Table {
  clear(): void;
}

export class SqliteInboundQos2 extends SqliteTable implements InboundQos2Part {
  /** The packet ids awaiting PUBREL, loaded on first use: counted in memory, not with SQL per PUBLISH. */
  private ids?: Set<number>;
  /** Released rows kept and the next release number, loaded on first use. */
  private releases?: { kept: number; next: number };

  inboundQos2(packetId: number): { msgId: string; routed: boolean } | undefined {
    if (!this.schema.has("inq2")) return undefined;
    const rows = this.sql
      .exec<{ msg_id: string; routed: number }>(
        `SELECT msg_id, routed FROM inq2 WHERE packet_id = ? AND routed < ?`,
        packetId,
        FIRST_RELEASE,
      )
      .toArray();
    const [row] = rows;
    return row ? { msgId: row.msg_id, routed: row.routed === 1 } : undefined;
  }

  private packetIds(): Set<number> {
    if (!this.ids) {
      if (!this.schema.has("inq2")) return (this.ids = new Set());
      const rows = this.sql
        .exec<{ packet_id: number }>(`SELECT packet_id FROM inq2 WHERE routed < ?`, FIRST_RELEASE)
        .toArray();
      this.ids = new Set(rows.map((r) => r.packet_id));
    }
    return this.ids;
  }

  private released(): { kept: number; next: number } {
    if (!this.releases) {
      if (!this.schema.has("inq2")) return (this.releases = { kept: 0, next: FIRST_RELEASE });
      const row = this.sql
        .exec<{ kept: number; last: number | null }>(
          `SELECT COUNT(*) AS kept, MAX(routed) AS last FROM inq2 WHERE routed >= ?`,
          FIRST_RELEASE,
        )
        .one();
      this.releases = { kept: row.kept, next: (row.last ?? FIRST_RELEASE - 1) + 1 };
    }
    return this.releases;
  }

  inboundQos2Count(): number {
    return this.packetIds().size;
  }

  putInboundQos2(packetId: number, msgId: string, routed: boolean): void {
    this.schema.ensure("inq2");
    const state = routed ? 1 : 0;
    const existing = this.sql
      .exec<{ routed: number }>(`SELECT routed FROM inq2 WHERE packet_id = ?`, packetId)
      .toArray()[0];
    const released = this.released();
    if (existing) {
      this.sql.exec(`UPDATE inq2 SET msg_id = ?, routed = ? WHERE packet_id = ?`, msgId, state, packetId);
      if (existing.routed >= FIRST_RELEASE) released.kept--;
    } else if (released.kept >= RELEASED_IDS_KEPT) {
      // The oldest released row becomes this message's: the bound kept without a row deleted.
      this.sql.exec(
        `UPDATE inq2 SET packet_id = ?, msg_id = ?, routed = ?
         WHERE packet_id = (SELECT packet_id FROM inq2 WHERE routed >= ? ORDER BY routed LIMIT 1)`,
        packetId,
        msgId,
        state,
        FIRST_RELEASE,
      );
      released.kept--;
    } else {
      this.sql.exec(`INSERT INTO inq2 (packet_id, msg_id, routed) VALUES (?, ?, ?)`, packetId, msgId, state);
    }
    this.packetIds().add(packetId);
  }

  markInboundQos2Routed(packetId: number, msgId: string): void {
    if (!this.schema.has("inq2")) return;
    this.sql.exec(`UPDATE inq2 SET routed = 1 WHERE packet_id = ? AND msg_id = ? AND routed = 0`, packetId, msgId);
  }

  releaseInboundQos2(packetId: number): PubrelMatch {
    if (!this.schema.has("inq2")) return "unknown";
    if (!this.packetIds().has(packetId)) {
      const kept = this.sql.exec(`SELECT 1 FROM inq2 WHERE packet_id = ?`, packetId).toArray().length > 0;
      return kept ? "repeated" : "unknown";
    }
    const released = this.released();
    if (released.kept >= RELEASED_IDS_KEPT) {
      // More were released than new ids came since (a burst awaited PUBREL): the oldest one goes.
      this.sql.exec(
        `DELETE FROM inq2 WHERE packet_id = (SELECT packet_id FROM inq2 WHERE routed >= ? ORDER BY routed LIMIT 1)`,
        FIRST_RELEASE,
      );
      released.kept--;
    }
    this.sql.exec(`UPDATE inq2 SET routed = ? WHERE packet_id = ?`, released.next++, packetId);
    released.kept++;
    this.packetIds().delete(packetId);
    return "released";
  }

  clear(): void {
    this.ids = undefined;
    this.releases = undefined;
    if (this.schema.has("inq2")) this.sql.exec(`DELETE FROM inq2`);
  }
}
