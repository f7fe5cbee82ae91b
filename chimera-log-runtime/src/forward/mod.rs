//! Forwarders: outputs that take their lines from a file the logger has written, not from the
//! caller. A forwarder follows the file from a cursor it persists, so the local file is its buffer:
//! an outage or a restart delays lines, it does not lose them (DESIGN §10). CloudWatch, OTLP,
//! the audit store and the S3 archive are forwarders.
//!
//! The pipeline has two kinds of output, and a new one is written as one of them:
//! - a [`Sink`](crate::sink::Sink), handed finished lines by a writer thread (console, files);
//! - a [`Forwarder`], started here and driven through this trait (flush, shutdown, stats).
//!
//! Only [`start`] knows which forwarders exist; the dispatcher drives them all alike.

#[cfg(feature = "s3")]
pub(crate) mod archive;
#[cfg(any(feature = "cloudwatch", feature = "otlp"))]
mod backoff;
#[cfg(feature = "cloudwatch")]
pub(crate) mod cloudwatch;
mod forwarder;
#[cfg(feature = "otlp")]
pub(crate) mod otlp;
#[cfg(any(feature = "cloudwatch", feature = "otlp"))]
mod reached;
#[cfg(any(feature = "cloudwatch", feature = "otlp"))]
mod ship;
pub mod store;

pub(crate) use forwarder::{archive_mark, start, Forwarder};
