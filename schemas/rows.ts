// Rows as written to ClickHouse (TabSeparated, in the column order of TABLE_COLUMNS below). Column names match
// schemas/clickhouse/*.sql.
// DateTime values are `YYYY-MM-DD hh:mm:ss` UTC strings, Date values `YYYY-MM-DD`: what ClickHouse 18.16 takes.

export interface ReportRow {
  report_key: string;
  organization: string;
  report_id: string;
  contact_info: string | null;
  start_time: string;
  end_time: string;
  start_raw: string;
  end_raw: string;
  day: string;
  policy_count: number;
  flags: string[];
  extra: string;
  json_sha256: string;
  receipt_id: string;
  received_at: string;
  channel: string;
  dkim_result: string;
  dkim_domain: string;
  dkim_aligned: number;
  normalizer_version: number;
  version: number;
}

export interface PolicyResultRow {
  report_key: string;
  policy_index: number;
  day: string;
  organization: string;
  report_id: string;
  start_time: string;
  end_time: string;
  policy_type: string;
  policy_domain: string;
  policy_strings: string[];
  mx_hosts: string[];
  sts_version: string;
  sts_mode: string;
  sts_max_age: number | null;
  sts_mx: string[];
  tlsa_records: string[];
  successful_sessions: number;
  failed_sessions: number;
  failure_detail_count: number;
  flags: string[];
  extra: string;
  version: number;
}

export interface FailureDetailRow {
  report_key: string;
  policy_index: number;
  detail_index: number;
  day: string;
  organization: string;
  report_id: string;
  policy_type: string;
  policy_domain: string;
  result_type: string;
  failed_session_count: number;
  sending_mta_ip: string | null;
  receiving_mx_hostname: string | null;
  receiving_mx_helo: string | null;
  receiving_ip: string | null;
  additional_information: string | null;
  failure_reason_code: string | null;
  flags: string[];
  extra: string;
  version: number;
}

export interface RawReportRow {
  report_key: string;
  json_sha256: string;
  day: string;
  receipt_id: string;
  received_at: string;
  raw_json: string;
  version: number;
}

export interface ReceiptRow {
  receipt_id: string;
  received_at: string;
  processed_at: string;
  channel: string;
  remote_address: string;
  user_agent: string;
  content_type: string;
  content_encoding: string;
  path: string;
  body_bytes: number;
  body_sha256: string;
  /** `conflict`: a copy of a stored report with other content, kept but not counted (services/worker/trust.ts). */
  outcome: 'stored' | 'rejected' | 'conflict';
  report_key: string;
  reject_reason: string;
  flags: string[];
  envelope_from: string;
  envelope_to: string[];
  helo: string;
  tls_protocol: string;
  tls_cipher: string;
  message_id: string;
  subject: string;
  attachment_name: string;
  dkim_result: string;
  dkim_domain: string;
  dkim_selector: string;
  dkim_aligned: number;
  dkim_key_tlsrpt: number;
  meta: string;
  version: number;
}

export interface RejectRow {
  receipt_id: string;
  received_at: string;
  rejected_at: string;
  channel: string;
  remote_address: string;
  user_agent: string;
  content_type: string;
  content_encoding: string;
  path: string;
  reason: string;
  detail: string;
  body_bytes: number;
  body_sha256: string;
  raw_base64: string;
  meta: string;
  version: number;
}

/** A report stored more than once, under one of the policy domains of its versions (schemas/clickhouse/0009). */
export interface ReprocessedReportRow {
  policy_domain: string;
  day: string;
  report_key: string;
}

/** The content a processing stored of a report: its text's hash and normalizer version (schemas/clickhouse/0009). */
export interface ReportFingerprintRow {
  day: string;
  report_key: string;
  fingerprint: string;
  version: number;
}

/** One copy of a report, counted or not (schemas/clickhouse/0010). */
export interface ReportCopyRow {
  day: string;
  report_key: string;
  receipt_id: string;
  json_sha256: string;
  figures_sha256: string;
  trust: number;
  received_at: string;
  channel: string;
  remote_address: string;
  dkim_result: string;
  dkim_domain: string;
  dkim_aligned: number;
  organization: string;
  report_id: string;
  policy_count: number;
  successful_sessions: number | null;
  failed_sessions: number | null;
  normalizer_version: number;
  chosen_by: string;
  version: number;
}

