// The real reports in test/fixtures/real (MANIFEST.tsv there names each file's public source and its quirks).
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

export const CORPUS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../fixtures/real');

export interface CorpusReport {
  file: string;
  /** The report JSON text as the source has it. */
  json: string;
  /** The bytes as a sender would send them: gzip where the source is gzip. */
  body: Buffer;
  gzipped: boolean;
}

/** Every JSON report in the corpus: plain files and the base64 gzip one. */
export function corpusReports(): CorpusReport[] {
  const out: CorpusReport[] = [];
  for (const file of readdirSync(CORPUS_DIR).sort()) {
    const path = join(CORPUS_DIR, file);
    if (/\.json(@[0-9a-f]+)?$/.test(file)) {
      const body = readFileSync(path);
      out.push({ file, json: body.toString('utf8'), body, gzipped: false });
    } else if (file.endsWith('.json.gz.b64')) {
      const body = Buffer.from(readFileSync(path, 'utf8'), 'base64');
      out.push({ file, json: gunzipSync(body).toString('utf8'), body, gzipped: true });
    }
  }
  return out;
}

export function corpusEmails(): Array<{ file: string; raw: Buffer }> {
  return readdirSync(CORPUS_DIR)
    .filter((f) => f.endsWith('.eml'))
    .sort()
    .map((file) => ({ file, raw: readFileSync(join(CORPUS_DIR, file)) }));
}

/** Source-side expectations, read straight from the JSON with no code of ours: what must survive storage. */
export interface SourcePolicy {
  type: string | undefined;
  domain: string | undefined;
  successful: number | undefined;
  failed: number | undefined;
  details: Array<Record<string, unknown>>;
}

export function sourcePolicies(json: string): SourcePolicy[] {
  const report = JSON.parse(json) as { policies: Array<Record<string, Record<string, unknown> | undefined>> };
  return report.policies.map((entry) => ({
    type: entry.policy?.['policy-type'] as string | undefined,
    domain: entry.policy?.['policy-domain'] as string | undefined,
    successful: entry.summary?.['total-successful-session-count'] as number | undefined,
    failed: entry.summary?.['total-failure-session-count'] as number | undefined,
    details: (entry['failure-details'] as unknown as Array<Record<string, unknown>> | undefined) ?? [],
  }));
}
