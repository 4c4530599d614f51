//! The lab's command line: a thin wrapper over the `harness` library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};
use harness::backend::{BackendKind, PodRun, RunOptions};
use harness::cases::Case;
use harness::report::{self, Cell, Report};
use harness::target::{Arch, Selection};
use harness::toolchain::Toolchain;
use harness::triage::Triage;
use harness::{build, cases, compare, debug, image, runner::Runner};

/// tetrapod's emulation lab: builds the pod utilities for amd64, arm64, ppc64le and s390x and
/// proves they behave the same.
#[derive(Parser)]
#[command(name = "harness", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build static binaries into target/lab/<arch>/ and check their ELF headers
    Build {
        /// amd64, arm64, ppc64le, s390x or all
        #[arg(long, default_value = "all")]
        arch: Selection,
    },
    /// Run one lab binary for an arch (under qemu for foreign arches)
    Run {
        #[arg(long)]
        arch: Selection,
        /// Trace the guest's system calls (qemu -strace)
        #[arg(long)]
        strace: bool,
        /// Use this qemu-user binary instead of the provisioned one
        #[arg(long)]
        qemu: Option<PathBuf>,
        /// Utility name (clonerefs, initupload, entrypoint, sidecar)
        utility: harness::utility::Utility,
        /// Arguments for the utility
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, run every case on every arch, compare with the goldens, print and write a report
    Matrix {
        #[arg(long, default_value = "all")]
        arch: Selection,
        /// Skip the build (use the binaries already in target/lab)
        #[arg(long)]
        no_build: bool,
        /// Also run the self-test fixtures (fixtures/selftest/), which go red by design on the
        /// arches they target: a demonstration of the report's triage
        #[arg(long)]
        selftest: bool,
        /// Another qemu-user: a binary (one arch) or a folder of qemu-<cpu>[-static] binaries,
        /// e.g. the backports build `qemu/provision` unpacks (see `harness toolchain`)
        #[arg(long)]
        qemu: Option<PathBuf>,
        /// Run the cases as processes under qemu-user (qemu) or as containers on the local
        /// Docker Engine (docker)
        #[arg(long, default_value_t = BackendKind::Qemu)]
        backend: BackendKind,
        /// Cells run at once (default: twice the CPUs, since a pod spends much of its time
        /// waiting on sleeps, timeouts and grace periods)
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
    },
    /// Rerun one fixture on one arch and show why it fails: golden diff, exits, core dumps
    /// with backtraces, log tails; then a syscall trace or a gdb session of the suspect
    Debug {
        /// Fixture name (fixtures/<name>.toml or selftest/) or a path
        fixture: String,
        #[arg(long)]
        arch: Selection,
        /// The container to trace or stop (default: the one that crashed or failed)
        #[arg(long)]
        container: Option<String>,
        /// Rerun with qemu's syscall trace of that container, saved beside the run
        #[arg(long)]
        strace: bool,
        /// Rerun with that container's process stopped for gdb-multiarch; prints the command
        #[arg(long)]
        gdb: bool,
        /// With --gdb: drive gdb here, continue to the crash, then run these gdb commands
        /// (comma separated, e.g. "bt,info registers pc")
        #[arg(long, value_delimiter = ',')]
        gdb_batch: Option<Vec<String>>,
        /// Another qemu-user binary or folder (see matrix --qemu)
        #[arg(long)]
        qemu: Option<PathBuf>,
        /// Skip the build
        #[arg(long)]
        no_build: bool,
    },
    /// Print the provisioned toolchain record
    Toolchain,
    /// Build OCI images of the utilities and the fixture job (an OCI layout); optionally push
    Images {
        #[arg(long, default_value = "all")]
        arch: Selection,
        /// The layout's directory [default: target/lab/images]
        #[arg(long)]
        out: Option<PathBuf>,
        /// The tag [default: `git describe --always --dirty`]
        #[arg(long)]
        tag: Option<String>,
        /// Push the utilities' indexes, images and SBOMs to REGISTRY/REPO-PREFIX
        #[arg(long, value_name = "REGISTRY/REPO-PREFIX")]
        push: Option<image::push::Destination>,
        /// Skip the build (use the binaries already in target/lab)
        #[arg(long)]
        no_build: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Toolchain => {
            let tc = Toolchain::load()?;
            println!("{}", serde_json::to_string_pretty(&tc)?);
        }
        Cmd::Build { arch } => {
            let tc = Toolchain::load()?;
            let arches = arch.0;
            build::build(&tc, &arches)?;
            for a in arches {
                for b in harness::utility::ALL.map(|u| u.name()) {
                    let p = build::binary(a, b);
                    let size = std::fs::metadata(&p)?.len();
                    println!("{a:8} {b:11} {size:>9} bytes  {}", p.display());
                }
            }
        }
        Cmd::Run {
            arch,
            strace,
            qemu,
            utility,
            args,
        } => {
            let [arch] = arch.0[..] else {
                anyhow::bail!("run takes one arch, not all");
            };
            let mut runner = Runner::new(arch, qemu)?;
            if strace {
                runner = runner.with_strace();
            }
            let status = runner
                .command(&build::binary(arch, utility.name()))?
                .args(args)
                .status()?;
            return Ok(ExitCode::from(status.code().unwrap_or(1) as u8));
        }
        Cmd::Images {
            arch,
            out,
            tag,
            push,
            no_build,
        } => {
            let tc = Toolchain::load();
            if !no_build {
                build::build(tc.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?, &arch.0)?;
            }
            let rust = tc.ok().map(|t| t.rustc_release);
            let set = image::build(&image::Options::new(arch.0, out, tag, rust)?)?;
            println!(
                "{}
layout: {}",
                set.size_table(),
                set.dir.display()
            );
            if let Some(dest) = push {
                let layout = image::layout::Layout::open(&set.dir)?;
                for p in image::push::push(&layout, &set.tag, &dest)? {
                    println!("pushed {} {}", p.reference, p.digest);
                }
            }
        }
        Cmd::Debug {
            fixture,
            arch,
            container,
            strace,
            gdb,
            gdb_batch,
            qemu,
            no_build,
        } => {
            let [arch] = arch.0[..] else {
                anyhow::bail!("debug takes one arch, not all");
            };
            if !no_build {
                build::build(&Toolchain::load()?, &[arch])?;
            }
            let args = debug::DebugArgs {
                fixture,
                arch: Some(arch),
                container,
                strace,
                gdb: gdb || gdb_batch.is_some(),
                gdb_batch,
                qemu,
            };
            let report = debug::debug(&args)?;
            print!("{}", report.text);
            if report.difference.is_some() {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Matrix {
            arch,
            no_build,
            selftest,
            qemu,
            backend,
            jobs,
        } => {
            let tc = Toolchain::load()?;
            let jobs = jobs
                .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get()));
            let arches = arch.0;
            if backend == BackendKind::Docker {
                // A matrix that ran nothing is not a green one.
                if let Err(why) = harness::backend::docker::engine::available() {
                    anyhow::bail!("the Docker backend needs a Docker Engine: {why}");
                }
            }
            if !no_build {
                build::build(&tc, &arches)?;
            }
            let opts = RunOptions {
                backend,
                ..Default::default()
            };
            let report = matrix(&tc, &arches, selftest, qemu.as_deref(), &opts, jobs)?;
            print!("{}", report.markdown());
            let path = report.write()?;
            println!("\nreport: {}", path.display());
            if report.failures() > 0 {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn matrix<'a>(
    tc: &'a Toolchain,
    arches: &[Arch],
    selftest: bool,
    qemu: Option<&Path>,
    opts: &RunOptions,
    jobs: usize,
) -> Result<Report<'a>> {
    let start = Instant::now();
    let mut cases = cases::all()?;
    if selftest {
        cases.extend(cases::selftests()?);
    }
    let mut emulators = Vec::new();
    let mut runners = Vec::new();
    for &arch in arches {
        let runner = Runner::new(arch, debug::resolve_qemu(arch, qemu)?)?;
        emulators.push((arch, runner.emulator_version()?));
        runners.push(runner);
    }
    // Case by case, every arch in turn: the arches share the machine's load alike, so their
    // summed cell times compare fairly even though cells run side by side.
    let work: Vec<(usize, usize)> = (0..cases.len())
        .flat_map(|c| (0..runners.len()).map(move |a| (a, c)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::with_capacity(work.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(a, c)) = work.get(i) else { break };
                    let cell = run_cell(&runners[a], &cases[c], opts);
                    done.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(((a, c), cell));
                }
            });
        }
    });
    let mut cells = done.into_inner().unwrap_or_else(|e| e.into_inner());
    // The report lists arch by arch, cases in their order.
    cells.sort_by_key(|(key, _)| *key);
    Ok(Report {
        toolchain: tc,
        emulators,
        arches: arches.to_vec(),
        cells: cells.into_iter().map(|(_, cell)| cell).collect(),
        wall: start.elapsed(),
        jobs,
    })
}

