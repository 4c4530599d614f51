/*!
Clone records (upstream `pkg/pod-utils/clone/types.go`, `format.go`): what clonerefs writes to
its log file and initupload turns into clone-log.txt. Failures are data here, not errors.
*/

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::prowapi::Refs;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// What happened while cloning one ref (or, with empty refs, while setting up the environment).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    #[serde(default)]
    pub refs: Refs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Command>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub final_sha: String,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duration: i64,
}

/// One command as a user would have typed it, with its combined output.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Command {
    #[serde(default)]
    pub command: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duration: i64,
}

/// Where a ref is checked out under `src_root` (upstream `clone.PathForRefs`): the path alias,
/// else the repo link without its scheme, else `github.com/<org>/<repo>`, below `src/`.
pub fn path_for_refs(src_root: &str, refs: &Refs) -> String {
    let rel = if !refs.path_alias.is_empty() {
        refs.path_alias.clone()
    } else if !refs.repo_link.is_empty() {
        refs.repo_link
            .rsplit("://")
            .next()
            .unwrap_or_default()
            .to_string()
    } else {
        format!("github.com/{}/{}", refs.org, refs.repo)
    };
    crate::gopath::join(&[src_root, "src", &rel])
}

/// The human-readable block for one record, byte for byte as upstream's `FormatRecord`.
pub fn format_record(r: &Record) -> String {
    let mut out = String::new();
    if r.failed {
        out.push_str("# FAILED\n");
    }
    if r.refs.repo.is_empty() {
        out.push_str("Environment setup");
    } else {
        out.push_str(&format!(
            "# Cloning {}/{} at {}",
            r.refs.org, r.refs.repo, r.refs.base_ref
        ));
    }
    if !r.refs.base_sha.is_empty() {
        out.push_str(&format!("({})", r.refs.base_sha));
    }
    out.push('\n');
    let pulls = r.refs.pulls();
    if !pulls.is_empty() {
        out.push_str("# Checking out pulls:\n");
        for p in pulls {
            out.push_str(&format!("#\t{}", p.number));
            if !p.sha.is_empty() {
                out.push_str(&format!("({})", p.sha));
            }
            out.push('\n');
        }
    }
    for c in &r.commands {
        out.push_str(&format!("$ {}", c.command));
        if c.duration != 0 {
            out.push_str(&format!(" (runtime: {})", duration::format(c.duration)));
        }
        out.push('\n');
        out.push_str(&c.output);
        if !c.error.is_empty() {
            out.push_str(&format!("# Error: {}\n", c.error));
        }
    }
    out.push_str(&format!("# Final SHA: {}\n", r.final_sha));
    out.push_str(&format!(
        "# Total runtime: {}\n",
        duration::format(r.duration)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prowapi::Pull;

    #[test]
    fn environment_setup_block() {
        let r = Record {
            commands: vec![Command {
                command: "ssh-agent".into(),
                output: "ok\n".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            format_record(&r),
            "Environment setup\n$ ssh-agent\nok\n# Final SHA: \n# Total runtime: 0s\n"
        );
    }

    #[test]
    fn cloning_block_with_pulls_errors_and_durations() {
        let r = Record {
            refs: Refs {
                org: "org".into(),
                repo: "repo".into(),
                base_ref: "master".into(),
                base_sha: "abcd".into(),
                pulls: Some(vec![
                    Pull {
                        number: 1,
                        sha: "pull-1-sha".into(),
                        ..Default::default()
                    },
                    Pull {
                        number: 2,
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            },
            commands: vec![
                Command {
                    command: "git init".into(),
                    output: "Initialized\n".into(),
                    duration: 12 * duration::SECOND,
                    ..Default::default()
                },
                Command {
                    command: "git fetch".into(),
                    error: "exit status 128".into(),
                    ..Default::default()
                },
            ],
            failed: true,
            final_sha: String::new(),
            duration: 23 * duration::SECOND,
        };
        assert_eq!(
            format_record(&r),
            "# FAILED\n# Cloning org/repo at master(abcd)\n# Checking out pulls:\n#\t1(pull-1-sha)\n#\t2\n\
             $ git init (runtime: 12s)\nInitialized\n$ git fetch\n# Error: exit status 128\n\
             # Final SHA: \n# Total runtime: 23s\n"
        );
    }

    #[test]
    fn records_encode_like_upstream() {
        let r = Record {
            refs: Refs {
                org: "o".into(),
                repo: "r".into(),
                ..Default::default()
            },
            commands: vec![Command {
                command: "c".into(),
                duration: 5,
                ..Default::default()
            }],
            final_sha: "f".into(),
            duration: 7,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"refs":{"org":"o","repo":"r"},"commands":[{"command":"c","duration":5}],"final_sha":"f","duration":7}"#
        );
    }
}
