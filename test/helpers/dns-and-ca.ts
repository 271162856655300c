// Real DNS and a real ACME CA for the tests, from Debian's packages: dnsmasq serving test zones on a free port
// (authoritative for .test), and pebble (an ACME test CA) validating HTTP-01 through that DNS.
import { spawn, type ChildProcess } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { freePort, waitUntil } from '../../dev/stack.ts';

const DAY = 86400_000;

/** A test CA, and certificates from it (or self-signed, or expired two days ago, or valid `days` more) for a host name. */
export async function testCa(name: string) {
  const ca = await generate([{ name: 'commonName', value: name }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true },
    ],
  });
  const issue = async (
    host: string,
    o: { expired?: boolean; selfSigned?: boolean; days?: number; ips?: string[] } = {},
  ) => {
    const now = Date.now();
    return await generate([{ name: 'commonName', value: host }], {
      keySize: 2048,
      algorithm: 'sha256',
      notBeforeDate: new Date(now - (o.expired ? 30 : 1) * DAY),
      notAfterDate: new Date(now + (o.expired ? -2 : (o.days ?? 90)) * DAY),
      extensions: [
        {
          name: 'subjectAltName',
          altNames: [{ type: 2, value: host }, ...(o.ips ?? []).map((ip) => ({ type: 7 as const, ip }))],
        },
      ],
      ...(o.selfSigned ? {} : { ca: { key: ca.private, cert: ca.cert } }),
    });
  };
  return { cert: ca.cert, issue };
}

export interface Dnsmasq {
  port: number;
  stop: () => void;
}

/** dnsmasq with these records (`--host-record=…`, `--mx-host=…`, `--txt-record=…`); `probe` must resolve to `address`. */
export async function startDnsmasq(dir: string, records: string[], probe: [string, string]): Promise<Dnsmasq> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'dnsmasq',
    [
      '--keep-in-foreground',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      '--no-poll',
      // Authoritative for .test: a name without records is NXDOMAIN, as in real DNS (not REFUSED).
      '--local=/test/',
      `--pid-file=${join(dir, `dnsmasq-${port}.pid`)}`,
      ...records,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  await waitUntil(
    'dnsmasq',
    () =>
      resolver.resolve4(probe[0]).then(
        (a) => a[0] === probe[1],
        () => false,
      ),
    10_000,
    child,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${stderr}`);
  });
  return { port, stop: () => child.kill('SIGTERM') };
}

export interface Pebble {
  directoryUrl: string;
  /** The CA of pebble's own HTTPS API, to trust for the directory. */
  apiCaFile: string;
  /** The root that signs the certificates pebble issues. */
  root: () => Promise<string>;
  stop: () => void;
}

/** pebble on free ports, validating HTTP-01 on `httpPort` of the addresses `dnsPort` resolves names to. */
export async function startPebble(dir: string, dnsPort: number, httpPort: number): Promise<Pebble> {
  const api = await generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  await writeFile(join(dir, 'pebble-api.pem'), api.cert);
  await writeFile(join(dir, 'pebble-api.key'), api.private);
  const [listen, management] = [await freePort(), await freePort()];
  await writeFile(
    join(dir, 'pebble.json'),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${listen}`,
        managementListenAddress: `127.0.0.1:${management}`,
        certificate: join(dir, 'pebble-api.pem'),
        privateKey: join(dir, 'pebble-api.key'),
        httpPort,
        tlsPort: await freePort(),
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );
  // No random sleeps before validation, no random nonce rejections: the test is about our client, not pebble's chaos.
  const child = spawn('pebble', ['-config', join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`], {
    env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const get = async (url: string): Promise<string> => {
    const { request } = await import('node:https');
    return await new Promise((resolve, reject) => {
      request(url, { ca: api.cert }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: ${res.statusCode}`))));
      })
        .on('error', reject)
        .end();
    });
  };
  const directoryUrl = `https://127.0.0.1:${listen}/dir`;
  await waitUntil(
    'pebble',
    () =>
      get(directoryUrl).then(
        () => true,
        () => false,
      ),
    20_000,
    child,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${out}`);
  });
  await writeFile(join(dir, 'pebble-api-ca.pem'), api.cert);
  return {
    directoryUrl,
    apiCaFile: join(dir, 'pebble-api-ca.pem'),
    root: () => get(`https://127.0.0.1:${management}/roots/0`),
    stop: () => child.kill('SIGTERM'),
  };
}
