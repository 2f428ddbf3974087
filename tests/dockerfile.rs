//! The image builds from what the Dockerfile copies: every target path
//! Cargo.toml declares is copied (cargo refuses a manifest with a missing
//! target, even one a `--bin` build does not compile), none of them is in
//! .dockerignore, and cargo accepts the copied tree. No container engine runs
//! here, so the build stage's copy is laid out by hand and cargo reads it.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The sources of the builder stage's `COPY` lines (the stage before the
/// second `FROM`).
fn copied() -> Vec<String> {
    let text = std::fs::read_to_string(common::repo().join("Dockerfile")).expect("Dockerfile");
    let mut out = Vec::new();
    let mut stage = 0;
    for line in text.lines().map(str::trim) {
        if line.starts_with("FROM ") {
            stage += 1;
        } else if stage == 1
            && let Some(rest) = line.strip_prefix("COPY ")
        {
            let words: Vec<&str> = rest
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            if let Some((_dest, sources)) = words.split_last() {
                out.extend(sources.iter().map(|s| s.trim_end_matches('/').to_string()));
            }
        }
    }
    out
}

/// Every file path the manifest names: lib, bins, benches, tests, examples, build script.
fn declared() -> Vec<String> {
    let text = std::fs::read_to_string(common::repo().join("Cargo.toml")).expect("Cargo.toml");
    let mut out = Vec::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim().trim_matches('"'));
        match (section.as_str(), key) {
            ("lib" | "bin" | "bench" | "test" | "example", "path") | ("package", "build") => {
                out.push(value.to_string());
            }
            ("bench", "name") => out.push(format!("benches/{value}.rs")),
            ("test", "name") => out.push(format!("tests/{value}.rs")),
            ("example", "name") => out.push(format!("examples/{value}.rs")),
            _ => {}
        }
    }
    out
}

fn covered(path: &str, by: &[String]) -> bool {
    by.iter()
        .any(|c| path == c || Path::new(path).starts_with(Path::new(c)))
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::copy(from, to).expect("copy");
    }
}

#[test]
fn every_path_the_manifest_declares_is_copied_into_the_build_stage() {
    let copied = copied();
    assert!(copied.iter().any(|c| c == "src"), "{copied:?}");
    let declared = declared();
    assert!(
        declared.iter().any(|d| d.starts_with("benches/")),
        "{declared:?}"
    );
    let missing: Vec<&String> = declared.iter().filter(|d| !covered(d, &copied)).collect();
    assert!(
        missing.is_empty(),
        "the Dockerfile does not copy {missing:?} (copies {copied:?})"
    );
    // .dockerignore: the last pattern that matches a path decides; `!` re-includes.
    let ignore = std::fs::read_to_string(common::repo().join(".dockerignore")).unwrap_or_default();
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for source in &copied {
        let last = patterns.iter().rev().find(|p| {
            let bare = p.trim_start_matches('!').trim_end_matches('/');
            covered(source, &[bare.to_string()])
        });
        if let Some(pattern) = last {
            assert!(
                pattern.starts_with('!'),
                ".dockerignore drops {source} ({pattern}), which the Dockerfile copies"
            );
        }
    }
}

#[test]
fn cargo_accepts_the_copied_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    for source in copied() {
        copy_tree(&common::repo().join(&source), &dir.path().join(&source));
    }
    // `cargo fetch` parses the manifest with every declared target, as the
    // image's `cargo build --release --locked --bin …` does, without building;
    // for this host's platform only, whose crates the suite's build has cached.
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc names its host");
    let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
    let out = Command::new(cargo)
        .args(["fetch", "--locked", "--offline", "--target", &host])
        .current_dir(dir.path())
        .output()
        .expect("cargo fetch");
    assert!(
        out.status.success(),
        "cargo refuses the tree the Dockerfile copies: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
