//! The archive's failures, classified in one place: what stops the archive for good (the bucket
//! cannot keep records locked), and what is an outage to retry.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Why a request to the bucket failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    /// The bucket cannot hold records under Object Lock (it has none, or does not exist): the
    /// archive does not start (an operator must create or configure the bucket).
    #[error("{0}")]
    Unusable(String),
    /// Anything else (unreachable, refused, throttled, timed out): retried with backoff.
    #[error("{operation}: {message}")]
    Request { operation: &'static str, message: String },
}

impl ArchiveError {
    /// A failed request's error, with the SDK's whole context (the service's code and message).
    pub(crate) fn request<E, R>(operation: &'static str, error: &SdkError<E, R>) -> Self
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        ArchiveError::Request { operation, message: DisplayErrorContext(error).to_string() }
    }
}

/// The S3 error code of a failed request (`NoSuchBucket`, `PreconditionFailed`, ...), if the
/// service answered with one.
pub(crate) fn code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error.as_service_error().and_then(ProvideErrorMetadata::code)
}

/// The HTTP status of a failed request, if a response came.
pub(crate) fn status<E>(error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    error.raw_response().map(|response| response.status().as_u16())
}
