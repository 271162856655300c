// npm run fuzz [-- --runs N --seed S]: a long fuzz run of the same properties as test/integration/fuzz.test.ts
// (without ClickHouse), printing the number of cases tried.
import fc from 'fast-check';
import { checkBody, checkEmail, emailBytes, emailCase, reportBody, reportCase } from '../test/helpers/fuzz.ts';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const runs = arg('runs', 20_000);
const seed = arg('seed', Date.now() % 2 ** 31);
let stored = 0;
let rejected = 0;
const t0 = Date.now();
fc.assert(
  fc.property(reportCase, (c) => {
    const r = checkBody(reportBody(c), 'fuzz');
    if (r.outcome === 'stored') stored++;
    else rejected++;
  }),
  { numRuns: runs, seed },
);
let mails = 0;
await fc.assert(
  fc.asyncProperty(emailCase, async (c) => {
    mails++;
    await checkEmail(emailBytes(c), 'mail');
  }),
  { numRuns: Math.ceil(runs / 5), seed },
);
console.log(
  `fuzz: ${runs} report cases (${stored} stored, ${rejected} rejected with a type), ${mails} e-mail cases, seed ${seed}, ${((Date.now() - t0) / 1000).toFixed(1)} s: no failure`,
);
