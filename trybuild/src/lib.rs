//! UI tests live in `fail/` and `pass/`, run by `tests/ui.rs`; this library is empty.
