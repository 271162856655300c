// The suite from a checkout at a long path: a UNIX socket's path may not exceed 107 bytes, and Dovecot's sockets under
// a state folder in the checkout did from a checkout at 95 characters (exit 89, "File name too long"). A copy of what
// the harness runs (dev/, deploy/, services/, schemas/, test/helpers/) at a path of 150 characters runs the global
// setup and a Dovecot as the tests do.
import { spawn } from 'node:child_process';
import { cp, mkdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const base = join(tmpdir(), `tlsrpt-long-${process.pid}`);
const checkout = join(base, 'a-checkout-at-a-long-path-'.padEnd(150 - base.length - 1, 'x'));

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

function run(args: string[], cwd: string): Promise<{ code: number | null; out: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, args, { cwd, env: { PATH: process.env.PATH ?? '' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => done({ code, out }));
  });
}

describe('a checkout at a path of 150 characters', () => {
  it('starts Redis, ClickHouse and Dovecot with their state and sockets on a short path', async () => {
    expect(checkout.length).toBe(150);
    await mkdir(checkout, { recursive: true });
    for (const part of ['dev', 'deploy', 'services', 'schemas', 'test/helpers', 'package.json', 'tsconfig.json'])
      await cp(join(root, part), join(checkout, part), {
        recursive: true,
        filter: (src) => !src.includes('node_modules'),
      });
    await symlink(join(root, 'node_modules'), join(checkout, 'node_modules'));
    const { code, out } = await run(['--import', 'tsx', 'test/helpers/long-path-probe.ts'], checkout);
    expect(code, out).toBe(0);
    const line = out.trim().split('\n').at(-1)!;
    const seen = JSON.parse(line) as Record<string, string | boolean>;
    expect(seen).toMatchObject({ imap: true, redis: true, clickhouse: true });
    expect(String(seen.dataDir).length).toBeLessThan(60);
    expect(String(seen.distDir).startsWith(checkout)).toBe(true);
  }, 180_000);
});
