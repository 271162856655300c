// Bearer tokens from configuration, compared in constant time against SHA-256 hashes (a token given in clear in
// the configuration is hashed on load), each optionally limited to a list of policy domains.
import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

export interface Principal {
  name: string;
  /** Policy domains this token may read; undefined: every domain, and the operators' endpoints. */
  domains: Set<string> | undefined;
}

const tokenSchema = z
  .object({
    name: z.string().min(1),
    sha256: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/)
      .optional(),
    token: z.string().min(8).optional(),
    domains: z.array(z.string().min(1)).optional(),
  })
  .refine((t) => (t.sha256 === undefined) !== (t.token === undefined), 'give exactly one of sha256 and token');

export interface StoredToken {
  name: string;
  hash: Buffer;
  domains: Set<string> | undefined;
}

export const DEV_TOKEN = 'dev-token';

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

export function parseTokens(json: string, development: boolean): StoredToken[] {
  if (json.trim() === '') {
    return development ? [{ name: 'development', hash: sha256(DEV_TOKEN), domains: undefined }] : [];
  }
  const list = z.array(tokenSchema).parse(JSON.parse(json));
  return list.map((t) => ({
    name: t.name,
    hash: t.sha256 ? Buffer.from(t.sha256, 'hex') : sha256(t.token ?? ''),
    domains: t.domains ? new Set(t.domains.map((d) => d.toLowerCase().replace(/\.$/, ''))) : undefined,
  }));
}

/** The principal for an Authorization header, or undefined. Every stored token is compared, in constant time. */
export function authenticate(tokens: StoredToken[], header: string | undefined): Principal | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m ? byHash(tokens, sha256(m[1] ?? ''))?.principal : undefined;
}

/** A token as typed into the dashboard's sign-in form: its principal and hash (what a session keeps), or undefined. */
export function authenticateToken(
  tokens: StoredToken[],
  token: string,
): { principal: Principal; hash: string } | undefined {
  const found = byHash(tokens, sha256(token.trim()));
  return found && { principal: found.principal, hash: found.hash.toString('hex') };
}

/** The principal of a session's token hash (hex), while that token is still configured. */
export function principalOfHash(tokens: StoredToken[], hex: string): Principal | undefined {
  return /^[0-9a-f]{64}$/.test(hex) ? byHash(tokens, Buffer.from(hex, 'hex'))?.principal : undefined;
}

function byHash(tokens: StoredToken[], presented: Buffer): { principal: Principal; hash: Buffer } | undefined {
  let found: StoredToken | undefined;
  for (const t of tokens) if (timingSafeEqual(t.hash, presented) && !found) found = t;
  return found && { principal: { name: found.name, domains: found.domains }, hash: found.hash };
}
