// The production unit files run each service as npm start does (same node flags and entry point), restart it
// whenever it exits, and read the same environment file.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SERVICES, serviceArgs } from '../../deploy/scripts/bundle.ts';

const unit = (name: string) => readFileSync(`deploy/systemd/tlsrpt-${name}.service`, 'utf8');
const section = (text: string, name: string) => text.split(/^\[/m).find((s) => s.startsWith(`${name}]`)) ?? '';

describe('deploy/systemd', () => {
  for (const name of SERVICES) {
    it(`tlsrpt-${name}.service`, () => {
      const text = unit(name);
      const exec = /^ExecStart=(\S+) (.*)$/m.exec(text);
      expect(exec?.[1]).toBe('/usr/bin/node');
      expect(exec?.[2]?.split(' ')).toEqual(serviceArgs(name, [], 'dist'));
      const service = section(text, 'Service');
      expect(service).toMatch(/^Restart=always$/m);
      expect(service).toMatch(/^EnvironmentFile=\/etc\/tlsrpt-pipeline\/env$/m);
      // systemd reads the start limit only in [Unit]: there it keeps a crash-looping service being restarted.
      expect(section(text, 'Unit')).toMatch(/^StartLimitIntervalSec=0$/m);
    });
  }
});
