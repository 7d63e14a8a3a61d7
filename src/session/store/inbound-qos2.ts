/**
 * Inbound QoS 2 messages between PUBREC and PUBREL (`inq2`), by packet id: a PUBLISH resent with
 * the same id is not routed again [MQTT-4.3.3-10], and `routed` records whether the first one was.
 */
import { SqliteTable } from "./schema";

export interface InboundQos2Table {
  inboundQos2(packetId: number): { msgId: string; routed: boolean } | undefined;
  /** How many inbound QoS 2 messages await PUBREL (checked on every QoS 1/2 PUBLISH). */
  inboundQos2Count(): number;
  /** Records a message (or replaces the one with this packet id). */
  putInboundQos2(packetId: number, msgId: string, routed: boolean): void;
  /** Marks an inbound QoS 2 message routed, if its row is still there with this message id. */
  markInboundQos2Routed(packetId: number, msgId: string): void;
  /** False when there was none with this packet id. */
  deleteInboundQos2(packetId: number): boolean;
}

export interface InboundQos2Part extends InboundQos2Table {
  clear(): void;
}

export class SqliteInboundQos2 extends SqliteTable implements InboundQos2Part {
  /** The packet ids in the table, loaded on first use: counted in memory, not with SQL per PUBLISH. */
  private ids?: Set<number>;

  inboundQos2(packetId: number): { msgId: string; routed: boolean } | undefined {
    if (!this.schema.has("inq2")) return undefined;
    const rows = this.sql
      .exec<{ msg_id: string; routed: number }>(`SELECT msg_id, routed FROM inq2 WHERE packet_id = ?`, packetId)
      .toArray();
    const [row] = rows;
    return row ? { msgId: row.msg_id, routed: row.routed === 1 } : undefined;
  }

  private packetIds(): Set<number> {
    if (!this.ids) {
      if (!this.schema.has("inq2")) return (this.ids = new Set());
      const rows = this.sql.exec<{ packet_id: number }>(`SELECT packet_id FROM inq2`).toArray();
      this.ids = new Set(rows.map((r) => r.packet_id));
    }
    return this.ids;
  }

  inboundQos2Count(): number {
    return this.packetIds().size;
  }

  putInboundQos2(packetId: number, msgId: string, routed: boolean): void {
    this.schema.ensure("inq2");
    this.sql.exec(
      `INSERT OR REPLACE INTO inq2 (packet_id, msg_id, routed) VALUES (?, ?, ?)`,
      packetId,
      msgId,
      routed ? 1 : 0,
    );
    this.packetIds().add(packetId);
  }

  markInboundQos2Routed(packetId: number, msgId: string): void {
    if (!this.schema.has("inq2")) return;
    this.sql.exec(`UPDATE inq2 SET routed = 1 WHERE packet_id = ? AND msg_id = ? AND routed = 0`, packetId, msgId);
  }

  deleteInboundQos2(packetId: number): boolean {
    if (!this.schema.has("inq2")) return false;
    const deleted = this.sql.exec(`DELETE FROM inq2 WHERE packet_id = ?`, packetId).rowsWritten > 0;
    this.packetIds().delete(packetId);
    return deleted;
  }

  clear(): void {
    this.ids = undefined;
    if (this.schema.has("inq2")) this.sql.exec(`DELETE FROM inq2`);
  }
}