/** A row of `alerts` (migration 0003): one finding of an alert rule, numbered by `seq` for pollers. */
export interface AlertRow {
  alert_id: string;
  seq: number;
  rule: string;
  /** critical, warning, info for the per-day rules; an incident's critical, high, medium or low for its events. */
  severity: 'critical' | 'high' | 'medium' | 'low' | 'warning' | 'info';
  policy_domain: string;
  day: string;
  organization: string;
  result_type: string;
  title: string;
  detail: string;
  created_at: string;
}

/** A row of `incident_events` (migration 0011): one act of a person on an incident. */
export interface IncidentEventRow {
  event_id: string;
  incident_id: string;
  domain: string;
  kind: string;
  result_type: string;
  subject: string;
  first_day: string;
  last_day: string;
  event: 'acknowledge' | 'mute' | 'unmute' | 'resolve' | 'reopen';
  /** For mute: until when (a DateTime); '1970-01-01 00:00:00' otherwise. */
  until: string;
  actor: string;
  note: string;
  at: string;
  at_ms: number;
}

/** A row of `notification_deliveries` (migration 0012): the outcome of one attempt at one delivery. */
export interface NotificationDeliveryRow {
  delivery_id: string;
  notification_id: string;
  kind: string;
  domains: string[];
  title: string;
  channel: string;
  destination: string;
  state: 'delivered' | 'retrying' | 'failed';
  attempts: number;
  error: string;
  at: string;
  version: number;
}

/** A row of `forward_deliveries` (migration 0016): the outcome of one attempt to forward a report to a destination. */
export interface ForwardDeliveryRow {
  forward_id: string;
  report_key: string;
  receipt_id: string;
  destination: string;
  state: NotificationDeliveryRow['state'];
  attempts: number;
  error: string;
  at: string;
  version: number;
}

export interface TableRows {
  reports: ReportRow[];
  policy_results: PolicyResultRow[];
  failure_details: FailureDetailRow[];
  raw_reports: RawReportRow[];
  receipts: ReceiptRow[];
  rejects: RejectRow[];
  report_fingerprints: ReportFingerprintRow[];
  report_copies: ReportCopyRow[];
  /** Not made by processing a job: the batch writer adds them for the reports it finds stored before. */
  reprocessed_reports: ReprocessedReportRow[];
}

export type TableName = keyof TableRows;

/**
 * Insert order: the marks of reports stored before with other content, so no read sees a second version of a report
 * unmarked, and the fingerprint of each report's content; then everything a report consists of; then `reports` and
 * `receipts`, which say it is complete. A crash between the phases leaves rows that the retry writes again and the
 * dedup views collapse.
 */
export const INSERT_PHASES: TableName[][] = [
  ['reprocessed_reports', 'report_fingerprints'],
  ['policy_results', 'failure_details', 'raw_reports', 'rejects'],
  ['reports', 'receipts', 'report_copies'],
];

export function emptyTableRows(): TableRows {
  return {
    reports: [],
    policy_results: [],
    failure_details: [],
    raw_reports: [],
    receipts: [],
    rejects: [],
    report_fingerprints: [],
    report_copies: [],
    reprocessed_reports: [],
  };
}

/** Lists every key of R once; a missing or unknown column is a type error here, not a shifted TSV field. */
type ColumnList<R, C extends readonly (keyof R)[]> = [Exclude<keyof R, C[number]>] extends [never] ? C : never;
function columns<R>() {
  return <const C extends readonly (keyof R & string)[]>(list: ColumnList<R, C>): C => list;
}

