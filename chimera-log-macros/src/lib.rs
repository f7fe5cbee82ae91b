//! `#[derive(LogEvent)]` for chimera-log.
//!
//! This crate is an implementation detail of `chimera-log` (and `chimera-log-runtime`), which
//! re-export the derive; depend on `chimera-log`, not on this crate. The derive runs in three
//! passes, each in its own (private) module: `ast` (with `attr`) parses, `check` validates
//! cross-field rules, `expand` generates. Errors are collected in a `ctxt::Ctxt` so every
//! mistake is reported at once, and on error `fallback` emits a stub impl so the user sees one
//! error, not a cascade.

mod ast;
mod attr;
mod case;
mod check;
mod ctxt;
mod expand;
mod fallback;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `chimera_log_runtime::LogEvent` for a struct with named fields (or a unit struct).
///
/// See the runtime crate's documentation for the attribute reference.
#[proc_macro_derive(LogEvent, attributes(log))]
pub fn derive_log_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input, expand::Home::Runtime).into()
}

/// The same derive, naming `::chimera_log` (the facade crate, which re-exports it as
/// `LogEvent`) in the code it generates.
#[doc(hidden)]
#[proc_macro_derive(LogEventInFacade, attributes(log))]
pub fn derive_log_event_in_facade(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input, expand::Home::Facade).into()
}
