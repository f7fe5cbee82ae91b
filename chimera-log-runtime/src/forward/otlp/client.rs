//! One export request over OTLP/HTTP and what its answer means: POST of a gzipped protobuf
//! `ExportLogsServiceRequest`, and the status, `Retry-After` and partial success read back. The
//! failures are classified here, in one place, by status code and error type (never by message
//! text); the waiting is the exporter's.
//!
//! The client is hyper's (hyper-util's pooling client), with rustls on aws-lc-rs and the system's
//! root certificates for `https://`: the stack the AWS SDK already brings into the build.

use crate::report::source_chain;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use prost::Message;

use crate::config::otlp::OtlpConfig;
use crate::forward::backoff::Pace;

/// The most of a response body read (a partial-success message is small; a hostile or broken
/// receiver's endless body is not read).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The longest `Retry-After` honoured: a receiver asking for more is asked again after this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// What the receiver said to an accepted request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// `partial_success.rejected_log_records`.
    pub(crate) rejected: u64,
    /// `partial_success.error_message`.
    pub(crate) message: String,
}

/// How a failed request is handled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Sent again after a wait paced by `pace`, and at least `after` (`Retry-After`) when given.
    Retry { reason: String, pace: Pace, after: Option<Duration> },
    /// Refused for good (a 4xx that says the request itself is wrong): counted, given up.
    Refused(String),
}

/// An OTLP/HTTP logs client for one endpoint.
#[derive(Debug)]
pub(crate) struct Client {
    http: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    /// The endpoint as stderr shows it (no user info).
    shown: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Client {
    /// A client for `config`'s endpoint; the error says why none can be made (an endpoint that
    /// does not parse, no root certificates for `https://`).
    pub(crate) fn new(config: &OtlpConfig) -> Result<Client, String> {
        let uri: Uri = config
            .endpoint
            .parse()
            .map_err(|e| format!("the endpoint {} is not a URL: {e}", config.shown_endpoint()))?;
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header {name}: {e}"))?;
            let value = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
            headers.push((name, value));
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = if uri.scheme_str() == Some("https") {
            builder
                .with_provider_and_native_roots(provider)
                .map_err(|e| format!("https:// needs the system's root certificates, which could not be loaded: {e}"))?
        } else {
            // Plain http:// only: no certificate is ever checked, so none is loaded.
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS set-up: {e}"))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            builder.with_tls_config(tls)
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Client { http, uri, shown: config.shown_endpoint(), headers })
    }

    /// Posts `body` (an encoded, gzipped request) and reads the answer. Call on the exporter's
    /// runtime; the caller bounds it in time.
    pub(crate) async fn export(&self, body: Bytes) -> Result<Accepted, Failure> {
        let mut request = Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(CONTENT_ENCODING, "gzip")
            .header(USER_AGENT, concat!("chimera-log/", env!("CARGO_PKG_VERSION")));
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body)).map_err(|e| Failure::Refused(format!("request: {e}")))?;
        let response = self.http.request(request).await.map_err(|error| Failure::Retry {
            reason: format!("could not reach {}: {}", self.shown, source_chain(&error)),
            pace: Pace::Outage,
            after: None,
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| retry_after(value, SystemTime::now()));
        let gzipped = response
            .headers()
            .get(CONTENT_ENCODING)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect().await.map(|b| b.to_bytes());
        match classify(status, retry_after) {
            Ok(()) => Ok(body.ok().map_or_else(Accepted::default, |body| accepted(&body, gzipped))),
            Err(failure) => Err(failure),
        }
    }
}

