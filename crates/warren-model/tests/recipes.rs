//! Golden corpus for the Warrenfile recipe parser.
//!
//! `recipes/invalid/NN-name.Warrenfile` must fail to parse with exactly the rendered errors in
//! the matching `NN-name.err` (`FILE:LINE:COLUMN: message`, one per line).
//! `recipes/valid/NN-name.Warrenfile` must parse to exactly the recipe in `NN-name.json`. Every
//! file must give the same result with LF and CRLF line endings and with or without a
//! byte-order mark. All mismatches are listed before a test fails; `WARREN_BLESS=1` rewrites the
//! goldens from the current output (then review the diff).

use std::fs;
use std::path::{Path, PathBuf};
use warren_model::recipe::{parse, Recipe};

fn corpus(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/recipes")
        .join(dir)
}

fn recipes(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "Warrenfile"))
        .collect();
    out.sort();
    out
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn bless() -> bool {
    std::env::var_os("WARREN_BLESS").is_some_and(|v| v == "1")
}

/// The file's text in its other encodings: LF and CRLF line endings, each with and without a
/// byte-order mark.
fn variants(text: &str) -> Vec<(&'static str, String)> {
    let lf = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .replace("\r\n", "\n");
    let crlf = lf.replace('\n', "\r\n");
    vec![
        ("LF", lf.clone()),
        ("CRLF", crlf.clone()),
        ("BOM+LF", format!("\u{feff}{lf}")),
        ("BOM+CRLF", format!("\u{feff}{crlf}")),
    ]
}

fn render(result: Result<Recipe, warren_model::recipe::RecipeErrors>) -> String {
    match result {
        Ok(r) => format!("<parsed successfully: {r:?}>"),
        Err(e) => e.to_string(),
    }
}

/// Compares `actual` with the golden file (or rewrites it when blessing).
fn check_golden(golden: &Path, actual: &str, failures: &mut Vec<String>) {
    if bless() {
        fs::write(golden, format!("{actual}\n")).expect("writable golden");
        return;
    }
    match fs::read_to_string(golden) {
        Ok(expected) if expected.trim_end_matches('\n') == actual => {}
        Ok(expected) => failures.push(format!(
            "{}:\n--- expected\n{}\n+++ actual\n{actual}",
            name(golden),
            expected.trim_end_matches('\n')
        )),
        Err(e) => failures.push(format!("{}: no golden: {e}", name(golden))),
    }
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} recipe corpus mismatch(es) (WARREN_BLESS=1 rewrites the goldens):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn invalid_recipes_match_their_golden_errors() {
    let dir = corpus("invalid");
    let files = recipes(&dir);
    assert!(files.len() >= 30, "only {} invalid recipes", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let file = name(path);
        let text = fs::read_to_string(path).expect("readable recipe");
        let actual = render(parse(&text, &file));
        check_golden(&path.with_extension("err"), &actual, &mut failures);
        for (label, variant) in variants(&text) {
            let other = render(parse(&variant, &file));
            if other != actual {
                failures.push(format!(
                    "{file} as {label}:\n--- as stored\n{actual}\n+++ as {label}\n{other}"
                ));
            }
        }
    }
    for golden in fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
        if golden.extension().is_some_and(|x| x == "err")
            && !golden.with_extension("Warrenfile").exists()
        {
            failures.push(format!("{}: golden without a recipe", name(&golden)));
        }
    }
    report(failures);
}

#[test]
fn invalid_recipe_errors_are_well_formed() {
    for path in recipes(&corpus("invalid")) {
        let text = fs::read_to_string(&path).unwrap();
        let Err(errors) = parse(&text, "Warrenfile") else {
            panic!("{} parsed", path.display());
        };
        assert!(!errors.0.is_empty());
        let lines = text.split('\n').count();
        let mut previous = (0, 0);
        for e in &errors.0 {
            let at = format!("{}: {e}", path.display());
            assert_eq!(e.file, "Warrenfile", "{at}");
            assert!(e.line >= 1 && e.line <= lines, "{at}");
            assert!(e.column >= 1, "{at}");
            // The column is inside the line (or just after it, for a missing value).
            let line = text.split('\n').nth(e.line - 1).unwrap();
            let width = line.trim_start_matches('\u{feff}').chars().count();
            assert!(e.column <= width.max(1), "{at}: line is {width} wide");
            assert!((e.line, e.column) >= previous, "{at}: unsorted");
            assert!(!e.message.contains('\n'), "{at}");
            assert!(!e.message.ends_with('.'), "{at}");
            assert!(e.message.starts_with(|c: char| !c.is_uppercase()), "{at}");
            previous = (e.line, e.column);
        }
    }
}

#[test]
fn valid_recipes_parse_to_their_golden_recipes() {
    let files = recipes(&corpus("valid"));
    assert!(files.len() >= 8, "only {} valid recipes", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let file = name(path);
        let text = fs::read_to_string(path).expect("readable recipe");
        let recipe = match parse(&text, &file) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{file} should parse:\n{e}"));
                continue;
            }
        };
        let actual = serde_json::to_string_pretty(&recipe).expect("serializable");
        check_golden(&path.with_extension("json"), &actual, &mut failures);
        for (label, variant) in variants(&text) {
            match parse(&variant, &file) {
                Ok(r) if r == recipe => {}
                other => failures.push(format!(
                    "{file} as {label}: {} instead of {recipe:?}",
                    render(other)
                )),
            }
        }
    }
    report(failures);
}
