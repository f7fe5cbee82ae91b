//! Compile-fail and compile-pass UI tests. The `.stderr` files are regenerated with
//! `TRYBUILD=overwrite cargo test -p chimera-log-trybuild` on the pinned toolchain and read
//! before committing.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("fail/*/*.rs");
    t.pass("pass/*.rs");
}
