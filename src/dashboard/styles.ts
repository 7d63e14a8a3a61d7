/** The dashboard's stylesheet, served as /dashboard/app.css (the CSP allows no inline styles). */
export const DASHBOARD_CSS = `:root { --bg: #0f172a; --panel: #1e293b; --text: #e2e8f0; --muted: #94a3b8; --accent: #f59e0b; --ok: #22c55e; --bad: #ef4444; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--text); }
header { display: flex; align-items: baseline; gap: 16px; padding: 12px 20px; border-bottom: 1px solid #334155; }
header h1 { font-size: 18px; margin: 0; }
header .muted { color: var(--muted); }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; padding: 16px 20px; }
section { background: var(--panel); border-radius: 8px; padding: 12px 16px; overflow: auto; max-height: 420px; }
section h2 { font-size: 14px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 0 0 8px; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #334155; white-space: nowrap; }
th { color: var(--muted); font-weight: 500; }
.stats { display: grid; grid-template-columns: repeat(3, 1fr); gap: 8px; }
.stat { background: #0b1220; border-radius: 6px; padding: 8px; }
.stat b { display: block; font-size: 22px; color: var(--accent); }
.stat span { color: var(--muted); font-size: 12px; }
form { display: flex; flex-wrap: wrap; gap: 6px; margin-bottom: 8px; }
input, select, button { font: inherit; padding: 4px 8px; border-radius: 4px; border: 1px solid #475569; background: #0b1220; color: var(--text); }
input { flex: 1; min-width: 120px; }
input.check { flex: 0; min-width: 0; }
button { background: var(--accent); color: #111; border: 0; cursor: pointer; }
button:disabled { opacity: .5; cursor: default; }
#log { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap; }
.ok { color: var(--ok); } .bad { color: var(--bad); }
`;
