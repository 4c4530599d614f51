//! The lab as a test target: `cargo test -p harness -- --arch ppc64le [filters] [libtest flags]`.
//!
//! Takes `--arch` (one arch or `all`, default `all`) and `--backend` (`qemu`, the default, or
//! `docker`: the cases run as containers), hands every other argument to a libtest-compatible
//! runner, builds the selected arches' binaries once, then runs one test per
//! (arch, case). Every arch compares with the same golden in `tests/snapshots/`.

use std::process::ExitCode;

use harness::backend::{BackendKind, RunOptions};
use harness::cases::{self, Case};
use harness::debug::{self, DebugArgs};
use harness::pitfalls::{self, ArchFacts, Pitfall};
use harness::target::{self, Arch};
use harness::toolchain::Toolchain;
use harness::triage::Triage;
use harness::{build, compare, fixture, runner::Runner};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() -> ExitCode {
    let (arches, backend, no_build, rest) = match split_args(std::env::args().collect()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("lab: {e}");
            return ExitCode::from(2);
        }
    };
    let args = Arguments::from_iter(rest);
    if !args.list && !no_build {
        let built = Toolchain::load()
            .map_err(anyhow::Error::from)
            .and_then(|tc| build::build(&tc, &arches));
        if let Err(e) = built {
            eprintln!("lab: {e:#}");
            return ExitCode::from(1);
        }
    }
    let all = match cases::all() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lab: {e:#}");
            return ExitCode::from(1);
        }
    };
    // Without an engine the Docker cases are skipped (a failure in CI), not failed.
    let skip = backend == BackendKind::Docker
        && !args.list
        && match harness::backend::docker::engine::available() {
            Ok(()) => false,
            Err(why) => {
                testsupport::skip_or_fail::<()>("Docker Engine", why);
                true
            }
        };
    let opts = RunOptions {
        backend,
        ..Default::default()
    };
    let mut trials = Vec::new();
    for &arch in &arches {
        trials.push(Trial::test(
            format!("{arch}::runner::executes_the_arch_binary"),
            move || runner_check(arch),
        ));
        let o = opts.clone();
        trials.push(
            Trial::test(
                format!("{arch}::selftest::byte_order_is_caught"),
                move || selftest_byte_order(arch, &o),
            )
            .with_ignored_flag(skip),
        );
        let o = opts.clone();
        trials.push(
            Trial::test(
                format!("{arch}::selftest::arch_only_crash_is_triaged"),
                move || selftest_crash(arch, &o),
            )
            .with_ignored_flag(skip),
        );
        if big_endian(arch) {
            trials.push(Trial::test(
                format!("{arch}::debug::gdb_stops_at_the_crash"),
                move || gdb_stops_at_the_crash(arch),
            ));
        }
        for p in pitfalls::CATALOGUE {
            trials.push(Trial::test(
                format!("{arch}::pitfall::{}", p.name),
                move || pitfall_check(arch, p),
            ));
        }
        for case in all.clone() {
            let o = opts.clone();
            trials.push(
                Trial::test(format!("{arch}::{}", case.test_name()), move || {
                    case_check(arch, &case, &o)
                })
                .with_ignored_flag(skip),
            );
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

type LabArgs = (Vec<Arch>, BackendKind, bool, Vec<String>);

/// Pulls `--arch X` / `--arch=X`, `--backend X` / `--backend=X` and `--no-build` (use the
/// binaries already in target/lab) out of the arguments; the rest is libtest's.
fn split_args(args: Vec<String>) -> Result<LabArgs, String> {
    let mut arches = target::ALL.to_vec();
    let mut backend = BackendKind::default();
    let mut no_build = false;
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--no-build" {
            no_build = true;
            continue;
        }
        let mut value = |flag: &str| -> Result<Option<String>, String> {
            if a == flag {
                return it
                    .next()
                    .map(Some)
                    .ok_or_else(|| format!("{flag} needs a value"));
            }
            Ok(a.strip_prefix(&format!("{flag}=")).map(str::to_string))
        };
        if let Some(v) = value("--arch")? {
            arches = target::parse_selection(&v).map_err(|e| e.to_string())?;
        } else if let Some(v) = value("--backend")? {
            backend = v
                .parse()
                .map_err(|e: harness::backend::UnknownBackend| e.to_string())?;
        } else {
            rest.push(a);
        }
    }
    Ok((arches, backend, no_build, rest))
}

