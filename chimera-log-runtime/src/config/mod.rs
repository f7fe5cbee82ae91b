//! [`LogConfig`]: every setting of the logger, as a builder, from code, from the environment or
//! from a configuration file (`file`: its `Deserialize`).
//!
//! This module owns validation: a bad value is an [`Error::InvalidSetting`] naming the setting,
//! found when the logger is built, never a panic and never a silent default.

pub(crate) mod archive;
pub(crate) mod cloudwatch;
mod file;
mod log_config;
pub(crate) mod otlp;
pub(crate) mod store;

pub use log_config::*;