/// Runs one case on one arch and compares it with its golden; a red fixture cell gets a triage.
fn run_cell(runner: &Runner, case: &Case, opts: &RunOptions) -> Cell {
    let t = Instant::now();
    let name = case.name();
    let mut triage = None;
    let (failure, diff) = match case.run(runner, opts) {
        Err(e) => (Some(format!("{e:#}")), None),
        Ok(outcome) => {
            let got = outcome.text;
            let (first, diff) = match compare::golden(&name) {
                None => (Some(format!("no golden {name}.snap")), None),
                Some(want) => {
                    let first = compare::first_difference(&want, &got);
                    let diff = first.as_ref().map(|_| report::unified_diff(&want, &got));
                    (first, diff)
                }
            };
            if let (Some(_), Some(run), Some(fixture)) = (&first, &outcome.pod, case.fixture_name())
            {
                triage = Some(triage_cell(runner, case, run, fixture, opts));
            }
            (first, diff)
        }
    };
    Cell {
        arch: runner.arch,
        row: case.test_name(),
        elapsed: t.elapsed(),
        failure,
        diff,
        triage,
    }
}

/// A failing fixture cell's triage: from its run, plus (under emulation) the tail of a syscall
/// trace of the suspect container from a second, traced run.
fn triage_cell(
    runner: &Runner,
    case: &Case,
    run: &PodRun,
    fixture: &str,
    opts: &RunOptions,
) -> Triage {
    let mut t = Triage::from_pod(run, runner.arch, fixture);
    // Syscall traces are a qemu-backend feature.
    if runner.emulator.is_some() && opts.backend == BackendKind::Qemu {
        if let Some(suspect) = t.suspect(run) {
            let opts = RunOptions {
                strace: Some(suspect),
                ..Default::default()
            };
            if let Ok(traced) = case.run(runner, &opts) {
                if let Some(d) = traced.pod.and_then(|p| p.trace_dir) {
                    t.strace_tails = harness::triage::strace_tails(&d);
                }
            }
        }
    }
    t
}
