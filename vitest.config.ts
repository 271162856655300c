import { defineConfig } from 'vitest/config';

// Three tiers. unit: pure code and fault-injected clients, nothing started (npm run test:unit needs only Node and the
// npm packages). integration: the real Redis and ClickHouse the global setup starts, each file with its own database
// and queue. e2e: the built services as processes, with the servers they talk to (Dovecot, dnsmasq, pebble, ...).
const shared = { testTimeout: 60_000, hookTimeout: 120_000 };
const withServers = { ...shared, globalSetup: ['test/helpers/global-setup.ts'] };

export default defineConfig({
  test: {
    pool: 'forks',
    reporters: ['default'],
    projects: [
      { test: { ...shared, name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { test: { ...withServers, name: 'integration', include: ['test/integration/**/*.test.ts'] } },
      { test: { ...withServers, name: 'e2e', include: ['test/e2e/**/*.test.ts'] } },
    ],
  },
});
