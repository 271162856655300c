// Report mail: extraction over every real .eml of the corpus and crafted variants; DKIM verdicts for real.
import { zipSync } from 'fflate';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { parseReportFilename, parseReportSubject } from '../../services/worker/mail-checks.ts';
import {
  cachingResolver,
  domainsAligned,
  hasDkimSignature,
  keyAllowsTlsrpt,
  verifyDkim,
} from '../../services/common/intake/dkim.ts';
import { extractReports, MailRejectedError, unzipCapped } from '../../services/common/intake/extract.ts';
import { recipientPolicy } from '../../services/smtp-receiver/recipients.ts';
import { decodeReport } from '../../services/worker/decode.ts';
import { normalizeReport } from '../../services/worker/normalize.ts';
import { processReportJob } from '../../services/worker/process-job.ts';
import { corpusEmails, corpusReports } from '../helpers/corpus.ts';
import { makeKey, reportMail, sign, testResolver } from '../helpers/mail.ts';

const OPTS = { maxMimeParts: 100, maxUnzippedBytes: 50 * 1024 * 1024 };
const MAX = 50 * 1024 * 1024;
const json = (part: string) => corpusReports().find((r) => r.file.includes(part))!.json;

/** The JSON counterpart the corpus holds for some of its mails (the same report, extracted by its source). */
const COUNTERPARTS: Record<string, string> = {
  'kravietz__tlsrpt-rs__tlsrpt_fixtures_mail.ru.eml': 'kravietz__tlsrpt-rs__tlsrpt_fixtures_mail.ru.json',
  'marcbradshaw__mail-tls-rpt__t_data_email.eml': 'marcbradshaw__mail-tls-rpt__t_data_report.json',
  'stalwartlabs__mail-auth__resources_tlsrpt_rpt02.eml': 'stalwartlabs__mail-auth__resources_tlsrpt_rpt02.json',
};

describe('every real report mail', () => {
  for (const { file, raw } of corpusEmails()) {
    if (file.includes('empty.eml')) {
      it(`${file}: a cron mail holds no report`, async () => {
        expect((await extractReports(raw, OPTS)).parts).toHaveLength(0);
      });
      continue;
    }
    it(`${file}: one report part that parses, with its attachment name and headers`, async () => {
      const mail = await extractReports(raw, OPTS);
      expect(mail.parts).toHaveLength(1);
      const part = mail.parts[0]!;
      expect(part.filename).toMatch(/!.*\.json(\.gz)?$/);
      const decoded = decodeReport(part.content, MAX);
      const report = normalizeReport(decoded.json);
      expect(report.policies.length).toBeGreaterThan(0);
      expect(mail.reportSubmitterHeader).not.toBe('');
      const counterpart = COUNTERPARTS[file];
      if (counterpart) expect(decoded.json).toEqual(JSON.parse(json(counterpart)));
    });
  }

  it('Google: the Subject Report-ID differs from the JSON report-id, flagged; the JSON wins', async () => {
    const raw = corpusEmails().find((e) => e.file.includes('kravietz__tlsrpt-rs__tlsrpt_fixtures_google1.eml'))!.raw;
    const mail = await extractReports(raw, OPTS);
    const job = smtpJob(mail.parts[0]!.content, {
      subject: mail.subject,
      attachmentName: mail.parts[0]!.filename,
      reportDomainHeader: mail.reportDomainHeader,
      reportSubmitterHeader: mail.reportSubmitterHeader,
    });
    const res = processReportJob(job, 'j', { maxDecompressedBytes: MAX });
    expect(res.outcome).toBe('stored');
    if (res.outcome !== 'stored') return;
    expect(res.flags).toContain('subject-report-id-mismatch');
    expect(res.flags).not.toContain('filename-dates-mismatch');
    expect(res.rows.reports[0]!.report_id).toBe('2024-09-15T00:00:00Z_krvtz.net');
  });

  it("Postfix (sys4 tlsrpt-reporter): RFC 8460 §5.3's `Report-ID: <{report-id}@{submitter}>` is no mismatch", async () => {
    const rfc = JSON.parse(corpusReports().find((r) => r.file.includes('rfc-example'))!.json) as {
      'report-id': string;
    };
    const subject = (id: string) =>
      `Report Domain: company-y.example Submitter: mail.sender.example Report-ID: <${id}>`;
    const flags = (id: string) => {
      const res = processReportJob(smtpJob(Buffer.from(JSON.stringify(rfc)), { subject: subject(id) }), 'j', {
        maxDecompressedBytes: MAX,
      });
      return res.outcome === 'stored' ? res.flags : [];
    };
    expect(flags(`${rfc['report-id']}@mail.sender.example`)).not.toContain('subject-report-id-mismatch');
    expect(flags(rfc['report-id'])).not.toContain('subject-report-id-mismatch');
    expect(flags(`other-id@mail.sender.example`)).toContain('subject-report-id-mismatch');
    expect(flags(`${rfc['report-id']}@elsewhere.example`)).toContain('subject-report-id-mismatch');
  });

  it('a filename whose dates disagree with the JSON is flagged (isseis failure mail)', async () => {
    const raw = corpusEmails().find((e) => e.file.includes('tlsrpt_failure.eml'))!.raw;
    const mail = await extractReports(raw, OPTS);
    const res = processReportJob(
      smtpJob(mail.parts[0]!.content, { attachmentName: mail.parts[0]!.filename, subject: mail.subject }),
      'j',
      { maxDecompressedBytes: MAX },
    );
    expect(res.outcome === 'stored' && res.flags).toContain('filename-dates-mismatch');
  });
});

