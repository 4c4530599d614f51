/*!
What the images say about where they come from: the git revision, the commit time (the one
timestamp every file, config and SBOM carries, so two builds of a commit are identical) and the
default tag.
*/

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The source facts of one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The full commit id of HEAD (`org.opencontainers.image.revision`).
    pub revision: String,
    /// Seconds since the epoch: `SOURCE_DATE_EPOCH` if set, else HEAD's committer time.
    pub epoch: u64,
    /// The repository URL (`org.opencontainers.image.source`).
    pub url: String,
    /// `git describe --always --dirty`: the default tag.
    pub describe: String,
}

/// The repository URL: the workspace's `repository` field.
pub const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

impl Source {
    /// Reads the facts from the git work tree at `root`.
    pub fn from_git(root: &Path) -> Result<Source> {
        let revision = git(root, &["rev-parse", "HEAD"])?;
        let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => v
                .trim()
                .parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
            _ => git(root, &["log", "-1", "--format=%ct"])?
                .parse()
                .context("git log gave no commit time")?,
        };
        let describe = git(root, &["describe", "--always", "--dirty"])?;
        Ok(Source {
            revision,
            epoch,
            url: REPOSITORY.to_string(),
            describe,
        })
    }

    /// The epoch as RFC 3339 (`2025-01-02T03:04:05Z`), as OCI's `created` fields want it.
    pub fn created(&self) -> String {
        rfc3339(self.epoch)
    }
}

pub fn rfc3339(epoch: u64) -> String {
    let t = i64::try_from(epoch)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("every timestamp formats as RFC 3339")
}

/// Checks a tag against the distribution spec's grammar, so a bad `--tag` fails before the build.
pub fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        bail!("{tag:?} is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})");
    }
    Ok(())
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .context("could not run git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn tags_follow_the_distribution_grammar() {
        for good in ["v1", "0dbedf4", "0dbedf4-dirty", "_x.y-z"] {
            check_tag(good).unwrap();
        }
        for bad in ["", "-x", ".x", "a:b", "a/b", &"x".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_repository_is_known() {
        assert!(REPOSITORY.starts_with("https://"), "{REPOSITORY}");
    }
}
