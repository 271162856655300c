// End-to-end load: the real services as child processes on their own Redis and ClickHouse, driven over HTTPS and
// SMTP from this process. Measures throughput, receipt → queryable latency, CPU and RSS per process, queue depth,
// and checks that nothing was lost or counted twice. No assertion on timing: figures only.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { spawn, type ChildProcess } from 'node:child_process';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { createClickHouse, type ClickHouseClient } from '../services/common/clickhouse.ts';
import { configEnv, loadConfig, type Config } from '../services/common/config.ts';
import { migrate } from '../services/common/migrations.ts';
import { devCertPaths } from '../services/common/tls.ts';
import {
  acceptsConnections,
  buildServices,
  freePort,
  serviceArgs,
  startClickHouse,
  startRedis,
  waitUntil,
  type ManagedProcess,
} from '../dev/stack.ts';
import { largeReport, mixReport, rng, type MixOptions } from '../dev/report-mix.ts';
import { cpuSeconds, peakRssMb } from './proc.ts';
import { SmtpConnection } from './smtp-client.ts';

const root = resolve(import.meta.dirname, '..');

interface Proc {
  name: string;
  child: ChildProcess;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export interface PhaseResult {
  name: string;
  seconds: number;
  accepted: number;
  acceptedPerSec: number;
  stored: number;
  storedPerSec: number;
  drainSeconds: number;
  errors: Record<string, number>;
  /** Accepted receipts (202 / 250) not found in ClickHouse after the drain. */
  lost: number;
  /** Successful sessions in the dedup views minus those in the reports accepted so far: >0 double counted, <0 lost. */
  sessionDifference: number;
  cpuMsPerReport: Record<string, number>;
  peakRssMb: Record<string, number>;
  maxQueueDepth: number;
  /** [seconds since the phase began, jobs waiting or active], every ~0.5 s until drained. */
  queueDepth: Array<[number, number]>;
  latencyMs?: { p50: number; p95: number; p99: number; samples: number };
}

/** smtp-server alone (bench/smtp-floor.ts) under the SMTP phase's load: what the receiver's own work adds. */
export interface SmtpFloor {
  seconds: number;
  acceptedPerSec: number;
  errors: Record<string, number>;
  /** CPU per mail of the floor server and of the load generator (bench/smtp-client.ts), in ms. */
  serverCpuMsPerMail: number;
  loadGeneratorCpuMsPerMail: number;
}

export interface E2eOptions {
  quick: boolean;
  log: (line: string) => void;
  /** Runs only the phases whose name contains this (`--phase`), to iterate on one of them. */
  only?: string;
}

class Bench {
  private stores: ManagedProcess[] = [];
  private procs: Proc[] = [];
  config!: Config;
  ch!: ClickHouseClient;
  queue!: Queue;
  ca = '';
  httpPort = 0;
  smtpPort = 0;
  dataDir = '';
  private seq = 0;
  private random = rng(7);
  private env: Record<string, string> = {};
  private redisPort = 0;
  /** Successful sessions of every report accepted so far (each report is unique). */
  expectedSessions = 0;
  private sessionsOf = new WeakMap<Buffer, number>();

  constructor(private readonly log: (line: string) => void) {}

