/*!
The lab's images: the [`tetrapod_image`] crate (re-exported whole) fed with what this lab built,
its utilities and fixture job ([`programs`]) and where their binaries are ([`built`]).
*/

use std::path::PathBuf;

use anyhow::Result;
pub use tetrapod_image::*;

use crate::build;
use crate::pod::FIXTURE_JOB_PATH;
use crate::target::Arch;

/// The four utilities, then the fixture job.
pub fn programs() -> Vec<Program> {
    let mut out: Vec<_> = crate::utility::ALL
        .iter()
        .map(|u| Program {
            name: u.name(),
            path: u.image_path(),
            shipped: true,
        })
        .collect();
    out.push(Program {
        name: "fixture-job",
        path: FIXTURE_JOB_PATH.to_string(),
        shipped: false,
    });
    out
}

/// The lab build's output, as the images read it.
pub fn built() -> Built {
    Built {
        workspace: build::workspace_root(),
        programs: programs(),
        binary: build::binary,
        openssl_deb: build::prebuilt_openssl,
    }
}

/// `target/lab/images`.
pub fn default_dir() -> PathBuf {
    build::lab_dir().join("images")
}

/// Options from the command line's values: the default directory and tag when not given.
pub fn options(
    arches: Vec<Arch>,
    out: Option<PathBuf>,
    tag: Option<String>,
    rust_release: Option<String>,
) -> Result<Options> {
    Options::new(
        built(),
        arches,
        out.unwrap_or_else(default_dir),
        tag,
        rust_release,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_utilities_ship_and_the_fixture_job_does_not() {
        let p = programs();
        assert_eq!(p.len(), 5);
        assert_eq!(p[0].path, "/ko-app/clonerefs");
        assert!(p.iter().all(|p| p.shipped == (p.name != "fixture-job")));
        assert_eq!(p[4].path, "/usr/local/bin/fixture-job");
        let names: Vec<_> = p.iter().map(|p| p.name).collect();
        assert_eq!(names, build::LAB_PROGRAMS);
    }
}
