//! Shared by the tests that run the examples' binaries.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

/// The binary cargo built for the example `name`.
pub fn example_binary(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test>-<hash>  ->  target/<profile>/examples/<name>
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let examples = profile_dir.join("examples");
    let exe = std::env::consts::EXE_SUFFIX;
    let path = examples.join(format!("{name}{exe}"));
    if path.is_file() {
        return path;
    }
    // Cargo copies the example to `examples/<name>` from `examples/<name>-<hash>`, the file it
    // builds; should the copy be missing, take the newest build.
    let hashed = std::fs::read_dir(&examples)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            file.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|rest| rest.strip_suffix(exe))
                .is_some_and(|hash| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .max();
    match hashed {
        Some((_, path)) => path,
        None => panic!(
            "{} is missing: `cargo test --workspace` and `cargo test -p xray-examples` build \
             the examples before running the tests; after a narrower build, run `cargo build \
             -p xray-examples --example {name}` first",
            path.display()
        ),
    }
}
