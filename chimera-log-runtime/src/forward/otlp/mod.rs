//! The OTLP/HTTP logs forwarder (feature `otlp`): follows `chimera.log` and posts its lines to an
//! OpenTelemetry receiver (a Collector, Grafana, any OTLP backend) as protobuf
//! `ExportLogsServiceRequest`s, gzipped, on a thread of its own with its own tokio runtime.
//!
//! **The file is the buffer**, as for CloudWatch: lines are read from a cursor saved in the log
//! directory (`.chimera-log.otlp.cursor`) only after the receiver acknowledged the request that
//! carried them; an outage costs disk, never memory, and a restart resumes from the cursor.
//! Retries back off (`forward::backoff`) on 429, 5xx and connection failures, honouring
//! `Retry-After`; a partial success is counted, a 4xx refusal counted and the batch given up.
//!
//! - `record`: a line as a `LogRecord`, a batch as a request (the documented mapping);
//! - `batch`: what waits, when to send, how much one request carries;
//! - `client`: one HTTP request and the meaning of its answer;
//! - `exporter`: the thread (follow, batch, send, acknowledge, back off).

mod batch;
mod client;
mod exporter;
mod record;

pub(crate) use exporter::Exporter;
