// Dashboard sessions: an API token is exchanged once for a random session id, kept in an HttpOnly, Secure,
// SameSite=Strict cookie. Redis holds only the SHA-256 of the id, mapped to the token's hash, with an absolute expiry;
// each request finds the token again, so a token taken out of API_TOKENS ends its sessions.
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Redis } from 'ioredis';

export const SESSION_COOKIE = 'tlsrpt_session';

export interface SessionStore {
  /** A new session for the token with this hash (hex); returns the id to put in the cookie. */
  create(tokenHash: string): Promise<string>;
  /** The token hash of a live session, or undefined. */
  find(id: string): Promise<string | undefined>;
  destroy(id: string): Promise<void>;
  readonly ttlSeconds: number;
}

const digest = (id: string): string => createHash('sha256').update(id).digest('hex');

export function redisSessions(redis: Redis, prefix: string, ttlSeconds: number): SessionStore {
  const key = (id: string): string => `${prefix}:ui-session:${digest(id)}`;
  return {
    ttlSeconds,
    create: async (tokenHash) => {
      const id = randomBytes(32).toString('base64url');
      await redis.set(key(id), tokenHash, 'EX', ttlSeconds);
      return id;
    },
    find: async (id) => (/^[A-Za-z0-9_-]{43}$/.test(id) ? ((await redis.get(key(id))) ?? undefined) : undefined),
    destroy: async (id) => {
      await redis.del(key(id));
    },
  };
}

/** The value of one cookie from the Cookie header (first occurrence), or undefined. */
/**
 * A form POST from our own pages: the browser's Origin (or Sec-Fetch-Site) must name this host, so no other site can
 * sign a visitor in or out (login CSRF included). Clients that send neither (curl) are not browsers: allowed.
 */
export function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (typeof origin === 'string') {
    try {
      return origin !== 'null' && new URL(origin).host === req.headers.host;
    } catch {
      return false;
    }
  }
  const site = req.headers['sec-fetch-site'];
  return site === undefined || site === 'same-origin' || site === 'none';
}
