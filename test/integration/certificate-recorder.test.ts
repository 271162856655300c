// The policy host's certificate states (services/mta-sts/certificate-states.ts): a change is written once, however
// many recordings see it at the same time (a refresh and a finished ACME round both record).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { createLogger } from '../../services/common/logger.ts';
import { certificateHistory, unknownCertificate } from '../../services/common/sts-certificates.ts';
import { clientRows } from '../../services/common/sts-policies.ts';
import { CertificateRecorder } from '../../services/mta-sts/certificate-states.ts';
import { testConfig, testDatabase } from '../helpers/env.ts';

const config = testConfig();
let ch: ClickHouseClient;
beforeAll(async () => (ch = await testDatabase(config)));
afterAll(async () => {
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('recording certificate states', () => {
  it('writes a change once when two recordings see it side by side, and again only when it changes', async () => {
    const recorder = new CertificateRecorder(ch, createLogger('mta-sts', 'silent'));
    const pending = new Map([['mta-sts.a.example', unknownCertificate('pending', 'being ordered from the ACME CA')]]);
    const failed = new Map([['mta-sts.a.example', unknownCertificate('failed', 'the ACME order failed: NXDOMAIN')]]);
    const now = new Date();
    await Promise.all([recorder.record(pending, now), recorder.record(pending, now), recorder.record(pending, now)]);
    await recorder.record(failed, new Date(now.getTime() + 1000));
    await recorder.record(failed, new Date(now.getTime() + 2000));
    const states = (await certificateHistory(clientRows(ch), 'mta-sts.a.example')).map((r) => r.state);
    expect(states).toEqual(['failed', 'pending']);
  });
});
