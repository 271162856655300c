import { dkimVerify } from 'mailauth';
import { makeKey, reportMail, sign, testResolver } from '../test/helpers/mail.ts';
const key = makeKey('sender.example');
const m = await sign(reportMail({ reports: [{ json: '{"a":1}' }] }), key);
console.log(m.toString().slice(0, 600));
const r = await dkimVerify(m, { resolver: testResolver([key]) });
console.log(JSON.stringify(r.results, null, 1).slice(0, 1500));
