// What a notification says, where it goes (NOTIFY_ROUTES), and how each channel wants it: a mail, a Slack message
// (Block Kit), a Teams message (an Adaptive Card, as Teams workflows' incoming webhooks take it), a signed JSON body.
import type { NotifyRoute } from '../../common/config.ts';

export type Channel = 'mail' | 'slack' | 'teams' | 'webhook';

export interface Notification {
  /** Stable: the same event makes the same notification, delivered once per destination. */
  id: string;
  kind: 'incident' | 'summary' | 'digest';
  /** The domains it is about, for routing. */
  domains: string[];
  severity: 'critical' | 'high' | 'medium' | 'low' | 'info';
  /** One line: a mail's subject, a message's title. */
  title: string;
  /** The body, one line each, plain text. */
  lines: string[];
  /** Where to read on (the dashboard), when its address is set. */
  link?: string | undefined;
  /** The facts, for webhook receivers. */
  data: Record<string, unknown>;
}

export interface Destination {
  channel: Channel;
  /** A mail address or a URL. */
  address: string;
}

export type Routes = NotifyRoute[];

export function parseDestination(text: string): Destination {
  if (text.startsWith('mailto:')) return { channel: 'mail', address: text.slice('mailto:'.length) };
  const colon = text.indexOf(':');
  return { channel: text.slice(0, colon) as Channel, address: text.slice(colon + 1) };
}

/** `*` matches every domain, `*.example.com` its subdomains, anything else that one domain. */
export function domainMatches(pattern: string, domain: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return domain.endsWith(pattern.slice(1));
  return pattern === domain;
}

/** Every destination of the routes that match one of the domains, each once. */
export function destinationsFor(routes: Routes, domains: string[]): string[] {
  const out = new Set<string>();
  for (const route of routes)
    if (domains.some((d) => route.domains.some((p) => domainMatches(p, d)))) for (const to of route.to) out.add(to);
  return [...out];
}

/** What a destination may be shown as (the delivery records, logs): a URL's secret path is left out. */
export function shownAs(destination: string): string {
  const d = parseDestination(destination);
  return d.channel === 'mail' ? destination : `${d.channel}:${urlShownAs(d.address)}`;
}

/** A URL as it may be shown: its origin only (a webhook's path may hold its secret). */
export function urlShownAs(url: string): string {
  try {
    return `${new URL(url).origin}/…`;
  } catch {
    return '(not a URL)';
  }
}

const EMOJI = { critical: '🔴', high: '🟠', medium: '🟡', low: '⚪', info: 'ℹ️' };

/** Text as Slack's mrkdwn shows it literally: its three control characters escaped. */
const slackText = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function slackBody(n: Notification): unknown {
  const text = [`*${slackText(n.title)}*`, ...n.lines.map(slackText)].join('\n');
  return {
    // The fallback (notifications, previews) is mrkdwn too: a reporter's name could hold <!channel>.
    text: `${EMOJI[n.severity]} ${slackText(n.title)}`,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `${EMOJI[n.severity]} ${text}`.slice(0, 3000) } },
      ...(n.link
        ? [{ type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'Open' }, url: n.link }] }]
        : []),
    ],
  };
}

/** A line of a Teams card as plain text: a RichTextBlock's TextRun is never read as markdown (a TextBlock is). */
const plainRun = (text: string, bold = false) => ({
  type: 'RichTextBlock',
  inlines: [{ type: 'TextRun', text, ...(bold ? { weight: 'Bolder' } : {}) }],
});

export function teamsBody(n: Notification): unknown {
  return {
    type: 'message',
    attachments: [
      {
        contentType: 'application/vnd.microsoft.card.adaptive',
        content: {
          $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
          type: 'AdaptiveCard',
          version: '1.4',
          body: [plainRun(`${EMOJI[n.severity]} ${n.title}`, true), ...n.lines.map((line) => plainRun(line))],
          ...(n.link ? { actions: [{ type: 'Action.OpenUrl', title: 'Open', url: n.link }] } : {}),
        },
      },
    ],
  };
}

export function webhookBody(n: Notification): unknown {
  return {
    notification: {
      id: n.id,
      kind: n.kind,
      severity: n.severity,
      domains: n.domains,
      title: n.title,
      lines: n.lines,
      link: n.link ?? null,
      ...n.data,
    },
  };
}

export function mailText(n: Notification): string {
  return [...n.lines, ...(n.link ? ['', n.link] : []), '', '-- ', 'tlsrpt-pipeline'].join('\n');
}
