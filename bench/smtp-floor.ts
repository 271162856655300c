// smtp-server's own floor for the bench: the SMTP receiver's server settings (STARTTLS, the same certificate) with
// an onData that reads the message and answers 250, no parsing, no DKIM, no queue. Run as its own process so its
// CPU per mail is measured like the receiver's: FLOOR_PORT, FLOOR_CERT and FLOOR_KEY from the environment.
import { readFileSync } from 'node:fs';
import { SMTPServer } from 'smtp-server';

let n = 0;
const server = new SMTPServer({
  key: readFileSync(process.env.FLOOR_KEY!),
  cert: readFileSync(process.env.FLOOR_CERT!),
  minVersion: 'TLSv1.2',
  disabledCommands: ['AUTH'],
  authOptional: true,
  disableReverseLookup: true,
  maxClients: 1000,
  logger: false,
  onData(stream, _session, callback) {
    stream.on('data', () => {});
    stream.on('end', () => callback(null, `2.0.0 1 report(s) queued as floor-${++n}`));
  },
});
server.listen(Number(process.env.FLOOR_PORT), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
