//! A fault-injecting HTTP proxy in front of moto, for the CloudWatch tests: it can answer
//! `PutLogEvents` with throttling or 503s, or every request with 503s (an outage), and it checks
//! every `PutLogEvents` it sees against the service's limits (moto does not).
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

/// What the proxy does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything to moto.
    Pass,
    /// Answer the next `n` `PutLogEvents` with `ThrottlingException` (HTTP 400).
    Throttle(u32),
    /// Answer the next `n` `PutLogEvents` with `ServiceUnavailableException` (HTTP 503).
    Unavailable(u32),
    /// Answer the next `n` `PutLogEvents` with `InvalidParameterException` (HTTP 400).
    Invalid(u32),
    /// Answer every request with 503 until the mode changes.
    Outage,
    /// Answer `PutLogEvents` with 503 until `unavailable_until`, and every `throttle_every`th
    /// one with `ThrottlingException`, until the mode changes.
    Rough { unavailable_until: std::time::Instant, throttle_every: u32 },
    /// Answer the next `n` `PutLogEvents` with `UnrecognizedClientException` (refused credentials).
    BadCredentials(u32),
    /// Answer the next `n` `PutLogEvents` with `ResourceNotFoundException` (group or stream gone).
    Missing(u32),
    /// Answer `CreateLogGroup` and `PutRetentionPolicy` with `AccessDeniedException` (a
    /// least-privilege role), pass everything else.
    DenySetup,
    /// Answer the next `n` `CreateLogGroup` with `OperationAbortedException` (HTTP 400: a
    /// concurrent update of the group, as when a fleet starts at once).
    AbortSetup(u32),
    /// Answer the next `n` `PutLogEvents` with a bare HTTP 403 and no error code (a proxy in
    /// the way, not the service).
    BareForbidden(u32),
}

/// What the proxy saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub put_log_events: u32,
    pub refused: u32,
    /// Limit violations found in forwarded or refused requests; must stay empty.
    pub violations: Vec<String>,
    pub max_events: usize,
    pub max_bytes: usize,
}

#[derive(Debug)]
struct Shared {
    mode: Mode,
    seen: Seen,
    /// Added to every forwarded request (a slow or distant endpoint).
    delay: std::time::Duration,
    /// Events in every `PutLogEvents` that moto accepted.
    accepted_batches: Vec<usize>,
    /// `PutLogEvents` received and not yet answered.
    in_flight: u32,
    /// `PutLogEvents` requests are held, unanswered and not forwarded, while this is set.
    hold: bool,
}

#[derive(Debug, Clone)]
pub struct Proxy {
    pub url: String,
    shared: Arc<(Mutex<Shared>, Condvar)>,
}

