import { extractReports } from '../services/smtp-receiver/extract.ts';
import { decodeReport } from '../services/worker/decode.ts';
import { normalizeReport } from '../services/worker/normalize.ts';
import { corpusEmails } from '../test/helpers/corpus.ts';
for (const { file, raw } of corpusEmails()) {
  try {
    const m = await extractReports(raw, { maxMimeParts: 100, maxUnzippedBytes: 1e8 });
    const out = m.parts.map((p) => {
      try {
        const r = normalizeReport(decodeReport(p.content, 1e8).json);
        return `${p.contentType} ${p.filename} -> ${r.organization} ${r.reportId} pol=${r.policies.length}`;
      } catch (e) {
        return `${p.contentType} ${p.filename} -> ERR ${(e as Error).message}`;
      }
    });
    console.log(
      file,
      '|',
      m.from,
      '|',
      m.reportDomainHeader,
      '|',
      m.reportSubmitterHeader,
      '|',
      m.flags.join(','),
      '\n   ',
      out.join('\n    '),
      '\n    subj:',
      m.subject,
    );
  } catch (e) {
    console.log(file, 'THROW', (e as Error).message);
  }
}
