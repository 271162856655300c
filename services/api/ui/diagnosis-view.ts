// A rendered diagnosis (diagnosis.ts) as a section of a page.
import type { Fault, RenderedDiagnosis } from '../diagnosis.ts';
import { html, type Html } from './html.ts';

export const FAULT_LABELS: Record<Fault, string> = {
  'your-mx': 'your MX host',
  'your-policy-host': 'your MTA-STS policy host',
  'your-dns': 'your DNS',
  'your-policy': 'your policy',
  sender: 'the sending side',
  unclear: 'unclear from the report',
};

export function diagnosisView(
  d: RenderedDiagnosis,
  extra: { additionalInformation?: string | null; posture?: { sentence: string; severity: string } | undefined } = {},
): Html {
  const info = extra.additionalInformation;
  return html`<article class="diagnosis" aria-label="Diagnosis: ${d.title}">
    <h3>${d.sentence}</h3>
    <p><strong>What it means:</strong> ${d.meaning}</p>
    ${extra.posture ? html`<p class="posture posture-${extra.posture.severity}"><strong>Live check:</strong> ${extra.posture.sentence}</p>` : ''}
    <p>
      <strong>Whose side:</strong>
      ${FAULT_LABELS[d.fault]}${d.known ? '' : html` (result type <code>${d.resultType}</code> is not in RFC 8460's registry)`}
    </p>
    ${
      d.reasonCode
        ? html`<p>
            <strong>Reason the sender gave:</strong> <code>${d.reasonCode.raw}</code>${
              d.reasonCode.explanation
                ? html` — ${d.reasonCode.explanation}`
                : ' (a code this version does not know; shown as it came)'
            }
          </p>`
        : ''
    }
    ${info ? html`<p><strong>Additional information from the sender:</strong> <code>${info}</code></p>` : ''}
    <p><strong>Likely causes:</strong></p>
    <ul>
      ${d.causes.map((c) => html`<li>${c}</li>`)}
    </ul>
    <p><strong>Check it yourself:</strong></p>
    ${d.checks.map((c) => html`<pre><code>${c}</code></pre>`)}
    <p><strong>How to fix it:</strong></p>
    <ul>
      ${d.fix.map((f) => html`<li>${f}</li>`)}
    </ul>
  </article>`;
}
