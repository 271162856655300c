// The page shell every dashboard page shares: navigation, who is signed in, the sign-out form, and the style sheet.
import type { Principal } from '../auth.ts';
import { html, type Html, type Table } from './html.ts';

export interface Page {
  title: string;
  body: Html;
  /** Tables this page can export (?export=<id>&format=csv|json). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each table has its own row type
  tables?: Array<Table<any>>;
  status?: number;
}

const NAV: Array<[string, string, boolean]> = [
  ['/ui/issues', 'Issues', false],
  ['/ui/domains', 'Domains', false],
  ['/ui/reports', 'Reports', false],
  ['/ui/alerts', 'Alerts', false],
  ['/ui/reporters', 'Reporters', false],
  ['/ui/rejects', 'Rejects', true],
  ['/ui/forwards', 'Forwards', true],
  ['/ui/mta-sts', 'MTA-STS', true],
];

export function layout(page: Page, principal: Principal | undefined, current: string): string {
  const nav = principal
    ? html`<nav aria-label="Main">
        <ul>
          ${NAV.filter(([, , admin]) => !admin || !principal.domains).map(
            ([href, label]) =>
              html`<li>
                <a href="${href}" ${current.startsWith(href) ? html` aria-current="page"` : ''}>${label}</a>
              </li>`,
          )}
        </ul>
        <form method="post" action="/ui/sign-out" class="sign-out">
          <span>${principal.name}</span> <button type="submit">Sign out</button>
        </form>
      </nav>`
    : '';
  return `<!doctype html>${
    html`<html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${page.title} · TLS reports</title>
        <link rel="stylesheet" href="/ui/app.css" />
        <link rel="icon" href="/ui/favicon.svg" type="image/svg+xml" />
      </head>
      <body>
        <a class="skip" href="#main">Skip to content</a>
        <header><a class="brand" href="/ui/issues">TLS reports</a>${nav}</header>
        <main id="main">${page.body}</main>
        <footer>
          <p>tlsrpt-pipeline · SMTP TLS reports (RFC 8460) · <a href="/openapi.json">API</a></p>
        </footer>
      </body>
    </html>`.text
  }`;
}

/** The style sheet: system fonts, AA contrast, tables that scroll on a phone. */
export const STYLES = `
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;background:#fafafa}
a{color:#0b57d0}a:focus,button:focus,input:focus,select:focus{outline:3px solid #f9a825;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:#fff;padding:4px 8px;z-index:2}
header{display:flex;flex-wrap:wrap;align-items:center;gap:8px 24px;padding:8px 16px;background:#123;color:#fff}
header a{color:#fff}.brand{font-weight:700;text-decoration:none}
nav{display:flex;flex-wrap:wrap;align-items:center;gap:8px 16px;flex:1}
nav ul{display:flex;flex-wrap:wrap;gap:4px 16px;list-style:none;margin:0;padding:0}
nav a[aria-current=page]{font-weight:700;text-decoration-thickness:3px}
.sign-out{margin-left:auto;display:flex;gap:8px;align-items:center}
button,input,select{font:inherit;padding:6px 10px;border:1px solid #555;border-radius:4px;background:#fff;color:#1b1b1b}
button{cursor:pointer;background:#e8eef7}
main{max-width:1200px;margin:0 auto;padding:16px}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}h3{font-size:1.05rem}
.table-head{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;gap:8px}
.exports{margin:0;font-size:.9rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #ddd;vertical-align:top}
th{background:#eef1f5}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:.85rem;font-weight:600}
.badge-ok{background:#e3f1e4;color:#1b5e20}.badge-degraded{background:#fff1d6;color:#7a4300}
.badge-failing{background:#fde2e2;color:#9b1c1c}.badge-unknown{background:#eee;color:#333}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin:12px 0}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 12px}
.card b{display:block;font-size:1.4rem}
.chart{background:#fff;border:1px solid #ddd;border-radius:6px;overflow-x:auto;margin:0}
.chart svg{display:block;width:100%;height:auto}
.diagnosis{background:#fff;border:1px solid #ddd;border-left:4px solid #c62828;border-radius:6px;padding:8px 16px;margin:12px 0}
.diagnosis.ok{border-left-color:#2e7d32}
.incident{background:#fff;border:1px solid #ddd;border-left:6px solid #9e9e9e;border-radius:6px;padding:4px 16px 8px;margin:12px 0}
.incident h3{margin:8px 0 4px}
.severity-critical{border-left-color:#b71c1c}.severity-high{border-left-color:#e65100}.severity-medium{border-left-color:#f9a825}
.actions{display:flex;flex-wrap:wrap;gap:8px}.actions form.inline{margin:4px 0}
.posture{background:#f3f6fb;padding:6px 10px;border-radius:4px}.posture-critical{background:#fdecec}
.diagnosis pre,pre.json{background:#f3f3f3;padding:8px;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
code{overflow-wrap:anywhere}
td,th,p,li,h1,h2,h3{overflow-wrap:break-word}
pre{white-space:pre-wrap;overflow-wrap:anywhere}
.muted{color:#555}.warn{border-left:4px solid #b26a00;background:#fff4e5;padding:.5em 1em}.error{color:#9b1c1c;font-weight:600}
form.inline{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin:8px 0}
label{display:flex;flex-direction:column;font-size:.9rem}
input{max-width:100%}fieldset{max-width:100%;border:1px solid #bbb;border-radius:4px;padding:6px 12px}fieldset label{flex-direction:row;align-items:center;gap:6px}
.pager{display:flex;gap:16px;margin:12px 0}
.periods{display:flex;gap:12px;align-self:center}.periods a.current{font-weight:700;text-decoration:none;color:#1b1b1b}
footer{padding:16px;color:#555;font-size:.85rem;text-align:center}
@media (max-width:600px){.chart svg{width:720px}main{padding:8px}th,td{padding:4px 6px}h1{font-size:1.3rem}}
`;
