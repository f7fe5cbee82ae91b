//! Capture of what the rest of the program logs (feature `tracing`): [`ChimeraLayer`], a
//! `tracing_subscriber::Layer` that writes each `tracing` event (and each `log` record, through
//! `tracing-log`'s bridge) as a chimera line, and [`install`], which `LogConfig::capture` uses to
//! set it up globally.
//!
//! A captured event becomes one line of the contract's shape in the general sinks (console,
//! `chimera.log`, CloudWatch): `module` is the event's target, `event` its message (else the
//! callsite's name), `context` its fields, typed where `tracing` gives a type (numbers stay
//! numbers, `Debug` and `Display` values become strings), and `"span"` the fields of the spans it
//! happened in, outermost first. Never the audit file or a route: those are reached by type only.
//! Events from the logger's own threads (the CloudWatch SDK logs through `tracing`) are not
//! captured, so logging never feeds on itself.
//!
//! - `layer`: [`ChimeraLayer`], what it records of spans and which events it writes;
//! - `line`: one captured event's `context` and name, as bytes;
//! - `install`: the subscriber `init_logging` installs, and the callsite interest it decides.

mod install;
mod layer;
mod line;

pub(crate) use install::{global_subscriber, install, levels_changed, GlobalSubscriber};
pub use layer::ChimeraLayer;
