//! The documents' map of the code must not point at files that are gone: every path in
//! backticks in `docs/ARCHITECTURE.md` (and the other documents) names a file or folder
//! that exists.
//!
//! A token counts as a path when it has no spaces and ends in a source or document
//! extension, or contains a `/` and ends in one or starts with a top folder or a crate's
//! name (`hermet-app/src/`); event names like `friendship.updated/deleted` are not paths. One with a `/` is resolved against the repository root,
//! then `crates/`, then `docs/`; a bare file name (`notify.rs`) must exist somewhere under
//! `crates/`, `docs/` or `scripts/`. Braces expand (`{postgres,sqlite}`), and a `*` or a
//! `…` stands for any file name in the folder before it.

use std::path::{Path, PathBuf};

const DOCUMENTS: &[&str] =
    &["docs/ARCHITECTURE.md", "docs/API.md", "docs/EVENTS.md", "docs/PROTOCOL.md", "docs/BENCHMARKS.md", "README.md"];

const EXTENSIONS: &[&str] = &[".rs", ".sql", ".md", ".toml", ".py", ".sh", ".json", ".png"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The backticked spans of `text` that read as paths.
fn paths_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, span) in text.split('`').enumerate() {
        // Odd pieces are inside backticks.
        if i % 2 == 0 || span.is_empty() || span.contains(char::is_whitespace) {
            continue;
        }
        // URLs, routes, templates, patterns and Rust paths are not files.
        if span.starts_with(['/', '.', '~'])
            || span.contains("://")
            || span.contains("::")
            || span.contains(['<', '>', '@', '%', '=', '$', '(', '#', ':'])
        {
            continue;
        }
        let looks_like_file = EXTENSIONS.iter().any(|e| span.ends_with(e));
        let looks_like_folder = span.contains('/')
            && (span.ends_with('/') || ["crates/", "docs/", "scripts/", "hermet"].iter().any(|p| span.starts_with(p)));
        if looks_like_file || looks_like_folder {
            out.push(span.to_owned());
        }
    }
    out
}

/// `a/{b,c}/d` → `a/b/d`, `a/c/d` (one level of braces, which is what the documents use).
fn expand(path: &str) -> Vec<String> {
    match (path.find('{'), path.find('}')) {
        (Some(open), Some(close)) if open < close => path[open + 1..close]
            .split(',')
            .flat_map(|alt| expand(&format!("{}{}{}", &path[..open], alt, &path[close + 1..])))
            .collect(),
        _ => vec![path.to_owned()],
    }
}

fn find_named(dir: &Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let p = e.path();
        if e.file_name() == name {
            return true;
        }
        p.is_dir() && e.file_name() != "target" && find_named(&p, name)
    })
}

fn exists(root: &Path, path: &str) -> bool {
    // A wildcard or an ellipsis names the folder before it.
    let path = path.split(['*', '…']).next().unwrap_or(path).trim_end_matches('/');
    let path = path.trim_end_matches(',');
    if path.is_empty() {
        return true;
    }
    if path.contains('/') {
        ["", "crates/", "docs/"].iter().any(|base| root.join(format!("{base}{path}")).exists())
    } else {
        ["crates", "docs", "scripts"].iter().any(|d| find_named(&root.join(d), path))
    }
}

/// The paths of `documents` that do not exist, as `document: path`.
fn missing(root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    for doc in DOCUMENTS {
        let Ok(text) = std::fs::read_to_string(root.join(doc)) else {
            missing.push(format!("{doc}: the document itself"));
            continue;
        };
        for path in paths_in(&text) {
            if !expand(&path).iter().all(|p| exists(root, p)) {
                missing.push(format!("{doc}: {path}"));
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_named_in_the_documents_exists() {
        let missing = missing(&root());
        assert!(missing.is_empty(), "paths named in the documents that do not exist:\n{}", missing.join("\n"));
    }

    #[test]
    fn the_check_finds_a_missing_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("docs")).expect("docs");
        std::fs::create_dir_all(dir.path().join("crates/a/src")).expect("crate");
        std::fs::write(dir.path().join("crates/a/src/real.rs"), "").expect("file");
        for doc in DOCUMENTS {
            std::fs::write(dir.path().join(doc), "").expect("doc");
        }
        std::fs::write(
            dir.path().join("docs/ARCHITECTURE.md"),
            "`a/src/real.rs`, `real.rs`, `GET /api/v1/ws`, `hermet_app::x`, `a/src/{real,gone}.rs`, `gone.rs`",
        )
        .expect("doc");
        assert_eq!(
            missing(dir.path()),
            vec!["docs/ARCHITECTURE.md: a/src/{real,gone}.rs", "docs/ARCHITECTURE.md: gone.rs"]
        );
    }
}
