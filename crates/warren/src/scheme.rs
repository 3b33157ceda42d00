//! Scheme text without an interpreter: splitting input into top-level forms (the REPL client
//! sends one form at a time and knows when a form is unfinished), and the REPL's journal.
//!
//! The journal is what makes the live image survive a daemon restart: every top-level
//! `define` (also `define-syntax`) and `(on WORKLOAD KIND PROC)` that evaluated successfully
//! is kept, in order, and replayed into a fresh image when the daemon starts (or after an
//! evaluation crashed the engine). A later `define` of the same name replaces the earlier one;
//! `(off WORKLOAD KIND)` drops the `on` forms it cancels. Other forms (`(start! "web")`,
//! `(+ 1 2)`) are never replayed: they acted once, when they were typed. Note that a replayed
//! `define` evaluates its expression again.

/// Splits Scheme text into top-level forms (balanced parentheses and brackets, strings,
/// character literals such as `#\(`, and `;` comments respected). An unfinished last form is
/// returned as the remainder.
pub fn forms(text: &str) -> (Vec<String>, String) {
    let mut forms = Vec::new();
    let mut depth = 0i32;
    let mut start: Option<usize> = None;
    let (mut in_str, mut escaped, mut in_comment) = (false, false, false);
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if in_comment {
            in_comment = c != '\n';
            continue;
        }
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            ';' => in_comment = true,
            '"' => {
                in_str = true;
                start.get_or_insert(i);
            }
            '#' if chars.peek().map(|p| p.1) == Some('\\') => {
                // A character literal: `#\` and the character after it, whatever it is.
                start.get_or_insert(i);
                chars.next();
                chars.next();
            }
            '(' | '[' => {
                depth += 1;
                start.get_or_insert(i);
            }
            ')' | ']' => {
                depth -= 1;
                if depth <= 0 {
                    if let Some(s) = start.take() {
                        forms.push(text[s..=i].to_string());
                    }
                    depth = 0;
                }
            }
            c if c.is_whitespace() => {
                if depth == 0 {
                    if let Some(s) = start.take() {
                        forms.push(text[s..i].to_string());
                    }
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    let rest = start.map(|s| text[s..].to_string()).unwrap_or_default();
    if depth == 0 && !in_str && !rest.trim().is_empty() {
        forms.push(rest);
        return (forms, String::new());
    }
    (forms, rest)
}

/// What a top-level form means to the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// `(define NAME ...)`, `(define (NAME ...) ...)`, `(define-syntax NAME ...)`.
    Define(String),
    /// `(on WORKLOAD KIND PROC)`: a callback registration.
    On { workload: String, kind: String },
    /// `(off WORKLOAD KIND)`: cancels the matching registrations.
    Off { workload: String, kind: String },
}

/// The first atoms of a list form: symbols, `"strings"` (unescaped) and `'quoted` symbols (the
/// quote dropped); a nested list is returned as its own first atom prefixed with `(`. Stops at
/// `max` atoms or at the end of the list.
fn head_atoms(form: &str, max: usize) -> Option<Vec<String>> {
    let body = form.trim_start();
    let body = body.strip_prefix('(').or_else(|| body.strip_prefix('['))?;
    let mut atoms = Vec::new();
    let mut chars = body.chars().peekable();
    while atoms.len() < max {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek().copied() {
            None | Some(')') | Some(']') => break,
            Some('"') => {
                chars.next();
                let mut s = String::new();
                let mut escaped = false;
                loop {
                    let c = chars.next()?;
                    match (escaped, c) {
                        (true, c) => {
                            s.push(match c {
                                'n' => '\n',
                                't' => '\t',
                                c => c,
                            });
                            escaped = false;
                        }
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        (false, c) => s.push(c),
                    }
                }
                atoms.push(s);
            }
            Some('(') | Some('[') => {
                chars.next();
                let mut s = String::from("(");
                while let Some(c) = chars.peek().copied() {
                    if c.is_whitespace() || "()[]\"".contains(c) {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                atoms.push(s);
                // The rest of a nested list is not needed: only its head is.
                return Some(atoms);
            }
            Some(_) => {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                }
                let mut s = String::new();
                while let Some(c) = chars.peek().copied() {
                    if c.is_whitespace() || "()[]\"".contains(c) {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                atoms.push(s);
            }
        }
    }
    Some(atoms)
}

/// Whether `form` is kept in the journal, and how.
pub fn classify(form: &str) -> Option<Kept> {
    let atoms = head_atoms(form, 3)?;
    match atoms.first().map(String::as_str) {
        Some("define" | "define-syntax") => {
            let name = atoms.get(1)?;
            let name = name.strip_prefix('(').unwrap_or(name);
            (!name.is_empty()).then(|| Kept::Define(name.to_string()))
        }
        Some("on") if atoms.len() == 3 => Some(Kept::On {
            workload: atoms[1].clone(),
            kind: atoms[2].clone(),
        }),
        Some("off") if atoms.len() == 3 => Some(Kept::Off {
            workload: atoms[1].clone(),
            kind: atoms[2].clone(),
        }),
        _ => None,
    }
}

/// The forms to replay, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    pub forms: Vec<String>,
}

impl Journal {
    /// Records the top-level forms of `text`, which evaluated successfully. Returns whether
    /// the journal changed.
    pub fn record(&mut self, text: &str) -> bool {
        let (forms, _) = forms(text);
        let mut changed = false;
        for form in forms {
            let Some(kept) = classify(&form) else {
                continue;
            };
            match &kept {
                Kept::Define(name) => {
                    self.forms
                        .retain(|f| classify(f) != Some(Kept::Define(name.clone())));
                    self.forms.push(form);
                }
                Kept::On { .. } => self.forms.push(form),
                Kept::Off { workload, kind } => {
                    let cancelled = Kept::On {
                        workload: workload.clone(),
                        kind: kind.clone(),
                    };
                    self.forms
                        .retain(|f| classify(f) != Some(cancelled.clone()));
                }
            }
            changed = true;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_split_on_balanced_parentheses_strings_and_comments() {
        let (f, rest) = forms("(+ 1 2) 42 \"a (b\" ; (not a form\n(define x\n");
        assert_eq!(f, ["(+ 1 2)", "42", "\"a (b\""]);
        assert_eq!(rest, "(define x\n");
        let (f, rest) = forms("(define x\n  (list \"a\\\"(\" 'b))\n'sym");
        assert_eq!(f, ["(define x\n  (list \"a\\\"(\" 'b))", "'sym"]);
        assert_eq!(rest, "");
        assert_eq!(forms("   \n; only a comment\n"), (vec![], String::new()));
    }

    #[test]
    fn character_literals_do_not_open_or_close_forms() {
        let (f, rest) = forms("(list #\\( #\\) #\\;) (+ 1 2)");
        assert_eq!(f, ["(list #\\( #\\) #\\;)", "(+ 1 2)"]);
        assert_eq!(rest, "");
        let (f, rest) = forms("(char->integer #\\()");
        assert_eq!(f, ["(char->integer #\\()"]);
        assert_eq!(rest, "");
    }

    #[test]
    fn definitions_and_registrations_are_recognised() {
        assert_eq!(classify("(define x 1)"), Some(Kept::Define("x".into())));
        assert_eq!(
            classify("  (define (greet w ev)\n (display w))"),
            Some(Kept::Define("greet".into()))
        );
        assert_eq!(
            classify("(define-syntax swap! (syntax-rules () ...))"),
            Some(Kept::Define("swap!".into()))
        );
        assert_eq!(
            classify("(on \"web\" 'crash (lambda (w ev) (restart! w)))"),
            Some(Kept::On {
                workload: "web".into(),
                kind: "crash".into()
            })
        );
        assert_eq!(
            classify("(on \"a \\\"b\\\"\" \"health\" notify)"),
            Some(Kept::On {
                workload: "a \"b\"".into(),
                kind: "health".into()
            })
        );
        assert_eq!(
            classify("(off \"web\" 'crash)"),
            Some(Kept::Off {
                workload: "web".into(),
                kind: "crash".into()
            })
        );
        for other in [
            "(+ 1 2)",
            "(start! \"web\")",
            "42",
            "\"text\"",
            "(define)",
            "(on \"web\")",
            "(ondemand 1 2 3)",
            "(",
        ] {
            assert_eq!(classify(other), None, "{other}");
        }
    }

    #[test]
    fn the_journal_keeps_the_latest_definition_and_live_registrations() {
        let mut j = Journal::default();
        assert!(j.record("(define x 1) (+ x 1)"));
        assert!(!j.record("(start! \"web\") (workloads)"));
        assert!(j.record("(on \"web\" 'crash (lambda (w ev) (restart! w)))"));
        assert!(j.record("(on \"db\" 'crash (lambda (w ev) 1))"));
        assert!(j.record("(define (f) 2)\n(define x 3)"));
        assert_eq!(
            j.forms,
            [
                "(on \"web\" 'crash (lambda (w ev) (restart! w)))",
                "(on \"db\" 'crash (lambda (w ev) 1))",
                "(define (f) 2)",
                "(define x 3)"
            ]
        );
        assert!(j.record("(off \"web\" 'crash)"));
        assert_eq!(
            j.forms,
            [
                "(on \"db\" 'crash (lambda (w ev) 1))",
                "(define (f) 2)",
                "(define x 3)"
            ]
        );
        let text = serde_json::to_string(&j).unwrap();
        assert_eq!(serde_json::from_str::<Journal>(&text).unwrap(), j);
    }
}
