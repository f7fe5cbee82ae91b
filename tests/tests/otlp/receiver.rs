//! An OTLP/HTTP logs receiver of the tests' own, on 127.0.0.1: HTTP/1.1 with keep-alive over
//! std's `TcpListener`, requests gunzipped and decoded with the same protobuf types the
//! forwarder uses (`opentelemetry-proto`), each answered as the test's policy says. It can go
//! down (listener and connections closed: connection refused) and come back on the same port.
#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

/// How to answer a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 200, every record taken.
    Accept,
    /// 200 with a partial success rejecting this many records (the records are still kept as
    /// received: the forwarder must not send them again).
    Partial(i64),
    /// This status, not taken, with an optional `Retry-After` value.
    Status(u16, Option<String>),
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub request: ExportLogsServiceRequest,
}

type Policy = Box<dyn FnMut(u64) -> Reply + Send>;

struct Inner {
    /// Requests answered so far (the policy is given each one's number, from 1).
    answered: u64,
    /// Requests taken (200).
    taken: Vec<Received>,
    /// Requests answered otherwise than 200.
    refused: u64,
    policy: Policy,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
}

/// The receiver; down when dropped.
pub struct Receiver {
    port: u16,
    shared: Arc<Shared>,
    running: Option<Running>,
}

struct Running {
    stop: Arc<AtomicBool>,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl Receiver {
    /// Starts on a free port, answering every request with `policy(number)`.
    pub fn start(policy: impl FnMut(u64) -> Reply + Send + 'static) -> Receiver {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { answered: 0, taken: Vec::new(), refused: 0, policy: Box::new(policy) }),
            changed: Condvar::new(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut receiver = Receiver { port, shared, running: None };
        receiver.serve(listener);
        receiver
    }

    /// The base endpoint, as `OTEL_EXPORTER_OTLP_ENDPOINT` names it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the policy (request numbers go on counting).
    pub fn set_policy(&self, policy: impl FnMut(u64) -> Reply + Send + 'static) {
        self.shared.inner.lock().unwrap().policy = Box::new(policy);
    }

    /// Closes the listener and every connection: requests are refused until [`up`](Self::up).
    pub fn down(&mut self) {
        let Some(running) = self.running.take() else { return };
        running.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which sees the stop and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        running.accept.join().unwrap();
        for stream in running.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port.
    pub fn up(&mut self) {
        if self.running.is_none() {
            let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
            self.serve(listener);
        }
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = std::thread::spawn({
            let (stop, connections, shared) = (Arc::clone(&stop), Arc::clone(&connections), Arc::clone(&self.shared));
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Ok(clone) = stream.try_clone() {
                        connections.lock().unwrap().push(clone);
                    }
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || serve_connection(stream, &shared));
                }
            }
        });
        self.running = Some(Running { stop, accept, connections });
    }

    /// Every request taken so far.
    pub fn taken(&self) -> Vec<Received> {
        self.shared.inner.lock().unwrap().taken.clone()
    }

    /// Requests answered otherwise than 200 so far.
    pub fn refused(&self) -> u64 {
        self.shared.inner.lock().unwrap().refused
    }

    /// Every record taken so far, in the order received, with its scope's name.
    pub fn records(&self) -> Vec<(String, opentelemetry_proto::tonic::logs::v1::LogRecord)> {
        let mut records = Vec::new();
        for received in self.taken() {
            for resource in received.request.resource_logs {
                for scope in resource.scope_logs {
                    let name = scope.scope.map(|scope| scope.name).unwrap_or_default();
                    records.extend(scope.log_records.into_iter().map(|record| (name.clone(), record)));
                }
            }
        }
        records
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// Client addresses are on this machine only.
fn local(addr: SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Answers requests on one connection until it closes.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    if !stream.peer_addr().is_ok_and(local) {
        return;
    }
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        assert!(request_line.starts_with("POST /v1/logs "), "{request_line}");
        assert_eq!(headers.get("content-type").map(String::as_str), Some("application/x-protobuf"));
        assert_eq!(headers.get("content-encoding").map(String::as_str), Some("gzip"));
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain).expect("a gzip body");
        let request = ExportLogsServiceRequest::decode(&plain[..]).expect("an ExportLogsServiceRequest");
        let reply = {
            let mut inner = shared.inner.lock().unwrap();
            inner.answered += 1;
            let number = inner.answered;
            let reply = (inner.policy)(number);
            match reply {
                Reply::Accept | Reply::Partial(_) => {
                    inner.taken.push(Received { headers: headers.clone(), request });
                }
                Reply::Status(..) => inner.refused += 1,
            }
            shared.changed.notify_all();
            reply
        };
        let (status, extra, body) = match reply {
            Reply::Accept => (200, String::new(), ExportLogsServiceResponse::default().encode_to_vec()),
            Reply::Partial(rejected) => (
                200,
                String::new(),
                ExportLogsServiceResponse {
                    partial_success: Some(ExportLogsPartialSuccess {
                        rejected_log_records: rejected,
                        error_message: "some records were too old".into(),
                    }),
                }
                .encode_to_vec(),
            ),
            Reply::Status(status, retry_after) => {
                (status, retry_after.map(|value| format!("retry-after: {value}\r\n")).unwrap_or_default(), Vec::new())
            }
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n{extra}\r\n",
            body.len()
        );
        if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(&body)).is_err() {
            return;
        }
    }
}
