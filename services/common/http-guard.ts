// The one entry point of every HTTP server we run: raw request targets are parsed by functions that cannot
// throw, and whatever a handler throws (synchronously or later) becomes a response, never a dead process.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from './logger.ts';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/** The path and query of a request target, or undefined when it is not a URL (`//[`, `/\[`, `http://[/`...). */
export function parseTarget(raw: string | undefined): { pathname: string; searchParams: URLSearchParams } | undefined {
  const target = raw ?? '/';
  try {
    // Origin-form (`/path?query`) is put behind a fixed origin, so `//host:port/...` stays a path rather than
    // being read as an authority; absolute-form (RFC 9112 §3.2.2) is parsed as it is.
    const url = target.startsWith('/') ? new URL(`http://h${target}`) : new URL(target);
    return { pathname: url.pathname, searchParams: url.searchParams };
  } catch {
    return undefined;
  }
}

/** decodeURIComponent that answers undefined instead of throwing on `%`, `%zz`, overlong or surrogate UTF-8. */
export function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** A JSON answer, unless one was already sent (then the connection is closed: the client sees it cut off). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/**
 * Wraps a handler so that no request can end the process: a throw or a rejected promise is logged with its stack
 * and answered 500 (`message` says what the client should do).
 */
export function guarded(
  handler: Handler,
  logger: Logger,
  message = 'internal error; retry later',
): (req: IncomingMessage, res: ServerResponse) => void {
  const fail = (res: ServerResponse, err: unknown): void => {
    logger.error({ err }, 'request handler failed');
    try {
      sendJson(res, 500, { error: 'internal', message });
    } catch (sendErr) {
      logger.error({ err: sendErr }, 'could not answer a failed request');
      res.destroy();
    }
  };
  return (req, res) => {
    try {
      const p = handler(req, res);
      if (p) p.catch((err: unknown) => fail(res, err));
    } catch (err) {
      fail(res, err);
    }
  };
}
