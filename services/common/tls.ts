// TLS credentials for the receivers: the configured PEM files, or a self-signed development certificate made
// on first start and kept under DATA_DIR, so HTTPS and SMTP STARTTLS work out of the box.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';

export interface TlsCredentials {
  key: string;
  cert: string;
}

export type TlsConfig = Pick<Config, 'TLS_CERT_FILE' | 'TLS_KEY_FILE' | 'DATA_DIR'>;

export function devCertPaths(dataDir: string): { cert: string; key: string } {
  return { cert: join(dataDir, 'certs/dev-cert.pem'), key: join(dataDir, 'certs/dev-key.pem') };
}

export async function loadTlsCredentials(config: TlsConfig, logger?: Logger): Promise<TlsCredentials> {
  if (config.TLS_CERT_FILE || config.TLS_KEY_FILE) {
    if (!config.TLS_CERT_FILE || !config.TLS_KEY_FILE) throw new Error('set both TLS_CERT_FILE and TLS_KEY_FILE');
    return { cert: await readFile(config.TLS_CERT_FILE, 'utf8'), key: await readFile(config.TLS_KEY_FILE, 'utf8') };
  }
  const paths = devCertPaths(config.DATA_DIR);
  try {
    return { cert: await readFile(paths.cert, 'utf8'), key: await readFile(paths.key, 'utf8') };
  } catch {
    // First start: make one.
  }
  logger?.warn({ cert: paths.cert }, 'no TLS certificate configured; generating a self-signed development certificate');
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec', // ECDSA handshakes cost a fraction of RSA-2048's on the server
    curve: 'P-256',
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 825 * 24 * 3600_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
  await mkdir(join(config.DATA_DIR, 'certs'), { recursive: true });
  // The local stack calls this once before it starts the receivers, so they never race to make two.
  await writeFile(paths.key, pems.private, { mode: 0o600 });
  await writeFile(paths.cert, pems.cert);
  return { cert: pems.cert, key: pems.private };
}
