// Run by test/e2e/long-path.test.ts from a copy of the checkout at a long path: the suite's global setup (Redis and
// ClickHouse) and a Dovecot started the way the mailbox tests start it, then an IMAP greeting over its port. Prints
// one JSON line: where the state went and whether each server answered.
import { join } from 'node:path';
import setup from './global-setup.ts';
import { startDovecot } from '../../dev/dovecot.ts';
import { clickhousePing, redisPing, tcpProbe } from '../../dev/stack.ts';

const provided: Record<string, string> = {};
const project = { provide: (key: string, value: string) => (provided[key] = value) };
const teardown = await setup(project as never);
try {
  const dataDir = provided.dataDir!;
  const dovecot = await startDovecot({ dir: join(dataDir, 'dovecot-probe'), users: { u: 'p' }, log: () => {} });
  const imap = await tcpProbe(dovecot.imapPort, '', (a) => a.startsWith('* OK'));
  await dovecot.stop();
  const redis = await redisPing(Number(new URL(provided.redisUrl!).port));
  const clickhouse = await clickhousePing(Number(new URL(provided.clickhouseUrl!).port));
  console.log(JSON.stringify({ dataDir, distDir: provided.distDir, imap, redis, clickhouse }));
} finally {
  await teardown();
}
