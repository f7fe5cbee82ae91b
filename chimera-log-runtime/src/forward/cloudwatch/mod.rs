//! The CloudWatch Logs shipper (feature `cloudwatch`): follows `chimera.log` (which receives
//! exactly the events CloudWatch should) and ships its lines with `PutLogEvents`, on a thread of
//! its own with its own tokio runtime, so the application need not be async and may be: nothing
//! here runs on the caller's thread.
//!
//! **The file is the buffer**, as for the CloudWatch agent or Fluent Bit's tail: lines are read
//! from the file family (`crate::dir::follow`) from a cursor saved in the log directory
//! ([`CURSOR_FILE`]) only after the service acknowledged the request that carried them. An outage
//! of any length costs disk (bounded by the files' retention), never memory: at most one
//! request's worth is read ahead. A restart, or a crash, resumes from the cursor: at most the
//! one unacknowledged request is sent twice. Lines are lost only when retention deletes a backup
//! before it was shipped; that is counted and reported once.
//!
//! It owns delivery and nothing else: group, stream and retention set-up, its own retry loop
//! (the SDK's retries are off: their budget runs dry in a long outage), and reporting an outage
//! once when it starts and once when it ends. The SDK logs through `tracing`, which this logger
//! does not capture from its own threads: nothing the SDK, hyper or rustls log feeds back.

mod batch;
mod shipper;

pub(crate) use shipper::Shipper;
