/**
 * The dashboard's stylesheet, served as /dashboard/app.css (the CSP allows no inline styles).
 * Nothing may be wider than the screen: long ids and topics wrap anywhere, and below 720 px each
 * table row becomes a card whose cells carry their column's name, so buttons stay in view on a phone.
 */
export const DASHBOARD_CSS = `:root { --bg: #0f172a; --panel: #1e293b; --text: #e2e8f0; --muted: #94a3b8; --accent: #f59e0b; --ok: #22c55e; --bad: #ef4444; --line: #334155; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--text); }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 8px 16px; padding: 12px 16px; border-bottom: 1px solid var(--line); }
header h1 { font-size: 18px; margin: 0; }
nav { display: flex; flex-wrap: wrap; gap: 4px 12px; }
nav a { color: var(--accent); text-decoration: none; }
.muted, header .muted { color: var(--muted); }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 560px), 1fr)); gap: 16px; padding: 16px; }
section { background: var(--panel); border-radius: 8px; padding: 12px 16px; min-width: 0; overflow-wrap: anywhere; }
section.wide { grid-column: 1 / -1; }
section h2 { font-size: 14px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 0 0 8px; }
section h3 { font-size: 13px; color: var(--muted); margin: 12px 0 4px; }
.table-wrap { max-height: 480px; overflow-y: auto; overflow-x: hidden; }
table { width: 100%; border-collapse: collapse; table-layout: auto; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
th { color: var(--muted); font-weight: 500; position: sticky; top: 0; background: var(--panel); white-space: nowrap; }
td:not(:first-child) { min-width: 4.5em; }
td:last-child { white-space: nowrap; width: 1%; }
.actions { display: inline-flex; gap: 4px; }
.stats { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 8px; }
.stat { background: #0b1220; border-radius: 6px; padding: 8px; }
.stat b { display: block; font-size: 22px; color: var(--accent); }
.stat span { display: block; color: var(--muted); font-size: 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 300px), 1fr)); gap: 12px; margin-top: 12px; }
figure { margin: 0; background: #0b1220; border-radius: 6px; padding: 8px; }
figcaption { font-size: 12px; color: var(--muted); margin-bottom: 4px; }
svg { display: block; width: 100%; height: 120px; }
svg .series { fill: none; stroke: var(--accent); stroke-width: 2; vector-effect: non-scaling-stroke; }
svg .series.dashed { stroke: var(--ok); stroke-dasharray: 6 4; }
svg .series.bad { stroke: var(--bad); }
svg .grid { stroke: var(--line); stroke-width: 1; vector-effect: non-scaling-stroke; }
.row { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin-bottom: 8px; }
.pager { justify-content: space-between; margin-top: 8px; }
input, select, button { font: inherit; padding: 4px 8px; border-radius: 4px; border: 1px solid #475569; background: #0b1220; color: var(--text); max-width: 100%; }
input { flex: 1 1 140px; min-width: 0; }
input.check { flex: 0 0 auto; }
button { background: var(--accent); color: #111; border: 0; cursor: pointer; white-space: nowrap; }
button.danger { background: var(--bad); color: #fff; }
button.plain { background: #475569; color: var(--text); }
button.link { background: none; color: var(--text); padding: 0; text-align: left; white-space: normal; overflow-wrap: anywhere; text-decoration: underline dotted; }
button:disabled { opacity: .5; cursor: default; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 8px 0; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #0b1220; padding: 8px; border-radius: 6px; max-height: 320px; overflow-y: auto; }
#log { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; max-height: 320px; overflow-y: auto; }
.ok { color: var(--ok); } .bad { color: var(--bad); }
@media (max-width: 720px) {
  main { padding: 8px; gap: 8px; }
  section { padding: 10px; }
  table.cards thead { display: none; }
  table.cards tr { display: block; border-bottom: 1px solid var(--line); padding: 4px 0; }
  table.cards td { display: flex; gap: 8px; border: 0; padding: 2px 0; width: auto; white-space: normal; }
  table.cards td[data-label]::before { content: attr(data-label); color: var(--muted); flex: 0 0 84px; }
  table.cards td > * { min-width: 0; }
}
`;
