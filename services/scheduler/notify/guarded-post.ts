// A JSON POST to a webhook target we do not trust: the address it resolves to must be public (checked on the
// connection itself, so a DNS answer cannot change between the check and the connect), one absolute deadline covers
// the whole exchange, and at most 64 KiB of the answer is read.
import { lookup as dnsLookup } from 'node:dns';
import { request as httpRequest, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { isPublicAddress } from '../posture/net-guard.ts';

const MAX_ANSWER_BYTES = 64 * 1024;

export class RefusedTarget extends Error {
  override readonly name = 'RefusedTarget';
}

/** dns.lookup that refuses private, loopback and other special addresses (unless allowed). */
export function publicLookup(allowPrivate: boolean): LookupFunction {
  return (host, options, callback) => {
    dnsLookup(host, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const list = addresses as Array<{ address: string; family: number }>;
      const refused = list.find((a) => !isPublicAddress(a.address));
      if (refused && !allowPrivate)
        return callback(new RefusedTarget(`${host} resolves to ${refused.address}: not a public address`), '', 0);
      if (options.all) return callback(null, list);
      const first = list[0]!;
      callback(null, first.address, first.family);
    });
  };
}

/** POSTs `body`; resolves to the answer's status and its first bytes, or rejects (network, deadline, refusal). */
export function postJson(
  url: string,
  body: string | Buffer,
  opts: { timeoutMs: number; allowPrivate: boolean; headers?: Record<string, string> },
): Promise<{ status: number; text: string }> {
  const target = new URL(url);
  if (target.protocol !== 'https:' && target.protocol !== 'http:')
    return Promise.reject(new RefusedTarget(`${target.protocol} is not http or https`));
  // An address in the URL is connected to without a look-up: it is checked here.
  const literal = target.hostname.replace(/^\[|\]$/g, '');
  if (isIP(literal) !== 0 && !opts.allowPrivate && !isPublicAddress(literal))
    return Promise.reject(new RefusedTarget(`${literal} is not a public address`));
  const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
  const options: RequestOptions = {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...opts.headers },
    lookup: publicLookup(opts.allowPrivate),
    // No connection is kept between deliveries: each one is checked anew.
    agent: false,
  };
  return new Promise((resolve, reject) => {
    const req = request(target, options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        if (size < MAX_ANSWER_BYTES) chunks.push(chunk.subarray(0, MAX_ANSWER_BYTES - size));
        size += chunk.length;
        if (size >= MAX_ANSWER_BYTES) res.destroy();
      });
      const done = () => {
        clearTimeout(deadline);
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
      };
      res.on('end', done);
      res.on('close', done);
      res.on('error', done);
    });
    const deadline = setTimeout(() => req.destroy(new Error(`no answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    req.on('error', (err) => {
      clearTimeout(deadline);
      reject(err);
    });
    req.end(body);
  });
}
