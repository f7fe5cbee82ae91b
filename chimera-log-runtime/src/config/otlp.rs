//! [`OtlpConfig`]: the settings of the OTLP/HTTP logs forwarder, from code and from the standard
//! OpenTelemetry environment (`OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`), checked when the logger is built. The forwarder itself is behind
//! the cargo feature `otlp`; the configuration is always available, so that asking for it in code
//! in a build without the feature is a clear error from `init_logging`.

use std::time::Duration;

use crate::error::Error;

/// The path the OTLP/HTTP specification puts logs at, appended to a base endpoint.
pub(crate) const LOGS_PATH: &str = "/v1/logs";

/// The most records one request carries by default (the OpenTelemetry SDKs' export batch size).
pub(crate) const DEFAULT_MAX_BATCH_EVENTS: usize = 512;

/// The most bytes of lines one request carries by default, before encoding and gzip.
pub(crate) const DEFAULT_MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Where and how `chimera.log` is shipped over OTLP/HTTP (protobuf, gzip).
///
/// | setting | default | environment (`LogConfig::from_env`, wins over code) |
/// |---|---|---|
/// | `new(endpoint)` | required (or from the environment) | `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/logs` appended) |
/// | `logs_endpoint` | `<endpoint>/v1/logs` | `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` (used as is) |
/// | `header` | none | `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_LOGS_HEADERS` (`k=v,k2=v2`, values URL-decoded) |
/// | `service_name` | `service.name` of the resource attributes, else `unknown_service:<executable>` | `OTEL_SERVICE_NAME` |
/// | `resource_attribute` | none | `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, URL-decoded) |
/// | `timeout` | 10 s per request | `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_LOGS_TIMEOUT` (milliseconds) |
/// | `batch_events` | 100 (a trigger: a backlog goes in requests of up to `max_batch_events`) | — |
/// | `batch_interval` | 5 s | — |
/// | `max_batch_events` | 512 records per request | — |
/// | `max_batch_bytes` | 4 MiB of lines per request (before gzip) | — |
///
/// `OTEL_SDK_DISABLED=true` turns the forwarder off, and `OTEL_EXPORTER_OTLP_PROTOCOL` (or
/// `…_LOGS_PROTOCOL`), when set, must be `http/protobuf`: gRPC and JSON are not spoken.
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct OtlpConfig {
    /// The full URL requests are posted to (`…/v1/logs`).
    pub(crate) endpoint: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) service_name: Option<String>,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) timeout: Duration,
    pub(crate) batch_events: usize,
    pub(crate) batch_interval: Duration,
    pub(crate) max_batch_events: usize,
    pub(crate) max_batch_bytes: usize,
}

/// Header values (an `Authorization` token) and the endpoint's user info never reach a `Debug`
/// rendering: a configuration printed in a log or a panic message must not leak them.
impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(name, _)| (name.as_str(), "[REDACTED]")).collect();
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.shown_endpoint())
            .field("headers", &headers)
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("timeout", &self.timeout)
            .field("batch_events", &self.batch_events)
            .field("batch_interval", &self.batch_interval)
            .field("max_batch_events", &self.max_batch_events)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .finish()
    }
}

