//! [`AsDynError`]: what `emit!(.., error = &e)` and
//! [`Logger::log_with_error`](crate::Logger::log_with_error) accept, and the line's `exception`
//! made from it.
//!
//! Sealed: the blanket impls here are the only ones, so this module decides which errors can be
//! attached; how the `exception` is written is `json`'s business.

use std::error::Error as StdError;

use crate::json::Exception;

mod sealed {
    /// Keeps [`AsDynError`](super::AsDynError) implemented here only: its blanket impls cover
    /// every error, and a foreign impl could only conflict with them.
    pub trait Sealed {}
    impl<T: std::error::Error> Sealed for T {}
    impl Sealed for dyn std::error::Error + '_ {}
    impl Sealed for dyn std::error::Error + Send + '_ {}
    impl Sealed for dyn std::error::Error + Send + Sync + '_ {}
}

/// An error that can be attached to an event: any `std::error::Error`, or a `dyn Error` trait
/// object (plain, `+ Send`, or `+ Send + Sync`). Sealed: implemented for exactly those.
pub trait AsDynError: sealed::Sealed {
    /// The error as a trait object.
    fn as_dyn_error(&self) -> &(dyn StdError + '_);
}

impl<T: StdError> AsDynError for T {
    fn as_dyn_error(&self) -> &(dyn StdError + '_) {
        self
    }
}

impl AsDynError for dyn StdError + '_ {
    fn as_dyn_error(&self) -> &(dyn StdError + '_) {
        self
    }
}

impl AsDynError for dyn StdError + Send + '_ {
    fn as_dyn_error(&self) -> &(dyn StdError + '_) {
        self
    }
}

impl AsDynError for dyn StdError + Send + Sync + '_ {
    fn as_dyn_error(&self) -> &(dyn StdError + '_) {
        self
    }
}

/// The `exception` of a line: `error` with its type's name.
pub(super) fn exception<X: AsDynError + ?Sized>(error: &X) -> Exception<'_> {
    Exception { type_name: std::any::type_name::<X>(), error: error.as_dyn_error() }
}
