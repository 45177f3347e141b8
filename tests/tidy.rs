//! Tidy checks on the source tree that keep the stated invariants (see
//! ARCHITECTURE.md) a property of the code rather than of luck: the runtime
//! seam, biased selects, no threads, the disk seam, ordered maps in the
//! state machine, and files and functions small enough to read.

mod support;

use std::path::{Path, PathBuf};

use support::{code, sources};

/// Files that test the simulator's cfg in any spelling (`#[cfg(madsim)]`,
/// `cfg!(madsim)`, `cfg_attr(madsim, ..)`, `cfg(any(madsim, ..))`, ...):
/// any line with a `cfg` that also names `madsim`.
fn mentions_madsim_cfg(files: &[(PathBuf, String)]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|(_, text)| {
            text.lines().any(|line| {
                let code = code(line);
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
        vec![
            PathBuf::from("src/runtime/net.rs"),
            PathBuf::from("src/runtime.rs")
        ]
    );
}

#[test]
fn every_select_is_biased() {
    let files = sources(&["src", "sim/src", "replay/src"]);
    assert_eq!(unbiased_selects(&files), Vec::<String>::new());
}

/// Lines (`path:line`) whose code matches any of `needles`.
fn lines_naming(files: &[(PathBuf, String)], needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        for (index, line) in text.lines().enumerate() {
            if needles.iter().any(|n| code(line).contains(n)) {
                found.push(format!("{}:{}", path.display(), index + 1));
            }
        }
    }
    found
}

/// The code of a file before its unit tests (`#[cfg(test)]` closes it).
fn before_tests(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |at| &text[..at])
}

/// Functions longer than `max` lines, as `path: name (lines)`, outside
/// unit tests. A function runs from its `fn` line to the brace that closes
/// its body.
fn long_functions(files: &[(PathBuf, String)], max: usize) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        let lines: Vec<&str> = before_tests(text).lines().collect();
        for (start, line) in lines.iter().enumerate() {
            let code = code(line);
            let Some(at) = code.find("fn ") else { continue };
            let before = code[..at].trim();
            let is_item = before
                .split_whitespace()
                .all(|w| ["pub", "pub(crate)", "async", "const", "unsafe"].contains(&w));
            if !is_item || code.trim_end().ends_with(';') {
                continue;
            }
            let name: String = code[at + 3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let (mut depth, mut opened) = (0i64, false);
            for (end, body) in lines.iter().enumerate().skip(start) {
                for c in support::code(body).chars() {
                    match c {
                        '{' => (depth, opened) = (depth + 1, true),
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if opened && depth == 0 {
                    let length = end - start + 1;
                    if length > max {
                        found.push(format!("{}: {name} ({length})", path.display()));
                    }
                    break;
                }
                if !opened && support::code(body).trim_end().ends_with(';') {
                    break;
                }
            }
        }
    }
    found
}

/// Files longer than `max` lines, as `path (lines)`.
fn long_files(files: &[(PathBuf, String)], max: usize) -> Vec<String> {
    files
        .iter()
        .filter(|(_, text)| text.lines().count() > max)
        .map(|(path, text)| format!("{} ({})", path.display(), text.lines().count()))
        .collect()
}

/// Most lines in a file of `src/` or `sim/src/`.
const FILE_LINES_MAX: usize = 600;

/// Most lines in a function of `src/` or `sim/src/`.
const FUNCTION_LINES_MAX: usize = 80;

#[test]
fn product_code_spawns_no_threads() {
    let files = sources(&["src"]);
    let found = lines_naming(&files, &["thread::spawn", "thread::Builder", "std::thread"]);
    assert_eq!(found, Vec::<String>::new(), "threads escape the simulator");
}

#[test]
fn only_the_os_disk_touches_the_filesystem() {
    let files: Vec<_> = sources(&["src"])
        .into_iter()
        .filter(|(path, _)| !path.starts_with("src/bin"))
        .filter(|(path, _)| path != Path::new("src/storage/disk/os.rs"))
        // Certificate files, outside the data directory; the simulator
        // never configures TLS.
        .filter(|(path, _)| path != Path::new("src/tls.rs"))
        .collect();
    let found = lines_naming(&files, &["std::fs", "fs::File", "fs::read", "fs::write"]);
    assert_eq!(found, Vec::<String>::new(), "files outside the disk seam");
}

#[test]
fn the_state_machine_iterates_ordered_maps() {
    let files = sources(&["src/machine"]);
    let found = lines_naming(&files, &["HashMap", "HashSet"]);
    assert_eq!(
        found,
        Vec::<String>::new(),
        "unordered maps in replicated state"
    );
}

#[test]
fn files_and_functions_stay_readable() {
    let files = sources(&["src", "sim/src"]);
    let too_long = (
        long_files(&files, FILE_LINES_MAX),
        long_functions(&files, FUNCTION_LINES_MAX),
    );
    assert_eq!(too_long, (Vec::new(), Vec::new()), "(files, functions)");
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
    let threads = vec![(
        PathBuf::from("src/t.rs"),
        "fn f() {\n    std::thread::spawn(|| {});\n}\n// std::thread in a comment".to_string(),
    )];
    assert_eq!(
        lines_naming(&threads, &["thread::spawn"]),
        vec!["src/t.rs:2".to_string()]
    );
    let long = (0..90)
        .map(|i| format!("    let x{i} = {i};\n"))
        .collect::<String>();
    let functions = vec![(
        PathBuf::from("src/f.rs"),
        format!("pub async fn long() {{\n{long}}}\nfn short() {{ if true {{ }} }}\nfn decl();\n"),
    )];
    assert_eq!(
        long_functions(&functions, 80),
        vec!["src/f.rs: long (92)".to_string()]
    );
    assert_eq!(long_files(&functions, 80).len(), 1);
}
