/*!
What a user could see of a probe: its exit status, stdout and stderr, read from the container
exit its backend handed back.
*/

use serde::Serialize;

use crate::backend::ContainerExit;
use crate::exit::Exit;

/// What one run showed, before normalisation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Observation {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
}

/// A probe's observation from its one container's exit.
pub fn probe(exit: &ContainerExit) -> Observation {
    Observation {
        exit: exit.exit,
        stdout: String::from_utf8_lossy(&exit.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&exit.stderr).into_owned(),
    }
}
