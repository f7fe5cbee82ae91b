#![deny(warnings)]

use chimera_log_runtime::{emit, get_logger, Level, LogEvent};

#[derive(LogEvent)]
#[log(level = "CRITICAL", name = "halt")]
struct Halt;

#[derive(LogEvent)]
struct Empty {}

fn main() {
    assert_eq!(<Halt as LogEvent>::LEVEL, Level::Critical);
    emit!(get_logger("m"), Halt);
    emit!(get_logger("m"), Empty {});
}
