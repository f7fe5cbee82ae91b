//! The audit store: every sealed record of `executions.log`, kept in a database for the years a
//! compliance rule asks for (DESIGN §11), long after the local backups are gone.
//!
//! The store is fed from the file, never from the caller: a thread follows `executions.log`'s
//! family with the shared reader (`follow.rs`) from a cursor it persists only after the database
//! committed, and inserts each record once, keyed `(stream, seq)`. A database that is down,
//! locked or full delays the rows; the file keeps them, and retention keeps the backups whose
//! records are not stored yet.
//!
//! SQLite (embedded, the default, at `log_dir/audit.db`; feature `sqlite`, on by default) and
//! PostgreSQL (feature `postgres`, for a fleet of bots writing one database) implement one
//! `Database` interface. A store whose feature is off is an error at start, never a no-op.

mod archiver;
mod database;
#[cfg(feature = "postgres")]
mod postgres;
mod row;
#[cfg(feature = "sqlite")]
mod sqlite;

pub(crate) use archiver::{Archiver, ArchiverConfig};
pub use database::*;
pub(crate) use row::Row;
pub use row::StoredRecord;
// What the databases build their answers from.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use row::{DerivedColumns, Inserted};

pub use crate::config::store::AuditStore;
pub(crate) use crate::config::store::Target;
pub(crate) use crate::dir::layout::STORE_CURSOR_FILE as CURSOR_FILE;
