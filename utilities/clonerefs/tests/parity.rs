//! Parity oracle: upstream's git command sequence run with the real git CLI in one source root,
//! our clonerefs (libgit2) in another; the checkouts must be identical, down to merge SHAs.

mod support;

use std::path::Path;

use pod_utils::clone::Record;
use pod_utils::prowapi::{Pull, Refs};
use serde_json::json;
use support::{HttpGitServer, Lab, oracle_clone, run_ours, state};

const USER: &str = "ci-robot";
const EMAIL: &str = "ci-robot@k8s.io";

fn refs(repo: &str, base: &str, uri: &str) -> Refs {
    Refs {
        org: "org".into(),
        repo: repo.into(),
        base_ref: base.into(),
        clone_uri: uri.into(),
        ..Default::default()
    }
}

fn pull(number: i64, sha: &str, r: &str) -> Pull {
    Pull {
        number,
        sha: sha.into(),
        ref_: r.into(),
        ..Default::default()
    }
}

fn record_for<'a>(records: &'a [Record], r: &Refs) -> &'a Record {
    records
        .iter()
        .find(|rec| rec.refs == *r)
        .unwrap_or_else(|| panic!("no record for {}/{}", r.org, r.repo))
}

/// Clones `all` with the oracle and with our binary and asserts identical results; returns our
/// records (setup record first).
fn parity(lab: &Lab, all: &[Refs], token_file: Option<&Path>) -> Vec<Record> {
    let home = lab.home();
    let token = token_file.map(|p| {
        std::fs::read_to_string(p)
            .expect("token")
            .trim()
            .to_string()
    });
    let oracle_root = lab.path("oracle").to_string_lossy().into_owned();
    let ours_root = lab.path("ours").to_string_lossy().into_owned();
    let oracle: Vec<_> = all
        .iter()
        .map(|r| oracle_clone(&home, &oracle_root, r, USER, EMAIL, token.as_deref()))
        .collect();
    let mut opts = json!({
        "src_root": ours_root,
        "log": lab.path("clone.json"),
        "git_user_name": USER,
        "git_user_email": EMAIL,
        "refs": all,
    });
    if let Some(p) = token_file {
        opts["oauth_token_file"] = json!(p);
    }
    let (code, records, stderr) = run_ours(&home, &opts);
    assert_eq!(code, 0, "clonerefs failed: {stderr}");
    assert_eq!(records.len(), all.len() + 1, "{records:#?}");
    assert_eq!(records[0].refs, Refs::default(), "setup record comes first");
    for (r, o) in all.iter().zip(&oracle) {
        let rec = record_for(&records, r);
        assert_eq!(
            rec.failed, o.failed,
            "failure differs for {r:?}: oracle failed at {:?}, ours: {rec:#?}",
            o.failed_command
        );
        if o.failed {
            assert!(rec.final_sha.is_empty() && rec.duration == 0);
            continue;
        }
        let ours_dir = Path::new(&clonerefs::options::path_for_refs(&ours_root, r)).to_path_buf();
        let (want, got) = (state(&home, &o.dir), state(&home, &ours_dir));
        assert_eq!(got, want, "checkout differs for {r:?}");
        assert_eq!(rec.final_sha, got.head);
        assert!(rec.duration > 0);
    }
    records
}

/// [`parity`] where every ref must clone successfully.
fn parity_ok(lab: &Lab, all: &[Refs], token_file: Option<&Path>) -> Vec<Record> {
    let records = parity(lab, all, token_file);
    for r in &records {
        assert!(!r.failed, "unexpected failure: {r:#?}");
    }
    records
}

fn file_url(lab: &Lab, name: &str) -> String {
    format!("file://{}", lab.repos().join(name).display())
}

