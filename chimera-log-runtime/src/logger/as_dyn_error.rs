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

/// What `emit!(.., error = $error)` wraps `$error` (a reference) in, to pick by method resolution
/// how the error is read: [`AttachError`] when it is an error itself (its type names the
/// `exception`), else [`AttachDeref`] when it points at one (`Box<dyn Error + Send + Sync>`,
/// `anyhow::Error`: the type is erased there, so the pointer's type is named). The two are
/// separate traits on `Attach` and `&Attach`, so they never overlap and the first step of
/// method resolution that finds one wins (autoref specialization).
#[doc(hidden)]
#[derive(Debug)]
pub struct Attach<'a, X: ?Sized>(pub &'a X);

/// An error's type name and the error, as `emit!` hands them to the logger.
#[doc(hidden)]
pub type Attached<'a> = (&'static str, &'a (dyn StdError + 'a));

/// `emit!(.., error = &e)` with `e` an error: any `std::error::Error` or a `dyn Error`.
#[doc(hidden)]
pub trait AttachError<'a> {
    fn __chimera_attached(&self) -> Attached<'a>;
}

impl<'a, X: AsDynError + ?Sized> AttachError<'a> for Attach<'a, X> {
    fn __chimera_attached(&self) -> Attached<'a> {
        (std::any::type_name::<X>(), self.0.as_dyn_error())
    }
}

/// `emit!(.., error = &e)` with `e` pointing at an error without being one: a
/// `Box<dyn Error + Send + Sync>` (std implements `Error` for `Box<T>` with `T` sized only), an
/// `anyhow::Error` (which derefs to `dyn Error + Send + Sync`).
#[doc(hidden)]
pub trait AttachDeref<'a> {
    fn __chimera_attached(&self) -> Attached<'a>;
}

impl<'a, D> AttachDeref<'a> for &Attach<'a, D>
where
    D: std::ops::Deref + ?Sized,
    D::Target: AsDynError,
{
    fn __chimera_attached(&self) -> Attached<'a> {
        let error: &'a D = self.0;
        (std::any::type_name::<D>(), (**error).as_dyn_error())
    }
}

/// An attached error's `exception`.
pub(crate) fn attached((type_name, error): Attached<'_>) -> Exception<'_> {
    Exception { type_name, error }
}
