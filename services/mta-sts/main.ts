// MTA-STS policy host entry point: npm run mta-sts (started by npm start). Serves the hosted policies
// (services/mta-sts/policy-host.ts), read from ClickHouse every MTA_STS_REFRESH_SECONDS.
import { join } from 'node:path';
import { Gauge } from 'prom-client';
import { createClickHouse } from '../common/clickhouse.ts';
import { loadConfig } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { createOpsServer, createRegistry } from '../common/metrics.ts';
import { onShutdown } from '../common/shutdown.ts';
import { currentPolicies } from '../common/sts-policies.ts';
import { AcmeManager } from './acme.ts';
import { CertificateRecorder, hostStates } from './certificate-states.ts';
import { createPolicyHost, loadContexts, servedPolicies, type HostState } from './policy-host.ts';

const config = loadConfig();
const logger = createLogger('mta-sts', config.LOG_LEVEL);
const clickhouse = createClickHouse(config);
const certDir = config.MTA_STS_CERT_DIR || join(config.DATA_DIR, 'mta-sts-certs');
const registry = createRegistry('mta-sts');
const hosted = new Gauge({ name: 'tlsrpt_mta_sts_domains', help: 'Hosted domains served', registers: [registry] });
let state: HostState = { policies: new Map(), contexts: new Map() };
let loaded = false;
const recorder = new CertificateRecorder(clickhouse, logger);

/**
 * An ACME round over some hosted domains; the certificates are read again only when it issued one. Run in the
 * background: an order takes seconds to minutes, and the policies must keep being refreshed meanwhile.
 */
function orderCertificates(domains: string[]): void {
  if (!acmeManager || domains.length === 0) return;
  void acmeManager.ensure(domains).then(async (issued) => {
    if (issued > 0) state = { ...state, contexts: await loadContexts(certDir, [...state.policies.keys()], logger) };
    await recordStates();
  });
}

/** Tells the API and the dashboard what each hosted domain's certificate is now (issued, pending, failed, …). */
function recordStates(): Promise<void> {
  const now = new Date();
  return recorder.record(hostStates([...state.policies.keys()], state.contexts, acmeManager, certDir, now), now);
}

async function refresh(): Promise<void> {
  try {
    const policies = servedPolicies(await currentPolicies(clickhouse));
    const contexts = await loadContexts(certDir, [...policies.keys()], logger);
    state = { policies, contexts };
    hosted.set(policies.size);
    loaded = true;
    await recordStates();
    // A hosted domain without a certificate gets one now; renewals are looked at hourly (below).
    orderCertificates([...policies.keys()].filter((d) => !contexts.has(`mta-sts.${d}`)));
  } catch (err) {
    // The last policies read stay served: senders must find them while ClickHouse is away.
    logger.warn({ err }, 'could not read the hosted policies; serving the last ones read');
  }
}

// Certificates from an ACME CA, where one is configured: ordered for hosted domains without one, renewed when due.
const acmeManager = config.MTA_STS_ACME_DIRECTORY
  ? new AcmeManager({
      directoryUrl: config.MTA_STS_ACME_DIRECTORY,
      email: config.MTA_STS_ACME_EMAIL,
      certDir,
      caFile: config.MTA_STS_ACME_CA_FILE || undefined,
      logger,
    })
  : undefined;
const challenges = acmeManager?.challengeServer();
challenges?.listen(config.MTA_STS_ACME_HTTP_PORT, config.MTA_STS_HOST);

await refresh();
const timer = setInterval(() => void refresh(), config.MTA_STS_REFRESH_SECONDS * 1000);
const renewals = setInterval(() => orderCertificates([...state.policies.keys()]), 3600_000);
const server = createPolicyHost(() => state, logger);
server.listen(config.MTA_STS_PORT, config.MTA_STS_HOST, () =>
  logger.info({ port: config.MTA_STS_PORT, domains: state.policies.size, certDir }, 'mta-sts policy host listening'),
);
const ops = createOpsServer(registry, () => Promise.resolve(loaded));
ops.listen(config.MTA_STS_METRICS_PORT, config.MTA_STS_HOST);

onShutdown(logger, [
  ['refresh', () => Promise.resolve((clearInterval(timer), clearInterval(renewals)))],
  ['https server', () => new Promise<void>((resolve) => server.close(() => resolve()))],
  ['ops server', () => new Promise<void>((resolve) => ops.close(() => resolve()))],
  [
    'acme challenges',
    () => new Promise<void>((resolve) => (challenges ? challenges.close(() => resolve()) : resolve())),
  ],
  ['clickhouse', () => clickhouse.close()],
]);
