// The generated code must not depend on prelude names the user's crate may shadow.
#![deny(warnings)]
#![allow(dead_code, non_camel_case_types)]

mod events {
    use chimera_log_runtime::{emit, get_logger};

    pub struct Result;
    pub struct Option;
    pub struct Some;
    pub struct None;
    pub struct Ok;
    pub struct Err;
    pub struct String;
    pub struct Vec;
    pub struct Box;
    pub struct str;
    pub trait Serialize {}
    pub trait Display {}
    pub trait LogEvent {}
    pub trait Clone {}

    #[derive(chimera_log_runtime::LogEvent)]
    #[log(audit, level = "warning")]
    pub struct Shadowed<'a> {
        pub block_number: u64,
        pub note: &'a ::core::primitive::str,
        #[log(display)]
        pub shown: u32,
        #[log(redact)]
        pub secret: Result,
        #[log(skip)]
        pub skipped: Option,
    }

    pub fn run() {
        emit!(get_logger("m"), Shadowed { block_number: 1, note: "n", shown: 2, secret: Result, skipped: Option });
    }
}

fn main() {
    events::run();
}