/// Proves the runner really runs the arch's binary: the binary is an ELF of that arch, and for
/// foreign arches qemu's syscall trace of the run is non-empty (a bypassed emulator leaves none).
fn runner_check(arch: Arch) -> Result<(), Failed> {
    let bin = build::binary(arch, "entrypoint");
    build::check_elf(&bin, arch).map_err(|e| format!("{e:#}"))?;
    let runner = Runner::new(arch, None).map_err(|e| format!("{e:#}"))?;
    if runner.emulator.is_none() {
        return Ok(());
    }
    let out = runner
        .with_strace()
        .command(&bin)
        .map_err(|e| format!("{e:#}"))?
        .arg("--help")
        .output()
        .map_err(|e| e.to_string())?;
    let trace = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !trace.contains(" write(1,") {
        return Err(format!(
            "{arch}: no qemu syscall trace of the guest writing its help:\n{trace}"
        )
        .into());
    }
    Ok(())
}

fn case_check(arch: Arch, case: &Case, opts: &RunOptions) -> Result<(), Failed> {
    let runner = Runner::new(arch, None).map_err(|e| format!("{e:#}"))?;
    let got = case
        .run(&runner, opts)
        .map_err(|e| format!("{arch}: {e:#}"))?
        .text;
    case_matches(arch, &case.name(), &case.description(), &got)
}

/// Compares with the golden (through insta, see `compare::assert_golden`).
fn case_matches(arch: Arch, name: &str, description: &str, got: &str) -> Result<(), Failed> {
    compare::assert_golden(arch, name, description, got).map_err(Failed::from)
}

/// Proves the lab catches an arch-sensitive bug: a fixture that prints a number hashed with
/// native byte order must match its (little-endian) golden on amd64, arm64 and ppc64le, and must
/// fail on s390x with a diff that points at that line.
fn selftest_byte_order(arch: Arch, opts: &RunOptions) -> Result<(), Failed> {
    let path = fixture::dir().join("selftest/hash_native.toml");
    let f = fixture::load(&path).map_err(|e| format!("{e:#}"))?;
    let runner = Runner::new(arch, None).map_err(|e| format!("{e:#}"))?;
    let case = Case::Fixture(Box::new(f));
    let got = case
        .run(&runner, opts)
        .map_err(|e| format!("{arch}: {e:#}"))?
        .text;
    let name = "selftest__hash_native";
    let big_endian = arch.elf().1 == object::Endianness::Big;
    if !big_endian {
        return case_matches(arch, name, &case.description(), &got);
    }
    let want = compare::golden(name)
        .ok_or("the self-test golden is missing; run the lab on amd64 first")?;
    match compare::first_difference(&want, &got) {
        // The differing line is the hash itself: 1's bytes little-endian in the golden,
        // big-endian in what s390x printed.
        Some(d) if d.contains("0100000000000000") && d.contains("0000000000000001") => Ok(()),
        Some(d) => {
            Err(format!("{arch}: the lab saw a difference, but not the byte-order one: {d}").into())
        }
        None => Err(format!("{arch}: the lab did not notice a native byte-order hash").into()),
    }
}

fn big_endian(arch: Arch) -> bool {
    arch.elf().1 == object::Endianness::Big
}

fn err(e: anyhow::Error) -> Failed {
    format!("{e:#}").into()
}