#[test]
fn base_only() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let recs = parity_ok(&lab, &[refs("r", "master", &file_url(&lab, "r"))], None);
    let cmds: Vec<&str> = recs[1]
        .commands
        .iter()
        .map(|c| c.command.as_str())
        .collect();
    let dir = lab.path("ours/src/github.com/org/r");
    let url = file_url(&lab, "r");
    let d = dir.display();
    assert_eq!(
        cmds,
        [
            format!("PWD=/  mkdir -p {d}"),
            format!("PWD={d}  git init"),
            format!("PWD={d}  git config user.name ci-robot"),
            format!("PWD={d}  git config user.email ci-robot@k8s.io"),
            format!("PWD={d}  git fetch {url} --tags --prune"),
            format!("PWD={d}  git fetch {url} master"),
            format!("PWD={d}  git checkout FETCH_HEAD"),
            format!("PWD={d}  git branch --force master FETCH_HEAD"),
            format!("PWD={d}  git checkout master"),
            format!("PWD={d}  git submodule update --init --recursive"),
        ]
    );
}

#[test]
fn one_pull_by_number_over_a_plain_path() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let mut r = refs("r", "master", &lab.repos().join("r").to_string_lossy());
    r.pulls = Some(vec![pull(1, "", "")]);
    let recs = parity_ok(&lab, &[r], None);
    let merge = recs[1]
        .commands
        .iter()
        .find(|c| c.command.contains("git merge"))
        .expect("merge");
    assert!(
        merge.command.ends_with(
            "GIT_AUTHOR_DATE=1500000001 GIT_COMMITTER_DATE=1500000001 git merge --no-ff FETCH_HEAD"
        ),
        "{}",
        merge.command
    );
}

#[test]
fn several_pulls_by_sha_number_and_ref_into_a_release_branch() {
    let lab = Lab::new();
    let shas = lab.standard_repo("r");
    let mut r = refs("r", "release-1.0", &file_url(&lab, "r"));
    r.pulls = Some(vec![
        pull(1, &shas["p1"], ""),
        pull(2, "", ""),
        pull(4, "", "refs/changes/04/4/1"),
    ]);
    let mut m = refs("r2", "master", &file_url(&lab, "r"));
    m.path_alias = "example.com/r2".into();
    m.pulls = Some(vec![pull(2, &shas["p2"], ""), pull(1, "", "")]);
    parity_ok(&lab, &[r, m], None);
}

#[test]
fn base_sha_and_skip_fetch_head() {
    let lab = Lab::new();
    let shas = lab.standard_repo("r");
    let mut a = refs("a", "master", &file_url(&lab, "r"));
    a.base_sha = shas["c1"].clone();
    a.pulls = Some(vec![pull(1, "", "")]);
    let mut b = refs("b", "master", &file_url(&lab, "r"));
    b.skip_fetch_head = true;
    let recs = parity_ok(&lab, &[a, b.clone()], None);
    let rec = record_for(&recs, &b);
    assert!(!rec.commands.iter().any(|c| c.command.contains("--tags")));
}

#[test]
fn conflicting_pull_fails_both() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let mut r = refs("r", "master", &file_url(&lab, "r"));
    r.pulls = Some(vec![pull(3, "", "")]);
    let recs = parity(&lab, &[r], None);
    assert!(recs[1].failed);
    let last = recs[1].commands.last().expect("commands");
    assert!(last.command.contains("git merge --no-ff FETCH_HEAD"));
    assert!(
        last.output
            .contains("CONFLICT (content): Merge conflict in a.txt"),
        "{last:?}"
    );
    assert!(!last.error.is_empty());
}

#[test]
fn submodules_recursive_and_skipped() {
    let lab = Lab::new();
    lab.repo_with_submodules("s");
    let with = refs("s", "with-sub", &file_url(&lab, "s"));
    let mut without = refs("s2", "with-sub", &file_url(&lab, "s"));
    without.skip_submodules = true;
    parity_ok(&lab, &[with, without], None);
    let leaf = lab.path("ours/src/github.com/org/s/vendor/sub/leaf/leaf.txt");
    assert!(leaf.exists(), "nested submodule checked out");
    assert!(
        !lab.path("ours/src/github.com/org/s2/vendor/sub/sub.txt")
            .exists()
    );
}