/// What a response with `status` means, before its body is read.
pub(crate) fn classify(status: StatusCode, retry_after: Option<Duration>) -> Result<(), Failure> {
    let reason = format!("HTTP {status}");
    match status.as_u16() {
        200..=299 => Ok(()),
        429 => Err(Failure::Retry { reason, pace: Pace::Throttled, after: retry_after }),
        // The receiver's or a proxy's trouble, not the batch's: the file holds the lines.
        500..=599 | 408 => Err(Failure::Retry { reason, pace: Pace::Outage, after: retry_after }),
        // Credentials missing or refused, a wrong path or a redirect (the endpoint is
        // misconfigured, not the batch wrong): retried slowly while someone fixes it, the lines
        // waiting in the file.
        401 | 403 => Err(Failure::Retry {
            reason: format!("{reason}: the receiver refused the credentials (headers)"),
            pace: Pace::Credentials,
            after: retry_after,
        }),
        404 | 405 => Err(Failure::Retry {
            reason: format!("{reason}: no OTLP logs receiver at this URL (the base endpoint gets /v1/logs appended)"),
            pace: Pace::Credentials,
            after: retry_after,
        }),
        300..=399 => Err(Failure::Retry {
            reason: format!("{reason}: redirects are not followed; configure the final URL"),
            pace: Pace::Credentials,
            after: None,
        }),
        _ => Err(Failure::Refused(reason)),
    }
}

/// The partial success of a response body (gzipped or not); none when it cannot be read.
fn accepted(body: &[u8], gzipped: bool) -> Accepted {
    let mut plain = Vec::new();
    let body = if gzipped {
        let decoder = flate2::read::GzDecoder::new(body).take(MAX_RESPONSE_BYTES as u64);
        if std::io::BufReader::new(decoder).read_to_end(&mut plain).is_err() {
            return Accepted::default();
        }
        &plain[..]
    } else {
        body
    };
    match ExportLogsServiceResponse::decode(body) {
        Ok(ExportLogsServiceResponse { partial_success: Some(partial) }) => Accepted {
            rejected: u64::try_from(partial.rejected_log_records).unwrap_or(0),
            message: partial.error_message,
        },
        _ => Accepted::default(),
    }
}

/// A request encoded and gzipped, ready to post (and to post again on a retry).
pub(crate) fn encode(request: &ExportLogsServiceRequest) -> Bytes {
    let plain = request.encode_to_vec();
    let mut gzip = flate2::write::GzEncoder::new(Vec::with_capacity(plain.len() / 4), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = std::io::Write::write_all(&mut gzip, &plain);
    Bytes::from(gzip.finish().unwrap_or_default())
}

/// `Retry-After` as a wait from `now`: delay-seconds or an HTTP date (RFC 9110), capped at
/// [`MAX_RETRY_AFTER`]; `None` when it reads as neither.
pub(crate) fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        SystemTime::from(at).duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_is_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:40:00 GMT", now), Some(Duration::ZERO), "a past date: now");
        assert_eq!(retry_after("99999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }

    #[test]
    fn statuses_are_retried_throttled_or_refused_as_the_specification_says() {
        let retried = |code: u16| match classify(StatusCode::from_u16(code).unwrap(), None) {
            Err(Failure::Retry { pace, .. }) => Some(pace),
            _ => None,
        };
        assert!(classify(StatusCode::OK, None).is_ok());
        assert_eq!(retried(429), Some(Pace::Throttled));
        for code in [502, 503, 504, 500, 408] {
            assert_eq!(retried(code), Some(Pace::Outage), "{code}");
        }
        for code in [401, 403, 404, 405, 307] {
            assert_eq!(retried(code), Some(Pace::Credentials), "{code}: misconfigured, not the batch's fault");
        }
        for code in [400, 413, 415, 422] {
            assert!(matches!(classify(StatusCode::from_u16(code).unwrap(), None), Err(Failure::Refused(_))), "{code}");
        }
        let after = Some(Duration::from_secs(7));
        assert!(
            matches!(classify(StatusCode::SERVICE_UNAVAILABLE, after), Err(Failure::Retry { after: a, .. }) if a == after)
        );
    }

    #[test]
    fn a_partial_success_is_read_plain_or_gzipped_and_a_bad_body_is_none() {
        let response = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 3,
                error_message: "too old".into(),
            }),
        };
        let plain = response.encode_to_vec();
        let expected = Accepted { rejected: 3, message: "too old".into() };
        assert_eq!(accepted(&plain, false), expected);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, &plain).unwrap();
        assert_eq!(accepted(&gzip.finish().unwrap(), true), expected);
        assert_eq!(accepted(b"\xff\xff not protobuf", false), Accepted::default());
        assert_eq!(accepted(b"", false), Accepted::default());
    }
}
