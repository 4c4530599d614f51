/*!
How options reach a utility (upstream `pkg/pod-utils/options/load.go`): when the utility's
`*_OPTIONS` variable is present, even empty, its JSON is the whole configuration and the command
line is ignored; otherwise Go-style flags are parsed.

Go's `flag` package accepts `-name`, `--name`, `-name=value` and `-name value`, and stops at the
first non-flag argument. clap only knows `--name`, so [`go_flags`] rewrites single-dash long
names that the utility declares before clap sees them.
*/

use serde::de::DeserializeOwned;

use crate::env;

#[derive(Debug, thiserror::Error)]
#[error("could not load config from JSON var {var}: {source}")]
pub struct LoadError {
    pub var: &'static str,
    #[source]
    pub source: serde_json::Error,
}

/// Why a utility's options could not be had.
#[derive(Debug)]
pub enum LoadFailure {
    /// Bad JSON in the options variable: logged as fatal, exit 1.
    Json(LoadError),
    /// Flag parsing ended (help, version or a usage error); clap knows the exit code.
    Flags(clap::Error),
}

/// Upstream's `options.Load`: JSON from `var` when present, else the command line parsed by
/// `from_flags` after Go-style flag names are rewritten.
pub fn load<T, F>(
    var: &'static str,
    args: Vec<String>,
    long: &[&str],
    from_flags: F,
) -> Result<T, LoadFailure>
where
    T: DeserializeOwned,
    F: FnOnce(Vec<String>) -> Result<T, clap::Error>,
{
    match from_env::<T>(var) {
        Err(e) => Err(LoadFailure::Json(e)),
        Ok(Source::Json(o)) => Ok(o),
        Ok(Source::Flags) => from_flags(go_flags(args, long)).map_err(LoadFailure::Flags),
    }
}

/// Where a utility's options came from.
pub enum Source<T> {
    /// The env var was present and held valid JSON.
    Json(T),
    /// The env var was absent: parse the command line.
    Flags,
}

/// Decodes the JSON in `var` when the variable is present (upstream's `LoadConfig`).
pub fn from_env<T: DeserializeOwned>(var: &'static str) -> Result<Source<T>, LoadError> {
    match env::lookup(var) {
        None => Ok(Source::Flags),
        Some(raw) => serde_json::from_str(&raw)
            .map(Source::Json)
            .map_err(|source| LoadError { var, source }),
    }
}

/// Rewrites Go-style single-dash long flags (`-timeout=1s`, `-copy-mode-only`) into clap's
/// `--` form. Only names in `long` (plus `h`/`help`) are touched, and only before the first
/// non-flag argument or `--`, which is where Go's parser stops too.
pub fn go_flags<I, S>(args: I, long: &[&str]) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut out = Vec::new();
    let mut iter = args.into_iter().map(Into::into);
    if let Some(argv0) = iter.next() {
        out.push(argv0);
    }
    let mut flags_done = false;
    let mut expect_value = false;
    for arg in iter {
        if flags_done {
            out.push(arg);
            continue;
        }
        if expect_value {
            expect_value = false;
            out.push(arg);
            continue;
        }
        if arg == "--" || arg == "-" || !arg.starts_with('-') {
            flags_done = true;
            out.push(arg);
            continue;
        }
        let body = arg.trim_start_matches('-');
        let name = body.split_once('=').map_or(body, |(n, _)| n);
        if name == "h" || name == "help" {
            out.push("--help".to_string());
            continue;
        }
        if long.contains(&name) {
            // A value in the next argument is clap's business; we only need to skip it so a
            // value that starts with '-' is not rewritten.
            expect_value = !body.contains('=') && !is_bool_flag(name, long);
            out.push(format!("--{body}"));
        } else {
            out.push(arg);
        }
    }
    out
}

/// The `long` table [`go_flags`] needs for `cmd`, read from clap's own arguments: every long
/// name but `help`/`version`, and a `name?` twin for each flag whose value is optional (Go's
/// bool flags). Each utility's tests hold its hand-written table against this, so a flag added
/// to clap cannot be missing from the Go-style rewriting.
pub fn flag_table(mut cmd: clap::Command) -> Vec<String> {
    cmd.build();
    let mut out = Vec::new();
    for a in cmd.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        out.push(long.to_string());
        if a.get_num_args()
            .is_some_and(|n| n.min_values() == 0 && n.takes_values())
        {
            out.push(format!("{long}?"));
        }
    }
    out.sort();
    out
}

/// Bool flags are marked in the `long` table with a trailing `?` twin, e.g. `["fail", "fail?"]`.
fn is_bool_flag(name: &str, long: &[&str]) -> bool {
    long.iter().any(|l| l.strip_suffix('?') == Some(name))
}

/// Go's `strconv.ParseBool`, which bool flags use (`-fail=T`, `-dry-run=0`).
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("parse error: invalid boolean value {s:?}")),
    }
}

/// A Go duration flag value (`--timeout=90m`), in nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: &[&str] = &[
        "timeout",
        "copy-mode-only",
        "copy-mode-only?",
        "process-log",
    ];

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        let got = go_flags(
            [
                "entrypoint",
                "-timeout",
                "-5s",
                "-copy-mode-only",
                "-process-log=/l",
                "ls",
                "-timeout",
            ],
            LONG,
        );
        assert_eq!(
            got,
            [
                "entrypoint",
                "--timeout",
                "-5s",
                "--copy-mode-only",
                "--process-log=/l",
                "ls",
                "-timeout"
            ]
        );
    }

    #[test]
    fn stops_at_double_dash_and_keeps_unknown_flags() {
        let got = go_flags(["x", "-nope", "--", "-timeout"], LONG);
        assert_eq!(got, ["x", "-nope", "--", "-timeout"]);
        assert_eq!(go_flags(["x", "-h"], LONG), ["x", "--help"]);
        assert_eq!(go_flags(["x", "-help"], LONG), ["x", "--help"]);
    }

    #[derive(serde::Deserialize, Debug)]
    struct Opts {
        #[serde(default)]
        a: i64,
    }

    #[test]
    fn env_json_wins_even_when_empty() {
        // SAFETY: the variable name is unique to this test; no other thread reads it.
        unsafe { std::env::set_var("POD_UTILS_TEST_OPTS", "") };
        let Err(err) = from_env::<Opts>("POD_UTILS_TEST_OPTS") else {
            panic!("empty JSON must fail");
        };
        assert!(
            err.to_string()
                .starts_with("could not load config from JSON var POD_UTILS_TEST_OPTS: ")
        );
        unsafe { std::env::set_var("POD_UTILS_TEST_OPTS", r#"{"a":3,"unknown":1}"#) };
        match from_env::<Opts>("POD_UTILS_TEST_OPTS").unwrap() {
            Source::Json(o) => assert_eq!(o.a, 3),
            Source::Flags => panic!("expected JSON"),
        }
        unsafe { std::env::remove_var("POD_UTILS_TEST_OPTS") };
        assert!(matches!(
            from_env::<Opts>("POD_UTILS_TEST_OPTS").unwrap(),
            Source::Flags
        ));
    }
}
