//! The lab as a test target: `cargo test -p harness -- --arch ppc64le [filters] [libtest flags]`.
//!
//! Takes `--arch` (one arch or `all`, default `all`), hands every other argument to a
//! libtest-compatible runner, builds the selected arches' binaries once, then runs one test per
//! (arch, case). Every arch compares with the same golden in `tests/snapshots/`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;

use harness::cases::{self, Case};
use harness::target::{self, Arch};
use harness::toolchain::Toolchain;
use harness::{build, compare, fixture, runner::Runner};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() -> ExitCode {
    let (arches, rest) = match split_args(std::env::args().collect()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("lab: {e}");
            return ExitCode::from(2);
        }
    };
    let args = Arguments::from_iter(rest);
    if !args.list {
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
    let mut trials = Vec::new();
    for &arch in &arches {
        trials.push(Trial::test(
            format!("{arch}::runner::executes_the_arch_binary"),
            move || runner_check(arch),
        ));
        trials.push(Trial::test(
            format!("{arch}::selftest::byte_order_is_caught"),
            move || selftest_byte_order(arch),
        ));
        for case in all.clone() {
            trials.push(Trial::test(
                format!("{arch}::{}", case.test_name()),
                move || case_check(arch, &case),
            ));
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// Pulls `--arch X` / `--arch=X` out of the arguments; the rest is libtest's.
fn split_args(args: Vec<String>) -> Result<(Vec<Arch>, Vec<String>), String> {
    let mut arches = target::ALL.to_vec();
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let value = if a == "--arch" {
            Some(it.next().ok_or("--arch needs a value")?)
        } else {
            a.strip_prefix("--arch=").map(str::to_string)
        };
        match value {
            Some(v) => arches = target::parse_selection(&v).map_err(|e| e.to_string())?,
            None => rest.push(a),
        }
    }
    Ok((arches, rest))
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

fn case_check(arch: Arch, case: &Case) -> Result<(), Failed> {
    let runner = Runner::new(arch, None).map_err(|e| format!("{e:#}"))?;
    let got = case
        .observe(&runner)
        .map_err(|e| format!("{arch}: {e:#}"))?;
    case_matches(arch, &case.name(), &case.description(), &got)
}

/// Compares with the golden through insta (so `cargo insta review` works) and turns a mismatch
/// into a one-line failure naming the arch and the first differing line.
fn case_matches(arch: Arch, name: &str, description: &str, got: &str) -> Result<(), Failed> {
    let diff = compare::golden(name).and_then(|want| compare::first_difference(&want, got));
    let result = catch_unwind(AssertUnwindSafe(|| {
        insta::with_settings!({
            snapshot_path => compare::snapshot_dir(),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => description,
        }, {
            insta::assert_snapshot!(name, got);
        });
    }));
    match result {
        Ok(()) => Ok(()),
        Err(_) => Err(format!(
            "{arch} differs from golden {name}: {}",
            diff.unwrap_or_else(|| "no golden yet (review with `cargo insta review`)".into())
        )
        .into()),
    }
}

/// Proves the lab catches an arch-sensitive bug: a fixture that prints a number hashed with
/// native byte order must match its (little-endian) golden on amd64, arm64 and ppc64le, and must
/// fail on s390x with a diff that points at that line.
fn selftest_byte_order(arch: Arch) -> Result<(), Failed> {
    let path = fixture::dir().join("selftest/hash_native.toml");
    let f = fixture::load(&path).map_err(|e| format!("{e:#}"))?;
    let runner = Runner::new(arch, None).map_err(|e| format!("{e:#}"))?;
    let case = Case::Fixture(Box::new(f));
    let got = case
        .observe(&runner)
        .map_err(|e| format!("{arch}: {e:#}"))?;
    let name = "selftest__hash_native";
    let big_endian = arch.elf().1 == object::Endianness::Big;
    if !big_endian {
        return case_matches(arch, name, &case.description(), &got);
    }
    let want = compare::golden(name)
        .ok_or("the self-test golden is missing; run the lab on amd64 first")?;
    match compare::first_difference(&want, &got) {
        Some(d) if d.contains("hash-native") || d.contains("native-order") => Ok(()),
        Some(d) => {
            Err(format!("{arch}: the lab saw a difference, but not the byte-order one: {d}").into())
        }
        None => Err(format!("{arch}: the lab did not notice a native byte-order hash").into()),
    }
}
