/*!
The matrix: every case on every arch, cells run side by side on a small thread pool, each
compared with its golden and red fixture cells triaged, gathered into one [`Report`]. The
`matrix` command is this plus printing; it drives the pipeline, no step imports it.
*/

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::backend::{BackendKind, PodRun, RunOptions};
use crate::cases::{self, Case};
use crate::report::{Cell, Report};
use crate::runner::Runner;
use crate::target::Arch;
use crate::toolchain::Toolchain;
use crate::triage::Triage;
use crate::{compare, debug};

/// Runs every case (and the self-tests when asked) on every arch in `arches`, `jobs` cells at
/// once, each compared with its golden; red fixture cells are triaged.
pub fn run<'a>(
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
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(((a, c), cell));
                }
            });
        }
    });
    let mut cells = done
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        Ok(outcome) => match compare::against_golden(&name, &outcome.text) {
            None => (None, None),
            Some(m) => {
                if let (Some(run), Some(fixture)) = (&outcome.pod, case.fixture_name()) {
                    triage = Some(triage_cell(runner, case, run, fixture, opts));
                }
                (Some(m.first), m.diff)
            }
        },
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
                    t.strace_tails = crate::triage::strace_tails(&d);
                }
            }
        }
    }
    t
}