/// The deliberate arch-only crash (fixtures/selftest/native_record.toml): little-endian arches
/// match the golden; on big-endian ones the pod must differ, and the triage must name the signal,
/// give a backtrace through the guilty functions, and print the command that reproduces it.
fn selftest_crash(arch: Arch, opts: &RunOptions) -> Result<(), Failed> {
    let f = fixture::find("native_record").map_err(err)?;
    let runner = Runner::new(arch, None).map_err(err)?;
    let case = Case::Selftest(Box::new(f));
    let out = case.run(&runner, opts).map_err(err)?;
    let name = "selftest__native_record";
    if !big_endian(arch) {
        return case_matches(arch, name, &case.description(), &out.text);
    }
    let want = compare::golden(name)
        .ok_or("the self-test golden is missing; run the lab on amd64 first")?;
    if compare::first_difference(&want, &out.text).is_none() {
        return Err(format!("{arch}: the native-order record did not crash").into());
    }
    let run = out.pod.ok_or("a fixture run has a pod")?;
    let t = Triage::from_pod(&run, arch, "native_record");
    let crash = t
        .crashes
        .iter()
        .find(|c| c.program == "fixture-job")
        .ok_or_else(|| {
            format!(
                "{arch}: no core dump of fixture-job was captured:\n{}",
                t.markdown()
            )
        })?;
    let bt = crash.backtrace.join("\n");
    if !crash.signal.starts_with("SIGSEGV")
        || !bt.contains("copy_record")
        || !bt.contains("native_record")
    {
        return Err(format!(
            "{arch}: triage lacks the signal or the backtrace:\n{}",
            t.markdown()
        )
        .into());
    }
    if t.reproduce
        != format!(
            "cargo run -p harness -- debug native_record --arch {arch} --container test --strace"
        )
    {
        return Err(format!("{arch}: unexpected reproduce command {}", t.reproduce).into());
    }
    Ok(())
}

/// `harness debug native_record --arch s390x --gdb-batch bt`: the guest stops in qemu's
/// gdbstub, gdb-multiarch continues it to the SIGSEGV and the backtrace names the function.
fn gdb_stops_at_the_crash(arch: Arch) -> Result<(), Failed> {
    let args = DebugArgs {
        fixture: "native_record".into(),
        arch: Some(arch),
        gdb: true,
        gdb_batch: Some(vec!["bt".into()]),
        ..Default::default()
    };
    let report = debug::debug(&args).map_err(err)?;
    let t = report.gdb_transcript.unwrap_or_default();
    if t.contains("SIGSEGV") && t.contains("copy_record") {
        Ok(())
    } else {
        Err(format!("{arch}: gdb did not stop at the crash:\n{t}").into())
    }
}

/// One catalogue pitfall: the clean variant matches its golden on every arch; the naive one
/// differs from it exactly where the pitfall bites.
fn pitfall_check(arch: Arch, pitfall: &Pitfall) -> Result<(), Failed> {
    let (name, what) = (pitfall.name, pitfall.what);
    let runner = Runner::new(arch, None).map_err(err)?;
    let run = |mode: &str| -> Result<String, Failed> {
        let out = runner
            .command(&build::binary(arch, "fixture-job"))
            .map_err(err)?
            .args(["pitfall", name, mode])
            .env_clear()
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("{arch}: pitfall {name} {mode} failed: {out:?}").into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let clean = run("clean")?;
    case_matches(arch, &format!("pitfall__{name}"), what, &clean)?;
    let naive = run("naive")?;
    let naive2 = run("naive")?;
    let differs = naive != clean || naive2 != clean;
    let facts = ArchFacts::of(arch, runner.guest_page_size());
    match ((pitfall.bites)(facts), differs) {
        (true, true) | (false, false) => Ok(()),
        (true, false) => Err(format!(
            "{arch}: pitfall {name} should bite here but the naive variant matched: {naive}"
        )
        .into()),
        (false, true) => Err(format!(
            "{arch}: pitfall {name} should not bite here but the naive variant gave {naive} (clean {clean})"
        )
        .into()),
    }
}
