// npm run bench -- --mailbox: messages per second taken from where reports already land: a Maildir through
// `npm run import`, and our own Dovecot over IMAP, through `npm run import -- --imap` (read-only) and through the
// mailbox fetcher service (which also marks each message). Each at two mailbox sizes, to show how the cost grows;
// the Maildir import is the baseline of the ratios. Reports go to a queue of our own (no worker: the worker's cost is
// measured by the main benchmark).
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { Redis } from 'ioredis';
import { dovecotClient, startDovecot } from '../dev/dovecot.ts';
import { buildServices, freePort, serviceArgs, startClickHouse, startRedis } from '../dev/stack.ts';
import { loadConfig } from '../services/common/config.ts';
import { migrate } from '../services/common/migrations.ts';
import { makeReport, rng } from '../dev/report-mix.ts';
import { spawn } from 'node:child_process';

const root = resolve(import.meta.dirname, '..');
const run = promisify(execFile);

/** A report mail as senders write them (RFC 8460 §5.3), its report gzipped. */
function reportMail(i: number, random: () => number): Buffer {
  const report = JSON.stringify(makeReport(random, i, { maxPolicies: 3, maxDetails: 5 }));
  const boundary = `b${i}`;
  return Buffer.from(
    [
      'From: TLS reporter <tlsrpt@sender.example>',
      'To: tlsrpt@example.com',
      `Subject: Report Domain: example.com Submitter: sender.example Report-ID: <${i}@sender.example>`,
      'Date: Mon, 03 Feb 2025 10:00:00 +0000',
      `Message-ID: <${i}@sender.example>`,
      'TLS-Report-Domain: example.com',
      'TLS-Report-Submitter: sender.example',
      'MIME-Version: 1.0',
      `Content-Type: multipart/report; report-type="tlsrpt"; boundary="${boundary}"`,
      '',
      `--${boundary}`,
      'Content-Type: text/plain',
      '',
      'This is an aggregate TLS report.',
      `--${boundary}`,
      `Content-Type: application/tlsrpt+gzip; name="sender.example!example.com!${i}!${i + 86399}.json.gz"`,
      'Content-Transfer-Encoding: base64',
      '',
      ...(gzipSync(report)
        .toString('base64')
        .match(/.{1,76}/g) ?? []),
      `--${boundary}--`,
      '',
    ].join('\r\n'),
  );
}

export interface MailboxFigures {
  size: number;
  maildirPerSec: number;
  imapImportPerSec: number;
  fetcherPerSec: number;
}

