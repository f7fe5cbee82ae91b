//! The log directory: its file names, safe opening and locking, backup names and listing, and
//! the follower that reads a file family from a cursor. Everything that touches the directory's
//! files goes through here; nothing here knows of events or of the pipeline.

pub(crate) mod backup;
pub(crate) mod follow;
pub(crate) mod layout;
pub mod read;
pub(crate) mod safe_fs;
