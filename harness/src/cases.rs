/*!
Everything the lab checks on every arch: probes (one binary, one run) and fixtures (a whole Prow
pod). Each case runs the pipeline (provision -> run -> observe -> normalise) and yields the text
its golden holds.
*/

use anyhow::Result;

use crate::fixture::{self, Fixture};
use crate::probe::{self, Probe};
use crate::runner::Runner;
use crate::{backend, compare, git, normalise, observe, pod};

#[derive(Clone)]
pub enum Case {
    Probe(Probe),
    Fixture(Box<Fixture>),
}

impl Case {
    /// The golden's name, the same for every arch.
    pub fn name(&self) -> String {
        match self {
            Case::Probe(p) => format!("probe__{}", p.name),
            Case::Fixture(f) => format!("fixture__{}", f.name),
        }
    }

    /// The test name's tail: `probe::<name>` or `fixture::<name>`.
    pub fn test_name(&self) -> String {
        match self {
            Case::Probe(p) => format!("probe::{}", p.name),
            Case::Fixture(f) => format!("fixture::{}", f.name),
        }
    }

    pub fn description(&self) -> String {
        match self {
            Case::Probe(p) => format!("{} {}", p.utility, p.args.join(" ")),
            Case::Fixture(f) => f.description.clone(),
        }
    }

    /// Runs the case for the runner's arch and returns its normalised observation.
    pub fn observe(&self, runner: &Runner) -> Result<String> {
        match self {
            Case::Probe(p) => {
                let o = observe::run(runner, p)?;
                Ok(compare::render(&normalise::observation(&o)))
            }
            Case::Fixture(f) => {
                let repos = git::build_all(f)?;
                let pod = pod::decorate::decorate(f, &repos)?;
                let run = backend::qemu::run(&pod, runner)?;
                Ok(observe::pod(&run, &f.name))
            }
        }
    }
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
