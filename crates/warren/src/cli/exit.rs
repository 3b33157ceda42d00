//! The CLI's exit statuses, in one place: what each status means, the table `warren --help`
//! prints and README.md's "Exit codes" repeats (a test keeps the three in step).

/// How a `warren` command ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what was asked.
    Success,
    /// The command failed: the daemon refused or could not be reached, a file was invalid, a
    /// piped REPL form failed, an `exec` or `run` stream broke before the command's status.
    /// The reason is printed on stderr as `error: ...`.
    Failure,
    /// The command line was wrong (the argument parser printed why).
    Usage,
    /// `exec` and `run`: the command's own exit status (128+S when signal S killed it).
    Remote(i32),
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Remote(code) => code,
        }
    }

    /// Each status with what it means, in the order the help lists them; `N` stands for the
    /// remote command's own status.
    fn table() -> [(&'static str, Exit, &'static str); 4] {
        [
            ("0", Exit::Success, "success"),
            (
                "1",
                Exit::Failure,
                "failure, printed as `error: ...` (daemon refused or unreachable, invalid file, a failed piped REPL form, an exec or run stream broken before the command's status)",
            ),
            ("2", Exit::Usage, "usage error: the command line was wrong"),
            (
                "N",
                Exit::Remote(0),
                "exec and run: the command's own status (128+S when signal S killed it)",
            ),
        ]
    }

    /// The table for `warren --help`.
    pub fn help() -> String {
        let mut s = String::from("Exit codes:\n");
        for (code, _, meaning) in Self::table() {
            s.push_str(&format!("  {code}  {meaning}\n"));
        }
        s
    }

    /// The same table as Markdown rows (README.md's "Exit codes").
    #[cfg(test)]
    fn markdown() -> String {
        let mut s = String::from("| Code | Meaning |\n|---|---|\n");
        for (code, _, meaning) in Self::table() {
            s.push_str(&format!("| {code} | {meaning} |\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_match_the_table() {
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Exit::Failure.code(), 1);
        assert_eq!(Exit::Usage.code(), 2);
        assert_eq!(Exit::Remote(7).code(), 7);
        assert_eq!(Exit::Remote(137).code(), 137);
        for (code, exit, _) in Exit::table() {
            if let Exit::Remote(_) = exit {
                assert_eq!(code, "N");
            } else {
                assert_eq!(code, exit.code().to_string());
            }
        }
    }

    #[test]
    fn the_help_and_the_readme_list_every_status() {
        use clap::CommandFactory;
        let help = super::super::Cli::command().render_long_help().to_string();
        assert!(help.contains(&Exit::help()), "{help}");
        let readme = include_str!("../../../../README.md");
        assert!(
            readme.contains(&Exit::markdown()),
            "README.md's Exit codes table differs from:\n{}",
            Exit::markdown()
        );
    }

    #[test]
    fn clap_usage_errors_map_to_usage() {
        use clap::Parser;
        let e = match super::super::Cli::try_parse_from(["warren", "no-such-command"]) {
            Err(e) => e,
            Ok(_) => panic!("an unknown command parsed"),
        };
        assert_eq!(super::super::parse_failure(&e), Exit::Usage);
        assert_eq!(e.exit_code(), Exit::Usage.code());
        let e = match super::super::Cli::try_parse_from(["warren", "--version"]) {
            Err(e) => e,
            Ok(_) => panic!("--version parsed as a command"),
        };
        assert_eq!(super::super::parse_failure(&e), Exit::Success);
    }
}
