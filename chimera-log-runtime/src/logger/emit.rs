//! What `emit!` expands to (through `__private`): a typed event handed to a logger, with or
//! without an error attached.

use std::borrow::Borrow;

use super::as_dyn_error::{self, Attached};
use super::Logger;
use crate::event::LogEvent;
use crate::write::completion::Emitted;

/// What `emit!` expands to.
pub(crate) fn emit<L, E>(logger: &L, event: &E)
where
    L: Borrow<Logger> + ?Sized,
    E: LogEvent + ?Sized,
{
    logger.borrow().emit_event(event, None);
}

/// What `emit!(.., error = &e)` expands to: the error as `as_dyn_error::Attach` read it.
pub(crate) fn emit_attached<L, E>(logger: &L, event: &E, error: Attached<'_>)
where
    L: Borrow<Logger> + ?Sized,
    E: LogEvent + ?Sized,
{
    logger.borrow().emit_event(event, Some(as_dyn_error::attached(error)));
}

/// What `emit_async!` expands to.
pub(crate) fn emit_async<L, E>(logger: &L, event: &E) -> Emitted
where
    L: Borrow<Logger> + ?Sized,
    E: LogEvent + ?Sized,
{
    logger.borrow().emit_event_async(event, None)
}

/// What `emit_async!(.., error = &e)` expands to.
pub(crate) fn emit_async_attached<L, E>(logger: &L, event: &E, error: Attached<'_>) -> Emitted
where
    L: Borrow<Logger> + ?Sized,
    E: LogEvent + ?Sized,
{
    logger.borrow().emit_event_async(event, Some(as_dyn_error::attached(error)))
}
