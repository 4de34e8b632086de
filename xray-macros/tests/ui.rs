//! Compile-time behaviour: what must compile (`ui/pass`) and the diagnostics misuse gets
//! (`ui/fail/*.rs` beside the expected `.stderr`). Regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p xray-macros --test ui`, then read them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