#[test]
fn path_alias_and_parallel_workers() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let mut a = refs("a", "master", &file_url(&lab, "r"));
    a.path_alias = "k8s.io/thing".into();
    let b = refs("b", "release-1.0", &file_url(&lab, "r"));
    let c = refs("c", "master", &file_url(&lab, "r"));
    parity_ok(&lab, &[a, b, c], None);
    assert!(lab.path("ours/src/k8s.io/thing/a.txt").exists());
}

#[test]
fn missing_ref_fails_after_retries() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let mut r = refs("r", "nope", &file_url(&lab, "r"));
    let home = lab.home();
    let oracle = oracle_clone(
        &home,
        &lab.path("oracle").to_string_lossy(),
        &r,
        USER,
        EMAIL,
        None,
    );
    assert!(oracle.failed);
    // The binary would retry for ~63 s as upstream; the library takes the delays as a setting.
    r.pulls = None;
    let opts = clonerefs::Options {
        src_root: lab.path("ours").to_string_lossy().into_owned(),
        log: lab.path("clone.json").to_string_lossy().into_owned(),
        refs: vec![r.clone()],
        ..Default::default()
    };
    let settings = clonerefs::Settings {
        retry_delays: vec![std::time::Duration::ZERO; 9],
        ..Default::default()
    };
    let records = clonerefs::create_records(&opts, &settings);
    let rec = &records[1];
    assert!(rec.failed);
    let last = rec.commands.last().expect("commands");
    assert!(
        last.command
            .ends_with(&format!("git fetch {} nope", file_url(&lab, "r")))
    );
    assert_eq!(last.error, "couldn't find remote ref nope");
    assert!(rec.final_sha.is_empty());
    // A pull that does not exist fails the same way.
    let mut p = refs("p", "master", &file_url(&lab, "r"));
    p.pulls = Some(vec![pull(99, "", "")]);
    let opts = clonerefs::Options {
        refs: vec![p],
        ..opts
    };
    let records = clonerefs::create_records(&opts, &settings);
    assert!(records[1].failed);
    assert_eq!(
        records[1].commands.last().expect("cmd").error,
        "couldn't find remote ref pull/99/head"
    );
}

#[test]
fn clone_depth_over_smart_http() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let server = HttpGitServer::start(&lab.repos());
    let mut r = refs("r", "master", &server.url("r"));
    r.clone_depth = 1;
    r.pulls = Some(vec![pull(1, "", "")]);
    let recs = parity_ok(&lab, &[r], None);
    assert!(
        recs[1]
            .commands
            .iter()
            .any(|c| c.command.contains("git fetch --depth 1 http://"))
    );
    for root in ["oracle", "ours"] {
        let dir = lab.path(&format!("{root}/src/github.com/org/r"));
        assert_eq!(
            lab.git(&dir, &["rev-parse", "--is-shallow-repository"]),
            "true",
            "{root}"
        );
    }
}

#[test]
fn pulls_and_token_over_smart_http() {
    let lab = Lab::new();
    let shas = lab.standard_repo("r.git");
    let server = HttpGitServer::start(&lab.repos());
    let token = lab.path("token");
    std::fs::write(&token, "s3cr3t-t0ken\n").expect("token");
    // ".git/" exercises how git trims the URL in merge messages.
    let mut r = refs("r", "release-1.0", &format!("{}/", server.url("r.git")));
    r.pulls = Some(vec![pull(1, "", ""), pull(2, &shas["p2"], "")]);
    let recs = parity_ok(&lab, &[r], Some(&token));
    let text = serde_json::to_string(&recs).expect("json");
    assert!(!text.contains("s3cr3t-t0ken"), "token leaked: {text}");
    assert!(
        text.contains("http://XXXXXXXXXXXX:x-oauth-basic@127.0.0.1"),
        "{text}"
    );
}