  async start(): Promise<void> {
    this.dataDir = join(root, `.data/bench-${process.pid}`);
    const redisPort = (this.redisPort = await freePort());
    const chHttp = await freePort();
    this.stores.push(await startRedis({ dir: join(this.dataDir, 'redis'), port: redisPort, log: () => {} }));
    this.stores.push(
      await startClickHouse({
        dir: join(this.dataDir, 'clickhouse'),
        httpPort: chHttp,
        tcpPort: await freePort(),
        log: () => {},
      }),
    );
    this.httpPort = await freePort();
    this.smtpPort = await freePort();
    this.config = loadConfig({
      // Not production: the receivers serve the development certificate and take mail for tlsrpt@localhost,
      // which production refuses (services/common/development-defaults.ts).
      NODE_ENV: 'test',
      LOG_LEVEL: 'warn',
      DATA_DIR: this.dataDir,
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      CLICKHOUSE_URL: `http://127.0.0.1:${chHttp}`,
      CLICKHOUSE_DATABASE: 'bench',
      HTTP_PORT: String(this.httpPort),
      HTTP_HOST: '127.0.0.1',
      SMTP_PORT: String(this.smtpPort),
      SMTP_HOST: '127.0.0.1',
      WORKER_METRICS_PORT: String(await freePort()),
      SMTP_METRICS_PORT: String(await freePort()),
      HTTP_METRICS_PORT: String(await freePort()),
      API_TOKENS: '[]',
      // All load comes from one address here: lift the per-address limits that protect real deployments.
      HTTP_RATE_LIMIT_PER_MINUTE: '100000000',
      HTTP_MAX_CONNECTIONS_PER_IP: '1000',
      SMTP_RATE_LIMIT_PER_MINUTE: '100000000',
      SMTP_MAX_CONNECTIONS_PER_IP: '1000',
      // Tuning knobs can be tried without editing: WORKER_* from the environment win.
      ...Object.fromEntries(
        Object.entries(process.env).filter(([k]) => k.startsWith('WORKER_') && k !== 'WORKER_METRICS_PORT'),
      ),
    });
    await migrate(this.config);
    this.ch = createClickHouse(this.config);
    this.env = { PATH: process.env.PATH ?? '', ...configEnv(this.config) };
    await buildServices(join(this.dataDir, 'dist'));
    for (const name of ['http-receiver', 'worker', 'smtp-receiver'] as const) {
      this.procs.push({ name, child: this.spawnService(name) });
      // The first receiver makes the development certificate; start the others once it exists.
      if (name === 'http-receiver')
        await waitUntil('certificate', () => readFile(devCertPaths(this.dataDir).cert).then(() => true), 30_000);
    }
    this.ca = await readFile(devCertPaths(this.dataDir).cert, 'utf8');
    await this.httpsAnswers();
    this.queue = new Queue(this.config.QUEUE_NAME, { connection: { host: '127.0.0.1', port: redisPort } });
    await this.waitDrained(60);
    await this.ch.command({ query: 'TRUNCATE TABLE receipts' }).catch(() => {});
  }

