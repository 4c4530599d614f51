//! clonerefs vs the git CLI running upstream's command sequence, on a generated repository of
//! 10,000 commits with 3 pulls merged. Not a timed test: prints wall times and the ratio.
//!
//! Run with `cargo bench -p clonerefs --bench clone_vs_cli` (optionally `-- <rounds>`). With
//! `CLONEREFS_BENCH_CMD="qemu-s390x-static target/lab/s390x/clonerefs"` it times that command
//! instead of this build's clonerefs (the git CLI stays native: there is no emulated git here).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use pod_utils::prowapi::{Pull, Refs};
use serde_json::json;
use support::{HttpGitServer, Lab, bench_clonerefs, oracle_clone, run_cmd_with};

const COMMITS: usize = 10_000;
const FILES: usize = 500;

/// Writes the history with `git fast-import`: each commit rewrites one of FILES files under
/// 20 directories; pulls 1..=3 each add a commit on top of an older master commit.
fn generate(lab: &Lab, name: &str) {
    let repo = lab.repos().join(name);
    std::fs::create_dir_all(&repo).expect("mkdir");
    lab.git(&repo, &["init", "-q", "-b", "master"]);
    lab.git(
        &repo,
        &["config", "uploadpack.allowReachableSHA1InWant", "true"],
    );
    let mut child = support::git_cmd(&lab.home(), &repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("fast-import");
    let mut s = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
    let who = "Author <author@example.com>";
    for i in 0..COMMITS {
        let t = 1_500_000_000 + i;
        let body = format!(
            "file {} revision {i}\n{}\n",
            i % FILES,
            "line of text\n".repeat(20)
        );
        writeln!(
            s,
            "commit refs/heads/master\nmark :{}\nauthor {who} {t} +0000\ncommitter {who} {t} +0000",
            i + 1
        )
        .unwrap();
        let msg = format!("commit {i}");
        writeln!(s, "data {}\n{msg}", msg.len()).unwrap();
        if i > 0 {
            writeln!(s, "from :{i}").unwrap();
        }
        writeln!(
            s,
            "M 100644 inline dir{}/f{}.txt\ndata {}\n{body}",
            i % 20,
            i % FILES,
            body.len()
        )
        .unwrap();
    }
    for p in 1..=3usize {
        let base = COMMITS - p * 10;
        let t = 1_600_000_000 + p;
        writeln!(
            s,
            "commit refs/pull/{p}/head\nauthor {who} {t} +0000\ncommitter {who} {t} +0000"
        )
        .unwrap();
        let msg = format!("pull {p}");
        writeln!(s, "data {}\n{msg}\nfrom :{base}", msg.len()).unwrap();
        let body = format!("pull {p}\n");
        writeln!(
            s,
            "M 100644 inline pulls/p{p}.txt\ndata {}\n{body}",
            body.len()
        )
        .unwrap();
    }
    drop(s);
    assert!(child.wait().expect("wait").success());
    lab.git(&repo, &["checkout", "-q", "master"]);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let lab = Lab::new();
    let started = Instant::now();
    generate(&lab, "big");
    println!("generated {COMMITS} commits in {:.1?}", started.elapsed());
    let server = HttpGitServer::start(&lab.repos());
    let home = lab.home();
    for (transport, uri) in [
        (
            "file://",
            format!("file://{}", lab.repos().join("big").display()),
        ),
        ("smart http", server.url("big")),
    ] {
        let refs = Refs {
            org: "org".into(),
            repo: "big".into(),
            base_ref: "master".into(),
            clone_uri: uri,
            pulls: Some(
                (1..=3)
                    .map(|n| Pull {
                        number: n,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        let (mut cli, mut ours) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let root = lab.path(&format!("cli-{transport}-{round}").replace([':', '/', ' '], "_"));
            let t = Instant::now();
            let o = oracle_clone(
                &home,
                &root.to_string_lossy(),
                &refs,
                "ci-robot",
                "ci-robot@k8s.io",
                None,
            );
            cli.push(t.elapsed());
            assert!(!o.failed, "oracle failed at {:?}", o.failed_command);

            let root = lab.path(&format!("ours-{transport}-{round}").replace([':', '/', ' '], "_"));
            let opts = json!({
                "src_root": root,
                "log": root.join("clone.json"),
                "git_user_name": "ci-robot",
                "git_user_email": "ci-robot@k8s.io",
                "refs": [refs],
            });
            std::fs::create_dir_all(&root).expect("mkdir");
            let t = Instant::now();
            let (code, records, stderr) = run_cmd_with(bench_clonerefs(), &home, &opts, &[]);
            ours.push(t.elapsed());
            assert_eq!(code, 0, "{stderr}");
            assert!(!records[1].failed, "{:#?}", records[1]);
            let cli_head = lab.git(&o.dir, &["rev-parse", "HEAD"]);
            assert_eq!(records[1].final_sha, cli_head, "same final SHA");
        }
        let (c, r) = (median(cli), median(ours));
        println!(
            "{transport:>10}: git CLI sequence {c:>8.1?}  clonerefs {r:>8.1?}  ratio {:.2}x",
            r.as_secs_f64() / c.as_secs_f64()
        );
    }
}
