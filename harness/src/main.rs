//! The lab's command line: a thin wrapper over the `harness` library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use harness::backend::{BackendKind, RunOptions};
use harness::target::Selection;
use harness::toolchain::Toolchain;
use harness::{build, debug, image, matrix, runner::Runner};

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
        /// Also write cargo's timing report (per crate and arch) under the cross target dir
        #[arg(long)]
        timings: bool,
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
        Cmd::Build { arch, timings } => {
            let tc = Toolchain::load()?;
            let arches = arch.0;
            build::build_with(&tc, &arches, timings)?;
            for a in arches {
                for b in harness::utility::ALL.map(harness::utility::Utility::name) {
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
            let set = image::build(&image::options(arch.0, out, tag, rust)?)?;
            println!(
                "{}
layout: {}",
                set.size_table(),
                set.dir.display()
            );
            if let Some(dest) = push {
                let layout = image::layout::Layout::open(&set.dir)?;
                for p in image::push::push(&layout, &image::programs(), &set.tag, &dest)? {
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
            let jobs = jobs.unwrap_or_else(|| {
                2 * std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
            });
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
            let report = matrix::run(&tc, &arches, selftest, qemu.as_deref(), &opts, jobs)?;
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