function smtpJob(
  content: Buffer,
  smtp: Record<string, unknown>,
  dkim: Record<string, unknown> = { result: 'none' },
  dkimPolicy = 'record',
) {
  return {
    v: 1,
    receiptId: 'r',
    receivedAt: new Date().toISOString(),
    channel: 'smtp',
    bodyBase64: content.toString('base64'),
    smtp: { ...smtp, dkim, dkimPolicy },
  };
}

describe('crafted report mails', () => {
  const rfc = json('kravietz__tlsrpt-rs__tlsrpt_fixtures_rfc8460.json');
  const ms = json('dmarc-report-viewer__testdata_smtp-tls-reports_microsoft.json');

  it('several reports in one message, LF line ends, an RFC 2231 continued filename', async () => {
    const raw = reportMail({
      reports: [
        { json: rfc, rfc2231: true },
        { json: ms, gzip: false },
      ],
      lineEnding: '\n',
    });
    const mail = await extractReports(raw, OPTS);
    expect(mail.parts).toHaveLength(2);
    expect(mail.parts[0]!.filename).toBe('sender.example!example.com!1738540800!1738627199!001.json.gz');
    expect(JSON.parse(decodeReport(mail.parts[1]!.content, MAX).text)).toEqual(JSON.parse(ms));
  });

  it('a zip attachment is unpacked into its reports; a zip bomb is refused', async () => {
    const zip = Buffer.from(zipSync({ 'a.json': Buffer.from(rfc), 'b.json': Buffer.from(ms) }));
    const raw = reportMail({
      reports: [{ json: '', raw: zip, filename: 'reports.zip', contentType: 'application/zip' }],
    });
    const mail = await extractReports(raw, OPTS);
    expect(mail.parts.map((p) => p.filename)).toEqual(['reports.zip/a.json', 'reports.zip/b.json']);
    expect(mail.flags).toContain('zip-attachment');
    const bomb = Buffer.from(zipSync({ 'big.json': new Uint8Array(64 * 1024 * 1024) }));
    expect(bomb.length).toBeLessThan(200 * 1024);
    expect(() => unzipCapped(bomb, 1024 * 1024)).toThrow(MailRejectedError);
  });

  it('refuses a message with too many MIME parts before parsing it', async () => {
    const raw = reportMail({ reports: Array.from({ length: 20 }, () => ({ json: rfc })) });
    await expect(extractReports(raw, { ...OPTS, maxMimeParts: 10 })).rejects.toMatchObject({ code: 554 });
  });

  it('counts parts that have no Content-Type of their own (they escaped the cap before)', async () => {
    const parts = Array.from({ length: 500 }, (_, i) => `--b\r\n\r\npart ${i}\r\n`).join('');
    const raw = Buffer.from(
      `From: a@b.example\r\nTo: t@localhost\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n${parts}--b--\r\n`,
    );
    await expect(extractReports(raw, OPTS)).rejects.toMatchObject({ code: 554 });
  });

  it('a zip of 20,000 empty files is refused (554), not 20,000 jobs; a zip of many reports counts each toward the part cap', async () => {
    const files = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`f${i}.json`, new Uint8Array(0)]));
    const many = reportMail({
      reports: [{ json: '', raw: Buffer.from(zipSync(files)), filename: 'r.zip', contentType: 'application/zip' }],
    });
    await expect(extractReports(many, OPTS)).rejects.toMatchObject({ code: 554 });
    const fifty = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`r${i}.json`, Buffer.from(rfc)]));
    const raw = reportMail({
      reports: [{ json: '', raw: Buffer.from(zipSync(fifty)), filename: 'r.zip', contentType: 'application/zip' }],
    });
    expect((await extractReports(raw, OPTS)).parts).toHaveLength(50);
    await expect(extractReports(raw, { ...OPTS, maxMimeParts: 20 })).rejects.toMatchObject({ code: 554 });
  });

  it('finds a JSON report under application/octet-stream and one with no attachment at all in the body', async () => {
    const raw = reportMail({
      reports: [{ json: rfc, gzip: false, contentType: 'application/octet-stream', filename: 'report.json' }],
    });
    expect((await extractReports(raw, OPTS)).parts).toHaveLength(1);
    const inline = Buffer.from(
      `From: a@b.example\r\nTo: tlsrpt@localhost\r\nSubject: report\r\nContent-Type: text/plain\r\n\r\n${rfc}\r\n`,
    );
    const mail = await extractReports(inline, OPTS);
    expect(mail.parts).toHaveLength(1);
    expect(mail.flags).toContain('report-in-text-body');
  });

  it('a damaged header line inside a part still yields the report as sent (the lenient parse takes over)', async () => {
    const gz = gzipSync(rfc);
    const raw = Buffer.from(
      [
        'From: tlsrpt@sender.example',
        'Subject: Report Domain: example.com Submitter: sender.example',
        'Content-Type: multipart/report; report-type="tlsrpt"; boundary="b"',
        '',
        '--b',
        'Content-Type: application/tlsrpt+gzip',
        'Content-Transfer-Encoding: base64',
        'Content-Disposition: attachment;',
        'filename="sender.example!example.com!1!2.json.gz"', // a fold without its indent
        '',
        gz.toString('base64'),
        '--b--',
        '',
      ].join('\r\n'),
    );
    const mail = await extractReports(raw, OPTS);
    expect(mail.parts).toHaveLength(1);
    expect(mail.parts[0]!.content.equals(gz)).toBe(true);
    expect(mail.subject).toBe('Report Domain: example.com Submitter: sender.example');
  });

  it('headers as sent: a Date that does not parse stays as it is (it was the time of reading), folds unfolded', async () => {
    const raw = reportMail({
      reports: [{ json: rfc }],
      extraHeaders: ['TLS-Report-Submitter: second.example'],
      subject: 'Report Domain: example.com\r\n    Submitter: =?utf-8?B?c2VuZGVyLmV4YW1wbGU=?=',
    });
    const dated = Buffer.from(raw.toString().replace('Date: Mon, 03 Feb 2025 10:00:00 +0000', 'Date: yesterday'));
    const mail = await extractReports(dated, OPTS);
    expect(mail.date).toBe('yesterday');
    expect(mail.subject).toBe('Report Domain: example.com Submitter: sender.example');
    expect(mail.reportSubmitterHeader).toBe('sender.example, second.example');
    expect((await extractReports(raw, OPTS)).date).toBe('2025-02-03T10:00:00.000Z');
  });

  it('an attachment keeps the content type it was sent with', async () => {
    const raw = reportMail({
      reports: [{ json: rfc, gzip: false, contentType: 'application/octet-stream', filename: 'report.json' }],
    });
    expect((await extractReports(raw, OPTS)).parts[0]!.contentType).toBe('application/octet-stream');
  });
});

