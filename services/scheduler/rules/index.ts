// The alert rules, one module each; ALERT_RULES names which run.
import type { Candidate, RuleContext, RuleName } from './rule-kit.ts';
import { failureRate } from './failure-rate.ts';
import { newResultType } from './new-result-type.ts';
import { enforceFailure } from './enforce-failure.ts';
import { reporterStopped } from './reporter-stopped.ts';
import { stsPolicyFetchError } from './sts-policy-fetch-error.ts';
import { posture } from './posture.ts';

export const RULES: Record<RuleName, (ctx: RuleContext) => Promise<Candidate[]>> = {
  'failure-rate': failureRate,
  'new-result-type': newResultType,
  'enforce-failure': enforceFailure,
  'reporter-stopped': reporterStopped,
  'sts-policy-fetch-error': stsPolicyFetchError,
  posture,
};
