/*!
Probes: single-binary runs every arch must answer identically (help, and each kind of bad
options). They are data; the lab turns each into one test per arch and one golden.
*/

use crate::utility::Utility;

/// One run of one utility.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Golden name, without the arch: `<utility>__<case>`.
    pub name: String,
    pub utility: Utility,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

fn probe(utility: Utility, case: &str, args: &[&str], env: &[(&str, &str)]) -> Probe {
    Probe {
        name: format!("{utility}__{case}"),
        utility,
        args: args.iter().map(std::string::ToString::to_string).collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Every probe, for every utility.
pub fn all() -> Vec<Probe> {
    let mut out = Vec::new();
    for utility in crate::utility::ALL {
        let var = utility.options_var();
        out.push(probe(utility, "help", &["--help"], &[]));
        out.push(probe(utility, "go_style_help", &["-h"], &[]));
        out.push(probe(utility, "unknown_flag", &["--no-such-flag"], &[]));
        out.push(probe(utility, "malformed_json", &[], &[(var, "{")]));
        out.push(probe(utility, "empty_json", &[], &[(var, "")]));
        out.push(probe(utility, "invalid_options", &[], &[(var, "{}")]));
    }
    out.push(probe(
        Utility::Entrypoint,
        "bad_duration_flag",
        &["--timeout=5x"],
        &[],
    ));
    out.push(probe(
        Utility::Clonerefs,
        "bad_repo_flag",
        &["--repo=org,repo"],
        &[],
    ));
    out.push(probe(
        Utility::Initupload,
        "missing_job_spec",
        &[],
        &[(
            Utility::Initupload.options_var(),
            r#"{"dry_run":true,"path_strategy":"explicit"}"#,
        )],
    ));
    out
}
