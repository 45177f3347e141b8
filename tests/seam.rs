//! Tidy checks on the source tree that keep determinism a property of the
//! code rather than of luck.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources(dirs: &[&str]) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in dirs {
        let dir = root.join(dir);
        if dir.exists() {
            rust_files(&dir, &mut files);
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path.strip_prefix(root).unwrap().to_path_buf(), text)
        })
        .collect()
}

/// Files that test the simulator's cfg in any spelling (`#[cfg(madsim)]`,
/// `cfg!(madsim)`, `cfg_attr(madsim, ..)`, `cfg(any(madsim, ..))`, ...):
/// any line with a `cfg` that also names `madsim`.
fn mentions_madsim_cfg(files: &[(PathBuf, String)]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|(_, text)| {
            text.lines().any(|line| {
                let code = line.split("//").next().unwrap_or("");
                code.find("cfg")
                    .is_some_and(|at| code[at..].contains("madsim"))
            })
        })
        .map(|(path, _)| path.clone())
        .collect()
}

/// `select!` invocations (with `{` or `(`, any spacing) whose body does not
/// open with `biased;`.
fn unbiased_selects(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        for (at, _) in text.match_indices("select!") {
            let rest = text[at + "select!".len()..].trim_start();
            let Some(body) = rest.strip_prefix('{').or_else(|| rest.strip_prefix('(')) else {
                continue;
            };
            if !body.trim_start().starts_with("biased;") {
                let line = text[..at].lines().count().max(1);
                found.push(format!("{}:{line}", path.display()));
            }
        }
    }
    found
}

#[test]
fn only_the_runtime_seam_knows_about_madsim() {
    let files = sources(&["src"]);
    assert_eq!(
        mentions_madsim_cfg(&files),
        vec![PathBuf::from("src/runtime.rs")]
    );
}

#[test]
fn every_select_is_biased() {
    let files = sources(&["src", "sim/src", "replay/src"]);
    assert_eq!(unbiased_selects(&files), Vec::<String>::new());
}

#[test]
fn the_tidy_checks_catch_what_they_look_for() {
    let planted = vec![
        (
            PathBuf::from("src/a.rs"),
            "#[cfg(madsim)]\nfn f() {}".to_string(),
        ),
        (
            PathBuf::from("src/b.rs"),
            "fn g() { tokio::select! {\n a = x => {} } }".to_string(),
        ),
        (
            PathBuf::from("src/c.rs"),
            "fn h() { tokio::select! { biased; a = x => {} } }".to_string(),
        ),
    ];
    assert_eq!(
        mentions_madsim_cfg(&planted),
        vec![PathBuf::from("src/a.rs")]
    );
    assert_eq!(unbiased_selects(&planted), vec!["src/b.rs:1".to_string()]);
}
