//! The log directory's file names, each written once: what the logger writes, what its followers
//! keep beside the logs, and what a reader (the `chimera-log` command) looks for. Nothing here
//! opens a file.

/// The general log file's name in the log directory.
pub const GENERAL_FILE: &str = "chimera.log";
/// The audit file's name in the log directory.
pub const AUDIT_FILE: &str = "executions.log";
/// The file beside the logs that names the process holding the directory (its pid, for the
/// error a second logger gets); also locked, for loggers and tools of earlier versions, which
/// lock only this file.
pub const LOCK_FILE: &str = ".chimera-log.lock";
/// Where the CloudWatch shipper keeps its cursor in the log directory.
pub const CLOUDWATCH_CURSOR_FILE: &str = ".chimera-log.cloudwatch.cursor";
/// Where the OTLP forwarder keeps its cursor in the log directory.
pub(crate) const OTLP_CURSOR_FILE: &str = ".chimera-log.otlp.cursor";
/// The audit store's default SQLite file inside the log directory.
pub const STORE_FILE: &str = "audit.db";
/// The audit store archiver's cursor in `executions.log`'s family, beside the logs.
pub const STORE_CURSOR_FILE: &str = ".audit-store.cursor";
/// The S3 archive's cursor in `executions.log`'s family, beside the logs.
pub const ARCHIVE_CURSOR_FILE: &str = ".s3-archive.cursor";
/// The S3 archive's last uploaded object (its key and seq range), beside the logs: where a start
/// looks in the bucket for what an interrupted run uploaded after it.
pub const ARCHIVE_STATE_FILE: &str = ".s3-archive.state";