/// Deviation: libgit2's local transport cannot fetch shallow, so a local remote is cloned in
/// full (same checkout, deeper history) and the record leaves out `--depth`.
#[test]
fn clone_depth_over_local_transport_fetches_full_history() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let mut r = refs("r", "master", &file_url(&lab, "r"));
    r.clone_depth = 1;
    let opts = json!({
        "src_root": lab.path("ours"),
        "log": lab.path("clone.json"),
        "git_user_name": USER,
        "git_user_email": EMAIL,
        "refs": [r],
    });
    let (code, recs, _) = run_ours(&lab.home(), &opts);
    assert_eq!(code, 0);
    assert!(!recs[1].failed, "{:#?}", recs[1]);
    assert!(
        !recs[1]
            .commands
            .iter()
            .any(|c| c.command.contains("--depth"))
    );
    let dir = lab.path("ours/src/github.com/org/r");
    assert_eq!(
        lab.git(&dir, &["rev-parse", "--is-shallow-repository"]),
        "false"
    );
    assert_eq!(lab.git(&dir, &["rev-list", "--count", "HEAD"]), "2");
}

/// Deviation: libgit2 speaks protocol v0, where a server only hands out unadvertised commits
/// with `uploadpack.allowReachableSHA1InWant`; the git CLI's protocol v2 needs no such setting.
/// With it set (as GitHub's servers behave), the checkouts are identical.
#[test]
fn base_sha_that_is_no_ref_tip_over_smart_http() {
    let lab = Lab::new();
    let shas = lab.standard_repo("r");
    let repo = lab.repos().join("r");
    lab.git(&repo, &["tag", "-d", "v0", "v1"]);
    let server = HttpGitServer::start(&lab.repos());
    let mut r = refs("r", "master", &server.url("r"));
    r.base_sha = shas["c1"].clone();
    r.skip_fetch_head = true;
    parity_ok(&lab, &[r.clone()], None);

    lab.git(
        &repo,
        &["config", "uploadpack.allowReachableSHA1InWant", "false"],
    );
    let opts = clonerefs::Options {
        src_root: lab.path("v0").to_string_lossy().into_owned(),
        log: lab.path("v0.json").to_string_lossy().into_owned(),
        refs: vec![r.clone()],
        ..Default::default()
    };
    let settings = clonerefs::Settings {
        retry_delays: vec![],
        ..Default::default()
    };
    let records = clonerefs::create_records(&opts, &settings);
    assert!(records[1].failed, "{:#?}", records[1]);
    let oracle = oracle_clone(
        &lab.home(),
        &lab.path("v2").to_string_lossy(),
        &r,
        USER,
        EMAIL,
        None,
    );
    assert!(
        !oracle.failed,
        "the git CLI (protocol v2) fetches any reachable commit"
    );
}

/// Pulls that are not plain branches: an annotated tag (its message goes into the merge
/// commit), an already-merged commit (no merge commit), and a rename on the base side that
/// the pull's edit must follow.
#[test]
fn tag_pull_already_merged_pull_and_renames() {
    let lab = Lab::new();
    let shas = lab.standard_repo("r");
    let repo = lab.repos().join("r");
    lab.git(
        &repo,
        &[
            "tag",
            "-a",
            "rc",
            "-m",
            "release candidate\n\nwith a body",
            &shas["p2"],
        ],
    );
    // Base side renames a.txt; the pull edits it under its old name.
    lab.git(&repo, &["checkout", "-q", "-b", "renamed", &shas["c2"]]);
    lab.git(&repo, &["mv", "a.txt", "moved.txt"]);
    lab.git(&repo, &["commit", "-q", "-m", "rename"]);
    lab.git(&repo, &["checkout", "-q", "-b", "edit", &shas["c2"]]);
    std::fs::write(repo.join("a.txt"), "one\nTWO\nthree\nfour\n").expect("write");
    lab.git(&repo, &["commit", "-q", "-am", "edit"]);
    let edit = lab.git(&repo, &["rev-parse", "HEAD"]);
    lab.git(&repo, &["update-ref", "refs/pull/9/head", &edit]);
    lab.git(&repo, &["checkout", "-q", "master"]);

    let mut tagged = refs("tagged", "master", &file_url(&lab, "r"));
    tagged.pulls = Some(vec![pull(7, "", "refs/tags/rc"), pull(8, &shas["c1"], "")]);
    let mut renamed = refs("renamed", "renamed", &file_url(&lab, "r"));
    renamed.pulls = Some(vec![pull(9, "", "")]);
    let recs = parity_ok(&lab, &[tagged.clone(), renamed], None);
    let dir = lab.path("ours/src/github.com/org/tagged");
    let msg = lab.git(&dir, &["log", "-1", "--format=%B"]);
    assert!(msg.starts_with("Merge tag 'rc' of file://"), "{msg}");
    assert!(msg.contains("with a body"), "{msg}");
    let rec = recs.iter().find(|r| r.refs == tagged).expect("record");
    let noop = rec
        .commands
        .iter()
        .find(|c| {
            c.command
                .ends_with(&format!("git merge --no-ff {}", shas["c1"]))
        })
        .expect("merge of c1");
    assert_eq!(noop.output, "Already up to date.\n");
    assert!(
        lab.path("ours/src/github.com/org/renamed/moved.txt")
            .exists()
    );
}