impl Proxy {
    /// Starts a proxy forwarding to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Proxy {
        Self::start_with(Some(upstream.trim_start_matches("http://").to_owned()))
    }

    /// Starts a stand-in endpoint that accepts every request itself (no moto behind it): for
    /// measuring the shipper rather than the emulator.
    pub fn start_fake() -> Proxy {
        Self::start_with(None)
    }

    fn start_with(upstream: Option<String>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new((
            Mutex::new(Shared {
                mode: Mode::Pass,
                seen: Seen::default(),
                delay: std::time::Duration::ZERO,
                accepted_batches: Vec::new(),
                in_flight: 0,
                hold: false,
            }),
            Condvar::new(),
        ));
        let proxy = Proxy { url, shared };
        let handle = proxy.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let handle = handle.clone();
                let upstream = upstream.clone();
                std::thread::spawn(move || handle.serve(client, &upstream));
            }
        });
        proxy
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.0.lock().unwrap().mode = mode;
    }

    /// Adds `delay` to every request forwarded from now on.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.shared.0.lock().unwrap().delay = delay;
    }

    /// Holds every `PutLogEvents` from now on, neither forwarded nor answered, until called with
    /// `false` (then they go on): a process killed while its request is held never saw an answer.
    pub fn hold(&self, on: bool) {
        let (lock, signal) = &*self.shared;
        lock.lock().unwrap().hold = on;
        signal.notify_all();
    }

    /// Blocks until a `PutLogEvents` is received and not yet answered (`true`), or until none is
    /// (`false`).
    pub fn wait_in_flight(&self, in_flight: bool) {
        let (lock, signal) = &*self.shared;
        let mut shared = lock.lock().unwrap();
        while (shared.in_flight > 0) != in_flight {
            shared = signal.wait(shared).unwrap();
        }
    }

    /// Blocks until the accepted requests carried `events` events in all; `false` after `within`.
    pub fn wait_accepted(&self, events: usize, within: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        let (lock, signal) = &*self.shared;
        let mut shared = lock.lock().unwrap();
        while shared.accepted_batches.iter().sum::<usize>() < events {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            shared = signal.wait_timeout(shared, deadline - now).unwrap().0;
        }
        true
    }

    /// The number of events of each `PutLogEvents` moto accepted, in order.
    pub fn accepted_batches(&self) -> Vec<usize> {
        self.shared.0.lock().unwrap().accepted_batches.clone()
    }

    pub fn seen(&self) -> Seen {
        self.shared.0.lock().unwrap().seen.clone()
    }

    /// Blocks until the proxy has seen `n` `PutLogEvents` requests in all.
    pub fn wait_puts(&self, n: u32) {
        let (lock, signal) = &*self.shared;
        let mut shared = lock.lock().unwrap();
        while shared.seen.put_log_events < n {
            shared = signal.wait(shared).unwrap();
        }
    }

    /// Blocks until the proxy has refused `n` requests in all.
    pub fn wait_refused(&self, n: u32) {
        let (lock, signal) = &*self.shared;
        let mut shared = lock.lock().unwrap();
        while shared.seen.refused < n {
            shared = signal.wait(shared).unwrap();
        }
    }

    fn serve(&self, client: TcpStream, upstream: &Option<String>) {
        let mut reader = BufReader::new(client.try_clone().unwrap());
        let mut client = client;
        while let Some((head, body)) = read_message(&mut reader) {
            let target = header(&head, "x-amz-target").unwrap_or_default();
            let is_put = target.ends_with("PutLogEvents");
            let is_setup = target.ends_with("CreateLogGroup") || target.ends_with("PutRetentionPolicy");
            let is_create_group = target.ends_with("CreateLogGroup");
            let events = if is_put { self.check_limits(&body) } else { 0 };
            let refusal = {
                let (lock, signal) = &*self.shared;
                let mut shared = lock.lock().unwrap();
                if is_put {
                    shared.seen.put_log_events += 1;
                    signal.notify_all();
                }
                let refusal = match shared.mode {
                    Mode::Outage => Some((503, "ServiceUnavailableException")),
                    Mode::Throttle(n) if is_put && n > 0 => {
                        shared.mode = if n > 1 { Mode::Throttle(n - 1) } else { Mode::Pass };
                        Some((400, "ThrottlingException"))
                    }
                    Mode::Unavailable(n) if is_put && n > 0 => {
                        shared.mode = if n > 1 { Mode::Unavailable(n - 1) } else { Mode::Pass };
                        Some((503, "ServiceUnavailableException"))
                    }
                    Mode::Invalid(n) if is_put && n > 0 => {
                        shared.mode = if n > 1 { Mode::Invalid(n - 1) } else { Mode::Pass };
                        Some((400, "InvalidParameterException"))
                    }
                    Mode::Rough { unavailable_until, .. }
                        if is_put && std::time::Instant::now() < unavailable_until =>
                    {
                        Some((503, "ServiceUnavailableException"))
                    }
                    Mode::Rough { throttle_every, .. }
                        if is_put && shared.seen.put_log_events % throttle_every == 0 =>
                    {
                        Some((400, "ThrottlingException"))
                    }
                    Mode::BadCredentials(n) if is_put && n > 0 => {
                        shared.mode = if n > 1 { Mode::BadCredentials(n - 1) } else { Mode::Pass };
                        Some((400, "UnrecognizedClientException"))
                    }
                    Mode::Missing(n) if is_put && n > 0 => {
                        shared.mode = if n > 1 { Mode::Missing(n - 1) } else { Mode::Pass };
                        Some((400, "ResourceNotFoundException"))
                    }
                    Mode::DenySetup if is_setup => Some((400, "AccessDeniedException")),
                    Mode::AbortSetup(n) if is_create_group && n > 0 => {
                        shared.mode = if n > 1 { Mode::AbortSetup(n - 1) } else { Mode::Pass };
                        Some((400, "OperationAbortedException"))
                    }
                    Mode::BareForbidden(n) if is_put && n > 0 => {
                        shared.mode = if n > 1 { Mode::BareForbidden(n - 1) } else { Mode::Pass };
                        Some((403, ""))
                    }
                    _ => None,
                };
                if refusal.is_some() {
                    shared.seen.refused += 1;
                    signal.notify_all();
                }
                refusal
            };
            let response = match refusal {
                Some((status, "")) => format!("HTTP/1.1 {status} Injected\r\ncontent-length: 0\r\n\r\n").into_bytes(),
                Some((status, kind)) => {
                    let body = format!("{{\"__type\":\"{kind}\",\"message\":\"injected by the test proxy\"}}");
                    format!(
                        "HTTP/1.1 {status} Injected\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-errortype: {kind}\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .into_bytes()
                }
                None => {
                    let delay = {
                        let (lock, signal) = &*self.shared;
                        let mut shared = lock.lock().unwrap();
                        shared.in_flight += u32::from(is_put);
                        signal.notify_all();
                        while is_put && shared.hold {
                            shared = signal.wait(shared).unwrap();
                        }
                        shared.delay
                    };
                    std::thread::sleep(delay); // the simulated latency of a distant endpoint
                    let response = match upstream {
                        Some(upstream) => forward(upstream, &head, &body),
                        None => Some(accepted(is_put)),
                    };
                    let (lock, signal) = &*self.shared;
                    let mut shared = lock.lock().unwrap();
                    shared.in_flight -= u32::from(is_put);
                    if is_put && response.as_ref().is_some_and(|r| r.starts_with(b"HTTP/1.1 200")) {
                        shared.accepted_batches.push(events);
                    }
                    signal.notify_all();
                    drop(shared);
                    match response {
                        Some(response) => response,
                        None => return,
                    }
                }
            };
            if client.write_all(&response).is_err() {
                return;
            }
        }
    }

    /// Checks one `PutLogEvents` body against the limits; returns its number of events.
    fn check_limits(&self, body: &[u8]) -> usize {
        let request: serde_json::Value = serde_json::from_slice(body).unwrap();
        let events = request["logEvents"].as_array().cloned().unwrap_or_default();
        let bytes: usize = events.iter().map(|e| e["message"].as_str().unwrap().len() + 26).sum();
        let stamps: Vec<i64> = events.iter().map(|e| e["timestamp"].as_i64().unwrap()).collect();
        let mut violations = Vec::new();
        if events.len() > 10_000 {
            violations.push(format!("{} events in one request", events.len()));
        }
        if bytes > 1_048_576 {
            violations.push(format!("{bytes} bytes in one request"));
        }
        if !stamps.windows(2).all(|w| w[0] <= w[1]) {
            violations.push("events out of chronological order".to_owned());
        }
        if let (Some(first), Some(last)) = (stamps.first(), stamps.last()) {
            if last - first >= 24 * 3_600 * 1_000 {
                violations.push(format!("a request spanning {} ms", last - first));
            }
        }
        let mut shared = self.shared.0.lock().unwrap();
        shared.seen.max_events = shared.seen.max_events.max(events.len());
        shared.seen.max_bytes = shared.seen.max_bytes.max(bytes);
        shared.seen.violations.extend(violations);
        events.len()
    }
}

/// What the stand-in endpoint answers: success, with a body the SDK parses.
fn accepted(is_put: bool) -> Vec<u8> {
    let body = if is_put { "{\"nextSequenceToken\":\"0\"}" } else { "{}" };
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().to_owned())
}

/// One HTTP/1.1 message with a `content-length` body: its head (start line and headers) and body.
fn read_message(reader: &mut impl BufRead) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Sends one request to moto on a fresh connection and returns the raw response.
fn forward(upstream: &str, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut server = TcpStream::connect(upstream).ok()?;
    server.write_all(head.as_bytes()).ok()?;
    server.write_all(body).ok()?;
    let mut reader = BufReader::new(server);
    let (response_head, response_body) = read_message(&mut reader)?;
    let mut response = response_head.into_bytes();
    response.extend_from_slice(&response_body);
    Some(response)
}
