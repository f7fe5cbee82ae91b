//! What `emit!` expands to (through `__private`): a typed event handed to a logger, with or
//! without an error attached.

use std::borrow::Borrow;

use super::{as_dyn_error, AsDynError, Logger};
use crate::event::LogEvent;

/// What `emit!` expands to.
pub(crate) fn emit<L, E>(logger: &L, event: &E)
where
    L: Borrow<Logger> + ?Sized,
    E: LogEvent + ?Sized,
{
    logger.borrow().emit_event(event, None);
}

/// What `emit!(.., error = &e)` expands to.
pub(crate) fn emit_with_error<L, E, X>(logger: &L, event: &E, error: &X)
where
    L: Borrow<Logger> + ?Sized,
    E: LogEvent + ?Sized,
    X: AsDynError + ?Sized,
{
    logger.borrow().emit_event(event, Some(as_dyn_error::exception(error)));
}
