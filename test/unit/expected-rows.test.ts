// The worker's estimate of a job's encoded rows, read from its body without decompressing it.
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { expectedRowBytes, RELOAD_BODY_OVER } from '../../services/worker/report-worker.ts';

// Text that does not compress away, so the gzip body is over the threshold.
const json = JSON.stringify({ x: Array.from({ length: 30_000 }, (_, i) => (i * 2654435761) % 1e9) });

describe('expectedRowBytes', () => {
  it('is twice the JSON, from the gzip trailer, for a large gzip body', () => {
    const body = gzipSync(json).toString('base64');
    expect(body.length).toBeGreaterThan(RELOAD_BODY_OVER);
    expect(expectedRowBytes({ bodyBase64: body })).toBe(2 * json.length);
  });

  it('is twice the decoded size for a large plain body, and 0 for a small or missing one', () => {
    const plain = Buffer.from(json).toString('base64');
    expect(expectedRowBytes({ bodyBase64: plain })).toBeGreaterThanOrEqual(2 * json.length);
    expect(expectedRowBytes({ bodyBase64: plain })).toBeLessThanOrEqual(2 * json.length + 4);
    expect(expectedRowBytes({ bodyBase64: gzipSync('{}').toString('base64') })).toBe(0);
    expect(expectedRowBytes({})).toBe(0);
    expect(expectedRowBytes(undefined)).toBe(0);
  });
});
