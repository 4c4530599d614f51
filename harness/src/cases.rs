/*!
Everything the lab checks on every arch: probes (one binary, one run) and fixtures (a whole Prow
pod). Each case runs the pipeline (provision -> run -> observe -> normalise) and yields the text
its golden holds.
*/

use anyhow::Result;

use crate::backend::{PodRun, RunOptions};
use crate::fixture::{self, Fixture};
use crate::probe::{self, Probe};
use crate::runner::Runner;
use crate::{backend, git, normalise, observe, pod, render};

#[derive(Clone)]
pub enum Case {
    Probe(Probe),
    Fixture(Box<Fixture>),
    /// A fixture from `fixtures/selftest/`: deliberately arch-sensitive.
    Selftest(Box<Fixture>),
}

impl Case {
    /// The golden's name, the same for every arch.
    pub fn name(&self) -> String {
        match self {
            Case::Probe(p) => format!("probe__{}", p.name),
            Case::Fixture(f) => format!("fixture__{}", f.name),
            Case::Selftest(f) => format!("selftest__{}", f.name),
        }
    }

    /// The test name's tail: `probe::<name>` or `fixture::<name>`.
    pub fn test_name(&self) -> String {
        match self {
            Case::Probe(p) => format!("probe::{}", p.name),
            Case::Fixture(f) => format!("fixture::{}", f.name),
            Case::Selftest(f) => format!("selftest::{}", f.name),
        }
    }

    pub fn description(&self) -> String {
        match self {
            Case::Probe(p) => format!("{} {}", p.utility, p.args.join(" ")),
            Case::Fixture(f) | Case::Selftest(f) => f.description.clone(),
        }
    }

    /// Runs the case for the runner's arch and returns its normalised observation.
    pub fn observe(&self, runner: &Runner) -> Result<String> {
        Ok(self.run(runner, &RunOptions::default())?.text)
    }

    /// Runs the case with debugging options; a fixture also hands back its pod's run.
    pub fn run(&self, runner: &Runner, opts: &RunOptions) -> Result<Outcome> {
        match self {
            Case::Probe(p) => {
                let exit = backend::probe(runner, p, opts.backend)?;
                let o = observe::probe(&exit);
                Ok(Outcome {
                    text: render::probe(&normalise::observation(&o)),
                    pod: None,
                })
            }
            Case::Fixture(f) | Case::Selftest(f) => {
                let repos = git::build_all(f)?;
                let pod = pod::decorate::decorate(f, &repos)?;
                let run = backend::run(&pod, runner, opts)?;
                Ok(Outcome {
                    text: render::pod(&run, f),
                    pod: Some(run),
                })
            }
        }
    }

    /// The fixture's name, for a fixture.
    pub fn fixture_name(&self) -> Option<&str> {
        match self {
            Case::Probe(_) => None,
            Case::Fixture(f) | Case::Selftest(f) => Some(&f.name),
        }
    }
}

/// What running a case gave.
pub struct Outcome {
    /// The normalised observation, compared with the golden.
    pub text: String,
    /// For fixtures: everything the pod left, for triage.
    pub pod: Option<PodRun>,
}

/// The self-test fixtures, as cases (goldens `selftest__<name>`).
pub fn selftests() -> Result<Vec<Case>> {
    Ok(fixture::selftests()?
        .into_iter()
        .map(|f| Case::Selftest(Box::new(f)))
        .collect())
}

/// Every probe, then every fixture in `fixtures/`.
pub fn all() -> Result<Vec<Case>> {
    let mut cases: Vec<Case> = probe::all().into_iter().map(Case::Probe).collect();
    cases.extend(
        fixture::all()?
            .into_iter()
            .map(|f| Case::Fixture(Box::new(f))),
    );
    Ok(cases)
}
