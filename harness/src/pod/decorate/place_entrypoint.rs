/*!
The place-entrypoint init container (upstream `PlaceEntrypoint`): the entrypoint image copies
its own binary into the shared tools volume for the test containers to run.
*/

use super::{TOOLS, mount};
use crate::pod::{Container, Image, SecurityContext};
use crate::utility::Utility;

pub(super) fn container() -> Container {
    Container {
        name: "place-entrypoint".into(),
        image: Image::Utility(Utility::Entrypoint),
        command: None,
        args: vec!["--copy-mode-only".into()],
        env: vec![],
        mounts: vec![mount("tools", TOOLS)],
        working_dir: None,
        security: SecurityContext::default(),
    }
}
