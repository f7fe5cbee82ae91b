//! Fault injection for tests of the file sink: makes writes fail as a full disk, an I/O error or
//! a revoked permission would, optionally after letting some bytes through (a partial write).
//! Not part of the stable API.

use std::io;
use std::sync::{Condvar, Mutex};

/// Makes the file writes of a logger fail on demand, or hold them (a stalled disk). Hand it to
/// `LogConfig::fault_injector`.
#[derive(Debug, Default)]
pub struct FaultInjector {
    state: Mutex<Option<Fault>>,
    hold: Mutex<Hold>,
    held: Condvar,
    /// Writes panic: to every file (`Some(None)`) or to the one named.
    panic: Mutex<Option<Option<String>>>,
    /// The threads that wrote to or synced a file, in order, once asked to record them: see
    /// [`io_threads`](Self::io_threads).
    io_threads: Mutex<Option<Vec<(String, Io, std::thread::ThreadId)>>>,
}

/// What a thread did to a file, as [`FaultInjector::io_threads`] records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Io {
    /// A `write` (each attempt, whole or partial).
    Write,
    /// An `fdatasync` of the audit file (group commit).
    Sync,
}

#[derive(Debug, Default)]
struct Hold {
    on: bool,
    /// Writes waiting for the hold to be released.
    waiting: usize,
}

#[derive(Debug, Clone)]
struct Fault {
    kind: io::ErrorKind,
    /// Bytes still let through before writes fail.
    allowance: usize,
    /// The one file that fails (its name in the log directory); every file when `None`.
    only: Option<String>,
}

impl FaultInjector {
    /// No faults until told.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on every write fails with `kind`, after `allowance` more bytes are let through.
    pub fn fail_writes(&self, kind: io::ErrorKind, allowance: usize) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(Fault { kind, allowance, only: None });
    }

    /// As [`fail_writes`](Self::fail_writes), for the file `name` (e.g. `chimera.log`) only.
    pub fn fail_writes_to(&self, name: &str, kind: io::ErrorKind, allowance: usize) {
        let only = Some(name.to_owned());
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(Fault { kind, allowance, only });
    }

    /// Writes succeed again (and no longer panic).
    pub fn clear(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.panic.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// From now on every write waits, as on a stalled disk, until [`release_writes`](Self::release_writes).
    pub fn hold_writes(&self) {
        self.hold.lock().unwrap_or_else(|e| e.into_inner()).on = true;
    }

    /// From now on a write panics, as a bug in the sink would (the thread writing unwinds).
    pub fn panic_on_writes(&self) {
        *self.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(None);
    }

    /// As [`panic_on_writes`](Self::panic_on_writes), for the file `name` only.
    pub fn panic_on_writes_to(&self, name: &str) {
        *self.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(Some(name.to_owned()));
    }

    /// Lets held writes go on, and later ones through.
    pub fn release_writes(&self) {
        self.hold.lock().unwrap_or_else(|e| e.into_inner()).on = false;
        self.held.notify_all();
    }

    /// Waits until a write is waiting on the hold: the writer thread is stalled from then on.
    pub fn wait_until_a_write_is_held(&self) {
        let hold = self.hold.lock().unwrap_or_else(|e| e.into_inner());
        let _held = self.held.wait_while(hold, |hold| hold.waiting == 0).unwrap_or_else(|e| e.into_inner());
    }

    /// From now on, records each write to a file and each sync of the audit file, with the
    /// file's name and the thread that did it (see [`io_threads`](Self::io_threads)).
    pub fn record_io_threads(&self) {
        self.io_threads.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(Vec::new);
    }

    /// The writes and syncs recorded since [`record_io_threads`](Self::record_io_threads), in
    /// order: which threads waited on the disk.
    pub fn io_threads(&self) -> Vec<(String, Io, std::thread::ThreadId)> {
        self.io_threads.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default()
    }

    fn record(&self, name: &str, io: Io) {
        if let Some(recorded) = self.io_threads.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            recorded.push((name.to_owned(), io, std::thread::current().id()));
        }
    }

    /// The audit file `name` is about to be synced, on this thread.
    pub(crate) fn syncing(&self, name: &str) {
        self.record(name, Io::Sync);
    }

    /// How many of `len` bytes the next write to the file `name` may write, or the injected error.
    pub(crate) fn allow(&self, name: &str, len: usize) -> io::Result<usize> {
        self.record(name, Io::Write);
        let panics = match &*self.panic.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(only) => only.as_ref().is_none_or(|only| only == name),
            None => false,
        };
        if panics {
            panic!("injected panic in the sink of {name} (FaultInjector::panic_on_writes)");
        }
        {
            let mut hold = self.hold.lock().unwrap_or_else(|e| e.into_inner());
            if hold.on {
                hold.waiting += 1;
                self.held.notify_all();
                hold = self.held.wait_while(hold, |hold| hold.on).unwrap_or_else(|e| e.into_inner());
                hold.waiting -= 1;
            }
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.as_mut() {
            None => Ok(len),
            Some(fault) if fault.only.as_ref().is_some_and(|only| only != name) => Ok(len),
            Some(fault) if fault.allowance == 0 => Err(io::Error::new(fault.kind, "injected fault")),
            Some(fault) => {
                let allowed = len.min(fault.allowance);
                fault.allowance -= allowed;
                Ok(allowed)
            }
        }
    }
}