/// Deviation: libgit2 has neither partial clone nor sparse checkout. A blobless fetch fetches
/// whole objects and a sparse checkout checks out every file; the fetch sequence still takes
/// upstream's sparse path (no tag fetch, `--no-tags`) and the records show what was done (no
/// `--filter`, no `git sparse-checkout`). The checked-out commit is upstream's.
#[test]
fn blobless_and_sparse_fetch_everything() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let mut blobless = refs("blobless", "master", &file_url(&lab, "r"));
    blobless.blobless_fetch = Some(true);
    blobless.pulls = Some(vec![pull(1, "", "")]);
    let mut sparse = refs("sparse", "master", &file_url(&lab, "r"));
    sparse.sparse_checkout_files = Some(vec!["README".into()]);
    let opts = json!({
        "src_root": lab.path("ours"),
        "log": lab.path("clone.json"),
        "git_user_name": USER,
        "git_user_email": EMAIL,
        "refs": [blobless, sparse],
    });
    let (code, recs, stderr) = run_ours(&lab.home(), &opts);
    assert_eq!(code, 0, "{stderr}");
    let text = serde_json::to_string(&recs).expect("json");
    assert!(
        !text.contains("--filter") && !text.contains("sparse-checkout"),
        "{text}"
    );
    let sparse_rec = recs
        .iter()
        .find(|r| r.refs.repo == "sparse")
        .expect("record");
    assert!(!sparse_rec.failed);
    let fetches: Vec<&str> = sparse_rec
        .commands
        .iter()
        .map(|c| c.command.as_str())
        .filter(|c| c.contains("git fetch"))
        .collect();
    assert_eq!(fetches.len(), 1);
    assert!(
        fetches[0].contains("git fetch --no-tags file://"),
        "{fetches:?}"
    );
    let dir = lab.path("ours/src/github.com/org/sparse");
    assert!(dir.join("a.txt").exists(), "every file is checked out");
    assert_eq!(lab.git(&dir, &["tag"]), "", "no tags on the sparse path");
    let master = lab.git(&lab.repos().join("r"), &["rev-parse", "master"]);
    assert_eq!(sparse_rec.final_sha, master);
    let blob_rec = recs
        .iter()
        .find(|r| r.refs.repo == "blobless")
        .expect("record");
    assert!(!blob_rec.failed, "{blob_rec:#?}");
}

/// A local source that borrows its objects (`git clone --shared`, alternates) cannot seed the
/// clone by copying packs; libgit2's local transport fetches instead, with the same result.
#[test]
fn local_source_with_alternates() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let shared = lab.repos().join("shared");
    lab.git(
        &lab.repos(),
        &["clone", "-q", "--shared", "--mirror", "r", "shared"],
    );
    assert!(shared.join("objects/info/alternates").exists());
    let mut r = refs("r", "master", &format!("file://{}", shared.display()));
    r.pulls = Some(vec![pull(1, "", ""), pull(2, "", "")]);
    parity_ok(&lab, &[r], None);
    let objects = lab.path("ours/src/github.com/org/r/.git/objects/pack");
    assert!(
        std::fs::read_dir(objects)
            .expect("pack dir")
            .next()
            .is_some()
    );
}