export async function runMailboxBench(sizes: number[], log: (l: string) => void): Promise<MailboxFigures[]> {
  const dir = join(root, `.data/bench-mailbox-${process.pid}`);
  const redisPort = await freePort();
  const httpPort = await freePort();
  const redis = await startRedis({ dir: join(dir, 'redis'), port: redisPort, log: () => {} });
  const ch = await startClickHouse({ dir: join(dir, 'ch'), httpPort, tcpPort: await freePort(), log: () => {} });
  const dovecot = await startDovecot({ dir: join(dir, 'dovecot'), users: { bench: 'bench-pw-1' }, log: () => {} });
  const env = (queue: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH ?? '',
    REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    CLICKHOUSE_URL: `http://127.0.0.1:${httpPort}`,
    CLICKHOUSE_DATABASE: 'bench',
    QUEUE_NAME: queue,
    LOG_LEVEL: 'warn',
    ...extra,
  });
  await migrate(loadConfig(env('x')));
  await writeFile(join(dir, 'ca.pem'), dovecot.ca);
  const distDir = join(dir, 'dist');
  await buildServices(distDir);
  const out: MailboxFigures[] = [];
  const timed = async (f: () => Promise<unknown>): Promise<number> => {
    const t0 = performance.now();
    await f();
    return (performance.now() - t0) / 1000;
  };
  try {
    for (const size of sizes) {
      const random = rng(size);
      const mails = Array.from({ length: size }, (_, i) => reportMail(size * 10 + i, random));
      const maildir = join(dir, `Maildir-${size}`);
      for (const sub of ['cur', 'new', 'tmp']) await mkdir(join(maildir, sub), { recursive: true });
      for (const [i, m] of mails.entries()) await writeFile(join(maildir, 'cur', `${i}.bench:2,S`), m);
      const importCli = (queue: string, args: string[], extra: Record<string, string> = {}) =>
        run(process.execPath, ['--import', 'tsx', 'deploy/scripts/import.ts', '--no-dkim', ...args], {
          cwd: root,
          env: env(queue, extra),
          maxBuffer: 16 * 1024 * 1024,
        });
      // The command's own start-up (tsx, connections), measured on an empty folder and taken off.
      const empty = join(dir, 'empty');
      await mkdir(empty, { recursive: true });
      const startup = await timed(() => importCli(`q-empty-${size}`, [empty]));
      const maildirSeconds = (await timed(() => importCli(`q-maildir-${size}`, [maildir]))) - startup;
      // The same mails in a folder of the IMAP server.
      const folder = `Bench${size}`;
      const box = {
        name: 'bench',
        host: 'localhost',
        port: dovecot.imapsPort,
        tls: 'implicit',
        user: 'bench',
        password: 'bench-pw-1',
        folder,
        caFile: join(dir, 'ca.pem'),
      };
      const client = await dovecotClient(dovecot, 'bench');
      await client.mailboxCreate(folder);
      for (const m of mails) await client.append(folder, m);
      await client.logout();
      const imapSeconds =
        (await timed(() =>
          importCli(`q-imap-${size}`, ['--imap', 'bench'], { IMAP_MAILBOXES: JSON.stringify([box]) }),
        )) - startup;
      // The fetcher service: from its start to the last message marked (its UID recorded in Redis).
      const queue = `q-fetch-${size}`;
      const watch = new Redis(`redis://127.0.0.1:${redisPort}`);
      const fetcherSeconds = await timed(async () => {
        const child = spawn(process.execPath, serviceArgs('mailbox-fetcher', [], distDir), {
          cwd: root,
          env: env(queue, {
            IMAP_MAILBOXES: JSON.stringify([box]),
            IMAP_VERIFY_DKIM: 'false',
            MAILBOX_METRICS_PORT: '0',
          }),
          stdio: 'ignore',
        });
        while (Number(await watch.hget(`${queue}:imap:bench`, 'lastUid')) < size)
          await new Promise((r) => setTimeout(r, 50));
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      });
      watch.disconnect();
      out.push({
        size,
        maildirPerSec: size / maildirSeconds,
        imapImportPerSec: size / imapSeconds,
        fetcherPerSec: size / fetcherSeconds,
      });
      log(`  ${size} messages: ${JSON.stringify(out.at(-1))}`);
    }
    return out;
  } finally {
    await dovecot.stop();
    await ch.stop();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Prints the table and writes bench/results/mailbox{,-quick}.{json,md}. */
export async function mailboxBench(quick: boolean, log: (l: string) => void): Promise<void> {
  const sizes = quick ? [200, 800] : [1000, 4000];
  const r = await runMailboxBench(sizes, log);
  const f = (n: number): string => n.toLocaleString('en-US', { maximumFractionDigits: 0 });
  const lines = [
    `## Reading mailboxes: report mails (one gzipped report each) from a Maildir and from our own Dovecot over IMAPS`,
    '',
    "Messages per second (the import command's start-up taken off); ratios against the Maildir import of the same size.",
    '',
    '| messages | Maildir import | IMAP import (read-only) | ratio | mailbox fetcher (queues and marks) | ratio |',
    '| ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.map(
      (x) =>
        `| ${f(x.size)} | ${f(x.maildirPerSec)} | ${f(x.imapImportPerSec)} | ${(x.imapImportPerSec / x.maildirPerSec).toFixed(2)} | ${f(x.fetcherPerSec)} | ${(x.fetcherPerSec / x.maildirPerSec).toFixed(2)} |`,
    ),
  ];
  const markdown = lines.join('\n');
  console.log(markdown);
  const name = quick ? 'mailbox-quick' : 'mailbox';
  await mkdir(join(root, 'bench/results'), { recursive: true });
  await writeFile(
    join(root, `bench/results/${name}.json`),
    JSON.stringify({ at: new Date().toISOString(), r }, null, 2),
  );
  await writeFile(join(root, `bench/results/${name}.md`), markdown + '\n');
}
