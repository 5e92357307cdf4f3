//! Puts the commit the binary is built from, and that commit's date, in `--version`
//! (`ICP_VERSION_DETAIL`): from the commit, never the clock, so the same commit builds the
//! same bytes. Outside a git checkout (a source tarball) it says `commit unknown`.
//!
//! The static binary (`cargo build-static`, the released one) is linked with its
//! relocations packed (`-z pack-relative-relocs`, DT_RELR): a static-pie relocates itself
//! with the glibc built into it, so this asks nothing of the node, and the binary is about
//! 0.45 MB smaller (its relocation table goes from 19,000 entries of 24 bytes to a bitmap).
//! A dynamic build is left as it is: packed relocations would need glibc 2.36 on the node.
//!
//! An x86_64 Linux build, static or not, is linked with identical code folding
//! (`--icf=all`): functions (and read-only data) of the same bytes are kept once, about
//! 0.1 MB of the binary (generic code instantiated for many types compiles to the same
//! machine code); code of identical bytes behaves the same, and nothing linked uses a
//! function's address as a tag (see docs/development.md). The tests run a binary linked
//! so. The linker there is rust-lld, Rust's default for that target since 1.90
//! (`--icf=safe` folds nothing here: the LTO object marks every function
//! address-significant).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target_features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
    if linux
        && target_features
            .split(',')
            .any(|feature| feature == "crt-static")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let detail = match (
        git(&["rev-parse", "--short=12", "HEAD"]),
        git(&["log", "-1", "--format=%cs"]),
    ) {
        (Some(commit), Some(date)) => format!("commit {commit}, {date}"),
        _ => "commit unknown".to_owned(),
    };
    println!("cargo:rustc-env=ICP_VERSION_DETAIL={detail}");
    // Built again when HEAD moves: a commit, a checkout, a reset.
    let watched = [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--git-path", "refs/heads"]),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ];
    for path in watched.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