describe('DKIM', () => {
  const key = makeKey('sender.example');
  const resolver = testResolver([key]);
  const mail = () => reportMail({ reports: [{ json: json('kravietz__tlsrpt-rs__tlsrpt_fixtures_rfc8460.json') }] });

  it('pass: signed by the submitter with a key for tlsrpt', async () => {
    const v = await verifyDkim(await sign(mail(), key), 'sender.example', resolver);
    expect(v).toMatchObject({
      result: 'pass',
      signingDomain: 'sender.example',
      selector: 'tlsrpt',
      submitterAligned: true,
      keyAllowsTlsrpt: true,
      lengthLimited: false,
    });
  });

  it('fail: the body changed after signing', async () => {
    const signed = (await sign(mail(), key))
      .toString()
      .replace('This is an aggregate TLS report.', 'This was changed.');
    expect((await verifyDkim(Buffer.from(signed), 'sender.example', resolver)).result).toBe('fail');
  });

  it('none: not signed, without parsing or looking up anything', async () => {
    const asked: string[] = [];
    const watching = async (name: string) => {
      asked.push(name);
      return [];
    };
    expect((await verifyDkim(mail(), 'sender.example', watching)).result).toBe('none');
    expect(asked).toEqual([]);
    expect(hasDkimSignature(await sign(mail(), key))).toBe(true);
    expect(hasDkimSignature(Buffer.from('Subject: x\r\n\r\nDKIM-Signature: in the body\r\n'))).toBe(false);
    expect(hasDkimSignature(Buffer.from('Subject: x\r\ndkim-signature : v=1\r\n\r\nbody'))).toBe(true);
  });

  it('key records are cached: one query for many mails, misses for a while, failures not at all', async () => {
    const calls: string[] = [];
    let fail: string | undefined;
    const counting = async (name: string, rrtype: string) => {
      calls.push(name);
      await new Promise((r) => setTimeout(r, 5));
      if (fail) throw Object.assign(new Error(fail), { code: fail });
      return resolver(name, rrtype);
    };
    let clock = 0;
    const cached = cachingResolver(counting, { ttlMs: 1000, negativeTtlMs: 100, maxNames: 2 }, () => clock);
    const signed = await Promise.all(Array.from({ length: 5 }, async () => sign(mail(), key)));
    const verdicts = await Promise.all(signed.map((m) => verifyDkim(m, 'sender.example', cached)));
    expect(verdicts.map((v) => v.result)).toEqual(['pass', 'pass', 'pass', 'pass', 'pass']);
    expect(calls).toHaveLength(1); // five at once: one query
    clock = 999;
    await verifyDkim(signed[0]!, 'sender.example', cached);
    expect(calls).toHaveLength(1);
    clock = 1000; // expired
    await verifyDkim(signed[0]!, 'sender.example', cached);
    expect(calls).toHaveLength(2);
    fail = 'ENOTFOUND';
    await expect(cached('a.example', 'TXT')).rejects.toThrow();
    await expect(cached('a.example', 'TXT')).rejects.toThrow();
    expect(calls.filter((c) => c === 'a.example')).toHaveLength(1); // a miss is kept
    clock = 1100;
    await expect(cached('a.example', 'TXT')).rejects.toThrow();
    expect(calls.filter((c) => c === 'a.example')).toHaveLength(2); // ...for negativeTtlMs
    fail = 'ESERVFAIL';
    await expect(cached('b.example', 'TXT')).rejects.toThrow();
    await expect(cached('b.example', 'TXT')).rejects.toThrow();
    expect(calls.filter((c) => c === 'b.example')).toHaveLength(2); // a failure is asked again
    fail = undefined;
    await cached('c.example', 'TXT').catch(() => []);
    await cached('d.example', 'TXT').catch(() => []);
    await cached('c.example', 'TXT').catch(() => []);
    await cached('tlsrpt._domainkey.sender.example', 'TXT'); // evicted by c and d (two names at most)
    expect(calls.filter((c) => c === 'tlsrpt._domainkey.sender.example')).toHaveLength(3);
    expect(calls.filter((c) => c === 'c.example')).toHaveLength(1);
  });

  it('fail: a signature with l= does not count', async () => {
    const v = await verifyDkim(await sign(mail(), key, 100), 'sender.example', resolver);
    expect(v).toMatchObject({ result: 'fail', lengthLimited: true });
  });

  it('temperror when DNS fails', async () => {
    const broken = async () => {
      throw Object.assign(new Error('timeout'), { code: 'ETIMEOUT' });
    };
    expect((await verifyDkim(await sign(mail(), key), 'sender.example', broken)).result).toBe('temperror');
  });

  it('a valid signature by another domain is a pass that is not the submitter; keys for email only are noted', async () => {
    const other = makeKey('elsewhere.example', 'sel', 'email');
    const v = await verifyDkim(await sign(mail(), other), 'sender.example', testResolver([other]));
    expect(v).toMatchObject({ result: 'pass', submitterAligned: false, keyAllowsTlsrpt: false });
  });

  it('SMTP_DKIM_POLICY=require turns a report without the submitter signature into a reject; record keeps it', () => {
    const content = Buffer.from(json('kravietz__tlsrpt-rs__tlsrpt_fixtures_rfc8460.json'));
    const required = processReportJob(smtpJob(content, {}, { result: 'none' }, 'require'), 'j', {
      maxDecompressedBytes: MAX,
    });
    expect(required).toMatchObject({ outcome: 'rejected', reason: 'dkim-required' });
    const passing = processReportJob(
      smtpJob(content, {}, { result: 'pass', submitterAligned: true, signingDomain: 'x' }, 'require'),
      'j',
      { maxDecompressedBytes: MAX },
    );
    expect(passing.outcome).toBe('stored');
    const recorded = processReportJob(smtpJob(content, {}, { result: 'none' }, 'record'), 'j', {
      maxDecompressedBytes: MAX,
    });
    expect(recorded.outcome === 'stored' && recorded.flags).toContain('dkim-none');
  });

  it('helpers', () => {
    expect(domainsAligned('mail.google.com', 'google.com')).toBe(true);
    expect(domainsAligned('evilgoogle.com', 'google.com')).toBe(false);
    expect(keyAllowsTlsrpt('v=DKIM1; p=abc')).toBe(true);
    expect(keyAllowsTlsrpt('v=DKIM1; s=email:tlsrpt; p=abc')).toBe(true);
    expect(keyAllowsTlsrpt('v=DKIM1; s=email; p=abc')).toBe(false);
  });
});

describe('names and recipients', () => {
  it('parses RFC 8460 filenames and subjects', () => {
    expect(parseReportFilename('google.com!Example.com!1583107200!1583193599!001.json.gz')).toEqual({
      submitter: 'google.com',
      domain: 'example.com',
      begin: 1583107200,
      end: 1583193599,
    });
    expect(parseReportFilename('report.json')).toBeUndefined();
    expect(parseReportSubject('Report Domain: krvtz.net Submitter: mail.ru Report-ID: <c96d@mail.ru>')).toEqual({
      domain: 'krvtz.net',
      submitter: 'mail.ru',
      reportId: 'c96d@mail.ru',
    });
  });
  it('accepts only the configured mailboxes and domains', () => {
    const ok = recipientPolicy(['tlsrpt@example.com', '@reports.example.net']);
    expect(ok('TLSRPT@Example.com')).toBe(true);
    expect(ok('anyone@reports.example.net')).toBe(true);
    expect(ok('postmaster@example.com')).toBe(false);
    expect(ok('victim@elsewhere.example')).toBe(false);
    expect(ok('tlsrpt@example.com.evil.example')).toBe(false);
  });
});
