//! The rotating log file (`rotating`): append-only writes, rotation to stamped backups, and the
//! maintenance thread that compresses them and applies retention.

pub(crate) mod maintenance;
pub(crate) mod rotating;
