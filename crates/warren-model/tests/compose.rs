//! Golden conversions of compose files.
//!
//! Every `compose/NAME.yml` is converted (with `NAME.env` as its `.env` when present, and
//! `env_file`s read from `compose/files/`) and must give exactly `NAME.toml`, with the warnings
//! in `NAME.warnings`; the converted text must then parse as a `warren.toml`. Run with
//! `WARREN_BLESS=1` to rewrite the goldens from the current output (then review the diff).
//! A property test cuts and splices the fixtures: the converter never panics.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use warren_model::compose::{convert, ComposeInput, ReadError};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose")
}

fn read_env_file(path: &str) -> Result<String, ReadError> {
    fs::read_to_string(dir().join("files").join(path)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::NotFound,
        _ => ReadError::Other(e.to_string()),
    })
}

#[test]
fn compose_files_convert_to_their_goldens_and_parse() {
    let bless = std::env::var_os("WARREN_BLESS").is_some_and(|v| v == "1");
    let mut files: Vec<PathBuf> = fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "only {} compose fixtures", files.len());
    let env: BTreeMap<String, String> = [("HOME".to_string(), "/root".to_string())].into();
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(file).unwrap();
        let dotenv = fs::read_to_string(file.with_extension("env")).ok();
        let input = ComposeInput {
            file: &name,
            text: &text,
            dotenv: dotenv.as_deref().map(|t| (".env", t)),
            env: &env,
            read: &read_env_file,
        };
        let conversion = match convert(&input) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{name}: does not convert:\n{e}"));
                continue;
            }
        };
        if let Err(e) = conversion.parse() {
            failures.push(format!(
                "{name}: the conversion does not parse:\n{e}\n{}",
                conversion.toml
            ));
        }
        let warnings: String = conversion
            .warnings
            .iter()
            .map(|w| format!("{w}\n"))
            .collect();
        for (ext, actual) in [("toml", &conversion.toml), ("warnings", &warnings)] {
            let golden = file.with_extension(ext);
            if bless {
                fs::write(&golden, actual).unwrap();
                continue;
            }
            match fs::read_to_string(&golden) {
                Ok(expected) if &expected == actual => {}
                Ok(expected) => failures.push(format!(
                    "{name} ({ext}):\n--- expected\n{expected}\n+++ actual\n{actual}"
                )),
                Err(e) => failures.push(format!("{name}: no golden .{ext}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} compose mismatch(es) (WARREN_BLESS=1 rewrites the goldens):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_conversion_is_deterministic() {
    let text = fs::read_to_string(dir().join("nextcloud.yml")).unwrap();
    let dotenv = fs::read_to_string(dir().join("nextcloud.env")).unwrap();
    let env = BTreeMap::new();
    let input = ComposeInput {
        file: "nextcloud.yml",
        text: &text,
        dotenv: Some((".env", &dotenv)),
        env: &env,
        read: &read_env_file,
    };
    let first = convert(&input).unwrap();
    for _ in 0..3 {
        assert_eq!(convert(&input).unwrap().toml, first.toml);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever the text (fixtures cut and spliced, or noise), the converter answers with a
    /// conversion or located errors, and never panics.
    #[test]
    fn no_text_makes_the_converter_panic(
        pick in 0usize..6,
        cut in 0usize..4000,
        len in 0usize..40,
        insert in "[ -~\n\t{}\\[\\]:$\"'#&*<>|!-]{0,40}",
    ) {
        let mut files: Vec<PathBuf> = fs::read_dir(dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yml"))
            .collect();
        files.sort();
        let text = fs::read_to_string(&files[pick % files.len()]).unwrap();
        let chars: Vec<char> = text.chars().collect();
        let at = cut.min(chars.len());
        let end = (at + len).min(chars.len());
        let mutated: String = chars[..at]
            .iter()
            .chain(insert.chars().collect::<Vec<_>>().iter())
            .chain(chars[end..].iter())
            .collect();
        let env = BTreeMap::new();
        let input = ComposeInput {
            file: "c.yml",
            text: &mutated,
            dotenv: Some((".env", &insert)),
            env: &env,
            read: &read_env_file,
        };
        match convert(&input) {
            Ok(c) => {
                let _ = c.parse();
            }
            Err(e) => proptest::prop_assert!(!e.diagnostics.is_empty()),
        }
    }
}