impl OtlpConfig {
    /// The endpoint as stderr lines and `Debug` show it: user info (`https://user:secret@host`)
    /// replaced by `[REDACTED]`.
    pub(crate) fn shown_endpoint(&self) -> String {
        let Some((scheme, rest)) = self.endpoint.split_once("://") else { return self.endpoint.clone() };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => format!("{scheme}://[REDACTED]@{}", &rest[at + 1..]),
            None => self.endpoint.clone(),
        }
    }

    /// Ships to the OTLP/HTTP receiver at `endpoint` (`http://127.0.0.1:4318`, a collector's
    /// default): requests go to `<endpoint>/v1/logs`, as with `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        OtlpConfig {
            endpoint: logs_url(&endpoint.into()),
            headers: Vec::new(),
            service_name: None,
            resource_attributes: Vec::new(),
            timeout: Duration::from_secs(10),
            batch_events: 100,
            batch_interval: Duration::from_secs(5),
            max_batch_events: DEFAULT_MAX_BATCH_EVENTS,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
        }
    }

    /// Posts to exactly this URL (no path appended), as `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`.
    pub fn logs_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = url.into();
        self
    }

    /// A header sent with every request (`authorization`, a tenant id); a second one with the
    /// same name (case-insensitive) replaces the first.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        set_pair(&mut self.headers, name.into(), value.into(), true);
        self
    }

    /// The resource's `service.name`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// A resource attribute (`deployment.environment.name`, `service.version`); a second one
    /// with the same key replaces the first.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        set_pair(&mut self.resource_attributes, key.into(), value.into(), false);
        self
    }

    /// Time allowed for one request, retries excluded.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Send once this many records wait.
    pub fn batch_events(mut self, events: usize) -> Self {
        self.batch_events = events;
        self
    }

    /// Send once the oldest waiting record is this old.
    pub fn batch_interval(mut self, interval: Duration) -> Self {
        self.batch_interval = interval;
        self
    }

    /// The most records one request carries.
    pub fn max_batch_events(mut self, events: usize) -> Self {
        self.max_batch_events = events;
        self
    }

    /// The most bytes of lines one request carries (before encoding and gzip); a single line
    /// larger than this goes alone.
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// The resource's `service.name`: set, else the resource attributes', else the
    /// specification's `unknown_service:<executable name>`.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn effective_service_name(&self) -> String {
        if let Some(name) = &self.service_name {
            return name.clone();
        }
        if let Some((_, name)) = self.resource_attributes.iter().find(|(key, _)| key == "service.name") {
            return name.clone();
        }
        let executable = std::env::current_exe()
            .ok()
            .and_then(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()))
            .unwrap_or_default();
        format!("unknown_service:{executable}")
    }

    /// Checks every setting; the first bad one is the error.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let rest = self.endpoint.strip_prefix("http://").or_else(|| self.endpoint.strip_prefix("https://"));
        if rest.is_none_or(|rest| rest.is_empty() || rest.starts_with('/'))
            || self.endpoint.contains(char::is_whitespace)
        {
            return Err(Error::invalid(
                "otlp.endpoint",
                self.shown_endpoint(),
                "an http:// or https:// URL with a host, e.g. http://127.0.0.1:4318",
            ));
        }
        for (name, value) in &self.headers {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(Error::invalid(
                    "otlp.header",
                    name,
                    "a header name is letters, digits and !#$%&'*+-.^_`|~",
                ));
            }
            if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(Error::invalid("otlp.header", name, "a header value holds no control characters"));
            }
        }
        if self.timeout.is_zero() {
            return Err(Error::invalid("otlp.timeout", "0s", "a request needs some time"));
        }
        if self.batch_events == 0 || self.max_batch_events == 0 {
            return Err(Error::invalid("otlp.batch_events", "0", "at least one record per request"));
        }
        if self.max_batch_bytes == 0 {
            return Err(Error::invalid("otlp.max_batch_bytes", "0", "at least one byte per request"));
        }
        Ok(())
    }
}

/// `base` with [`LOGS_PATH`] appended (one slash between).
fn logs_url(base: &str) -> String {
    format!("{}{LOGS_PATH}", base.trim_end_matches('/'))
}

/// Sets `key` to `value` in `pairs`, replacing an earlier one (names compared ignoring ASCII case
/// when `fold`: HTTP header names).
fn set_pair(pairs: &mut Vec<(String, String)>, key: String, value: String, fold: bool) {
    let same = |other: &str| if fold { other.eq_ignore_ascii_case(&key) } else { other == key };
    match pairs.iter_mut().find(|(other, _)| same(other)) {
        Some(pair) => pair.1 = value,
        None => pairs.push((key, value)),
    }
}