/** The column order each table's rows are encoded and inserted in. */
export const TABLE_COLUMNS = {
  reports: columns<ReportRow>()([
    'report_key',
    'organization',
    'report_id',
    'contact_info',
    'start_time',
    'end_time',
    'start_raw',
    'end_raw',
    'day',
    'policy_count',
    'flags',
    'extra',
    'json_sha256',
    'receipt_id',
    'received_at',
    'channel',
    'dkim_result',
    'dkim_domain',
    'dkim_aligned',
    'normalizer_version',
    'version',
  ]),
  policy_results: columns<PolicyResultRow>()([
    'report_key',
    'policy_index',
    'day',
    'organization',
    'report_id',
    'start_time',
    'end_time',
    'policy_type',
    'policy_domain',
    'policy_strings',
    'mx_hosts',
    'sts_version',
    'sts_mode',
    'sts_max_age',
    'sts_mx',
    'tlsa_records',
    'successful_sessions',
    'failed_sessions',
    'failure_detail_count',
    'flags',
    'extra',
    'version',
  ]),
  failure_details: columns<FailureDetailRow>()([
    'report_key',
    'policy_index',
    'detail_index',
    'day',
    'organization',
    'report_id',
    'policy_type',
    'policy_domain',
    'result_type',
    'failed_session_count',
    'sending_mta_ip',
    'receiving_mx_hostname',
    'receiving_mx_helo',
    'receiving_ip',
    'additional_information',
    'failure_reason_code',
    'flags',
    'extra',
    'version',
  ]),
  raw_reports: columns<RawReportRow>()([
    'report_key',
    'json_sha256',
    'day',
    'receipt_id',
    'received_at',
    'raw_json',
    'version',
  ]),
  receipts: columns<ReceiptRow>()([
    'receipt_id',
    'received_at',
    'processed_at',
    'channel',
    'remote_address',
    'user_agent',
    'content_type',
    'content_encoding',
    'path',
    'body_bytes',
    'body_sha256',
    'outcome',
    'report_key',
    'reject_reason',
    'flags',
    'envelope_from',
    'envelope_to',
    'helo',
    'tls_protocol',
    'tls_cipher',
    'message_id',
    'subject',
    'attachment_name',
    'dkim_result',
    'dkim_domain',
    'dkim_selector',
    'dkim_aligned',
    'dkim_key_tlsrpt',
    'meta',
    'version',
  ]),
  rejects: columns<RejectRow>()([
    'receipt_id',
    'received_at',
    'rejected_at',
    'channel',
    'remote_address',
    'user_agent',
    'content_type',
    'content_encoding',
    'path',
    'reason',
    'detail',
    'body_bytes',
    'body_sha256',
    'raw_base64',
    'meta',
    'version',
  ]),
  report_fingerprints: columns<ReportFingerprintRow>()(['day', 'report_key', 'fingerprint', 'version']),
  reprocessed_reports: columns<ReprocessedReportRow>()(['policy_domain', 'day', 'report_key']),
  report_copies: columns<ReportCopyRow>()([
    'day',
    'report_key',
    'receipt_id',
    'json_sha256',
    'figures_sha256',
    'trust',
    'received_at',
    'channel',
    'remote_address',
    'dkim_result',
    'dkim_domain',
    'dkim_aligned',
    'organization',
    'report_id',
    'policy_count',
    'successful_sessions',
    'failed_sessions',
    'normalizer_version',
    'chosen_by',
    'version',
  ]),
} as const satisfies Record<TableName, readonly string[]>;

/** The column order alerts are inserted in (the scheduler's, not the worker's). */
export const ALERT_COLUMNS = columns<AlertRow>()([
  'alert_id',
  'seq',
  'rule',
  'severity',
  'policy_domain',
  'day',
  'organization',
  'result_type',
  'title',
  'detail',
  'created_at',
]);

// Reads. A read's row names each stored column it returns through the row type above (`Stored`), and declares only
// what it computes (sums, counts, first and last days), so a column renamed or retyped here fails the build at every
// read of it. The read tables (policy_days, domain_policies, report_days, reporter_days, receipts_by_report …) copy
// their columns from these tables (schemas/clickhouse/0005, 0008), types included.

/** Columns `K` of a stored row, as a read returns them. */
export type Stored<R, K extends keyof R> = Pick<R, K>;

/** Sessions of reports, each report counted once. */
export interface SessionSums {
  successful: number;
  failed: number;
  reports: number;
}

/** Failed sessions of failure details, and how many details. */
export interface DetailSums {
  failed: number;
  details: number;
}

/** How many rows a count found. */
export interface RowCount {
  n: number;
}

/** The first and last report day of a group. */
export interface DaySpan {
  first_day: string;
  last_day: string;
}
