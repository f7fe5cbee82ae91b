//! The panic hook: a panic is logged as a CRITICAL `panic` event through the process-wide
//! instance, which is flushed before the previous hook runs. A panic on one of the logger's own
//! writer threads is left to the previous hook (stderr): see `log_panic`.
//!
//! Installed once per process by [`init_logging`](super::init_logging) unless turned off; this
//! module never removes it, and without an instance the hook only chains to the previous one.

use std::sync::Arc;

use serde::Serialize;

use super::{global, Logger};
use crate::event::Level;
use crate::thread::ThreadRole;

/// Installs, once per process, the hook that logs a panic as a CRITICAL `panic` event through
/// the process-wide instance, flushes, then runs the previous hook.
pub(crate) fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            log_panic(info);
            previous(info);
        }));
    });
}

#[derive(Serialize)]
struct PanicContext<'a> {
    message: &'a str,
    location: Option<String>,
    thread: &'a str,
}

fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = match (info.payload().downcast_ref::<&str>(), info.payload().downcast_ref::<String>()) {
        (Some(message), _) => *message,
        (None, Some(message)) => message.as_str(),
        (None, None) => "(a panic payload that is not a string)",
    };
    let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    let thread = std::thread::current();
    let context = PanicContext { message, location, thread: thread.name().unwrap_or("<unnamed>") };
    let role = crate::thread::thread_role();
    if role == ThreadRole::Writer {
        // A writer thread (a bug in a sink): its line would go into the queues it alone drains
        // (with `Overflow::Block` and a full queue, waiting forever), and a flush would wait for
        // it. The previous hook prints the panic on stderr; the unwinding thread closes its queue.
        return;
    }
    global::with_global(|dispatcher| {
        if let Some(dispatcher) = dispatcher {
            let logger = Logger::new("panic", Some(Arc::clone(dispatcher)));
            logger.log(Level::Critical, "panic", &context);
            if role == ThreadRole::Forwarder {
                // A flush would also wait for this forwarder: the files are what it can have.
                dispatcher.flush_files();
            } else {
                dispatcher.flush();
            }
        }
    });
}