/// RFC 9110's `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `OTEL_SDK_DISABLED`.
pub(crate) const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub(crate) const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`.
pub(crate) const LOGS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_HEADERS`.
pub(crate) const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// `OTEL_EXPORTER_OTLP_LOGS_HEADERS`.
pub(crate) const LOGS_HEADERS: &str = "OTEL_EXPORTER_OTLP_LOGS_HEADERS";
/// `OTEL_EXPORTER_OTLP_TIMEOUT`.
pub(crate) const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_LOGS_TIMEOUT`.
pub(crate) const LOGS_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`.
pub(crate) const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_LOGS_PROTOCOL`.
pub(crate) const LOGS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL";
/// `OTEL_SERVICE_NAME`.
pub(crate) const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// `OTEL_RESOURCE_ATTRIBUTES`.
pub(crate) const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// The OpenTelemetry variables `LogConfig::from_env` reads (with the feature `otlp`; a build
/// without it leaves them to whoever else reads them, unchecked).
pub(crate) const VARIABLES: [&str; 11] = [
    SDK_DISABLED,
    ENDPOINT,
    LOGS_ENDPOINT,
    HEADERS,
    LOGS_HEADERS,
    TIMEOUT,
    LOGS_TIMEOUT,
    PROTOCOL,
    LOGS_PROTOCOL,
    SERVICE_NAME,
    RESOURCE_ATTRIBUTES,
];

/// What the OpenTelemetry variables of the environment said, kept apart from the code's
/// [`OtlpConfig`]: the environment wins over code ([`OtlpEnv::over`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OtlpEnv {
    disabled: bool,
    endpoint: Option<String>,
    logs_endpoint: Option<String>,
    headers: Vec<(String, String)>,
    logs_headers: Vec<(String, String)>,
    timeout: Option<Duration>,
    logs_timeout: Option<Duration>,
    service_name: Option<String>,
    resource_attributes: Vec<(String, String)>,
}

impl OtlpEnv {
    /// Takes the variable `variable` (one of [`VARIABLES`]); errors name it.
    pub(crate) fn set(&mut self, variable: &'static str, value: &str) -> Result<(), Error> {
        let nonempty = || Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        match variable {
            SDK_DISABLED => self.disabled = value.trim().eq_ignore_ascii_case("true"),
            ENDPOINT => self.endpoint = nonempty(),
            LOGS_ENDPOINT => self.logs_endpoint = nonempty(),
            HEADERS => self.headers = parse_pairs(variable, value)?,
            LOGS_HEADERS => self.logs_headers = parse_pairs(variable, value)?,
            TIMEOUT => self.timeout = Some(parse_millis(variable, value)?),
            LOGS_TIMEOUT => self.logs_timeout = Some(parse_millis(variable, value)?),
            PROTOCOL | LOGS_PROTOCOL => {
                if !value.trim().is_empty() && value.trim() != "http/protobuf" {
                    return Err(Error::invalid(
                        variable,
                        value,
                        "chimera-log speaks OTLP as http/protobuf only (not grpc nor http/json)",
                    ));
                }
            }
            SERVICE_NAME => self.service_name = nonempty(),
            RESOURCE_ATTRIBUTES => self.resource_attributes = parse_pairs(variable, value)?,
            other => unreachable!("{other} is not in VARIABLES: callers look the name up there first"),
        }
        Ok(())
    }

    /// The configuration the forwarder runs with: the environment's settings over the code's
    /// `code`. `None` when no endpoint is configured anywhere, or `OTEL_SDK_DISABLED=true`.
    pub(crate) fn over(&self, code: Option<&OtlpConfig>) -> Option<OtlpConfig> {
        if self.disabled {
            return None;
        }
        let mut config = match (&self.logs_endpoint, &self.endpoint, code) {
            (Some(url), _, code) => code.cloned().unwrap_or_else(|| OtlpConfig::new("")).logs_endpoint(url),
            (None, Some(base), code) => {
                code.cloned().unwrap_or_else(|| OtlpConfig::new("")).logs_endpoint(logs_url(base))
            }
            (None, None, Some(code)) => code.clone(),
            (None, None, None) => return None,
        };
        for (name, value) in self.headers.iter().chain(&self.logs_headers) {
            config = config.header(name.clone(), value.clone());
        }
        for (key, value) in &self.resource_attributes {
            config = config.resource_attribute(key.clone(), value.clone());
        }
        if let Some(name) = &self.service_name {
            config.service_name = Some(name.clone());
        } else if self.resource_attributes.iter().any(|(key, _)| key == "service.name") {
            // The environment's service.name wins over a name set in code.
            config.service_name = None;
        }
        if let Some(timeout) = self.logs_timeout.or(self.timeout) {
            config.timeout = timeout;
        }
        Some(config)
    }
}

/// `k=v,k2=v2` (W3C Baggage's form, as the OpenTelemetry variables use it): keys and values
/// trimmed and percent-decoded; empty members skipped.
fn parse_pairs(variable: &'static str, value: &str) -> Result<Vec<(String, String)>, Error> {
    let mut pairs = Vec::new();
    for member in value.split(',') {
        if member.trim().is_empty() {
            continue;
        }
        let Some((key, val)) = member.split_once('=') else {
            return Err(Error::invalid(variable, value, format!("`{}` is not key=value", member.trim())));
        };
        let decode = |text: &str| {
            percent_decode(text.trim())
                .ok_or_else(|| Error::invalid(variable, value, format!("`{}`: bad percent-encoding", member.trim())))
        };
        let key = decode(key)?;
        if key.is_empty() {
            return Err(Error::invalid(variable, value, format!("`{}` has an empty key", member.trim())));
        }
        pairs.push((key, decode(val)?));
    }
    Ok(pairs)
}

/// `text` with each `%XX` replaced by its byte; `None` for a bad escape or bytes that are not
/// UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_millis(variable: &'static str, value: &str) -> Result<Duration, Error> {
    match value.trim().parse::<u64>() {
        Ok(0) | Err(_) => Err(Error::invalid(variable, value, "a positive number of milliseconds")),
        Ok(ms) => Ok(Duration::from_millis(ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&'static str, &str)]) -> OtlpEnv {
        let mut env = OtlpEnv::default();
        for (name, value) in vars {
            env.set(name, value).unwrap();
        }
        env
    }

    #[test]
    fn the_base_endpoint_gets_v1_logs_and_the_logs_endpoint_is_used_as_is() {
        assert_eq!(OtlpConfig::new("http://c:4318").endpoint, "http://c:4318/v1/logs");
        assert_eq!(OtlpConfig::new("http://c:4318/").endpoint, "http://c:4318/v1/logs");
        let config = env(&[(ENDPOINT, "http://base:4318")]).over(None).unwrap();
        assert_eq!(config.endpoint, "http://base:4318/v1/logs");
        let config = env(&[(ENDPOINT, "http://base:4318"), (LOGS_ENDPOINT, "https://logs.example/otlp/logs")])
            .over(Some(&OtlpConfig::new("http://code:4318")))
            .unwrap();
        assert_eq!(config.endpoint, "https://logs.example/otlp/logs", "the environment wins, the logs one first");
    }

    #[test]
    fn no_endpoint_anywhere_means_no_forwarder_and_sdk_disabled_turns_it_off() {
        assert_eq!(env(&[(SERVICE_NAME, "bot"), (HEADERS, "a=b")]).over(None), None);
        let code = OtlpConfig::new("http://code:4318");
        assert_eq!(env(&[]).over(Some(&code)), Some(code.clone()));
        assert_eq!(env(&[(SDK_DISABLED, "true"), (ENDPOINT, "http://x:1")]).over(Some(&code)), None);
    }

    #[test]
    fn headers_and_resource_attributes_are_url_decoded_pairs_and_the_environment_wins() {
        let code = OtlpConfig::new("http://c:4318").header("Authorization", "code").resource_attribute("team", "a");
        let config = env(&[
            (HEADERS, "authorization=Basic%20dXNlcjpwYXNz, x-scope-orgid = tenant%2C1 ,"),
            (LOGS_HEADERS, "x-logs=1"),
            (RESOURCE_ATTRIBUTES, "service.name=bot,deployment.environment.name=prod%3Dblue"),
        ])
        .over(Some(&code))
        .unwrap();
        assert_eq!(
            config.headers,
            [
                ("Authorization".to_owned(), "Basic dXNlcjpwYXNz".to_owned()),
                ("x-scope-orgid".to_owned(), "tenant,1".to_owned()),
                ("x-logs".to_owned(), "1".to_owned()),
            ]
        );
        assert_eq!(config.effective_service_name(), "bot");
        assert!(config.resource_attributes.contains(&("deployment.environment.name".into(), "prod=blue".into())));
        let named = env(&[(SERVICE_NAME, "named"), (RESOURCE_ATTRIBUTES, "service.name=bot")]).over(Some(&code));
        assert_eq!(named.unwrap().effective_service_name(), "named", "OTEL_SERVICE_NAME wins");
    }

    #[test]
    fn debug_never_shows_header_values_or_the_endpoints_user_info() {
        let config = OtlpConfig::new("https://user:s3cret@otlp.example:4318")
            .header("authorization", "Bearer t0ken")
            .service_name("bot");
        let shown = format!("{config:?}");
        assert!(!shown.contains("t0ken") && !shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("authorization") && shown.contains("otlp.example:4318/v1/logs"), "{shown}");
        assert_eq!(OtlpConfig::new("http://c:4318").shown_endpoint(), "http://c:4318/v1/logs");
        let at_in_path = OtlpConfig::new("http://c:4318").logs_endpoint("http://c/a@b");
        assert_eq!(at_in_path.shown_endpoint(), "http://c/a@b", "an @ after the host is not user info");
    }

    #[test]
    fn bad_variables_are_errors_naming_them() {
        let error = OtlpEnv::default().set(HEADERS, "novalue").unwrap_err();
        assert!(error.to_string().contains(HEADERS), "{error}");
        assert!(OtlpEnv::default().set(RESOURCE_ATTRIBUTES, "a=%zz").is_err());
        assert!(OtlpEnv::default().set(TIMEOUT, "soon").is_err());
        assert!(OtlpEnv::default().set(PROTOCOL, "grpc").is_err());
        assert!(OtlpEnv::default().set(PROTOCOL, "http/protobuf").is_ok());
    }

    #[test]
    fn an_endpoint_without_http_or_https_or_a_bad_header_is_refused_at_build() {
        assert!(OtlpConfig::new("127.0.0.1:4318").validate().is_err());
        assert!(OtlpConfig::new("http://").logs_endpoint("http://").validate().is_err());
        assert!(OtlpConfig::new("https://otlp.example").validate().is_ok());
        assert!(OtlpConfig::new("http://c").header("bad name", "v").validate().is_err());
        assert!(OtlpConfig::new("http://c").header("x", "a\r\nb").validate().is_err());
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn from_vars_reads_the_opentelemetry_variables_and_they_win_over_code() {
        let config = crate::LogConfig::from_vars([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SERVICE_NAME", "bot"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=a%20b"),
        ])
        .unwrap()
        .otlp(OtlpConfig::new("http://code:4318").service_name("code"));
        let otlp = config.effective_otlp().unwrap();
        assert_eq!(otlp.endpoint, "http://collector:4318/v1/logs");
        assert_eq!(otlp.effective_service_name(), "bot");
        assert_eq!(otlp.headers, [("x-tenant".to_owned(), "a b".to_owned())]);
        let error = crate::LogConfig::from_vars([(RESOURCE_ATTRIBUTES, "novalue")]).unwrap_err();
        assert!(error.to_string().contains(RESOURCE_ATTRIBUTES), "{error}");
        assert!(crate::LogConfig::from_vars([("PATH", "/bin")]).unwrap().effective_otlp().is_none());
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn without_the_feature_the_opentelemetry_variables_are_left_unread_and_code_asking_is_an_error() {
        let config = crate::LogConfig::from_vars([(ENDPOINT, "http://c:4318"), (RESOURCE_ATTRIBUTES, "bad")]).unwrap();
        assert!(config.validate().is_ok(), "the application's own SDK may read them");
        let error = crate::LogConfig::new("logs").otlp(OtlpConfig::new("http://c:4318")).validate().unwrap_err();
        assert!(error.to_string().contains("`otlp` feature"), "{error}");
    }
}
