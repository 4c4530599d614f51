//! The lab's command line: a thin wrapper over the `harness` library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};
use harness::report::{self, Cell, Report};
use harness::target::{Arch, Selection};
use harness::toolchain::Toolchain;
use harness::{build, cases, compare, image, runner::Runner};

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
        utility: String,
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
                for b in build::BINARIES {
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
                .command(&build::binary(arch, &utility))?
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
            println!("{}\nlayout: {}", set.size_table(), set.dir.display());
            if let Some(dest) = push {
                let layout = image::layout::Layout::open(&set.dir)?;
                for p in image::push::push(&layout, &set.tag, &dest)? {
                    println!("pushed {} {}", p.reference, p.digest);
                }
            }
        }
        Cmd::Matrix { arch, no_build } => {
            let tc = Toolchain::load()?;
            let arches = arch.0;
            if !no_build {
                build::build(&tc, &arches)?;
            }
            let report = matrix(&tc, &arches)?;
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

fn matrix<'a>(tc: &'a Toolchain, arches: &[Arch]) -> Result<Report<'a>> {
    let start = Instant::now();
    let cases = cases::all()?;
    let mut emulators = Vec::new();
    let mut cells = Vec::new();
    for &arch in arches {
        let runner = Runner::new(arch, None)?;
        emulators.push((arch, runner.emulator_version()?));
        for case in &cases {
            let t = Instant::now();
            let name = case.name();
            let (failure, diff) = match case.observe(&runner) {
                Err(e) => (Some(format!("{e:#}")), None),
                Ok(got) => match compare::golden(&name) {
                    None => (Some(format!("no golden {name}.snap")), None),
                    Some(want) => {
                        let first = compare::first_difference(&want, &got);
                        let diff = first.as_ref().map(|_| report::unified_diff(&want, &got));
                        (first, diff)
                    }
                },
            };
            cells.push(Cell {
                arch,
                row: case.test_name(),
                elapsed: t.elapsed(),
                failure,
                diff,
            });
        }
    }
    Ok(Report {
        toolchain: tc,
        emulators,
        arches: arches.to_vec(),
        cells,
        wall: start.elapsed(),
    })
}
