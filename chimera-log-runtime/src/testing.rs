//! Fault injection for tests of the file sink: makes writes fail as a full disk, an I/O error or
//! a revoked permission would, optionally after letting some bytes through (a partial write).
//! Not part of the stable API.

use std::io;
use std::sync::Mutex;

/// Makes the file writes of a logger fail on demand. Hand it to `LogConfig::fault_injector`.
#[derive(Debug, Default)]
pub struct FaultInjector {
    state: Mutex<Option<Fault>>,
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

    /// Writes succeed again.
    pub fn clear(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// How many of `len` bytes the next write to the file `name` may write, or the injected error.
    pub(crate) fn allow(&self, name: &str, len: usize) -> io::Result<usize> {
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
