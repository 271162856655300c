// Certificates of the policy host from an ACME CA (acme-client; HTTP-01 answered on MTA_STS_ACME_HTTP_PORT, 80 in
// production): every hosted domain's mta-sts.<domain> gets one, renewed 30 days before it expires, written to the
// certificate directory the policy host reads. One order at a time; a failure is logged and tried again an hour later.
import { createServer, type Server } from 'node:http';
import { Agent } from 'node:https';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as acme from 'acme-client';
import type { Logger } from '../common/logger.ts';

export interface AcmeOptions {
  directoryUrl: string;
  email: string;
  certDir: string;
  /** A PEM file of CAs to trust for the ACME directory itself (a test CA); by default the system's. */
  caFile?: string | undefined;
  logger: Logger;
}

const RENEW_BEFORE_MS = 30 * 86400_000;
const RETRY_MS = 3600_000;

export class AcmeManager {
  private readonly tokens = new Map<string, string>();
  /** When and why an order for a host last failed: not tried again for an hour (a CA's rate limits are strict). */
  private readonly failures = new Map<string, { at: number; reason: string }>();
  private client: acme.Client | undefined;
  private running: Promise<number> | undefined;

  constructor(private readonly o: AcmeOptions) {}

  /** Answers the CA's HTTP-01 requests; everything else is a 404. */
  challengeServer(): Server {
    return createServer((req, res) => {
      const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]{1,200})$/.exec(req.url ?? '');
      const answer = m ? this.tokens.get(m[1]!) : undefined;
      res.writeHead(answer ? 200 : 404, { 'content-type': 'text/plain' });
      res.end(answer ?? 'not found');
    });
  }

  /**
   * Orders what is missing or due for renewal; resolves to how many were issued. A call while one runs waits for it
   * instead of ordering twice.
   */
  ensure(domains: string[]): Promise<number> {
    this.running ??= this.orderAll(domains).finally(() => (this.running = undefined));
    return this.running;
  }

  private async orderAll(domains: string[]): Promise<number> {
    let issued = 0;
    for (const domain of domains) {
      const host = `mta-sts.${domain}`;
      if (Date.now() - (this.failures.get(host)?.at ?? 0) < RETRY_MS || !(await this.due(host))) continue;
      try {
        await this.order(host);
        issued++;
        this.failures.delete(host);
        this.o.logger.info({ host }, 'certificate issued by the ACME CA');
      } catch (err) {
        this.failures.set(host, { at: Date.now(), reason: err instanceof Error ? err.message : String(err) });
        this.o.logger.warn({ err, host }, 'ACME order failed; tried again in an hour');
      }
    }
    return issued;
  }

  /** The last order of a host that failed, why, and when it is tried again (none once one succeeds). */
  failure(host: string): { reason: string; retryAt: Date } | undefined {
    const f = this.failures.get(host);
    return f && { reason: f.reason, retryAt: new Date(f.at + RETRY_MS) };
  }

  private async due(host: string): Promise<boolean> {
    try {
      const info = acme.crypto.readCertificateInfo(await readFile(join(this.o.certDir, `${host}.pem`)));
      return info.notAfter.getTime() - Date.now() < RENEW_BEFORE_MS;
    } catch {
      return true;
    }
  }

  private async account(): Promise<acme.Client> {
    if (this.client) return this.client;
    if (this.o.caFile) acme.axios.defaults.httpsAgent = new Agent({ ca: await readFile(this.o.caFile) });
    await mkdir(this.o.certDir, { recursive: true });
    // One account key, kept beside the certificates.
    const keyFile = join(this.o.certDir, 'acme-account.key');
    const accountKey = await readFile(keyFile).catch(async () => {
      const key = await acme.crypto.createPrivateKey();
      await writeFile(keyFile, key, { mode: 0o600 });
      return key;
    });
    this.client = new acme.Client({ directoryUrl: this.o.directoryUrl, accountKey });
    return this.client;
  }

  private async order(host: string): Promise<void> {
    const client = await this.account();
    const [key, csr] = await acme.crypto.createCsr({ commonName: host, altNames: [host] });
    const cert = await client.auto({
      csr,
      email: this.o.email,
      termsOfServiceAgreed: true,
      challengePriority: ['http-01'],
      // The CA checks; a check of our own through this machine's resolver would only add a way to fail.
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
        this.tokens.set(challenge.token, keyAuthorization);
      },
      challengeRemoveFn: async (_authz, challenge) => {
        this.tokens.delete(challenge.token);
      },
    });
    // Key first, then the certificate, each written whole: the policy host never reads a half-written pair.
    await writeFile(join(this.o.certDir, `${host}.key.tmp`), key, { mode: 0o600 });
    await writeFile(join(this.o.certDir, `${host}.pem.tmp`), cert);
    await rename(join(this.o.certDir, `${host}.key.tmp`), join(this.o.certDir, `${host}.key`));
    await rename(join(this.o.certDir, `${host}.pem.tmp`), join(this.o.certDir, `${host}.pem`));
  }
}