  /** One of the built services, with the bench's settings and `extra`. */
  private spawnService(name: 'http-receiver' | 'worker' | 'smtp-receiver', extra: Record<string, string> = {}) {
    // BENCH_CPU_PROF=<dir> writes a V8 CPU profile of each service there (open it in Chrome DevTools).
    const prof = process.env.BENCH_CPU_PROF
      ? ['--cpu-prof', `--cpu-prof-dir=${join(process.env.BENCH_CPU_PROF, name)}`]
      : [];
    return spawn(process.execPath, serviceArgs(name, prof, join(this.dataDir, 'dist')), {
      cwd: root,
      env: { ...this.env, ...extra },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }

  /** Waits until the HTTPS receiver answers a request. */
  private httpsAnswers(): Promise<void> {
    return waitUntil(
      'https receiver',
      () =>
        this.post(gzipSync('{}')).then(
          () => true,
          () => false,
        ),
      30_000,
    );
  }

  /**
   * A replica of the queue's Redis, in sync, and the HTTPS receiver started again to acknowledge a report only once
   * the replica holds its job (REDIS_ACK_REPLICAS=1).
   */
  async withReplica(): Promise<void> {
    const port = await freePort();
    this.stores.push(
      await startRedis({ dir: join(this.dataDir, 'redis-replica'), port, log: () => {}, replicaOf: this.redisPort }),
    );
    const master = new Redis({ port: this.redisPort, host: '127.0.0.1' });
    try {
      await waitUntil(
        'replica in sync',
        async () => /slave0:.*state=online/.test(await master.info('replication')),
        30_000,
      );
    } finally {
      master.disconnect();
    }
    const at = this.procs.findIndex((p) => p.name === 'http-receiver');
    const old = this.procs[at]!.child;
    old.kill('SIGTERM');
    await new Promise((r) => (old.exitCode !== null ? r(null) : old.once('exit', r)));
    this.procs[at] = { name: 'http-receiver', child: this.spawnService('http-receiver', { REDIS_ACK_REPLICAS: '1' }) };
    await this.httpsAnswers();
  }

  async stop(): Promise<void> {
    await this.queue?.close();
    for (const p of this.procs) {
      p.child.kill('SIGTERM');
      await new Promise((r) => (p.child.exitCode !== null ? r(null) : p.child.once('exit', r)));
    }
    await this.ch?.close();
    for (const s of this.stores.reverse()) await s.stop();
    await rm(this.dataDir, { recursive: true, force: true });
  }

  /** A fresh report (unique report-id), gzipped; a few are large. */
  nextBody(mix?: MixOptions): Buffer {
    const { body, successfulSessions } = mixReport(this.random, ++this.seq, mix);
    this.sessionsOf.set(body, successfulSessions);
    return body;
  }

  private accept(body: Buffer, id: string, accepted: string[]): void {
    accepted.push(id);
    this.expectedSessions += this.sessionsOf.get(body) ?? 0;
  }

  private agent = new Agent({ keepAlive: true, maxSockets: 64 });

  post(body: Buffer): Promise<{ status: number; receiptId?: string }> {
    return new Promise((resolvePost, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: this.httpPort,
          path: '/v1/tlsrpt',
          method: 'POST',
          agent: this.agent,
          ca: this.ca,
          servername: 'localhost',
          headers: { 'content-type': 'application/tlsrpt+gzip', 'content-length': body.length },
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            resolvePost({
              status,
              receiptId: status === 202 ? (JSON.parse(text) as { receiptId: string }).receiptId : undefined,
            });
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  async storedCount(): Promise<number> {
    const rs = await this.ch.query({ query: 'SELECT uniqExact(receipt_id) AS n FROM receipts', format: 'JSONEachRow' });
    const [row] = await rs.json<{ n: string | number }>();
    return Number(row?.n ?? 0);
  }

  async queueDepth(): Promise<number> {
    const c = await this.queue.getJobCounts('waiting', 'active', 'delayed');
    return (c.waiting ?? 0) + (c.active ?? 0) + (c.delayed ?? 0);
  }

  async waitDrained(timeoutS: number): Promise<void> {
    const deadline = Date.now() + timeoutS * 1000;
    while (Date.now() < deadline && (await this.queueDepth()) > 0) await new Promise((r) => setTimeout(r, 200));
  }

  async cpu(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const p of this.procs) if (p.child.pid) out[p.name] = await cpuSeconds(p.child.pid);
    // The stores' CPU too: on one machine they compete with the services for the same cores.
    for (const s of this.stores) if (s.child?.pid) out[s.name] = await cpuSeconds(s.child.pid);
    // And this process: the load generator (making, gzipping and sending each report) shares the same cores.
    const self = process.cpuUsage();
    out['load generator'] = (self.user + self.system) / 1e6;
    return out;
  }

  async rss(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const p of this.procs) if (p.child.pid) out[p.name] = Math.round(await peakRssMb(p.child.pid));
    return out;
  }

  /** Runs `drive` for `seconds`, then waits for the backlog to drain; measures and checks the phase. */
  async phase(
    name: string,
    seconds: number,
    drive: (until: number, accepted: string[], errors: Record<string, number>) => Promise<void>,
  ): Promise<PhaseResult> {
    const before = await this.storedCount();
    const cpu0 = await this.cpu();
    // Each phase's own peak memory: Linux resets VmHWM to the current RSS on "5" written to clear_refs.
    for (const p of this.procs) if (p.child.pid) await writeFile(`/proc/${p.child.pid}/clear_refs`, '5');
    const accepted: string[] = [];
    const errors: Record<string, number> = {};
    let maxDepth = 0;
    const depths: Array<[number, number]> = [];
    let sampling = true;
    const t0 = Date.now();
    const sampler = (async () => {
      while (sampling) {
        const depth = await this.queueDepth().catch(() => 0);
        depths.push([(Date.now() - t0) / 1000, depth]);
        maxDepth = Math.max(maxDepth, depth);
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    await drive(t0 + seconds * 1000, accepted, errors);
    const t1 = Date.now();
    // Drained: everything accepted is queryable.
    const deadline = Date.now() + 300_000;
    let stored = await this.storedCount();
    while (stored - before < accepted.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      stored = await this.storedCount();
    }
    const t2 = Date.now();
    sampling = false;
    await sampler;
    const cpu1 = await this.cpu();
    const ids = accepted.map((id) => `'${id}'`);
    let found = 0;
    for (let i = 0; i < ids.length; i += 5000) {
      const rs = await this.ch.query({
        query: `SELECT uniqExact(receipt_id) AS found FROM receipts WHERE receipt_id IN (${ids.slice(i, i + 5000).join(',')})`,
        format: 'JSONEachRow',
      });
      const [r] = await rs.json<{ found: string | number }>();
      found += Number(r?.found ?? 0);
    }
    const totals = await this.ch.query({
      query: 'SELECT sum(successful_sessions) AS s FROM policy_results_dedup',
      format: 'JSONEachRow',
    });
    const [total] = await totals.json<{ s: string | number }>();
    const n = stored - before;
    const cpuMsPerReport: Record<string, number> = {};
    for (const k of Object.keys(cpu1))
      cpuMsPerReport[k] = n > 0 ? Math.round(((cpu1[k]! - (cpu0[k] ?? 0)) * 1000 * 1000) / n) / 1000 : 0;
    const result: PhaseResult = {
      name,
      seconds: (t1 - t0) / 1000,
      accepted: accepted.length,
      acceptedPerSec: Math.round(accepted.length / ((t1 - t0) / 1000)),
      stored: n,
      storedPerSec: Math.round(n / ((t2 - t0) / 1000)),
      drainSeconds: (t2 - t1) / 1000,
      errors,
      lost: accepted.length - found,
      sessionDifference: Number(total?.s ?? 0) - this.expectedSessions,
      cpuMsPerReport,
      peakRssMb: await this.rss(),
      maxQueueDepth: maxDepth,
      queueDepth: depths,
    };
    this.log(`${name}: ${JSON.stringify(result)}`);
    return result;
  }

  /** Reports of about `bytes` of JSON each, over HTTPS at a low concurrency. */
  async large(until: number, accepted: string[], errors: Record<string, number>, bytes: number): Promise<void> {
    await this.https(until, accepted, errors, 2, () => {
      const { body, successfulSessions } = largeReport(this.random, ++this.seq, bytes);
      this.sessionsOf.set(body, successfulSessions);
      return body;
    });
  }

  async https(
    until: number,
    accepted: string[],
    errors: Record<string, number>,
    concurrency = 50,
    next = () => this.nextBody(),
  ): Promise<void> {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < until) {
          const body = next();
          const r = await this.post(body).catch(() => ({ status: 0, receiptId: undefined }));
          if (r.receiptId) this.accept(body, r.receiptId, accepted);
          else errors[String(r.status)] = (errors[String(r.status)] ?? 0) + 1;
        }
      }),
    );
  }

  async smtp(
    until: number,
    accepted: string[],
    errors: Record<string, number>,
    connections = 50,
    port = this.smtpPort,
  ): Promise<void> {
    const floor = port !== this.smtpPort; // nothing is stored: no sessions to expect
    const open: SmtpConnection[] = [];
    await Promise.all(
      Array.from({ length: connections }, async () => {
        let connection: SmtpConnection | undefined;
        while (Date.now() < until) {
          const body = this.nextBody();
          const raw = [
            'From: <tlsrpt@bench.example>',
            'To: <tlsrpt@localhost>',
            'Subject: Report Domain: bench.example Submitter: bench.example Report-ID: <x>',
            'TLS-Report-Domain: bench.example',
            'TLS-Report-Submitter: bench.example',
            'MIME-Version: 1.0',
            'Content-Type: multipart/report; report-type="tlsrpt"; boundary="b"',
            '',
            '--b',
            'Content-Type: application/tlsrpt+gzip',
            'Content-Transfer-Encoding: base64',
            'Content-Disposition: attachment; filename="bench.json.gz"',
            '',
            ...(body.toString('base64').match(/.{1,76}/g) ?? []),
            '--b--',
            '',
          ].join('\r\n');
          try {
            if (!connection) open.push((connection = await SmtpConnection.open(port, this.ca, 'localhost')));
            const reply = await connection.send('tlsrpt@bench.example', 'tlsrpt@localhost', raw);
            if (reply.code !== 250) {
              errors[String(reply.code)] = (errors[String(reply.code)] ?? 0) + 1;
              continue;
            }
            for (const id of reply.text.split(' queued as ')[1]?.trim().split(' ') ?? [])
              if (floor) accepted.push(id);
              else this.accept(body, id, accepted);
          } catch (err) {
            const e = err as { responseCode?: number; code?: string };
            const code = String(e.responseCode ?? e.code ?? 'error');
            errors[code] = (errors[code] ?? 0) + 1;
            connection?.destroy();
            connection = undefined; // a new connection for the next mail
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }),
    );
    for (const c of open) c.close();
  }

  /** The SMTP phase's load against smtp-server alone (bench/smtp-floor.ts) for `seconds`. */
  async smtpFloor(seconds: number): Promise<SmtpFloor> {
    const port = await freePort();
    const cert = devCertPaths(this.dataDir);
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'bench/smtp-floor.ts')], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', FLOOR_PORT: String(port), FLOOR_CERT: cert.cert, FLOOR_KEY: cert.key },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    try {
      await waitUntil('smtp floor', () => acceptsConnections(port), 30_000);
      const cpu0 = [await cpuSeconds(child.pid!), process.cpuUsage()] as const;
      const accepted: string[] = [];
      const errors: Record<string, number> = {};
      const t0 = Date.now();
      await this.smtp(t0 + seconds * 1000, accepted, errors, 50, port);
      const elapsed = (Date.now() - t0) / 1000;
      const server = (await cpuSeconds(child.pid!)) - cpu0[0];
      const self = process.cpuUsage(cpu0[1]);
      const per = (s: number): number => (accepted.length > 0 ? Math.round((s * 1e6) / accepted.length) / 1000 : 0);
      const result = {
        seconds: elapsed,
        acceptedPerSec: Math.round(accepted.length / elapsed),
        errors,
        serverCpuMsPerMail: per(server),
        loadGeneratorCpuMsPerMail: per((self.user + self.system) / 1e6),
      };
      this.log(`smtp-server floor: ${JSON.stringify(result)}`);
      return result;
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    }
  }

  /** A fixed offered rate over HTTPS; latency from 202 to the receipt being queryable in ClickHouse. */
  async latency(
    until: number,
    accepted: string[],
    errors: Record<string, number>,
    rate: number,
    samples: Map<string, number>,
  ): Promise<void> {
    let i = 0;
    const start = Date.now();
    const inflight: Array<Promise<void>> = [];
    while (Date.now() < until) {
      const due = start + (i * 1000) / rate;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const body = this.nextBody({ maxPolicies: 3, maxDetails: 5 });
      i++;
      inflight.push(
        this.post(body).then(
          (r) => {
            if (r.receiptId) {
              this.accept(body, r.receiptId, accepted);
              samples.set(r.receiptId, Date.now());
            } else errors[String(r.status)] = (errors[String(r.status)] ?? 0) + 1;
          },
          () => void (errors.network = (errors.network ?? 0) + 1),
        ),
      );
    }
    await Promise.all(inflight);
  }
}

export async function runE2e(opts: E2eOptions): Promise<{ phases: PhaseResult[]; smtpFloor?: SmtpFloor }> {
  const bench = new Bench(opts.log);
  // --quick: five phases of 4 s, 20 s of load in all.
  const secs = opts.quick ? 4 : 30;
  const results: PhaseResult[] = [];
  let smtpFloor: SmtpFloor | undefined;
  await bench.start();
  try {
    const want = (name: string): boolean => !opts.only || name.includes(opts.only);
    // First, while the worker's peak memory is still its own: what 10 MB reports take.
    const large = '10 MB reports, https c=2';
    if (want(large))
      results.push(await bench.phase(large, opts.quick ? 4 : 20, (u, a, e) => bench.large(u, a, e, 10_000_000)));
    if (want('https c=50')) results.push(await bench.phase('https c=50', secs, (u, a, e) => bench.https(u, a, e)));
    // smtp-server alone under the same load, right before the receiver takes it.
    if (want('smtp pooled STARTTLS c=50')) smtpFloor = await bench.smtpFloor(secs);
    if (want('smtp pooled STARTTLS c=50'))
      results.push(await bench.phase('smtp pooled STARTTLS c=50', secs, (u, a, e) => bench.smtp(u, a, e)));
    if (want('https + smtp'))
      results.push(
        await bench.phase('https + smtp', secs, (u, a, e) =>
          Promise.all([bench.https(u, a, e, 30), bench.smtp(u, a, e, 10)]).then(() => {}),
        ),
      );
    const rate = 1000;
    if (want(`latency at ${rate}/s offered`)) results.push(await latencyPhase(bench, rate, opts.quick ? 4 : 20));
    // Last, as it restarts the HTTPS receiver: the cost of acknowledging only what a replica holds (Redis WAIT).
    const replicated = `https c=50, acknowledged once a replica holds it (REDIS_ACK_REPLICAS=1)`;
    if (want(replicated)) {
      await bench.withReplica();
      results.push(await bench.phase(replicated, secs, (u, a, e) => bench.https(u, a, e)));
    }
  } finally {
    await bench.stop();
  }
  return { phases: results, ...(smtpFloor ? { smtpFloor } : {}) };
}

/** Latency at a fixed offered rate: from the request to the receipt being queryable in ClickHouse. */
async function latencyPhase(bench: Bench, rate: number, seconds: number): Promise<PhaseResult> {
  // Latency at a fixed offered rate: poll ClickHouse for newly queryable receipts every 50 ms.
  const samples = new Map<string, number>();
  const seen = new Map<string, number>();
  let polling = true;
  const poller = (async () => {
    let since = 0;
    while (polling) {
      // Versions are processing times; a batch becomes visible a little after them, so look back 10 s.
      const rs = await bench.ch.query({
        query: `SELECT receipt_id, version FROM receipts WHERE version > ${since - 10_000}`,
        format: 'JSONEachRow',
      });
      const now = Date.now();
      for (const r of await rs.json<{ receipt_id: string; version: string | number }>()) {
        if (!seen.has(r.receipt_id)) seen.set(r.receipt_id, now);
        since = Math.max(since, Number(r.version));
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const lat = await bench.phase(`latency at ${rate}/s offered`, seconds, (u, a, e) =>
    bench.latency(u, a, e, rate, samples),
  );
  polling = false;
  await poller;
  const latencies = [...samples]
    .map(([id, t]) => (seen.get(id) ?? NaN) - t)
    .filter((x) => Number.isFinite(x))
    .sort((a, b) => a - b);
  lat.latencyMs = {
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    samples: latencies.length,
  };
  return lat;
}
