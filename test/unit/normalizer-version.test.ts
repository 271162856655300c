// The rows normalization makes, pinned per NORMALIZER_VERSION. The worker takes two processings of one report text
// by one normalizer version to store the same rows, and marks only other content for the reads' version look-up
// (services/worker/reprocessing.ts): a change to normalization or to the rows that leaves the version as it was
// would let a re-processed report's old and new rows both count. When this fails: bump NORMALIZER_VERSION
// (services/worker/normalize.ts) and record the new output's hash under it.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { NORMALIZER_VERSION } from '../../services/worker/normalize.ts';
import { processReportJob } from '../../services/worker/process-job.ts';
import { mixReport, rng } from '../../dev/report-mix.ts';
import { corpusReports } from '../helpers/corpus.ts';

/** The hash of the policy entries and failure details each version makes of the inputs below. */
const OUTPUT_OF_VERSION: Record<number, string> = {
  1: '9582187a1fff5b11054d0d87690840f8c8901ee974e2b15d28c31764e5ade332',
};

function outputHash(): { hash: string; reports: number; rows: number } {
  const random = rng(4242);
  const bodies = [
    ...corpusReports().map((r) => r.body),
    ...Array.from({ length: 300 }, (_, i) => mixReport(random, i + 1).body),
  ];
  const h = createHash('sha256');
  let reports = 0;
  let rows = 0;
  bodies.forEach((body, i) => {
    const job = {
      v: 1,
      receiptId: `r${i}`,
      receivedAt: '2025-01-01T00:00:00.000Z',
      channel: 'https',
      bodyBase64: body.toString('base64'),
    };
    const result = processReportJob(
      job,
      job.receiptId,
      { maxDecompressedBytes: 1 << 26 },
      new Date('2025-01-02T00:00:00Z'),
    );
    if (result.outcome !== 'stored') return;
    reports++;
    for (const table of [result.rows.policy_results, result.rows.failure_details] as Array<Array<{ version: number }>>)
      for (const { version: _version, ...row } of table) {
        h.update(JSON.stringify(row));
        rows++;
      }
  });
  return { hash: h.digest('hex'), reports, rows };
}

describe('NORMALIZER_VERSION', () => {
  it('names the rows normalization makes of the corpus and 300 mix reports', () => {
    const out = outputHash();
    expect(out.reports).toBeGreaterThan(300);
    expect(out.rows).toBeGreaterThan(1000);
    expect(`${NORMALIZER_VERSION}: ${out.hash}`).toBe(
      `${NORMALIZER_VERSION}: ${OUTPUT_OF_VERSION[NORMALIZER_VERSION]}`,
    );
  });
});
