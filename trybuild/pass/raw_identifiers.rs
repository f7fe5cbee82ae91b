#![deny(warnings)]

use chimera_log_runtime::{emit, get_logger, LogEvent};

#[derive(LogEvent)]
#[allow(non_camel_case_types)]
struct r#async {
    r#type: &'static str,
    r#match: u8,
}

fn main() {
    assert_eq!(<r#async as LogEvent>::NAME, "async");
    emit!(get_logger("m"), r#async { r#type: "t", r#match: 1 });
}
