/*!
The merge commit message `git merge --no-ff` writes, so that a merge made with libgit2 has the
same SHA as upstream's. Rules checked against git 2.47 (see the parity tests):

- merging a SHA given on the command line: `Merge commit '<sha>'`;
- merging FETCH_HEAD: `Merge <note>` where the note is how `git fetch` described the ref in
  FETCH_HEAD: `branch 'x' of <url>`, `tag 'x' of <url>`, `remote-tracking branch 'x' of <url>`,
  `commit '<full ref or sha>' of <url>` for anything else, or just `<url>` for the remote HEAD;
  the URL is anonymised and loses trailing slashes and one `.git`;
- ` into <branch>` is appended unless the branch is `master` or `main` (merge.suppressDest);
- an annotated tag's message follows after a blank line; the message ends with a newline.
*/

use crate::auth::anonymize_url;

/// What is being merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeSource<'a> {
    /// `git merge --no-ff <sha>`.
    Commit(&'a str),
    /// `git merge --no-ff FETCH_HEAD` after fetching `remote_ref` (a full ref name, `HEAD`, or a
    /// SHA) from `url`.
    FetchHead { remote_ref: &'a str, url: &'a str },
}

/// The URL as `git fetch` records it in FETCH_HEAD.
pub fn fetch_head_url(url: &str) -> String {
    let anon = anonymize_url(url);
    let trimmed = anon.trim_end_matches('/');
    // git strips ".git" only when something remains before it.
    match trimmed.strip_suffix(".git") {
        Some(stem) if stem.len() > 1 => stem.to_string(),
        _ => trimmed.to_string(),
    }
}

/// The part after "Merge ".
fn describe(src: &MergeSource<'_>) -> String {
    match src {
        MergeSource::Commit(sha) => format!("commit '{sha}'"),
        MergeSource::FetchHead { remote_ref, url } => {
            let url = fetch_head_url(url);
            if *remote_ref == "HEAD" {
                return url;
            }
            let (kind, what) = if let Some(b) = remote_ref.strip_prefix("refs/heads/") {
                ("branch", b)
            } else if let Some(t) = remote_ref.strip_prefix("refs/tags/") {
                ("tag", t)
            } else if let Some(r) = remote_ref.strip_prefix("refs/remotes/") {
                ("remote-tracking branch", r)
            } else {
                ("commit", *remote_ref)
            };
            format!("{kind} '{what}' of {url}")
        }
    }
}

/// The full message. `tag_message` is the message of an annotated tag being merged.
pub fn merge_message(src: &MergeSource<'_>, branch: &str, tag_message: Option<&str>) -> String {
    let mut msg = format!("Merge {}", describe(src));
    if branch != "master" && branch != "main" {
        msg.push_str(&format!(" into {branch}"));
    }
    msg.push('\n');
    if let Some(body) = tag_message.map(str::trim_end).filter(|b| !b.is_empty()) {
        msg.push('\n');
        msg.push_str(body);
        msg.push('\n');
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fh<'a>(remote_ref: &'a str, url: &'a str) -> MergeSource<'a> {
        MergeSource::FetchHead { remote_ref, url }
    }

    #[test]
    fn messages_like_git() {
        let url = "https://tok:x-oauth-basic@github.com/org/repo.git";
        assert_eq!(
            merge_message(&fh("refs/pull/1/head", url), "master", None),
            "Merge commit 'refs/pull/1/head' of https://github.com/org/repo\n"
        );
        assert_eq!(
            merge_message(
                &fh("refs/heads/feature", "file:///r/up.git/"),
                "devel",
                None
            ),
            "Merge branch 'feature' of file:///r/up into devel\n"
        );
        assert_eq!(
            merge_message(&MergeSource::Commit("abc"), "main", None),
            "Merge commit 'abc'\n"
        );
        assert_eq!(
            merge_message(&MergeSource::Commit("abc"), "release-1.0", None),
            "Merge commit 'abc' into release-1.0\n"
        );
        assert_eq!(
            merge_message(&fh("refs/tags/v1", "/srv/up"), "master", Some("tag msg\n")),
            "Merge tag 'v1' of /srv/up\n\ntag msg\n"
        );
        assert_eq!(
            merge_message(&fh("refs/remotes/foo/bar", "/srv/up"), "master", None),
            "Merge remote-tracking branch 'foo/bar' of /srv/up\n"
        );
        assert_eq!(
            merge_message(&fh("HEAD", "file:///srv/up3"), "release-1.0", None),
            "Merge file:///srv/up3 into release-1.0\n"
        );
    }
}
